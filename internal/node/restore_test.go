package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

// TestLinearizableReadAfterSnapshotRestore: once a snapshot restore has
// been acknowledged, a linearizable read on any node must see the restored
// state.
//
// It fails today, so it only runs with TANDEM_KNOWN_BUGS=1: the read index a
// follower waits for is the state machine's applied index, which goes back
// to the snapshot's index on a restore. A follower that has not installed
// the restored snapshot yet has a higher applied index and answers from
// the state before the restore.
func TestLinearizableReadAfterSnapshotRestore(t *testing.T) {
	if os.Getenv("TANDEM_KNOWN_BUGS") == "" {
		t.Skip("known bug (stale follower read after a snapshot restore); set TANDEM_KNOWN_BUGS=1 to run")
	}
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(t)
	for round := range 3 {
		old := fmt.Sprintf("old-%d", round)
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: old})
		var snap bytes.Buffer
		if _, err := leader.n.SnapshotSave(ctx, &snap); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "after-the-snapshot"})
		}
		waitConverged(t, c)
		if err := leader.n.SnapshotRestore(ctx, bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
		for _, f := range c.followers(leader) {
			got, idx, err := configValue(ctx, f, "k", false)
			if err != nil || got != old {
				t.Errorf("round %d: linearizable read on %s after an acknowledged restore: %q at index %d, %v; want %q", round, f.id, got, idx, err, old)
			}
		}
	}
}
