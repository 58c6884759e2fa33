package engine

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the engine's gauges and
// counters, read at scrape time: view, high QC view, committed height and
// log index, the view change alert, view changes by cause, timeouts forced
// by operators, evidence seen, the block store's size and pruning, frames
// sent, received and dropped (by reason), and peers refused. All names start with tandem_hotstuff_.
// Register it for the engine's lifetime.
func (e *Engine) Collector() prometheus.Collector {
	return &collector{e: e}
}

type collector struct{ e *Engine }

type metricDef struct {
	name, help string
	kind       prometheus.ValueType
	labels     []string
}

var metricDefs = []metricDef{
	{"view", "Current HotStuff view of this node.", prometheus.GaugeValue, nil},
	{"high_qc_view", "View of the highest quorum certificate this node knows.", prometheus.GaugeValue, nil},
	{"committed_height", "Height of the last committed block.", prometheus.GaugeValue, nil},
	{"commit_index", "Log index of the last committed state machine entry.", prometheus.GaugeValue, nil},
	{"is_leader", "1 if this node leads the current view, else 0.", prometheus.GaugeValue, nil},
	{"view_change_alert", "1 while max_view_change_retries consecutive views have timed out, else 0.", prometheus.GaugeValue, nil},
	{"consecutive_timeouts", "Views timed out in a row without a QC.", prometheus.GaugeValue, nil},
	{"pending_commands", "Commands queued on this node for ordering.", prometheus.GaugeValue, nil},
	{"view_changes_total", "Views entered, by cause (qc: progress; tc: a timeout certificate).", prometheus.CounterValue, []string{"cause"}},
	{"alerts_total", "Times the view change alert was raised.", prometheus.CounterValue, nil},
	{"forced_view_changes_total", "View changes forced on this node, by origin (local operator or a peer's request).", prometheus.CounterValue, []string{"origin"}},
	{"evidence_total", "Proofs of misbehaviour the core reported.", prometheus.CounterValue, nil},
	{"blocks_committed_total", "Blocks committed.", prometheus.CounterValue, nil},
	{"entries_applied_total", "State machine entries applied.", prometheus.CounterValue, nil},
	{"messages_rejected_total", "Consensus messages the core rejected (bad signature, not from the leader, malformed certificate).", prometheus.CounterValue, nil},
	{"signature_failures_total", "Proposals, votes and timeouts whose own signature by their sender failed (reported to the detector).", prometheus.CounterValue, nil},
	{"commands_rejected_total", "Commands forwarded by peers that failed validation or did not fit the queue.", prometheus.CounterValue, nil},
	{"commands_reforwarded_total", "Commands forwarded again because they were not committed in time.", prometheus.CounterValue, nil},
	{"block_requests_served_total", "Block requests answered from the block store.", prometheus.CounterValue, nil},
	{"block_requests_refused_total", "Block requests not answered because the peer exceeded its rate.", prometheus.CounterValue, nil},
	{"blocks_pruned_total", "Committed blocks deleted from the block store, behind stable checkpoints or on the log size limit.", prometheus.CounterValue, nil},
	{"pruned_height", "Lowest committed height still in the block store (0: nothing pruned).", prometheus.GaugeValue, nil},
	{"log_bytes", "Encoded size in bytes of the committed blocks in the block store (what log_size_limit bounds).", prometheus.GaugeValue, nil},
	{"size_compactions_total", "Times the committed blocks were pruned because they passed log_size_limit, without a stable checkpoint.", prometheus.CounterValue, nil},
	{"pruned_answers_total", "Block requests answered with this node's pruned horizon.", prometheus.CounterValue, nil},
	{"state_transfers_total", "Times this replica started from a transferred checkpoint because its peers had pruned the blocks it missed.", prometheus.CounterValue, nil},
	{"frames_received_total", "Frames received on BFT connections.", prometheus.CounterValue, nil},
	{"frames_sent_total", "Frames written to BFT connections.", prometheus.CounterValue, nil},
	{"bytes_received_total", "Bytes received on BFT connections.", prometheus.CounterValue, nil},
	{"bytes_sent_total", "Bytes written to BFT connections.", prometheus.CounterValue, nil},
	{"frames_dropped_total", "Frames dropped, by reason: queue_full (oldest dropped from a full send queue), write_error, malformed, unknown_kind, oversize (connection closed).", prometheus.CounterValue, []string{"reason"}},
	{"peers_refused_total", "BFT connections refused: the peer is not a committee member or presented another node's certificate.", prometheus.CounterValue, nil},
	{"dial_failures_total", "Failed dials of BFT peers.", prometheus.CounterValue, nil},
	{"connections_ended_total", "Outgoing BFT connections that ended while the engine ran.", prometheus.CounterValue, nil},
}

func desc(d metricDef) *prometheus.Desc {
	return prometheus.NewDesc("tandem_hotstuff_"+d.name, d.help, d.labels, nil)
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDefs {
		ch <- desc(d)
	}
	c.e.lat.describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	s := e.status.Load()
	st := e.stats
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	u := func(a *atomic.Uint64) float64 { return float64(a.Load()) }
	values := map[string][]struct {
		v      float64
		labels []string
	}{
		"view":                         {{float64(s.core.View), nil}},
		"high_qc_view":                 {{float64(s.core.HighQCView), nil}},
		"committed_height":             {{float64(s.core.CommittedHeight), nil}},
		"commit_index":                 {{float64(s.lastIndex), nil}},
		"is_leader":                    {{b(s.core.Leader == e.cfg.ID), nil}},
		"view_change_alert":            {{b(s.core.Alert), nil}},
		"consecutive_timeouts":         {{float64(s.core.ConsecutiveTimeouts), nil}},
		"pending_commands":             {{float64(s.core.Pending), nil}},
		"view_changes_total":           {{u(&st.viewChangesQC), []string{"qc"}}, {u(&st.viewChangesTC), []string{"tc"}}},
		"alerts_total":                 {{u(&st.alerts), nil}},
		"forced_view_changes_total":    {{u(&st.forcedViewChanges), []string{"local"}}, {u(&st.remoteViewChange), []string{"peer"}}},
		"evidence_total":               {{u(&st.evidence), nil}},
		"blocks_committed_total":       {{u(&st.blocksCommitted), nil}},
		"entries_applied_total":        {{u(&st.entriesApplied), nil}},
		"messages_rejected_total":      {{u(&st.stepErrors), nil}},
		"commands_rejected_total":      {{u(&st.invalidForwarded), nil}},
		"signature_failures_total":     {{u(&st.signatureFailures), nil}},
		"commands_reforwarded_total":   {{u(&st.reforwarded), nil}},
		"block_requests_served_total":  {{u(&st.blockRequestsServed), nil}},
		"block_requests_refused_total": {{u(&st.blockRequestsRefused), nil}},
		"blocks_pruned_total":          {{u(&st.blocksPruned), nil}},
		"pruned_height":                {{u(&st.horizon), nil}},
		"log_bytes":                    {{u(&st.logBytes), nil}},
		"size_compactions_total":       {{u(&st.sizeCompactions), nil}},
		"pruned_answers_total":         {{u(&st.prunedAnswers), nil}},
		"state_transfers_total":        {{u(&st.transfers), nil}},
		"frames_received_total":        {{u(&st.net.framesIn), nil}},
		"frames_sent_total":            {{u(&st.net.framesOut), nil}},
		"bytes_received_total":         {{u(&st.net.bytesIn), nil}},
		"bytes_sent_total":             {{u(&st.net.bytesOut), nil}},
		"frames_dropped_total": {
			{u(&st.net.droppedQueue), []string{"queue_full"}},
			{u(&st.net.droppedWrite), []string{"write_error"}},
			{u(&st.net.malformed), []string{"malformed"}},
			{u(&st.net.unknownKind), []string{"unknown_kind"}},
			{u(&st.net.oversize), []string{"oversize"}},
		},
		"peers_refused_total":     {{u(&st.net.rejectedPeers), nil}},
		"dial_failures_total":     {{u(&st.net.dialFailures), nil}},
		"connections_ended_total": {{u(&st.net.connsEnded), nil}},
	}
	for _, d := range metricDefs {
		for _, v := range values[d.name] {
			ch <- prometheus.MustNewConstMetric(desc(d), d.kind, v.v, v.labels...)
		}
	}
	e.lat.collect(ch)
}

// Stats is a snapshot of the engine's transport counters (for tests and
// diagnostics).
type Stats struct {
	FramesIn, FramesOut       uint64
	DroppedQueue, DroppedSend uint64
	Malformed, UnknownKind    uint64
	Oversize, RefusedPeers    uint64
	StepErrors                uint64
	InvalidForwarded          uint64
	BlocksCommitted           uint64
	BlockRequestsServed       uint64
	BlocksPruned, PrunedBelow uint64
	StateTransfers            uint64
	// ConnsEnded counts outgoing connections that ended while the engine
	// ran (a peer restarted, or a connection broke).
	ConnsEnded uint64
	// LogBytes is the encoded size of the stored committed blocks;
	// SizeCompactions counts the prunings log_size_limit triggered.
	LogBytes, SizeCompactions uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := e.stats
	return Stats{
		FramesIn: st.net.framesIn.Load(), FramesOut: st.net.framesOut.Load(),
		DroppedQueue: st.net.droppedQueue.Load(), DroppedSend: st.net.droppedWrite.Load(),
		Malformed: st.net.malformed.Load(), UnknownKind: st.net.unknownKind.Load(),
		Oversize: st.net.oversize.Load(), RefusedPeers: st.net.rejectedPeers.Load(),
		StepErrors: st.stepErrors.Load(), InvalidForwarded: st.invalidForwarded.Load(),
		BlocksCommitted: st.blocksCommitted.Load(), BlockRequestsServed: st.blockRequestsServed.Load(),
		BlocksPruned: st.blocksPruned.Load(), PrunedBelow: st.horizon.Load(), StateTransfers: st.transfers.Load(),
		LogBytes: st.logBytes.Load(), SizeCompactions: st.sizeCompactions.Load(),
		ConnsEnded: st.net.connsEnded.Load(),
	}
}
