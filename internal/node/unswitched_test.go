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
// index it applied last. One follower stops first; the leader then
// orders more writes, which the other followers apply before they stop
// too; the leader signs nothing. The certificate of epoch 2 is the state
// of the two followers that stopped last (the highest index with f+1 = 2
// matching votes of members other than the accused leader; the first
// follower's lower state has one vote), every node starts epoch 2 in bft
// from it (the follower that stopped first and the leader install it),
// the epoch record names the blocking leader, no write acknowledged in
// epoch 1 is lost, and epoch 2 orders writes.
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
		tn.n.sel.noteSuspects(1, leader.id, accused, "test: the leader omits requests")
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
	// The leader orders more; fs[0] refuses it, the others apply it.
	for i := range 3 {
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("late-%d", i), Value: "v"})
	}
	waitFor(t, "the other followers to apply the late writes", 10*time.Second, func() bool {
		return fs[1].n.fsm.AppliedIndex() >= leader.n.fsm.AppliedIndex() && fs[2].n.fsm.AppliedIndex() >= leader.n.fsm.AppliedIndex()
	})
	if got := fs[0].n.fsm.AppliedIndex(); got != early {
		t.Fatalf("the gated %s applied past %d: %d", fs[0].id, early, got)
	}
	// The leader never signs (a byzantine leader need not); it only
	// learns the decision, and follows the others' certificate as a
	// laggard once view_change_timeout has passed since their first vote.
	leader.n.sel.noteSuspects(1, leader.id, accused, "test: the leader omits requests")
	late := gate(fs[1])
	if late <= early {
		t.Fatalf("%s stopped at %d, not after %d", fs[1].id, late, early)
	}
	if got := gate(fs[2]); got != late {
		t.Fatalf("%s stopped at %d, want %d", fs[2].id, got, late)
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
		if rec.BaseIndex != late || !slices.Equal(rec.Cert.Signers(), sortedIDs(fs[1].id, fs[2].id)) {
			t.Fatalf("%s: epoch 2 from index %d signed by %v, want %d signed by %s and %s", tn.id, rec.BaseIndex, rec.Cert.Signers(), late, fs[1].id, fs[2].id)
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
	// Epoch 2 orders writes, and every node ends at one state with every
	// write acknowledged in epoch 1.
	for i := range 3 {
		c.submit(t, ctx, fs[0], c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("after-%d", i), Value: "v"})
	}
	waitConverged(t, c)
	for _, tn := range c.nodes {
		for _, k := range []string{"before-4", "late-2", "after-2"} {
			if v, _, err := configValue(ctx, tn, k, true); err != nil || v != "v" {
				t.Fatalf("%s: %s = %q, %v", tn.id, k, v, err)
			}
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
	f.sel.noteSuspects(3, "node4", []string{"node4"}, "test") // another epoch: ignored
	if c := f.sel.certify(2, true); c != nil {
		t.Fatalf("certified %s with suspects of another epoch", c.Statement)
	}
	f.sel.noteSuspects(1, "node4", []string{"node4"}, "test")
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
