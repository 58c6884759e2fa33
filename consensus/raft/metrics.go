package raftengine

import (
	"fmt"

	metrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// MetricsService is the go-metrics service name: raft's metrics appear in
// Prometheus as tandem_raft_..., memberlist's as tandem_memberlist_....
const MetricsService = "tandem"

// SetupMetrics exports the go-metrics that hashicorp/raft, raft-boltdb and
// memberlist emit to Prometheus through reg: it creates a go-metrics
// Prometheus sink registered with reg and installs it as go-metrics' global
// sink, without hostname prefix or runtime metrics (the Go collector of
// client_golang covers those). Timers are reported in milliseconds.
//
// The go-metrics global is process state owned by that library (the
// libraries call its package functions directly), so call SetupMetrics once
// per process, before the first engine starts; a second call replaces the
// global sink and fails to register with the same reg.
func SetupMetrics(reg prometheus.Registerer) error {
	opts := gmprom.DefaultPrometheusOpts
	opts.Registerer = reg
	opts.Name = "tandem_go_metrics_sink"
	sink, err := gmprom.NewPrometheusSinkFrom(opts)
	if err != nil {
		return fmt.Errorf("raft metrics: register prometheus sink: %w", err)
	}
	conf := metrics.DefaultConfig(MetricsService)
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false
	if _, err := metrics.NewGlobal(conf, sink); err != nil {
		return fmt.Errorf("raft metrics: install go-metrics sink: %w", err)
	}
	return nil
}

// Collector returns a Prometheus collector of this engine's gauges (term,
// commit, applied and last index, last snapshot index, leadership, bytes
// applied since the last snapshot) and counters (barriers issued,
// snapshots taken on the log size limit, Raft requests refused by the
// sender check per reason), read at scrape time. Register it for the engine's
// lifetime and unregister it after Stop (a later epoch's engine brings its
// own).
func (e *Engine) Collector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("tandem_raft_engine_"+name, help, nil, nil)
	}
	return &engineCollector{
		e:         e,
		term:      d("term", "Current Raft term of this node."),
		commit:    d("commit_index", "Highest log index known to be committed."),
		applied:   d("applied_index", "Highest log index applied to the state machine."),
		last:      d("last_index", "Last index in the local log."),
		snapshot:  d("last_snapshot_index", "Index of the newest local snapshot."),
		leader:    d("is_leader", "1 if this node is the Raft leader, else 0."),
		barriers:  d("read_barriers_total", "Raft barriers issued for linearizable reads."),
		logBytes:  d("log_bytes", "Bytes of the log entries applied since the last snapshot (what log_size_limit bounds)."),
		sizeSnaps: d("size_snapshots_total", "Snapshots taken because the entries applied since the last one passed log_size_limit."),
		rejected: prometheus.NewDesc("tandem_raft_engine_rejected_rpcs_total",
			"Raft requests refused before the transport read them, closing their connection, by reason: forged_sender (the header names another member than the connection's certificate), malformed, oversized.",
			[]string{"reason"}, nil),
	}
}

type engineCollector struct {
	e                                                       *Engine
	term, commit, applied, last, snapshot, leader, barriers *prometheus.Desc
	logBytes, sizeSnaps, rejected                           *prometheus.Desc
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.term, c.commit, c.applied, c.last, c.snapshot, c.leader, c.barriers, c.logBytes, c.sizeSnaps, c.rejected} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.Status()
	leader := 0.0
	if st.Role == "leader" {
		leader = 1
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(c.term, float64(st.Term))
	gauge(c.commit, float64(st.CommitIndex))
	gauge(c.applied, float64(st.AppliedIndex))
	gauge(c.last, float64(st.LastIndex))
	gauge(c.snapshot, float64(st.LastSnapshotIndex))
	gauge(c.leader, leader)
	gauge(c.logBytes, float64(c.e.fsm.bytes.Load()))
	ch <- prometheus.MustNewConstMetric(c.barriers, prometheus.CounterValue, float64(c.e.barriers.Load()))
	ch <- prometheus.MustNewConstMetric(c.sizeSnaps, prometheus.CounterValue, float64(c.e.sizeSnaps.Load()))
	var rejected [len(rejectReasons)]uint64 // zeros without the check
	if c.e.refuser != nil {
		rejected = c.e.refuser.rejectedCounts()
	}
	for i, reason := range rejectReasons {
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(rejected[i]), reason)
	}
}
