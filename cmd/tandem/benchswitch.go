package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// benchSwitchOptions are the flags of `bench switch`.
type benchSwitchOptions struct {
	local         int
	basePort      int
	rounds        int
	clients       int
	escalation    bool
	viewTimeout   time.Duration
	raftHeartbeat time.Duration
	raftElection  time.Duration
	settle        time.Duration
	poll          time.Duration
	roundTimeout  time.Duration
	nodeLog       string
}

// switchRound is one operator switch. Every time is measured from the
// moment the admin request was sent.
type switchRound struct {
	Round int    `json:"round"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"` // the new epoch
	// SwitchIndex is the log index of the switch entry.
	SwitchIndex uint64 `json:"switch_index"`
	// AcceptedMillis: the request is answered (the switch entry committed).
	AcceptedMillis float64 `json:"accepted_ms"`
	// CommitMillis: the first write of the load committed in the new
	// epoch (log index past the switch) is acknowledged.
	CommitMillis float64 `json:"commit_ms"`
	// ProbeMillis: a write sent right after the request was answered, by
	// a client that retries every 20 ms at most (whatever Retry-After
	// says), is acknowledged: what the cluster can do, without the SDK's
	// default backoff.
	ProbeMillis float64 `json:"probe_ms"`
	// AllNodesMillis: every node reports the new epoch running (status
	// polled every --poll).
	AllNodesMillis float64 `json:"all_nodes_ms"`
	// GapMillis is the longest time around the switch during which no
	// write of the load was acknowledged.
	GapMillis float64 `json:"write_gap_ms"`
	// CertificateForm is how the new epoch's hand-over was certified.
	CertificateForm string `json:"certificate_form"`
}

// escalationRun is the detector's switch. Every time is measured from the
// byzantine node's first equivocation (the line it logs when it first
// sends another payload).
type escalationRun struct {
	Offender string `json:"offender"`
	Epoch    uint64 `json:"epoch"`
	// QuarantineMillis: each correct node lists the offender as
	// quarantined (polled every --poll).
	QuarantineMillis map[string]float64 `json:"quarantine_ms"`
	// CommitMillis: the first write of the load committed in the new bft
	// epoch is acknowledged.
	CommitMillis float64 `json:"commit_ms"`
	// GapMillis is the longest time without an acknowledged write, from
	// the first equivocation on.
	GapMillis       float64 `json:"write_gap_ms"`
	Reason          string  `json:"reason"`
	CertificateForm string  `json:"certificate_form"`
}

// spread summarizes one measure over the rounds.
type spread struct {
	Min float64 `json:"min_ms"`
	P50 float64 `json:"p50_ms"`
	Max float64 `json:"max_ms"`
}

func (s spread) String() string { return fmt.Sprintf("%.0f / %.0f / %.0f ms", s.Min, s.P50, s.Max) }

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{}
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return spread{Min: v[0], P50: v[(len(v)-1)/2], Max: v[len(v)-1]}
}

// benchSwitchResult is what `bench switch` reports.
type benchSwitchResult struct {
	Cluster     string         `json:"cluster"`
	Clients     int            `json:"clients"`
	PollMillis  float64        `json:"poll_ms"`
	CFTToBFT    switchSummary  `json:"cft_to_bft"`
	BFTToCFT    switchSummary  `json:"bft_to_cft"`
	Escalation  *escalationRun `json:"escalation,omitempty"`
	Writes      int            `json:"writes"`
	Errors      int            `json:"errors"`
	FirstError  string         `json:"first_error,omitempty"`
	Rounds      []switchRound  `json:"rounds"`
	Uptime      string         `json:"uptime,omitempty"` // machine load after the run
	Unavailable string         `json:"escalation_unavailable,omitempty"`
}

// switchSummary is min / p50 / max of the rounds of one direction.
type switchSummary struct {
	Commit   spread `json:"commit"`
	Probe    spread `json:"probe"`
	AllNodes spread `json:"all_nodes"`
	Gap      spread `json:"write_gap"`
}

func newBenchSwitchCmd(e *clientEnv) *cobra.Command {
	o := &benchSwitchOptions{}
	cmd := &cobra.Command{
		Use:   "switch",
		Short: "Time an auto-mode cluster's switches between Raft and HotStuff, on a local cluster",
		Long: `bench switch starts a --local N-node cluster of real processes in
consensus_mode auto (like tandem dev, in a temporary directory), runs a steady
write load from --clients clients, and then --rounds times switches it from
cft to bft and back with the admin request (POST /v1/admin/mode), measuring
from the request

  - commit: until the first write of the load that committed in the new
    epoch (at a log index past the switch entry) is acknowledged;
  - probe: until a write sent right after the request was answered, by a
    client that retries every 20 ms at most, is acknowledged (the load's
    clients use the SDK's default backoff, which follows the nodes'
    Retry-After);
  - all nodes: until every node reports the new epoch running (status
    polled every --poll);
  - write gap: the longest time around the switch during which no write of
    the load was acknowledged (what an application sees).

In a binary built with -tags byzantine it then restarts the last node with
the equivocate behaviour, moves Raft leadership to it and measures the
detector's escalation from the node's first equivocation (the line it logs):
each correct node's quarantine, the first write committed in bft, and the
write gap. The load never goes to that node. --escalation=false skips this.

It reports min / p50 / max over the rounds and every round with -o json.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(e, o.validate, o.run, o.print),
	}
	f := cmd.Flags()
	f.IntVar(&o.local, "local", 4, "nodes of the local cluster (at least 4: auto mode needs a BFT committee)")
	f.IntVar(&o.basePort, "base-port", 0, "ports of the local cluster (0: free ephemeral ports)")
	f.IntVar(&o.rounds, "rounds", 5, "how many cft→bft and bft→cft switches (each)")
	f.IntVar(&o.clients, "clients", 4, "concurrent clients writing the steady load, one key each")
	f.BoolVar(&o.escalation, "escalation", true, "with -tags byzantine: also measure the detector's escalation")
	f.DurationVar(&o.viewTimeout, "view-timeout", time.Second, "view_change_timeout of every node (vote_timeout is a third of it)")
	f.DurationVar(&o.raftHeartbeat, "raft-heartbeat", 0, "raft.heartbeat_timeout of every node (0: the default)")
	f.DurationVar(&o.raftElection, "raft-election", 0, "raft.election_timeout of every node (0: the default)")
	f.DurationVar(&o.settle, "settle", 2*time.Second, "steady load before each switch")
	f.DurationVar(&o.poll, "poll", 10*time.Millisecond, "how often the nodes' status is polled during a switch")
	f.DurationVar(&o.roundTimeout, "round-timeout", 60*time.Second, "give up when a switch has not completed after this long")
	f.StringVar(&o.nodeLog, "node-log", "", "write every node's log to this file")
	return cmd
}

func (o *benchSwitchOptions) validate() error {
	switch {
	case o.local < 4 || o.local > 9:
		return fmt.Errorf("--local: %d nodes: auto mode needs a BFT committee of at least 4 (n >= 3f+1), and dev layouts have at most 9", o.local)
	case o.basePort != 0 && (o.basePort < 1024 || o.basePort+200+o.local > 65535):
		return fmt.Errorf("--base-port: %d leaves no room for %d nodes (1024..%d, or 0)", o.basePort, o.local, 65535-200-o.local)
	case o.rounds < 1:
		return fmt.Errorf("--rounds: %d must be at least 1", o.rounds)
	case o.clients < 1:
		return fmt.Errorf("--clients: %d must be at least 1", o.clients)
	case o.viewTimeout < 30*time.Millisecond:
		return fmt.Errorf("--view-timeout: %s must be at least 30ms (three 10ms ticks)", o.viewTimeout)
	case o.raftHeartbeat < 0 || o.raftElection < 0:
		return fmt.Errorf("--raft-heartbeat and --raft-election must not be negative (got %s, %s)", o.raftHeartbeat, o.raftElection)
	case o.settle <= 0 || o.poll <= 0 || o.roundTimeout <= 0:
		return fmt.Errorf("--settle, --poll and --round-timeout must be positive (got %s, %s, %s)", o.settle, o.poll, o.roundTimeout)
	}
	return nil
}

// extraConfig is the node configuration the flags set.
func (o *benchSwitchOptions) extraConfig() map[string]any {
	extra := map[string]any{}
	setViewTimeout(extra, o.viewTimeout)
	var lease time.Duration
	if o.raftHeartbeat > 0 {
		lease = min(o.raftHeartbeat/2, 500*time.Millisecond)
	}
	setRaftTimeouts(extra, o.raftHeartbeat, o.raftElection, lease)
	return extra
}

// firstLine records when a node's log first carries a marker, passing
// every line on to out. The cluster writes one line per Write.
type firstLine struct {
	out    io.Writer
	mu     sync.Mutex
	prefix []byte
	marker []byte
	first  time.Time
}

func (w *firstLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.first.IsZero() && w.prefix != nil && bytes.HasPrefix(p, w.prefix) && bytes.Contains(p, w.marker) {
		w.first = time.Now()
	}
	w.mu.Unlock()
	return w.out.Write(p)
}

func (w *firstLine) watch(node, marker string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.prefix, w.marker, w.first = []byte("["+node+"] "), []byte(marker), time.Time{}
}

func (w *firstLine) seen() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

func (o *benchSwitchOptions) run(cmd *cobra.Command) (benchSwitchResult, error) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	logs := cmd.ErrOrStderr()
	out := benchSwitchResult{Clients: o.clients, PollMillis: millis(o.poll),
		Cluster: fmt.Sprintf("local %d-node auto (view_change_timeout %s, raft heartbeat %s, election %s)", o.local, o.viewTimeout, defaultLabel(o.raftHeartbeat), defaultLabel(o.raftElection))}
	watch := &firstLine{out: io.Discard}
	if o.nodeLog != "" {
		f, err := os.Create(o.nodeLog)
		if err != nil {
			return out, fmt.Errorf("--node-log: %w", err)
		}
		defer f.Close()
		watch.out = f
	}
	lc, err := startLocalCluster(o.local, "auto", o.basePort, o.extraConfig(), logs, watch)
	if err != nil {
		return out, err
	}
	defer lc.stop()
	byz := lc.layout.Nodes[len(lc.layout.Nodes)-1].ID
	// The load's clients talk to the nodes other than byz, which may be
	// made to misbehave at the end; the admin talks to every node (admin
	// requests go to the leader).
	cfg := lc.cfg
	cfg.Endpoints = nil
	for _, n := range lc.layout.Nodes {
		if n.ID != byz {
			cfg.Endpoints = append(cfg.Endpoints, n.Endpoint())
		}
	}
	admin, err := client.New(lc.cfg)
	if err != nil {
		return out, err
	}
	defer admin.Close()
	if _, err := o.waitEpoch(ctx, admin, lc, 1, smr.ModeCFT); err != nil {
		return out, fmt.Errorf("the cluster did not start: %w", err)
	}

	writers := make([]*client.Client, o.clients)
	for i := range writers {
		if writers[i], err = inviteWriter(ctx, admin, cfg); err != nil {
			return out, err
		}
		defer writers[i].Close()
	}
	probeCfg := cfg
	probeCfg.Retry.MaxAttempts, probeCfg.Retry.InitialBackoff, probeCfg.Retry.MaxBackoff = 10000, 5*time.Millisecond, 20*time.Millisecond
	probe, err := inviteWriter(ctx, admin, probeCfg)
	if err != nil {
		return out, err
	}
	defer probe.Close()
	load := &ackLog{}
	stopLoad := startLoad(ctx, writers, "bench/switch", load)
	defer stopLoad()

	for r := 1; r <= o.rounds; r++ {
		for _, to := range []string{smr.ModeBFT, smr.ModeCFT} {
			round, err := o.switchRound(ctx, r, to, lc, admin, probe, load)
			if err != nil {
				return out, fmt.Errorf("round %d (to %s): %w", r, to, err)
			}
			fmt.Fprintf(logs, "round %d: %s → %s (epoch %d): first load commit in the new epoch after %.0f ms, probe %.0f ms, every node after %.0f ms, write gap %.0f ms\n",
				r, round.From, round.To, round.Epoch, round.CommitMillis, round.ProbeMillis, round.AllNodesMillis, round.GapMillis)
			out.Rounds = append(out.Rounds, round)
		}
	}
	if o.escalation && byzantineBuild {
		esc, err := o.escalate(ctx, lc, admin, load, watch, byz)
		if err != nil {
			return out, fmt.Errorf("escalation: %w", err)
		}
		fmt.Fprintf(logs, "escalation: %s equivocated; first bft commit after %.0f ms, write gap %.0f ms\n", esc.Offender, esc.CommitMillis, esc.GapMillis)
		out.Escalation = esc
	} else if o.escalation {
		out.Unavailable = "not measured: this binary has no Byzantine behaviours (build it with -tags byzantine)"
	}
	stopLoad()
	var first error
	out.Writes, out.Errors, first = load.totals()
	if first != nil {
		out.FirstError = "(first: " + first.Error() + ")"
	}
	summary := func(to string) switchSummary {
		var c, p, a, g []float64
		for _, r := range out.Rounds {
			if r.To == to {
				c, p, a, g = append(c, r.CommitMillis), append(p, r.ProbeMillis), append(a, r.AllNodesMillis), append(g, r.GapMillis)
			}
		}
		return switchSummary{Commit: spreadOf(c), Probe: spreadOf(p), AllNodes: spreadOf(a), Gap: spreadOf(g)}
	}
	out.CFTToBFT, out.BFTToCFT = summary(smr.ModeBFT), summary(smr.ModeCFT)
	out.Uptime = machineLoad()
	return out, nil
}

// switchRound lets the load settle, asks for a switch to mode to and
// measures it.
func (o *benchSwitchOptions) switchRound(ctx context.Context, r int, to string, lc *localCluster, admin, probe *client.Client, load *ackLog) (switchRound, error) {
	res := switchRound{Round: r, To: to}
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	var cur api.EpochStatus
	if err := admin.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/mode", nil, &cur); err != nil {
		return res, fmt.Errorf("current epoch: %w", err)
	}
	if cur.Mode == to || cur.Switching {
		return res, fmt.Errorf("epoch %d runs %s (switching %v): cannot switch to %s", cur.Epoch, cur.Mode, cur.Switching, to)
	}
	res.From, res.Epoch = cur.Mode, cur.Epoch+1
	body, err := json.Marshal(smr.SwitchRequest{Mode: to, Epoch: res.Epoch, Reason: fmt.Sprintf("bench switch round %d", r)})
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	var sub api.SubmitResponse
	sctx, cancel := context.WithTimeout(ctx, o.roundTimeout)
	err = admin.AdminJSON(sctx, "", http.MethodPost, "/v1/admin/mode", body, &sub)
	cancel()
	if err != nil {
		return res, fmt.Errorf("switch to %s: %w", to, err)
	}
	res.AcceptedMillis, res.SwitchIndex = millis(time.Since(t0)), sub.Result.Index
	probed := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(ctx, o.roundTimeout)
		defer cancel()
		pres, err := probe.SetConfig(pctx, fmt.Sprintf("bench/switch/probe/%d", r), to)
		if err == nil && pres.Index <= res.SwitchIndex {
			err = fmt.Errorf("the probe committed at index %d, before the switch at %d", pres.Index, res.SwitchIndex)
		}
		res.ProbeMillis = millis(time.Since(t0))
		probed <- err
	}()
	all, err := o.waitEpoch(ctx, admin, lc, res.Epoch, to)
	if perr := <-probed; err == nil && perr != nil {
		err = fmt.Errorf("probe write: %w", perr)
	}
	if err != nil {
		return res, err
	}
	first, err := o.waitCommit(ctx, load, t0, res.SwitchIndex)
	if err != nil {
		return res, err
	}
	res.CommitMillis, res.AllNodesMillis = millis(first.Sub(t0)), millis(all.Sub(t0))
	res.GapMillis = o.gapAfter(ctx, load, t0, first)
	var st api.EpochStatus
	if err := admin.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/mode", nil, &st); err == nil {
		res.CertificateForm = st.CertificateForm
	}
	return res, nil
}

// waitEpoch polls every node but skip until each runs epoch in mode, and
// returns when it saw that.
func (o *benchSwitchOptions) waitEpoch(ctx context.Context, admin *client.Client, lc *localCluster, epoch uint64, mode string, skip ...string) (time.Time, error) {
	deadline := time.Now().Add(o.roundTimeout)
	for {
		pending := ""
		for _, n := range lc.layout.Nodes {
			if slices.Contains(skip, n.ID) {
				continue
			}
			var st api.EpochStatus
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			err := admin.AdminJSON(sctx, n.Endpoint(), http.MethodGet, "/v1/admin/mode", nil, &st)
			cancel()
			if err != nil || st.Epoch != epoch || st.Mode != mode || st.Switching {
				pending = fmt.Sprintf("%s: epoch %d %s switching=%v %v", n.ID, st.Epoch, st.Mode, st.Switching, err)
				break
			}
		}
		if pending == "" {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("not every node runs epoch %d in %s within %s (%s)", epoch, mode, o.roundTimeout, pending)
		}
		select {
		case <-time.After(o.poll):
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// waitCommit waits for the first write acknowledged after t0 at an index
// above base.
func (o *benchSwitchOptions) waitCommit(ctx context.Context, load *ackLog, t0 time.Time, base uint64) (time.Time, error) {
	deadline := time.Now().Add(o.roundTimeout)
	for {
		if at, ok := load.firstAbove(t0, base); ok {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no write of the load committed past log index %d within %s", base, o.roundTimeout)
		}
		select {
		case <-time.After(o.poll):
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// gapAfter lets the load run on for a second past first, so that the gap
// is closed by the load itself, and returns the longest gap from t0 on.
func (o *benchSwitchOptions) gapAfter(ctx context.Context, load *ackLog, t0, first time.Time) float64 {
	select {
	case <-time.After(time.Until(first.Add(time.Second))):
	case <-ctx.Done():
	}
	return millis(load.gap(t0, first.Add(time.Second)))
}

// escalate restarts byz with the equivocate behaviour, makes it the Raft
// leader and measures the detector's escalation to bft.
func (o *benchSwitchOptions) escalate(ctx context.Context, lc *localCluster, admin *client.Client, load *ackLog, watch *firstLine, byz string) (*escalationRun, error) {
	res := &escalationRun{Offender: byz, QuarantineMillis: map[string]float64{}}
	var cur api.EpochStatus
	if err := admin.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/mode", nil, &cur); err != nil {
		return nil, fmt.Errorf("current epoch: %w", err)
	}
	if cur.Mode != smr.ModeCFT {
		return nil, fmt.Errorf("epoch %d runs %s, not cft", cur.Epoch, cur.Mode)
	}
	res.Epoch = cur.Epoch + 1
	watch.watch(byz, "byzantine: equivocating")
	if err := lc.Stop(byz, 10*time.Second); err != nil {
		return nil, err
	}
	if err := lc.SetEnv(byz, envByzantine+"=equivocate"); err != nil {
		return nil, err
	}
	if err := lc.Start(byz); err != nil {
		return nil, err
	}
	// It rejoins epoch cur; then leadership moves to it.
	if _, err := o.waitEpoch(ctx, admin, lc, cur.Epoch, smr.ModeCFT); err != nil {
		return nil, fmt.Errorf("%s after its restart: %w", byz, err)
	}
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	deadline := time.Now().Add(o.roundTimeout)
	var transferErr error
	for watch.seen().IsZero() {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s never equivocated within %s (last leadership transfer: %v)", byz, o.roundTimeout, transferErr)
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		transferErr = admin.TransferLeader(tctx, byz)
		cancel()
		for i := 0; i < 100 && watch.seen().IsZero(); i++ {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	t0 := watch.seen()
	correct := without(lc.layout, map[string][]string{byz: nil})
	for len(res.QuarantineMillis) < len(correct) {
		for _, id := range correct {
			if _, ok := res.QuarantineMillis[id]; ok {
				continue
			}
			var v api.QuarantineView
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			err := admin.AdminJSON(sctx, endpointOf(lc, id), http.MethodGet, "/v1/admin/quarantine", nil, &v)
			cancel()
			if err == nil && slices.ContainsFunc(v.Quarantined, func(q api.QuarantineEntry) bool { return q.Node == byz }) {
				res.QuarantineMillis[id] = millis(time.Since(t0))
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %v quarantined %s within %s", res.QuarantineMillis, byz, o.roundTimeout)
		}
		select {
		case <-time.After(o.poll):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if _, err := o.waitEpoch(ctx, admin, lc, res.Epoch, smr.ModeBFT, byz); err != nil {
		return nil, err
	}
	var st api.EpochStatus
	if err := admin.AdminJSON(ctx, endpointOf(lc, correct[0]), http.MethodGet, "/v1/admin/mode", nil, &st); err != nil {
		return nil, err
	}
	res.Reason, res.CertificateForm = st.Reason, st.CertificateForm
	if !strings.HasPrefix(st.Reason, "detector") {
		return nil, fmt.Errorf("epoch %d started for %q, not the detector", st.Epoch, st.Reason)
	}
	first, err := o.waitCommit(ctx, load, t0, st.BaseIndex)
	if err != nil {
		return nil, err
	}
	res.CommitMillis = millis(first.Sub(t0))
	res.GapMillis = o.gapAfter(ctx, load, t0, first)
	return res, nil
}

func (o *benchSwitchOptions) print(w io.Writer, res benchSwitchResult) error {
	fields := [][2]string{
		{"Cluster", res.Cluster},
		{"Rounds", fmt.Sprintf("%d each way, %d load clients", len(res.Rounds)/2, res.Clients)},
		{"cft→bft: request to commit min/p50/max", res.CFTToBFT.Commit.String()},
		{"cft→bft: request to probe commit", res.CFTToBFT.Probe.String()},
		{"cft→bft: request to all nodes", res.CFTToBFT.AllNodes.String()},
		{"cft→bft: write gap", res.CFTToBFT.Gap.String()},
		{"bft→cft: request to commit min/p50/max", res.BFTToCFT.Commit.String()},
		{"bft→cft: request to probe commit", res.BFTToCFT.Probe.String()},
		{"bft→cft: request to all nodes", res.BFTToCFT.AllNodes.String()},
		{"bft→cft: write gap", res.BFTToCFT.Gap.String()},
	}
	if e := res.Escalation; e != nil {
		var q []string
		for _, id := range slices.Sorted(maps.Keys(e.QuarantineMillis)) {
			q = append(q, fmt.Sprintf("%s %.0f", id, e.QuarantineMillis[id]))
		}
		fields = append(fields,
			[2]string{"Escalation: equivocation to quarantine", strings.Join(q, ", ") + " ms"},
			[2]string{"Escalation: equivocation to bft commit", fmt.Sprintf("%.0f ms (%s certificate)", e.CommitMillis, e.CertificateForm)},
			[2]string{"Escalation: write gap", fmt.Sprintf("%.0f ms", e.GapMillis)})
	} else if res.Unavailable != "" {
		fields = append(fields, [2]string{"Escalation", res.Unavailable})
	}
	fields = append(fields,
		[2]string{"Load writes", fmt.Sprintf("%d, %d errors %s", res.Writes, res.Errors, res.FirstError)},
		[2]string{"Machine load", res.Uptime})
	if err := writeFields(w, fields...); err != nil {
		return err
	}
	rows := make([][]string, 0, len(res.Rounds))
	for _, r := range res.Rounds {
		rows = append(rows, []string{fmt.Sprint(r.Round), r.From + "→" + r.To, fmt.Sprint(r.Epoch), fmt.Sprintf("%.0f", r.AcceptedMillis),
			fmt.Sprintf("%.0f", r.CommitMillis), fmt.Sprintf("%.0f", r.ProbeMillis), fmt.Sprintf("%.0f", r.AllNodesMillis), fmt.Sprintf("%.0f", r.GapMillis), r.CertificateForm})
	}
	fmt.Fprintln(w)
	return writeTable(w, []string{"ROUND", "SWITCH", "EPOCH", "ACCEPTED_MS", "COMMIT_MS", "PROBE_MS", "ALL_NODES_MS", "GAP_MS", "CERTIFICATE"}, rows)
}

// machineLoad is the load average uptime(1) prints, or "" where
// /proc/loadavg is missing.
func machineLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return "load average " + strings.Join(f[:3], ", ")
}
