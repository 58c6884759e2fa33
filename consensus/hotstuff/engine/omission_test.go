package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
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
	tr := newOmissionTracker("n1", 4, time.Second)
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
			tr := newOmissionTracker("n1", 4, time.Second)
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
	tr := newOmissionTracker("n1", 4, time.Second)
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
