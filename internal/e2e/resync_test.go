package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// corrupting is the log text of node4's corruption of its own state.
const corrupting = "byzantine: corrupt-state"

// resyncInterval is checkpoint_interval in the re-sync test.
const resyncInterval = 20

// TestCFTCorruptedStateResyncs: four processes in cft mode with member
// keys and checkpoint_interval 20; node4 runs the byzantine build told to
// corrupt-state: as a follower it applies one client write with a flipped
// signature, so its state lacks that write. Its next checkpoint signs a
// state hash the other three do not: the correct nodes sign
// state-divergence accusations of node4 (f+1 distinct accusers at least,
// held by every correct node, verified from the member keys),
// node4's own checkpointer sees the quorum's certificate for another
// state and re-syncs (leaves the voters through the leader, resets its
// Raft storage and state machine, rejoins as a non-voter, catches up and
// is promoted), a later stable checkpoint on node4 carries the same state
// hash as on the others, writes keep committing throughout, and nobody is
// quarantined. The time from the corruption to the restored hash is
// logged.
func TestCFTCorruptedStateResyncs(t *testing.T) {
	testCorruptedStateResyncs(t, "cft", map[string]any{"raft": fastRaft, "checkpoint_interval": resyncInterval})
}

// TestBFTCorruptedStateResyncs: the same in bft mode. node4, a HotStuff
// replica, re-syncs by stopping its engine, moving its block store aside
// (its safety file stays), resetting its state machine and rebuilding the
// state from the committed chain its peers serve.
func TestBFTCorruptedStateResyncs(t *testing.T) {
	testCorruptedStateResyncs(t, "bft", map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms", "checkpoint_interval": resyncInterval})
}

func testCorruptedStateResyncs(t *testing.T, mode string, extra map[string]any) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	s := newByzantineSetup(t, byzBinary, mode, extra, "corrupt-state", corrupting)
	c, correct, watch := s.c, s.correct, s.watch
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// Writers through the correct nodes, back to back, until the end.
	var writers []*client.Client
	if mode == "cft" {
		// node4 corrupts only as a follower.
		if c.waitLeader(nil, 30*time.Second) == byzantineNode {
			if err := c.newClient(c.admin, c.endpoint(byzantineNode)).TransferLeader(ctx, correct[0]); err != nil {
				t.Fatalf("transfer leadership away from %s: %v", byzantineNode, err)
			}
		}
		for _, id := range correct {
			writers = append(writers, c.allowWriter(ctx, b.cl, c.endpoint(id)))
		}
	} else {
		// A bft client writes through the f+1 replicas it needs.
		for range correct {
			writers = append(writers, c.allowWriter(ctx, b.cl, s.endpoints()...))
		}
	}
	load := startWriters(ctx, writers, "w", 3*time.Second, 10*time.Millisecond)
	defer load.stop()

	// node4 re-syncs: started, rejoined and confirmed by a later stable
	// checkpoint of its own state. A quarantine anywhere fails at once.
	node4 := c.endpoint(byzantineNode)
	var started, rejoined, confirmed time.Time
	deadline := time.Now().Add(90 * time.Second)
	for confirmed.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("node4 did not complete a confirmed re-sync within 90 s (corrupted: %v, started %v, rejoined %v; %d writes ok)",
				!watch.first().IsZero(), started, rejoined, load.ok.Load())
		}
		for _, id := range c.ids() {
			if q := metricFloat(t, b, id, "tandem_quarantined_members"); q > 0 {
				t.Fatalf("%s quarantined %v members", id, q)
			}
		}
		now := time.Now()
		if started.IsZero() && metricLine(t, b.adm.http, node4, `tandem_resyncs_total{outcome="started"}`) == "1" {
			started = now
		}
		if rejoined.IsZero() && metricLine(t, b.adm.http, node4, `tandem_resyncs_total{outcome="rejoined"}`) == "1" {
			rejoined = now
		}
		if metricLine(t, b.adm.http, node4, `tandem_resyncs_total{outcome="confirmed"}`) == "1" {
			confirmed = now
		}
		time.Sleep(50 * time.Millisecond)
	}
	corruptedAt := watch.first()
	if corruptedAt.IsZero() {
		t.Fatalf("node4 re-synced but never logged %q", corrupting)
	}
	if v := metricLine(t, b.adm.http, node4, `tandem_resyncs_total{outcome="stayed_out"}`); v != "0" {
		t.Fatalf("node4 stayed out (%s)", v)
	}

	// Every correct node holds state-divergence accusations of node4 from
	// at least f+1 = 2 distinct correct members (the re-sync level), each
	// verifying against the member keys, and none against anyone else.
	// (A correct node that took the certificate from a peer's answer
	// before node4's vote reached it does not count node4's vote, so not
	// every correct node need be an accuser.)
	var accusers map[evidence.NodeID]bool
	waitUntilTrue(t, "f+1 state-divergence accusers of node4 on every correct node", 30*time.Second, func() bool {
		for _, id := range correct {
			if accusers = accusersOf(ctx, t, b, id, evidence.MetricStateDivergence, false); len(accusers) < 2 {
				return false
			}
		}
		return true
	})
	t.Logf("state-divergence accusers of node4: %v", accusers)

	// Writes went on, and node4 reaches the others' state hash at a later
	// stable checkpoint.
	if load.ok.Load() == 0 || time.Since(time.Unix(0, load.lastOK.Load())) > 5*time.Second {
		t.Fatalf("writes stopped committing: %d ok, last %v ago", load.ok.Load(), time.Since(time.Unix(0, load.lastOK.Load())))
	}
	cp := c.waitSameCheckpoint(b.adm.http, c.ids(), 0, 30*time.Second)
	st, err := c.checkpointOf(b.adm.http, byzantineNode)
	if err != nil || st == nil {
		t.Fatalf("node4's checkpoint: %+v, %v", st, err)
	}
	load.stop()
	t.Logf("%s corrupt-state: corrupted at %s; re-sync started after %s, rejoined after %s, state hash restored (stable checkpoint %d/%.12s on node4) after %s; %d writes ok, %d failed during the run",
		mode, corruptedAt.Format(time.RFC3339Nano), started.Sub(corruptedAt).Round(time.Millisecond), rejoined.Sub(corruptedAt).Round(time.Millisecond),
		cp.Index, cp.StateHash, confirmed.Sub(corruptedAt).Round(time.Millisecond), load.ok.Load(), load.failed.Load())

	// node4 serves again: writes through every node commit, the nodes
	// converge, and nobody is quarantined.
	all := c.newClient(c.admin, c.endpoint(byzantineNode))
	if mode == "bft" {
		all = c.newClient(c.admin) // a bft client needs f+1 replicas
	}
	for i := range 5 {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := all.SetConfig(wctx, "after-"+strconv.Itoa(i), "v"); err != nil {
			t.Fatalf("write %d through node4 after the re-sync: %v", i, err)
		}
		wcancel()
	}
	c.waitConverged(c.ids(), 20*time.Second)
	for _, id := range c.ids() {
		if q := metricFloat(t, b, id, "tandem_quarantined_members"); q != 0 {
			t.Fatalf("%s: tandem_quarantined_members is %v, want 0", id, q)
		}
	}
}
