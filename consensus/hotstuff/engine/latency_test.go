package engine

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// histograms gathers l's histograms by name and stage label.
func histograms(t *testing.T, l *latencyStats) map[string]*dto.Histogram {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectorFunc{l.describe, l.collect})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Histogram{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, lp := range m.GetLabel() {
				key += "/" + lp.GetValue()
			}
			out[key] = m.GetHistogram()
		}
	}
	return out
}

type collectorFunc struct {
	describe func(chan<- *prometheus.Desc)
	collect  func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { c.describe(ch) }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func TestLatencyStatsStages(t *testing.T) {
	l := newLatencyStats()
	t0 := time.Unix(1000, 0)
	c := &inflightCmd{at: t0, view: 7}
	c.noteProposedAt(t0.Add(20*time.Millisecond), 9)
	c.noteProposedAt(t0.Add(50*time.Millisecond), 10) // only the first proposal counts
	l.noteApplied(c, t0.Add(60*time.Millisecond), 12)
	l.noteApplied(&inflightCmd{at: t0, view: 7}, t0.Add(time.Second), 12) // never seen proposed: not counted
	l.noteView(t0)
	l.noteView(t0.Add(8 * time.Millisecond))

	h := histograms(t, l)
	for _, tc := range []struct {
		key   string
		count uint64
		sum   float64
	}{
		{"tandem_hotstuff_command_stage_seconds/proposed", 1, 0.020},
		{"tandem_hotstuff_command_stage_seconds/committed", 1, 0.040},
		{"tandem_hotstuff_command_stage_views/proposed", 1, 2},
		{"tandem_hotstuff_command_stage_views/committed", 1, 3},
		{"tandem_hotstuff_view_seconds", 1, 0.008},
	} {
		got := h[tc.key]
		if got == nil {
			t.Fatalf("%s not collected", tc.key)
		}
		if got.GetSampleCount() != tc.count || got.GetSampleSum() < tc.sum-1e-9 || got.GetSampleSum() > tc.sum+1e-9 {
			t.Errorf("%s: count %d sum %v, want %d and %v", tc.key, got.GetSampleCount(), got.GetSampleSum(), tc.count, tc.sum)
		}
	}
}
