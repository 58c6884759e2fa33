package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/config"
)

// benchFailoverOptions are the flags of `bench failover`.
type benchFailoverOptions struct {
	local         int
	mode          string
	basePort      int
	rounds        int
	clients       int
	viewTimeout   time.Duration
	raftHeartbeat time.Duration
	raftElection  time.Duration
	raftLease     time.Duration
	settle        time.Duration
	poll          time.Duration
	roundTimeout  time.Duration
	nodeLog       string
}

// failoverRound is one kill and what followed it. Every time is measured
// from the moment the SIGKILL was sent.
type failoverRound struct {
	Round  int    `json:"round"`
	Killed string `json:"killed"`
	Term   uint64 `json:"term"` // Raft term or HotStuff view the cluster was in
	// CommitMillis: a write submitted right after the kill (to the
	// surviving nodes) is acknowledged as committed.
	CommitMillis float64 `json:"commit_ms"`
	// NodesMillis: each surviving node reports a commit index at or past
	// that write (status polling, so up to one poll interval late).
	NodesMillis map[string]float64 `json:"nodes_ms"`
	// AllNodesMillis is the largest of NodesMillis.
	AllNodesMillis float64 `json:"all_nodes_ms"`
	// GapMillis is the longest time, around the kill, during which no
	// write of the steady load completed.
	GapMillis float64 `json:"write_gap_ms"`
}

// msStats summarizes one measure over the rounds.
type msStats struct {
	Min float64 `json:"min_ms"`
	P50 float64 `json:"p50_ms"`
	Max float64 `json:"max_ms"`
}

func (s msStats) String() string { return fmt.Sprintf("%.0f / %.0f / %.0f ms", s.Min, s.P50, s.Max) }

// benchFailoverResult is what `bench failover` reports.
type benchFailoverResult struct {
	Cluster           string          `json:"cluster"`
	ViewTimeoutMillis float64         `json:"view_change_timeout_ms,omitempty"`
	RaftHeartbeatMs   float64         `json:"raft_heartbeat_timeout_ms,omitempty"`
	RaftElectionMs    float64         `json:"raft_election_timeout_ms,omitempty"`
	RaftLeaseMs       float64         `json:"raft_leader_lease_timeout_ms,omitempty"`
	Clients           int             `json:"clients"`
	PollMillis        float64         `json:"poll_ms"`
	Commit            msStats         `json:"commit"`
	AllNodes          msStats         `json:"all_nodes_commit"`
	Gap               msStats         `json:"write_gap"`
	Writes            int             `json:"writes"`
	Errors            int             `json:"errors"`
	FirstError        string          `json:"first_error,omitempty"`
	Rounds            []failoverRound `json:"rounds"`
}

func newBenchFailoverCmd(e *clientEnv) *cobra.Command {
	o := &benchFailoverOptions{}
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Time from killing the leader to the next commit, on a local cluster",
		Long: `bench failover starts a --local N-node cluster of real processes (like
tandem dev, in a temporary directory, in --mode), runs a steady write load
from --clients clients, and then --rounds times: finds the current leader
(the Raft leader, or the leader of the current HotStuff view), kills it with
SIGKILL, and measures from the kill

  - commit: until a write submitted right after the kill, to the surviving
    nodes, is acknowledged as committed;
  - all nodes: until every surviving node reports a commit index at or past
    that write (status polled every --poll);
  - write gap: the longest time around the kill during which no write of the
    load completed (what a client sees).

The killed node is restarted and caught up between rounds. It reports
min / p50 / max over the rounds and every round with -o json.

In bft mode --view-timeout sets view_change_timeout (vote_timeout, the
timeout re-send interval, is a third of it); in cft mode --raft-heartbeat,
--raft-election and --raft-lease set raft.heartbeat_timeout,
raft.election_timeout and raft.leader_lease_timeout (0: the defaults of 1s,
1s and 500ms; with only --raft-heartbeat the lease is the smaller of it and
500ms).`,
		Args: cobra.NoArgs,
		RunE: benchRunE(e, o.validate, o.run, o.print),
	}
	f := cmd.Flags()
	f.IntVar(&o.local, "local", 4, "nodes of the local cluster")
	f.StringVar(&o.mode, "mode", "bft", "consensus_mode of the local cluster: bft or cft")
	f.IntVar(&o.basePort, "base-port", 0, "ports of the local cluster (0: free ephemeral ports)")
	f.IntVar(&o.rounds, "rounds", 5, "how many times to kill the leader")
	f.IntVar(&o.clients, "clients", 4, "concurrent clients writing the steady load, one key each")
	f.DurationVar(&o.viewTimeout, "view-timeout", time.Second, "bft: view_change_timeout of every node (vote_timeout is a third of it)")
	f.DurationVar(&o.raftHeartbeat, "raft-heartbeat", 0, "cft: raft.heartbeat_timeout of every node (0: the default)")
	f.DurationVar(&o.raftElection, "raft-election", 0, "cft: raft.election_timeout of every node (0: the default)")
	f.DurationVar(&o.raftLease, "raft-lease", 0, "cft: raft.leader_lease_timeout of every node, at most the heartbeat timeout (0: the default, or the heartbeat timeout when that is below it)")
	f.DurationVar(&o.settle, "settle", 3*time.Second, "steady load before each kill (the restarted node catches up first)")
	f.DurationVar(&o.poll, "poll", 10*time.Millisecond, "how often the surviving nodes' status is polled after a kill")
	f.DurationVar(&o.roundTimeout, "round-timeout", 60*time.Second, "give up when a round has not recovered after this long")
	f.StringVar(&o.nodeLog, "node-log", "", "write every node's log, at debug level, to this file (to see what a failover waited for)")
	return cmd
}

func defaultLabel(d time.Duration) string {
	if d == 0 {
		return "default"
	}
	return d.String()
}

func (o *benchFailoverOptions) validate() error {
	switch {
	case o.mode != "bft" && o.mode != "cft":
		return fmt.Errorf("--mode: %q is not bft or cft", o.mode)
	case o.mode == "bft" && o.local < 4:
		return fmt.Errorf("--local: a %d-node bft cluster cannot lose a member and keep committing; use at least 4", o.local)
	case o.mode == "cft" && o.local < 3:
		return fmt.Errorf("--local: a %d-node cft cluster cannot lose a member and keep committing; use at least 3", o.local)
	case o.rounds < 1:
		return fmt.Errorf("--rounds: %d must be at least 1", o.rounds)
	case o.clients < 1:
		return fmt.Errorf("--clients: %d must be at least 1", o.clients)
	case o.viewTimeout < 30*time.Millisecond:
		return fmt.Errorf("--view-timeout: %s must be at least 30ms (three 10ms ticks)", o.viewTimeout)
	case o.raftHeartbeat < 0 || o.raftElection < 0 || o.raftLease < 0:
		return fmt.Errorf("--raft-heartbeat, --raft-election and --raft-lease must not be negative (got %s, %s, %s)", o.raftHeartbeat, o.raftElection, o.raftLease)
	case o.settle <= 0 || o.poll <= 0 || o.roundTimeout <= 0:
		return fmt.Errorf("--settle, --poll and --round-timeout must be positive (got %s, %s, %s)", o.settle, o.poll, o.roundTimeout)
	}
	if o.mode != "cft" {
		if o.raftHeartbeat != 0 || o.raftElection != 0 || o.raftLease != 0 {
			return fmt.Errorf("--raft-heartbeat, --raft-election and --raft-lease apply to --mode cft only (got --mode %s)", o.mode)
		}
		return nil
	}
	// The rules of hashicorp/raft's ValidateConfig, checked here so that
	// the error names the flag rather than coming from a node's log.
	hb, el, lease := o.raftTimeouts()
	for _, t := range []struct {
		flag string
		v    time.Duration
	}{{"--raft-heartbeat", o.raftHeartbeat}, {"--raft-election", o.raftElection}, {"--raft-lease", o.raftLease}} {
		if t.v != 0 && t.v < minBenchRaftTimeout {
			return fmt.Errorf("%s: %s is below Raft's minimum of %s", t.flag, t.v, minBenchRaftTimeout)
		}
	}
	if lease > hb {
		return fmt.Errorf("--raft-lease: the leader lease (%s) must not exceed the heartbeat timeout (%s, --raft-heartbeat)", lease, hb)
	}
	if el < hb {
		return fmt.Errorf("--raft-election: the election timeout (%s) must be at least the heartbeat timeout (%s, --raft-heartbeat)", el, hb)
	}
	return nil
}

// minBenchRaftTimeout is the least Raft timeout hashicorp/raft's
// ValidateConfig accepts (and config's validation).
const minBenchRaftTimeout = 5 * time.Millisecond

// raftTimeouts returns the heartbeat, election and lease timeouts the
// nodes will run with: the flags, or for those left 0 the defaults (the
// lease defaults to at most the heartbeat timeout).
func (o *benchFailoverOptions) raftTimeouts() (heartbeat, election, lease time.Duration) {
	def := config.Default().Raft
	heartbeat, election, lease = o.raftHeartbeat, o.raftElection, o.raftLease
	if heartbeat == 0 {
		heartbeat = def.HeartbeatTimeout
	}
	if election == 0 {
		election = def.ElectionTimeout
	}
	if lease == 0 {
		lease = min(heartbeat, def.LeaderLeaseTimeout)
	}
	return heartbeat, election, lease
}

// extraConfig is the node configuration the flags set.
func (o *benchFailoverOptions) extraConfig() map[string]any {
	extra := map[string]any{}
	if o.mode == "bft" {
		setViewTimeout(extra, o.viewTimeout)
		if o.nodeLog != "" {
			extra["log"] = map[string]any{"level": "debug"}
		}
		return extra
	}
	if o.nodeLog != "" {
		extra["log"] = map[string]any{"level": "debug"}
	}
	var lease time.Duration
	if o.raftHeartbeat > 0 || o.raftLease > 0 {
		_, _, lease = o.raftTimeouts()
	}
	setRaftTimeouts(extra, o.raftHeartbeat, o.raftElection, lease)
	return extra
}

// indexSample is one status poll of a node.
type indexSample struct {
	at    time.Time
	index uint64
}

func (o *benchFailoverOptions) run(cmd *cobra.Command) (benchFailoverResult, error) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	out := benchFailoverResult{Clients: o.clients, PollMillis: millis(o.poll), Cluster: fmt.Sprintf("local %d-node %s", o.local, o.mode)}
	if o.mode == "bft" {
		out.ViewTimeoutMillis = millis(o.viewTimeout)
	} else {
		out.RaftHeartbeatMs, out.RaftElectionMs, out.RaftLeaseMs = millis(o.raftHeartbeat), millis(o.raftElection), millis(o.raftLease)
	}
	nodeLogs := io.Discard
	phase := &failoverPhase{rounds: o.rounds}
	if o.nodeLog != "" {
		f, err := os.Create(o.nodeLog)
		if err != nil {
			return out, fmt.Errorf("--node-log: %w", err)
		}
		defer f.Close()
		nodeLogs, phase.log = f, f
	}
	lc, err := startLocalCluster(o.local, o.mode, o.basePort, o.extraConfig(), cmd.ErrOrStderr(), nodeLogs)
	if err != nil {
		return out, err
	}
	defer lc.stop()
	admin, err := client.New(lc.cfg)
	if err != nil {
		return out, err
	}
	defer admin.Close()

	// The steady load.
	writers := make([]*client.Client, o.clients)
	for i := range writers {
		if writers[i], err = inviteWriter(ctx, admin, lc.cfg); err != nil {
			return out, err
		}
		defer writers[i].Close()
	}
	load := &ackLog{}
	stopLoad := startLoad(ctx, writers, "bench/failover", load)
	defer stopLoad()

	phase.start = time.Now()
	bar := startProgress(cmd.ErrOrStderr(), phase.status)
	defer bar.stop()
	for r := 1; r <= o.rounds; r++ {
		round, err := o.round(ctx, r, lc, admin, load, phase)
		if err != nil {
			return out, fmt.Errorf("round %d: %w", r, err)
		}
		bar.println(fmt.Sprintf("round %d: killed %s, commit after %.0f ms, every survivor after %.0f ms, write gap %.0f ms",
			r, round.Killed, round.CommitMillis, round.AllNodesMillis, round.GapMillis))
		out.Rounds = append(out.Rounds, round)
		phase.done()
	}
	bar.stop()
	stopLoad()
	var first error
	out.Writes, out.Errors, first = load.totals()
	if first != nil {
		out.FirstError = "(first: " + first.Error() + ")"
	}
	stats := func(f func(failoverRound) float64) msStats {
		var v []float64
		for _, r := range out.Rounds {
			v = append(v, f(r))
		}
		slices.Sort(v)
		return msStats{Min: v[0], P50: v[(len(v)-1)/2], Max: v[len(v)-1]}
	}
	out.Commit = stats(func(r failoverRound) float64 { return r.CommitMillis })
	out.AllNodes = stats(func(r failoverRound) float64 { return r.AllNodesMillis })
	out.Gap = stats(func(r failoverRound) float64 { return r.GapMillis })
	return out, nil
}

// round waits for the load to settle, kills the leader, measures the
// recovery and restarts the killed node.
func (o *benchFailoverOptions) round(ctx context.Context, r int, lc *localCluster, admin *client.Client, load *ackLog, phase *failoverPhase) (failoverRound, error) {
	res := failoverRound{Round: r, NodesMillis: map[string]float64{}}
	phase.set(r, "steady load")
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	// The probe: a fresh key that writes once, right after the kill, to the
	// surviving nodes only (what the cluster can do, not how fast a client
	// notices a dead endpoint).
	key, err := inviteKey(ctx, admin)
	if err != nil {
		return res, err
	}
	leader, term, err := findLeader(ctx, admin, lc)
	if err != nil {
		return res, err
	}
	res.Killed, res.Term = leader, term
	probeCfg := lc.cfg
	probeCfg.Key, probeCfg.StartSeq, probeCfg.Endpoints = key, 1, nil
	survivors := map[string]string{} // endpoint -> node ID
	for _, n := range lc.layout.Nodes {
		if n.ID != leader {
			probeCfg.Endpoints = append(probeCfg.Endpoints, n.Endpoint())
			survivors[n.Endpoint()] = n.ID
		}
	}
	probe, err := client.New(probeCfg)
	if err != nil {
		return res, err
	}
	defer probe.Close()
	// Open the probe's connections now: a client that has been writing has
	// them, and TLS handshakes are not part of the failover.
	for ep := range survivors {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := probe.Status(sctx, ep)
		cancel()
		if err != nil {
			return res, fmt.Errorf("status of %s: %w", ep, err)
		}
	}

	// Poll the survivors' commit indexes from before the kill on.
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	samples := make(map[string][]indexSample, len(survivors))
	var smu sync.Mutex
	var pwg sync.WaitGroup
	for ep, id := range survivors {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for pollCtx.Err() == nil {
				sctx, cancel := context.WithTimeout(pollCtx, time.Second)
				st, err := admin.Status(sctx, ep)
				cancel()
				if err == nil {
					smu.Lock()
					samples[id] = append(samples[id], indexSample{at: time.Now(), index: st.CommitIndex})
					smu.Unlock()
				}
				select {
				case <-time.After(o.poll):
				case <-pollCtx.Done():
				}
			}
		}()
	}
	defer pwg.Wait()

	phase.set(r, "killed "+leader+", waiting for a commit")
	t0 := time.Now()
	if err := lc.Kill(leader); err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.roundTimeout)
	pres, err := probe.SetConfig(wctx, fmt.Sprintf("bench/failover/probe/%d", r), "v")
	cancel()
	if err != nil {
		return res, fmt.Errorf("the write after killing %s did not commit: %w", leader, err)
	}
	res.CommitMillis = millis(time.Since(t0))
	phase.note(r, fmt.Sprintf("the write after the kill committed at index %d", pres.Index))

	// Wait until every survivor reports the probe's index.
	phase.set(r, "waiting for every survivor")
	deadline := time.Now().Add(o.roundTimeout)
	for {
		smu.Lock()
		all := true
		for _, id := range survivors {
			if _, ok := res.NodesMillis[id]; ok {
				continue
			}
			for _, s := range samples[id] {
				if s.index >= pres.Index {
					res.NodesMillis[id] = millis(s.at.Sub(t0))
					break
				}
			}
			if _, ok := res.NodesMillis[id]; !ok {
				all = false
			}
		}
		smu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("not every surviving node reached log index %d within %s", pres.Index, o.roundTimeout)
		}
		select {
		case <-time.After(o.poll):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	stopPoll()
	for _, v := range res.NodesMillis {
		res.AllNodesMillis = max(res.AllNodesMillis, v)
	}

	// Let the load run on a little so that the gap is closed by the load
	// itself, then measure it.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.GapMillis = millis(load.gap(t0, time.Now()))

	// Restart the killed node and wait until it has caught up past the
	// probe, so the next round starts with a full cluster.
	phase.set(r, "restarting "+leader)
	if err := lc.Start(leader); err != nil {
		return res, err
	}
	deadline = time.Now().Add(o.roundTimeout)
	ep := endpointOf(lc, leader)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := admin.Status(sctx, ep)
		cancel()
		if err == nil && st.CommitIndex >= pres.Index {
			return res, nil
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the restarted %s did not catch up within %s", leader, o.roundTimeout)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}

// failoverPhase is what the progress line of bench failover shows: the
// round and what it is doing.
type failoverPhase struct {
	rounds int
	start  time.Time
	// log, when set, gets each phase as a line among the nodes' logs
	// (--node-log), so that they show when the kill happened.
	log io.Writer

	mu       sync.Mutex
	round    int
	what     string
	finished int // rounds done
}

func (p *failoverPhase) set(round int, what string) {
	p.mu.Lock()
	p.round, p.what = round, what
	p.mu.Unlock()
	p.note(round, what)
}

// note writes what happened to log, in the form of the nodes' lines.
func (p *failoverPhase) note(round int, what string) {
	if p.log != nil {
		fmt.Fprintf(p.log, "[bench] time=%s round=%d msg=%q\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"), round, what)
	}
}

// done records that a round has finished.
func (p *failoverPhase) done() {
	p.mu.Lock()
	p.finished++
	p.mu.Unlock()
}

// status renders the progress line: a bar of the finished rounds, the
// round, its phase and the time since the first round started.
func (p *failoverPhase) status(now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, took := bar(float64(p.finished), float64(p.rounds)), fmtSeconds(now.Sub(p.start))
	switch {
	case p.round == 0:
		return ""
	case p.finished >= p.rounds:
		return fmt.Sprintf("%s %d/%d rounds done  %s", b, p.finished, p.rounds, took)
	}
	return fmt.Sprintf("%s round %d/%d: %s  %s", b, p.round, p.rounds, p.what, took)
}

func endpointOf(lc *localCluster, id string) string {
	for _, n := range lc.layout.Nodes {
		if n.ID == id {
			return n.Endpoint()
		}
	}
	return ""
}

// findLeader returns the leader most nodes report, and the highest term or
// view reported with it.
func findLeader(ctx context.Context, admin *client.Client, lc *localCluster) (string, uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	votes := map[string]int{}
	terms := map[string]uint64{}
	var errs []error
	for _, s := range admin.StatusAll(sctx) {
		if s.Err != nil {
			errs = append(errs, s.Err)
			continue
		}
		if s.Status.LeaderID == "" || endpointOf(lc, s.Status.LeaderID) == "" {
			continue
		}
		votes[s.Status.LeaderID]++
		terms[s.Status.LeaderID] = max(terms[s.Status.LeaderID], s.Status.Term)
	}
	best := ""
	for id, n := range votes {
		if best == "" || n > votes[best] || (n == votes[best] && id < best) {
			best = id
		}
	}
	if best == "" {
		return "", 0, fmt.Errorf("no node reports a leader: %w", errors.Join(errs...))
	}
	return best, terms[best], nil
}

// print writes res as the table output of bench failover.
func (o *benchFailoverOptions) print(w io.Writer, res benchFailoverResult) error {
	timeouts := fmt.Sprintf("view_change_timeout %s", o.viewTimeout)
	if o.mode == "cft" {
		timeouts = fmt.Sprintf("raft heartbeat %s, election %s, lease %s", defaultLabel(o.raftHeartbeat), defaultLabel(o.raftElection), defaultLabel(o.raftLease))
	}
	if err := writeFields(w,
		[2]string{"Cluster", res.Cluster + " (" + timeouts + ")"},
		[2]string{"Rounds", fmt.Sprintf("%d, %d load clients", len(res.Rounds), res.Clients)},
		[2]string{"Kill to commit min/p50/max", res.Commit.String()},
		[2]string{"Kill to all nodes min/p50/max", res.AllNodes.String() + fmt.Sprintf(" (polled every %s)", o.poll)},
		[2]string{"Write gap min/p50/max", res.Gap.String()},
		[2]string{"Load writes", fmt.Sprintf("%d, %d errors %s", res.Writes, res.Errors, res.FirstError)},
	); err != nil {
		return err
	}
	rows := make([][]string, 0, len(res.Rounds))
	for _, r := range res.Rounds {
		var nodes []string
		for _, id := range slices.Sorted(maps.Keys(r.NodesMillis)) {
			nodes = append(nodes, fmt.Sprintf("%s %.0f", id, r.NodesMillis[id]))
		}
		rows = append(rows, []string{fmt.Sprint(r.Round), r.Killed, fmt.Sprint(r.Term),
			fmt.Sprintf("%.0f", r.CommitMillis), fmt.Sprintf("%.0f", r.AllNodesMillis), fmt.Sprintf("%.0f", r.GapMillis), strings.Join(nodes, ", ")})
	}
	fmt.Fprintln(w)
	return writeTable(w, []string{"ROUND", "KILLED", "TERM/VIEW", "COMMIT_MS", "ALL_NODES_MS", "GAP_MS", "PER_NODE_MS"}, rows)
}
