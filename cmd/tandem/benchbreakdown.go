package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandem-consensus/tandem/client"
)

// Where a bench write's time went (--breakdown): the client side from the
// SDK's own timings (client.BatcherStats, client.BFTStats), the engine side
// from the nodes' latency histograms (tandem_hotstuff_command_stage_*,
// tandem_hotstuff_view_seconds, tandem_hotstuff_persist_seconds), summed
// over every node and read just before the cluster stops.

// benchStage is one line of the breakdown.
type benchStage struct {
	Stage      string  `json:"stage"`
	Count      uint64  `json:"count"`
	P50Millis  float64 `json:"p50_ms"`
	MeanMillis float64 `json:"mean_ms"`
	// P50Views and MeanViews are set for the engine stages counted in
	// views too.
	P50Views  float64 `json:"p50_views,omitempty"`
	MeanViews float64 `json:"mean_views,omitempty"`
}

// latencyStage converts an SDK summary.
func latencyStage(name string, s client.LatencySummary) benchStage {
	return benchStage{Stage: name, Count: s.Count, P50Millis: millis(s.P50), MeanMillis: millis(s.Mean)}
}

// histo is a histogram summed over nodes: cumulative bucket counts by
// upper bound, the sum and the count.
type histo struct {
	buckets map[float64]uint64
	sum     float64
	count   uint64
}

func (h *histo) add(m *dto.Histogram) {
	if h.buckets == nil {
		h.buckets = map[float64]uint64{}
	}
	for _, b := range m.GetBucket() {
		h.buckets[b.GetUpperBound()] += b.GetCumulativeCount()
	}
	h.sum += m.GetSampleSum()
	h.count += m.GetSampleCount()
}

// quantile estimates the q quantile by linear interpolation inside the
// bucket that holds it (as Prometheus's histogram_quantile does).
func (h *histo) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	bounds := make([]float64, 0, len(h.buckets))
	for b := range h.buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * float64(h.count)
	prevBound, prevCount := 0.0, uint64(0)
	for _, b := range bounds {
		c := h.buckets[b]
		if float64(c) >= rank {
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-float64(prevCount))/float64(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return prevBound
}

func (h *histo) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / float64(h.count)
}

// scrapeEngineStages reads the engine's latency histograms from every
// endpoint and sums them.
func scrapeEngineStages(ctx context.Context, endpoints []string, tlsCfg *tls.Config) ([]benchStage, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer hc.CloseIdleConnections()
	sums := map[string]*histo{} // by metric name and stage label
	for _, ep := range endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(ep, "/")+"/metrics", nil)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", ep, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", ep, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", ep, err)
		}
		for name, f := range fams {
			if !strings.HasPrefix(name, "tandem_hotstuff_") || f.GetType() != dto.MetricType_HISTOGRAM {
				continue
			}
			for _, m := range f.GetMetric() {
				key := name
				for _, l := range m.GetLabel() {
					if l.GetName() == "stage" {
						key += "/" + l.GetValue()
					}
				}
				if sums[key] == nil {
					sums[key] = &histo{}
				}
				sums[key].add(m.GetHistogram())
			}
		}
	}
	sec := func(name, label string) benchStage {
		h := sums[name]
		if h == nil {
			h = &histo{}
		}
		return benchStage{Stage: label, Count: h.count, P50Millis: 1e3 * h.quantile(0.5), MeanMillis: 1e3 * h.mean()}
	}
	withViews := func(stage, label string) benchStage {
		s := sec("tandem_hotstuff_command_stage_seconds/"+stage, label)
		if v := sums["tandem_hotstuff_command_stage_views/"+stage]; v != nil {
			s.P50Views, s.MeanViews = v.quantile(0.5), v.mean()
		}
		return s
	}
	var out []benchStage // the stages a node reported (none in cft mode)
	for _, st := range []benchStage{
		withViews("proposed", "engine: handed over → in a proposal"),
		withViews("committed", "engine: proposal → committed, applied"),
		sec("tandem_hotstuff_view_seconds", "engine: one view"),
		sec("tandem_hotstuff_persist_seconds", "engine: one persistence step"),
	} {
		if st.Count > 0 {
			out = append(out, st)
		}
	}
	return out, nil
}

// breakdownFields formats the breakdown for printBenchWrite.
func breakdownFields(stages []benchStage) [][2]string {
	var out [][2]string
	for _, s := range stages {
		v := fmt.Sprintf("p50 %.1f ms, mean %.1f ms (%d)", s.P50Millis, s.MeanMillis, s.Count)
		if s.MeanViews > 0 || s.P50Views > 0 {
			v += fmt.Sprintf("; views p50 %.1f, mean %.2f", s.P50Views, s.MeanViews)
		}
		out = append(out, [2]string{s.Stage, v})
	}
	return out
}

// clockTicks is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on Linux for every architecture Go supports).
const clockTicks = 100

// procCPU returns the CPU time (user and system) process pid has used so
// far, read from /proc (Linux); ok is false where that cannot be read.
func procCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * time.Second / clockTicks, true
}

// cpuMeter sums the CPU time of the bench process and the local cluster's
// nodes between start and stop.
type cpuMeter struct {
	pids        []int
	self, nodes time.Duration
	allOK       bool
}

func (m *cpuMeter) read() (self, nodes time.Duration, ok bool) {
	self, ok = procCPU(os.Getpid())
	for _, p := range m.pids {
		d, okp := procCPU(p)
		ok = ok && okp
		nodes += d
	}
	return self, nodes, ok
}

func newCPUMeter(lc *localCluster) *cpuMeter {
	m := &cpuMeter{}
	if lc != nil {
		for _, n := range lc.layout.Nodes {
			if pid := lc.Pid(n.ID); pid > 0 {
				m.pids = append(m.pids, pid)
			}
		}
	}
	m.self, m.nodes, m.allOK = m.read()
	return m
}

// perWrite returns the CPU microseconds per write the bench process and
// the nodes used since newCPUMeter (0 when unknown).
func (m *cpuMeter) perWrite(writes int) (client, nodes float64) {
	self, n, ok := m.read()
	if !ok || !m.allOK || writes == 0 {
		return 0, 0
	}
	return float64(self-m.self) / 1e3 / float64(writes), float64(n-m.nodes) / 1e3 / float64(writes)
}
