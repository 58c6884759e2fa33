package main

import (
	"math"
	"os"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

func TestHistoSumsNodesAndInterpolates(t *testing.T) {
	node := func(c1, c2, c4 uint64, sum float64) *dto.Histogram {
		return &dto.Histogram{
			SampleCount: proto.Uint64(c4),
			SampleSum:   proto.Float64(sum),
			Bucket: []*dto.Bucket{
				{UpperBound: proto.Float64(1), CumulativeCount: proto.Uint64(c1)},
				{UpperBound: proto.Float64(2), CumulativeCount: proto.Uint64(c2)},
				{UpperBound: proto.Float64(4), CumulativeCount: proto.Uint64(c4)},
			},
		}
	}
	var h histo
	h.add(node(2, 4, 10, 20))
	h.add(node(0, 6, 10, 30))
	// Summed: 2 at ≤1, 10 at ≤2, 20 at ≤4. The median (rank 10) is the
	// top of the second bucket, the 75th percentile (rank 15) half way
	// through the third.
	if got := h.quantile(0.5); got != 2 {
		t.Errorf("p50 = %v, want 2", got)
	}
	if got := h.quantile(0.75); math.Abs(got-3) > 1e-9 {
		t.Errorf("p75 = %v, want 3", got)
	}
	if got := h.mean(); got != 2.5 {
		t.Errorf("mean = %v, want 2.5", got)
	}
	var empty histo
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("an empty histogram should give zeros")
	}
}

func TestProcCPUReadsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	before, ok := procCPU(os.Getpid())
	if !ok {
		t.Fatal("procCPU could not read this process")
	}
	x := 0.0
	for i := range 50_000_000 {
		x += math.Sqrt(float64(i))
	}
	after, ok := procCPU(os.Getpid())
	if !ok || after <= before {
		t.Fatalf("CPU time %v then %v (%v): want it to grow", before, after, x > 0)
	}
	if _, ok := procCPU(-1); ok {
		t.Error("procCPU of no process reported ok")
	}
}
