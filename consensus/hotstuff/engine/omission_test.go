package engine

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/smr"
)

// omitScenario drives one omissionTracker of replica n1 through a command
// forwarded to the leader n4 and n4's proposal for view 7 (justified by
// the QC of view 6), then sweeps. Each field changes one step of the
// omission the base case shows.
type omitScenario struct {
	name string
	// before runs before the command is sent (default: n1 voted view 5
	// to n4).
	before func(t *omissionTracker)
	sendTo []types.NodeID // default n4
	// between runs after the send (default: n1 voted view 6 to n4).
	between  func(t *omissionTracker)
	proposal func(p *types.Proposal) (from types.NodeID)
	drops    uint64 // the transport's drop count at the proposal
	// after runs after the proposal, before the sweep.
	after     func(t *omissionTracker)
	committed types.View    // default 6
	inflight  *bool         // default true
	sweepAt   time.Duration // after the proposal; default 0
	maxBytes  int
	want      string
}

var omitCmdBytes = []byte("the command")

func omitProposal(view, justify types.View, proposer types.NodeID, signers []types.NodeID, payload ...[]byte) *types.Proposal {
	qc := types.QC{View: justify}
	for _, s := range signers {
		qc.Sigs = append(qc.Sigs, types.PartialSig{Signer: s})
	}
	return &types.Proposal{Block: &types.Block{View: view, Justify: qc, Proposer: proposer, Payload: payload}}
}

// omitPropose hands tr the proposal p from from, its payload keyed by
// types.CommandHash.
func omitPropose(tr *omissionTracker, from types.NodeID, p *types.Proposal, drops uint64, now time.Time) {
	keys := make([]types.Hash, len(p.Block.Payload))
	for i, cmd := range p.Block.Payload {
		keys[i] = types.CommandHash(cmd)
	}
	tr.proposal(from, p, keys, drops, now)
}

func runOmitScenario(sc omitScenario) string {
	t0 := time.Unix(1000, 0)
	tr := newOmissionTracker("n1", 4, time.Second, time.Second)
	if sc.maxBytes != 0 {
		tr.maxBytes = sc.maxBytes
	}
	key := types.CommandHash(omitCmdBytes)
	if sc.before != nil {
		sc.before(tr)
	} else {
		tr.voted("n4", 5)
	}
	to := sc.sendTo
	if to == nil {
		to = []types.NodeID{"n4"}
	}
	tr.sent(key, len(omitCmdBytes), to, 0)
	if sc.between != nil {
		sc.between(tr)
	} else {
		tr.voted("n4", 6)
	}
	p := omitProposal(7, 6, "n4", []types.NodeID{"n1", "n2", "n4"}, []byte("another command"))
	from := types.NodeID("n4")
	if sc.proposal != nil {
		from = sc.proposal(p)
	}
	omitPropose(tr, from, p, sc.drops, t0)
	if sc.after != nil {
		sc.after(tr)
	}
	committed := types.View(6)
	if sc.committed != 0 {
		committed = sc.committed
	}
	inflight := sc.inflight == nil || *sc.inflight
	got := tr.sweep(t0.Add(sc.sweepAt), committed, func(k types.Hash) bool { return k == key && inflight })
	return fmt.Sprint(got)
}

// TestOmissionRule: the base case is an omission; every change that could
// make it a correct leader's behaviour (busy, full block, not its own
// proposal, the command not received before the proposal, a copy in its
// chain) reports nothing.
func TestOmissionRule(t *testing.T) {
	no := false
	reported := "[{n4 1 7}]"
	cases := []omitScenario{
		{name: "omitted", want: reported},
		{name: "full block", proposal: func(p *types.Proposal) types.NodeID {
			p.Block.Payload = [][]byte{{1}, {2}, {3}, {4}}
			return "n4"
		}, want: "[]"},
		{name: "no room in bytes", maxBytes: 20, want: "[]"},
		{name: "carries the command", proposal: func(p *types.Proposal) types.NodeID {
			p.Block.Payload = append(p.Block.Payload, omitCmdBytes)
			return "n4"
		}, want: "[]"},
		{name: "a lower view carried it before", between: func(tr *omissionTracker) {
			tr.voted("n4", 6)
			omitPropose(tr, "n2", omitProposal(6, 5, "n2", []types.NodeID{"n1", "n3", "n4"}, omitCmdBytes), 0, time.Unix(1000, 0))
		}, want: "[]"},
		{name: "a lower view carrying it seen after the proposal", after: func(tr *omissionTracker) {
			omitPropose(tr, "n2", omitProposal(6, 5, "n2", []types.NodeID{"n1", "n3", "n4"}, omitCmdBytes), 0, time.Unix(1000, 0))
		}, want: "[]"},
		{name: "a higher view carried it, committed", inflight: &no, after: func(tr *omissionTracker) {
			omitPropose(tr, "n2", omitProposal(8, 7, "n2", []types.NodeID{"n1", "n3", "n4"}, omitCmdBytes), 0, time.Unix(1000, 0))
		}, want: reported},
		{name: "committed in a block not seen proposed", inflight: &no, want: "[]"},
		{name: "committed in a lower view not seen proposed, a copy proposed in a higher view", inflight: &no, after: func(tr *omissionTracker) {
			omitPropose(tr, "n2", omitProposal(8, 7, "n2", []types.NodeID{"n1", "n3", "n4"}, omitCmdBytes), 0, time.Unix(1000, 0))
			tr.carried(types.CommandHash(omitCmdBytes), 6) // committed in view 6
		}, want: "[]"},
		{name: "relayed by another member", proposal: func(*types.Proposal) types.NodeID { return "n2" }, want: "[]"},
		{name: "did not lead: another member's proposal", proposal: func(p *types.Proposal) types.NodeID {
			p.Block.Proposer = "n2"
			return "n2"
		}, want: "[]"},
		{name: "own vote not in the QC", proposal: func(p *types.Proposal) types.NodeID {
			p.Block.Justify = omitProposal(7, 6, "n4", []types.NodeID{"n2", "n3", "n4"}).Block.Justify
			return "n4"
		}, want: "[]"},
		{name: "vote sent before the command", before: func(tr *omissionTracker) { tr.voted("n4", 6) },
			between: func(*omissionTracker) {}, want: "[]"},
		{name: "no vote after the command", between: func(*omissionTracker) {}, want: "[]"},
		{name: "a frame dropped since the send", drops: 1, want: "[]"},
		{name: "after a timeout certificate", proposal: func(p *types.Proposal) types.NodeID {
			p.TC = &types.TC{View: 6}
			return "n4"
		}, want: "[]"},
		{name: "QC not of the previous view", proposal: func(p *types.Proposal) types.NodeID {
			p.Block.View = 8
			return "n4"
		}, want: "[]"},
		{name: "not forwarded to the leader", sendTo: []types.NodeID{"n2", "n3"}, want: "[]"},
		{name: "forwarded to every peer", sendTo: []types.NodeID{"n1", "n2", "n3", "n4"}, want: reported},
		{name: "parent not committed yet", committed: 5, want: "[]"},
		{name: "first swept after the grace, parent committed", committed: 6, sweepAt: 2 * time.Second, want: reported},
	}
	for _, sc := range cases {
		t.Run(sc.name, func(t *testing.T) {
			if got := runOmitScenario(sc); got != sc.want {
				t.Fatalf("got %s, want %s", got, sc.want)
			}
		})
	}
}

// TestOmissionWaitsForParent: a candidate waits for its parent to commit,
// is decided once it has, and is reported once; one whose parent does not
// commit within the grace is dropped.
func TestOmissionWaitsForParent(t *testing.T) {
	t0 := time.Unix(1000, 0)
	key := types.CommandHash(omitCmdBytes)
	inflight := func(k types.Hash) bool { return k == key }
	for _, tc := range []struct {
		name    string
		waitFor time.Duration
		want    string
	}{
		{"within the grace", time.Second, "[{n4 1 7}]"},
		{"after the grace", time.Second + time.Millisecond, "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newOmissionTracker("n1", 4, time.Second, time.Second)
			tr.sent(key, len(omitCmdBytes), []types.NodeID{"n4"}, 0)
			tr.voted("n4", 6)
			omitPropose(tr, "n4", omitProposal(7, 6, "n4", []types.NodeID{"n1", "n2", "n4"}), 0, t0)
			if got := fmt.Sprint(tr.sweep(t0.Add(tc.waitFor/2), 5, inflight)); got != "[]" {
				t.Fatalf("decided before the parent committed: %s", got)
			}
			if got := fmt.Sprint(tr.sweep(t0.Add(tc.waitFor), 5, inflight)); got != "[]" {
				t.Fatalf("decided before the parent committed: %s", got)
			}
			if got := fmt.Sprint(tr.sweep(t0.Add(tc.waitFor), 6, inflight)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if got := fmt.Sprint(tr.sweep(t0.Add(tc.waitFor), 6, inflight)); got != "[]" {
				t.Fatalf("reported twice: %s", got)
			}
		})
	}
}

// TestOmissionOncePerForward: a leader that keeps leaving the command out
// is reported once per forward, and counted per command.
func TestOmissionOncePerForward(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tr := newOmissionTracker("n1", 4, time.Second, time.Second)
	a, b := []byte("a"), []byte("b")
	keys := map[types.Hash]bool{types.CommandHash(a): true, types.CommandHash(b): true}
	inflight := func(k types.Hash) bool { return keys[k] }
	tr.sent(types.CommandHash(a), 1, []types.NodeID{"n4"}, 0)
	tr.sent(types.CommandHash(b), 1, []types.NodeID{"n4"}, 0)
	tr.voted("n4", 6)
	omitPropose(tr, "n4", omitProposal(7, 6, "n4", []types.NodeID{"n1", "n2", "n4"}), 0, t0)
	tr.voted("n4", 7)
	omitPropose(tr, "n4", omitProposal(8, 7, "n4", []types.NodeID{"n1", "n2", "n4"}), 0, t0)
	if got := fmt.Sprint(tr.sweep(t0, 7, inflight)); got != "[{n4 2 7}]" {
		t.Fatalf("got %s", got)
	}
	// Forwarded again (a resend after a drop starts a new leg).
	tr.sent(types.CommandHash(a), 1, []types.NodeID{"n4"}, 1)
	tr.voted("n4", 8)
	omitPropose(tr, "n4", omitProposal(9, 8, "n4", []types.NodeID{"n1", "n2", "n4"}), 1, t0)
	if got := fmt.Sprint(tr.sweep(t0, 8, inflight)); got != "[{n4 1 9}]" {
		t.Fatalf("got %s", got)
	}
	// Committed: forgotten.
	clear(keys)
	tr.sweep(t0, 9, inflight)
	if len(tr.cmds) != 0 || len(tr.cands) != 0 {
		t.Fatalf("%d commands and %d candidates kept after commit", len(tr.cmds), len(tr.cands))
	}
}

// TestCommandClient: probes (and omit-requests) take client command
// entries only, not read markers or anything that does not decode, and
// know their client.
func TestCommandClient(t *testing.T) {
	_, client, _ := ed25519.GenerateKey(nil)
	env := smr.Envelope{Client: client.Public().(ed25519.PublicKey), Seq: 1, Command: []byte("cmd")}
	env.Sig = ed25519.Sign(client, env.SignBytes())
	ent := smr.NewCommandEntry(time.Now().UnixNano(), env)
	cmd, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := commandClient(cmd); !ok || c != string(env.Client) {
		t.Fatalf("a client command entry gives client %x, %v", c, ok)
	}
	for _, other := range [][]byte{newReadMarker("n1", 7), []byte("junk"), nil} {
		if _, ok := commandClient(other); ok {
			t.Fatalf("%x taken for a client command", other)
		}
	}
}

// omitModel is a deterministic model of four replicas n1..n4 (n4 leads
// the views ≡ 3 mod 4) as n1's omission tracker sees them: every view's
// leader proposes (a correct one with a command of its own clients and
// those it was given), n1 receives the proposal and votes (to the next
// leader), blocks commit two views after their own, and n1 hands a new
// client command over once every four views, right after one of its
// votes: the phase a client that writes again as soon as its previous
// write committed keeps. n1 routes each command as the engine does: to
// the leaders of the view it is in and the next, and into its own queue;
// or, as a probe (takeProbe), to the probe's target alone until the vote
// for the view before the target's turn went out (probeDue).
type omitModel struct {
	probes  bool
	omitter bool // n4 leaves the commands forwarded to it out of its blocks
	full    bool // n4's blocks are full of commands of its own clients
	phase   int  // n1 hands over a command in the views ≡ phase mod 4
	// withN1 reports whether n1's vote is in the QC of view v (default:
	// always).
	withN1 func(v types.View) bool
}

// run runs views 1..views and returns the views at which n1 reported n4
// and the view of n1's first command.
func (m omitModel) run(views int) (reports []types.View, first types.View) {
	ids := []types.NodeID{"n1", "n2", "n3", "n4"}
	leader := func(v types.View) types.NodeID { return ids[int(v)%len(ids)] }
	pace := time.Duration(0) // no probe is ever taken
	if m.probes {
		pace = time.Second
	}
	const maxBatch = 4
	tr := newOmissionTracker("n1", maxBatch, time.Hour, pace)
	t0 := time.Unix(1000, 0)
	queues := map[types.NodeID][][]byte{}
	inBlock := map[types.Hash]types.View{}
	committed := types.View(0)
	inflight := func(k types.Hash) bool { v, ok := inBlock[k]; return !ok || v > committed }
	// queue forwards cmd to the leaders of view and the next ones (and to
	// n1's own queue), as forwardToLeaders does.
	queue := func(cmd []byte, view types.View) {
		k := types.CommandHash(cmd)
		queues["n1"] = append(queues["n1"], cmd)
		to := forwardTargets("n1", view, leader)
		for _, id := range to {
			queues[id] = append(queues[id], cmd)
		}
		tr.sent(k, len(cmd), to, 0)
	}
	step := func(v types.View, now time.Time) {
		if tr.probeDue(now, v) {
			queue(tr.release().cmd, v)
		}
	}
	n := 0
	for v := types.View(1); v <= types.View(views); v++ {
		now := t0.Add(time.Duration(v) * 10 * time.Millisecond)
		step(v, now)
		l := leader(v)
		var payload [][]byte
		switch {
		case l == "n4" && m.full:
			for j := range maxBatch {
				payload = append(payload, fmt.Appendf(nil, "n4's client %d/%d", v, j))
			}
		case l == "n4" && m.omitter:
		default:
			// One command of the leader's own clients, and the queued ones.
			payload = append(payload, fmt.Appendf(nil, "%s's client %d", l, v))
			for _, cmd := range queues[l] {
				if _, ok := inBlock[types.CommandHash(cmd)]; !ok && len(payload) < maxBatch {
					payload = append(payload, cmd)
				}
			}
		}
		signers := []types.NodeID{l}
		for _, id := range ids {
			if id != l && len(signers) < 3 && (id != "n1" || m.withN1 == nil || m.withN1(v-1)) {
				signers = append(signers, id)
			}
		}
		p := omitProposal(v, v-1, l, signers, payload...)
		for _, cmd := range payload {
			if k := types.CommandHash(cmd); inBlock[k] == 0 {
				inBlock[k] = v
			}
		}
		omitPropose(tr, l, p, 0, now)
		tr.voted(leader(v+1), v)
		tr.ownVote(v, now)
		committed = max(v-2, 0)
		if len(tr.sweep(now, committed, inflight)) > 0 {
			reports = append(reports, v)
		}
		step(v, now)
		if int(v)%4 != m.phase || v < 8 {
			continue
		}
		n++
		cmd := fmt.Appendf(nil, "n1's client %d", n)
		if first == 0 {
			first = v
		}
		k := types.CommandHash(cmd)
		if m.probes {
			if target, ok := tr.takeProbe(cmd, k, fmt.Sprint(n), now, v, ids[1:], leader); ok {
				tr.sent(k, len(cmd), []types.NodeID{target}, 0)
				queues[target] = append(queues[target], cmd)
				continue
			}
		}
		queue(cmd, v)
	}
	return reports, first
}

// TestOmissionProbeBound: n4 leaves out every command forwarded to it.
// Without probes (the routing alone), a command n1 hands over right after
// a vote reaches a correct leader first, or reaches n4 after the vote
// that n4's next QC holds: n1 never proves an omission, whatever the
// phase. With probes, n1 reports n4 within a few of n4's turns after its
// first command, at every phase, and also when n4 leaves n1's vote out of
// every other QC.
func TestOmissionProbeBound(t *testing.T) {
	const views = 400
	for phase := range 4 {
		t.Run(fmt.Sprint("phase ", phase), func(t *testing.T) {
			if got, _ := (omitModel{omitter: true, phase: phase}).run(views); len(got) != 0 {
				t.Fatalf("routing alone: reported at views %v", got)
			}
			for _, alt := range []bool{false, true} {
				m := omitModel{probes: true, omitter: true, phase: phase}
				if alt {
					m.withN1 = func(v types.View) bool { return v/4%2 == 0 }
				}
				got, first := m.run(views)
				// Three probes (one per peer) of four views each, n4's turn and
				// the commit of its parent; twice that when n1's vote is left out
				// of every other QC.
				bound := types.View(3*4 + 4 + 2)
				if alt {
					bound *= 2
				}
				if len(got) == 0 || got[0]-first > bound {
					t.Fatalf("every other QC without n1: %v; reports at views %v, first command at view %d: want one within %d views", alt, got, first, bound)
				}
				if len(got) < 5 {
					t.Fatalf("only %d reports in %d views: %v", len(got), views, got)
				}
			}
		})
	}
}

// TestOmissionProbeNoFalseReport: with probes, a correct n4 is never
// reported: not when it orders every command it gets, and not when its
// blocks are full of its own clients' commands and leave n1's out.
func TestOmissionProbeNoFalseReport(t *testing.T) {
	for phase := range 4 {
		for _, m := range []omitModel{{probes: true, phase: phase}, {probes: true, full: true, phase: phase}} {
			if got, _ := m.run(400); len(got) != 0 {
				t.Fatalf("phase %d, full blocks %v: correct n4 reported at views %v", phase, m.full, got)
			}
		}
	}
}

// TestOmissionNoFalseReportUnderLoad: four correct engines over TLS on
// loopback, eight clients writing back to back through all of them: the
// replicas hold probes (so the views go fast enough for them), every
// leader orders them, and no replica reports an omission.
func TestOmissionNoFalseReportUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	var mu sync.Mutex
	var reports []string
	c := newCluster(t, 4, func(cfg *Config) {
		// The e2e tests' timing: a sweep every 100 ms.
		cfg.Tick, cfg.ViewChangeTimeout, cfg.VoteTimeout, cfg.IdlePropose = 10*time.Millisecond, 400*time.Millisecond, 120*time.Millisecond, 200*time.Millisecond
		id := cfg.ID
		cfg.OnOmission = func(o OmissionObservation) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, fmt.Sprintf("%s reports %+v", id, o))
		}
	})
	const writers, writes = 8, 60
	keys := make([]ed25519.PrivateKey, writers)
	for i := range keys {
		_, keys[i], _ = ed25519.GenerateKey(nil)
		grant, err := smr.Sign(c.admin, c.seq.Add(1), smr.Command{Op: smr.OpUpdateACL,
			Subject: smr.FormatKey(keys[i].Public().(ed25519.PublicKey)), Permission: smr.PermConfigWrite, Effect: smr.EffectAllow})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := c.nodes[0].e.Propose(ctx, grant)
		cancel()
		if err != nil || res.Code != smr.CodeOK {
			t.Fatalf("grant %d: %+v, %v", i, res, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i, key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd := c.nodes[i%len(c.nodes)]
			for j := range writes {
				env, err := smr.Sign(key, uint64(j+1), smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("w%d", i), Value: fmt.Sprint(j)})
				if err != nil {
					errs <- err
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				res, err := nd.e.Propose(ctx, env)
				cancel()
				if err != nil || res.Code != smr.CodeOK {
					errs <- fmt.Errorf("writer %d, write %d through %s: %+v, %w", i, j, nd.id, res, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	probes := 0
	for _, nd := range c.nodes {
		e := nd.e
		c.stop(nd)
		probes += e.omit.probes
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 0 {
		t.Fatalf("correct leaders reported: %v", reports)
	}
	if probes == 0 {
		t.Fatal("no probe was held: the test checks nothing")
	}
	t.Logf("%d probes held, no omission reported", probes)
}

// TestReleaseProbeCommittedMeanwhile: a probe that was committed while
// held (no longer in flight: its target, or a copy elsewhere, ordered it
// early) is dropped at release, not queued and forwarded again, which
// would make it a new in-flight command no block carries and every next
// leader's proposal an omission of it.
func TestReleaseProbeCommittedMeanwhile(t *testing.T) {
	e := &Engine{inflight: map[types.Hash]*inflightCmd{}, omit: newOmissionTracker("n1", 4, time.Second, time.Second)}
	p := &omitProbe{cmd: omitCmdBytes, key: types.CommandHash(omitCmdBytes), target: "n2", turn: 7}
	e.releaseProbe(p) // e.core is nil: queueing it would panic
	if len(e.inflight) != 0 || len(e.outCmds) != 0 || len(e.lazy) != 0 {
		t.Fatalf("a committed probe was handed over again: %d in flight, %d to forward, %d lazy", len(e.inflight), len(e.outCmds), len(e.lazy))
	}
}

// TestProbeHold: a probe is taken only while the views go on fast and
// other commands keep the chain busy (an idle cluster, whose leaders wait
// for commands, holds none, nor does a client writing alone), one at a
// time, for the peers in turn, and released once the vote for the view
// before its target's turn went to the target, past that turn, or after
// the longest hold.
func TestProbeHold(t *testing.T) {
	ids := []types.NodeID{"n1", "n2", "n3", "n4"}
	leader := func(v types.View) types.NodeID { return ids[int(v)%len(ids)] }
	peers := ids[1:]
	t0 := time.Unix(1000, 0)
	tr := newOmissionTracker("n1", 4, time.Hour, 200*time.Millisecond) // hold at most 100 ms
	take := func(now time.Time, view types.View) (types.NodeID, bool) {
		return tr.takeProbe(omitCmdBytes, types.CommandHash(omitCmdBytes), "c", now, view, peers, leader)
	}
	// Idle: one view per 100 ms, four views take 300 ms > 200 ms.
	for v := types.View(1); v <= 4; v++ {
		tr.ownVote(v, t0.Add(time.Duration(v)*100*time.Millisecond))
		tr.voted(leader(v+1), v)
	}
	if _, ok := take(t0.Add(400*time.Millisecond), 4); ok {
		t.Fatal("a probe taken while the views go slowly")
	}
	// Fast: four views within 30 ms; but the last block with commands is
	// of view 6: a client writing alone, one write at a time.
	now := t0.Add(time.Second)
	for v := types.View(5); v <= 8; v++ {
		tr.ownVote(v, now.Add(time.Duration(v-8)*10*time.Millisecond))
		tr.voted(leader(v+1), v)
	}
	omitPropose(tr, "n3", omitProposal(6, 5, "n3", ids, []byte("x")), 0, now)
	if _, ok := take(now, 8); ok {
		t.Fatal("a probe taken while no other command keeps the chain busy")
	}
	// Busy: view 8's block carries commands.
	omitPropose(tr, "n1", omitProposal(8, 7, "n1", ids, []byte("y")), 0, now)
	target, ok := take(now, 8)
	if !ok || target != "n2" || tr.probe.turn != 13 {
		t.Fatalf("probe %v for %s (turn %+v), want n2's turn 13 (view 9 is n2's, but the vote for 8 already went to n2)", ok, target, tr.probe)
	}
	if _, ok := take(now, 8); ok {
		t.Fatal("a second probe taken while one is held")
	}
	if tr.probeDue(now, 11) {
		t.Fatal("due before the vote for view 12 went to n2")
	}
	tr.voted("n2", 12)
	if !tr.probeDue(now, 12) {
		t.Fatal("not due after the vote for view 12 went to n2")
	}
	tr.release()
	omitPropose(tr, "n4", omitProposal(12, 11, "n4", ids, []byte("z")), 0, now)
	if target, ok := take(now, 12); !ok || target != "n3" {
		t.Fatalf("next probe for %s, %v; want n3", target, ok)
	}
	if tr.probeDue(now.Add(100*time.Millisecond), 12) || !tr.probeDue(now.Add(101*time.Millisecond), 12) || !tr.probeDue(now, 14) {
		t.Fatal("a probe is due after the longest hold, or past its target's turn")
	}
}

// TestNoProbeForALoneWriter: a client writing alone, one write at a time,
// is never held as a probe (nothing else keeps the chain busy meanwhile:
// the leaders would wait for commands while it is held).
func TestNoProbeForALoneWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := newCluster(t, 4, func(cfg *Config) { cfg.OnOmission = func(OmissionObservation) {} })
	for i := range 20 {
		c.mustWrite(c.nodes[i%len(c.nodes)], "k", fmt.Sprint(i))
	}
	for _, nd := range c.nodes {
		e := nd.e
		c.stop(nd)
		if e.omit.probes != 0 {
			t.Fatalf("%s held %d probes of a lone writer", nd.id, e.omit.probes)
		}
	}
}
