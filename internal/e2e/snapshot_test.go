package e2e

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"
)

// TestLaggingNodeCatchesUpFromSnapshot: a node that was down while the
// others wrote, snapshotted and truncated their logs past its last index
// catches up by snapshot install to the same state hash.
func TestLaggingNodeCatchesUpFromSnapshot(t *testing.T) {
	r := maps.Clone(fastRaft)
	r["snapshot_threshold"] = 50
	r["trailing_logs"] = 10
	r["snapshot_interval"] = "200ms"
	c := startCluster(t, 3, map[string]any{"raft": r})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := c.newClient(c.admin)
	if _, err := admin.SetConfig(ctx, "first", "1"); err != nil {
		t.Fatal(err)
	}

	leader := c.waitLeader(nil, 10*time.Second)
	lagger := without(c.ids(), leader)[0]
	if err := c.Stop(lagger, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	stopped, err := c.status(leader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := admin.SetConfig(ctx, fmt.Sprintf("k%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the leader's snapshot is past everything the lagging node
	// had, so it can only catch up by installing a snapshot.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.status(leader)
		if err == nil && st.LastSnapshotIndex > stopped.LastIndex+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader did not snapshot past index %d: %+v %v", stopped.LastIndex, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Start(lagger); err != nil {
		t.Fatal(err)
	}
	hash := c.waitConverged(c.ids(), 30*time.Second)
	st, err := c.status(lagger)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSnapshotIndex <= stopped.LastIndex {
		t.Fatalf("%s caught up without a snapshot (last snapshot %d, was stopped at %d)", lagger, st.LastSnapshotIndex, stopped.LastIndex)
	}
	t.Logf("%s installed a snapshot at %d and converged to %s", lagger, st.LastSnapshotIndex, hash)
}
