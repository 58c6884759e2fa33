package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/smr"
)

// TestUnswitchedHandOverWhenTheLeaderBlocks: four in-process nodes in
// consensus_mode auto. The escalation's evidence accuses the Raft leader,
// which never orders the switch entry, so each node ends epoch 1 at the
// index it applied last. Two followers stop first; the leader then
// orders more writes, which it and the third follower apply before they
// stop too. The certificate of epoch 2 is the state of the two followers
// that stopped first (the highest index with f+1 = 2 matching votes of
// members other than the accused leader: the third follower's higher
// state has one counted vote, the leader's does not count), every node
// starts epoch 2 in bft from it (the two that applied more install it),
// the epoch record names the blocking leader, and epoch 2 orders writes.
func TestUnswitchedHandOverWhenTheLeaderBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in -short mode")
	}
	c := startClusterKeys(t, 4, config.ModeAuto, true)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := c.leader(t)
	fs := c.followers(leader)
	for i := range 5 {
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("before-%d", i), Value: "v"})
	}
	waitConverged(t, c)

	accused := []string{leader.id}
	gate := func(tn *testNode) uint64 {
		t.Helper()
		tn.n.sel.noteSuspects(1, accused)
		if !tn.n.sel.gateUnswitched(1, leader.id, accused, "test: the leader omits requests") {
			t.Fatalf("%s: the gate did not close", tn.id)
		}
		rec := tn.n.sel.record()
		if rec.BlockedBy != leader.id || rec.EndIndex == 0 || rec.Next == nil || rec.Next.Mode != smr.ModeBFT {
			t.Fatalf("%s: record after the gate %+v", tn.id, rec)
		}
		// The gate closes once: a second call changes nothing.
		if tn.n.sel.gateUnswitched(1, leader.id, accused, "again") {
			t.Fatalf("%s: the gate closed twice", tn.id)
		}
		return rec.EndIndex
	}
	early := gate(fs[0])
	if got := gate(fs[1]); got != early {
		t.Fatalf("the first two followers stopped at %d and %d", early, got)
	}
	// The leader orders more; fs[0] and fs[1] refuse it, fs[2] applies it.
	for i := range 3 {
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("late-%d", i), Value: "v"})
	}
	waitFor(t, "the third follower to apply the late writes", 10*time.Second, func() bool {
		return fs[2].n.fsm.AppliedIndex() >= leader.n.fsm.AppliedIndex()
	})
	if fs[0].n.fsm.AppliedIndex() != early {
		t.Fatalf("a gated follower applied past %d: %d", early, fs[0].n.fsm.AppliedIndex())
	}
	late := gate(fs[2])
	gate(leader)
	if late <= early {
		t.Fatalf("the third follower stopped at %d, not after %d", late, early)
	}

	var stmt checkpoint.Statement
	waitFor(t, "every node in epoch 2 (bft)", 60*time.Second, func() bool {
		for _, tn := range c.nodes {
			rec := tn.n.sel.record()
			if rec.Epoch != 2 || tn.n.currentMode() != config.ModeBFT {
				return false
			}
		}
		return true
	})
	for _, tn := range c.nodes {
		rec := tn.n.sel.record()
		if rec.Cert == nil || rec.Cert.Form != checkpoint.FormFallback {
			t.Fatalf("%s: epoch 2 certificate %+v", tn.id, rec.Cert)
		}
		if rec.BaseIndex != early || !slices.Equal(rec.Cert.Signers(), sortedIDs(fs[0].id, fs[1].id)) {
			t.Fatalf("%s: epoch 2 from index %d signed by %v, want %d signed by %s and %s", tn.id, rec.BaseIndex, rec.Cert.Signers(), early, fs[0].id, fs[1].id)
		}
		if !strings.Contains(rec.Reason, "switch entry blocked by the Raft leader "+leader.id) || !rec.Escalated {
			t.Fatalf("%s: epoch 2 reason %q escalated %v", tn.id, rec.Reason, rec.Escalated)
		}
		if err := rec.Cert.Verify(tn.n.sel.committee, accused); err != nil {
			t.Fatalf("%s: %v", tn.id, err)
		}
		if err := rec.Cert.Verify(tn.n.sel.committee, nil); err == nil {
			t.Fatalf("%s: the certificate verifies counting the accused leader", tn.id)
		}
		if stmt.Epoch == 0 {
			stmt = rec.Cert.Statement
		} else if !stmt.Equal(rec.Cert.Statement) {
			t.Fatalf("%s: epoch 2 from %s, another node from %s", tn.id, rec.Cert.Statement, stmt)
		}
	}
	// Epoch 2 orders writes, and every node ends at one state.
	for i := range 3 {
		c.submit(t, ctx, fs[0], c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("after-%d", i), Value: "v"})
	}
	waitConverged(t, c)
	for _, tn := range c.nodes {
		if v, _, err := configValue(ctx, tn, "before-4", true); err != nil || v != "v" {
			t.Fatalf("%s: before-4 = %q, %v", tn.id, v, err)
		}
		if v, _, err := configValue(ctx, tn, "late-0", true); err == nil && v != "" {
			t.Fatalf("%s: late-0 = %q survived, although only the accused leader and one follower applied it", tn.id, v)
		}
	}
}

func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// TestUnswitchedGateAfterTheSwitch: the switch entry applied first wins.
// Once it is applied the gate does nothing (the record keeps the switch
// index, no blocking leader), and once the gate closed a switch entry
// is refused like every later entry, so a node never signs both a
// switched and an unswitched state for one epoch.
func TestUnswitchedGateAfterTheSwitch(t *testing.T) {
	f := newHandoffFixture(t, time.Hour)
	f.sel.n.fsm = newAppliedFSM(smr.NewUninitialized())
	f.sel.n.fsm.gate = f.sel
	f.sel.n.cfg.DataDir = t.TempDir()
	// Nothing applied yet: the gate has no state to stop at.
	if f.sel.gateUnswitched(1, "node4", []string{"node4"}, "test") {
		t.Fatal("the gate closed at index 0")
	}
	f.sel.mu.Lock()
	f.sel.rec.EndIndex, f.sel.rec.Next = 8, &nextEpochTo{Epoch: 2, Mode: smr.ModeBFT, Reason: "detector: x"}
	f.sel.mu.Unlock()
	if f.sel.gateUnswitched(1, "node4", []string{"node4"}, "test") {
		t.Fatal("the gate closed after the switch entry was applied")
	}
	if rec := f.sel.record(); rec.EndIndex != 8 || rec.BlockedBy != "" || len(rec.Suspects) != 0 {
		t.Fatalf("record after the refused gate: %+v", rec)
	}
	if r, ended := f.sel.refuse(9); !ended || r.Code != smr.CodeEpochEnded {
		t.Fatalf("entry after the end: %+v %v", r, ended)
	}
}

// TestUnswitchedSuspectsCount: the hand-over's certify leaves the suspects
// out of the fallback once the escalation accused the Raft leader, and
// only then; the fetch verifies against the same members.
func TestUnswitchedSuspectsCount(t *testing.T) {
	f := newHandoffFixture(t, time.Hour)
	at := func(index uint64, hash string) checkpoint.Statement {
		st := handoffState(hash)
		st.Index = index
		return st
	}
	f.vote(t, "node1", at(100, "X"))
	f.vote(t, "node2", at(101, "Y"))
	f.vote(t, "node3", at(101, "Y"))
	f.vote(t, "node4", at(105, "Z"))
	if c := f.sel.certify(2, true); c != nil {
		t.Fatalf("certified %s without suspects", c.Statement)
	}
	f.sel.noteSuspects(3, []string{"node4"}) // another epoch: ignored
	if c := f.sel.certify(2, true); c != nil {
		t.Fatalf("certified %s with suspects of another epoch", c.Statement)
	}
	f.sel.noteSuspects(1, []string{"node4"})
	if c := f.sel.certify(2, false); c != nil {
		t.Fatalf("certified %s before the fallback is allowed", c.Statement)
	}
	c := f.sel.certify(2, true)
	if c == nil || !c.Statement.Equal(at(101, "Y")) || !slices.Equal(c.Signers(), []string{"node2", "node3"}) {
		t.Fatalf("certificate %v", c)
	}
	if got := f.sel.uncounted(2); !slices.Equal(got, []string{"node4"}) {
		t.Fatalf("uncounted %v", got)
	}
	if err := c.Verify(f.sel.committee, f.sel.uncounted(2)); err != nil {
		t.Fatal(err)
	}
}
