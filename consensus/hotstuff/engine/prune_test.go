package engine

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/smr"
)

// loopState reads loop-owned fields of e on its loop.
func loopState(t *testing.T, e *Engine, fn func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.inLoop(ctx, "test", fn); err != nil {
		t.Fatal(err)
	}
}

// chainOf returns nd's stored committed chain records, lowest first.
func chainOf(t *testing.T, e *Engine) []chainEntry {
	t.Helper()
	var out []chainEntry
	loopState(t, e, func() {
		for h := uint64(1); h <= e.height; h++ {
			ce, ok, err := e.store.chainAt(h)
			if err != nil {
				t.Error(err)
			}
			if ok {
				out = append(out, ce)
			}
		}
	})
	return out
}

func withKeepRecent(t *testing.T, n uint64) {
	old := keepRecent
	keepRecent = n
	t.Cleanup(func() { keepRecent = old })
}

// TestCompactKeepsWhatRestartNeeds: Compact deletes exactly the committed
// blocks below the block holding keepFrom (which lies below the engine's
// own snapshot), counts them, keeps the rest, and a restart after it
// rebuilds the same state and goes on committing.
func TestCompactKeepsWhatRestartNeeds(t *testing.T) {
	withKeepRecent(t, 3)
	c := newCluster(t, 4, func(cfg *Config) { cfg.SnapshotInterval = 10 })
	nd := c.nodes[0]
	for i := range 40 {
		c.mustWrite(nd, fmt.Sprintf("k%d", i), "v")
	}
	c.waitConverged(c.nodes, 40, 30*time.Second)
	before := chainOf(t, nd.e)
	var snapHeight, snapIndex uint64
	loopState(t, nd.e, func() { snapHeight, snapIndex = nd.e.snapHeight, nd.e.snapIndex })
	if snapIndex < 30 {
		t.Fatalf("snapshot at index %d, want at least 30 after 40 entries with interval 10", snapIndex)
	}
	const keep = 25
	var holder chainEntry
	for _, ce := range before {
		if ce.first <= keep && keep <= ce.last {
			holder = ce
		}
	}
	if holder.height < 2 {
		t.Fatalf("index %d is in the block at height %d; the test needs blocks below it", keep, holder.height)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	horizon, err := nd.e.Compact(ctx, keep)
	if err != nil {
		t.Fatal(err)
	}
	if horizon != holder.height || horizon > snapHeight {
		t.Fatalf("horizon %d, want the height %d of the block holding index %d (snapshot height %d)", horizon, holder.height, keep, snapHeight)
	}
	if got := nd.e.Stats().BlocksPruned; got != horizon-1 {
		t.Fatalf("%d blocks counted as pruned, want %d", got, horizon-1)
	}
	loopState(t, nd.e, func() {
		for _, ce := range before {
			_, inChain, err := nd.e.store.chainAt(ce.height)
			b, berr := nd.e.store.block(ce.hash)
			if err != nil || berr != nil {
				t.Error(err, berr)
			}
			if kept := ce.height >= horizon; inChain != kept || (b != nil) != kept {
				t.Errorf("height %d: chain record %v, block %v; want both %v", ce.height, inChain, b != nil, kept)
			}
		}
		if h, err := nd.e.store.horizon(); err != nil || h != horizon {
			t.Errorf("stored horizon %d, %v; want %d", h, err, horizon)
		}
	})
	if again, err := nd.e.Compact(ctx, keep); err != nil || again != horizon || nd.e.Stats().BlocksPruned != horizon-1 {
		t.Fatalf("second Compact: horizon %d, %v, %d pruned in all; want %d and nothing more", again, err, nd.e.Stats().BlocksPruned, horizon)
	}
	// Keeping index 0 on keeps everything that is left.
	if h, err := nd.e.Compact(ctx, 0); err != nil || h != horizon {
		t.Fatalf("Compact(0): horizon %d, %v; want %d", h, err, horizon)
	}

	idx, sum := nd.sm.Hash()
	c.stop(nd)
	c.start(nd)
	if gi, gs := nd.sm.Hash(); gi != idx || gs != sum {
		t.Fatalf("restart after pruning rebuilt index %d hash %x, had %d %x", gi, gs[:6], idx, sum[:6])
	}
	for i := range 5 {
		c.mustWrite(nd, fmt.Sprintf("after%d", i), "v")
	}
	c.waitConverged(c.nodes, idx+5, 30*time.Second)
}

// TestWipedReplicaStartsFromTransferredCheckpoint: the replicas prune
// their committed blocks while one of them is down; it comes back with
// its storage wiped, learns from the pruned answers that it cannot fetch
// its way back, starts from the checkpoint its state transfer hands it (a
// snapshot in the middle of the pruned replicas' retained chain), fetches
// the blocks above it, converges and goes on committing, also across a
// restart from the storage it rebuilt.
func TestWipedReplicaStartsFromTransferredCheckpoint(t *testing.T) {
	withKeepRecent(t, 3)
	var ckpt atomic.Pointer[Transferred]
	var asked atomic.Int32
	transferFn := func(_ context.Context, minIndex uint64) (*Transferred, error) {
		asked.Add(1)
		cp := ckpt.Load()
		if cp == nil || cp.Index < minIndex {
			return nil, fmt.Errorf("no checkpoint at %d or above", minIndex)
		}
		return cp, nil
	}
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.SnapshotInterval = 10
		cfg.StateTransfer = transferFn
	})
	writer, peer, wiped := c.nodes[0], c.nodes[1], c.nodes[3]
	n := 0
	write := func(k int) {
		for range k {
			c.mustWrite(writer, fmt.Sprintf("k%d", n), "v")
			n++
		}
	}
	write(30)
	c.waitConverged(c.nodes, 30, 30*time.Second)
	c.stop(wiped)
	if err := os.RemoveAll(wiped.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(wiped.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	live := c.running()
	write(20)
	c.waitConverged(live, 50, 30*time.Second)
	// The checkpoint: the state after 50 writes, as a peer's checkpoint store would
	// hold it (no write is in flight, so the state machine is at rest).
	snap, err := peer.sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	k, _, err := smr.SnapshotInfo(snap)
	if err != nil || k != 51 { // the genesis entry is index 1
		t.Fatalf("checkpoint snapshot at index %d (%v), want 51", k, err)
	}
	ckpt.Store(&Transferred{Index: k, Snapshot: snap})
	write(20)
	c.waitConverged(live, 70, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, nd := range live {
		h, err := nd.e.Compact(ctx, k)
		if err != nil || h < 10 {
			t.Fatalf("%s: Compact: horizon %d, %v; want the chain pruned", nd.id, h, err)
		}
	}

	c.start(wiped)
	hash := c.waitConverged(c.nodes, 70, 60*time.Second)
	st := wiped.e.Stats()
	if st.StateTransfers != 1 || asked.Load() == 0 {
		t.Fatalf("the wiped replica made %d state transfers (asked %d times), want 1", st.StateTransfers, asked.Load())
	}
	if st.PrunedBelow == 0 {
		t.Fatal("the wiped replica's store has no horizon after starting from a checkpoint")
	}
	t.Logf("wiped replica converged at index 70 (state %.12s), store begins at height %d", hash, st.PrunedBelow)
	for i := range 5 {
		c.mustWrite(wiped, fmt.Sprintf("w%d", i), "v")
	}
	c.waitConverged(c.nodes, 75, 30*time.Second)
	c.stop(wiped)
	c.start(wiped)
	write(5)
	c.waitConverged(c.nodes, 80, 30*time.Second)
}

// TestAnchorNeedsFPlusOneMatchingMembers: a replica waiting for the anchor
// of a checkpoint does not start from one member's answer, nor from two
// that disagree, nor from an answer whose QC certifies another block; it
// starts once f+1 members name the same block.
func TestAnchorNeedsFPlusOneMatchingMembers(t *testing.T) {
	withKeepRecent(t, 3)
	c := newCluster(t, 4, func(cfg *Config) { cfg.SnapshotInterval = 10 })
	writer, wiped := c.nodes[0], c.nodes[3]
	for i := range 20 {
		c.mustWrite(writer, fmt.Sprintf("k%d", i), "v")
	}
	c.waitConverged(c.nodes, 21, 30*time.Second)
	c.stop(wiped)
	if err := os.RemoveAll(wiped.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(wiped.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	live := c.running()
	for i := range 20 {
		c.mustWrite(writer, fmt.Sprintf("m%d", i), "v")
	}
	c.waitConverged(live, 41, 30*time.Second)
	snap, err := live[1].sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	k, _, err := smr.SnapshotInfo(snap)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	anchors := map[types.NodeID]*anchorInfo{}
	for _, nd := range live {
		if _, err := nd.e.Compact(ctx, k-5); err != nil {
			t.Fatal(err)
		}
		loopState(t, nd.e, func() {
			a, err := nd.e.anchorFor(k)
			if err != nil || a == nil {
				t.Fatalf("%s has no anchor for index %d: %v", nd.id, k, err)
			}
			anchors[nd.id] = a
		})
	}
	// The wiped replica has no state transfer of its own (it only logs
	// the pruned answers): the test plays its part.
	c.start(wiped)
	e := wiped.e
	x := &transfer{}
	loopState(t, e, func() {
		e.xfer = x
		e.transferred(x, &Transferred{Index: k, Snapshot: snap}, nil)
	})
	installed := func() bool {
		var h uint64
		loopState(t, e, func() { h = e.height })
		return h >= anchors[live[0].id].height
	}
	a1 := anchors[live[0].id]
	forged := *anchors[live[1].id]
	forged.last, forged.first = forged.last+1, forged.first+1 // another index range, same block
	otherQC := *anchors[live[2].id]
	otherQC.qc.Block = types.Hash{1}
	loopState(t, e, func() {
		e.onAnchor(live[0].id, a1)
		e.onAnchor(live[1].id, &forged)
		e.onAnchor(live[2].id, &otherQC)
	})
	if installed() || e.Stats().StateTransfers != 0 {
		t.Fatal("the replica started from an anchor that f+1 members did not name")
	}
	loopState(t, e, func() { e.onAnchor(live[1].id, anchors[live[1].id]) })
	if !installed() || e.Stats().StateTransfers != 1 {
		t.Fatal("the replica did not start from the anchor two members named")
	}
	c.waitConverged(c.nodes, 41, 30*time.Second)
}
