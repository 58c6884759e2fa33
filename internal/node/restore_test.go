package node

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

// TestLinearizableReadAfterSnapshotRestore: once a snapshot restore has
// been acknowledged, a linearizable read on any node sees the restored
// state. (The restore is a log entry applied at a new, higher index on
// every replica, so a follower's read index covers it.)
func TestLinearizableReadAfterSnapshotRestore(t *testing.T) {
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
		// Each restore is signed at a later second: a restore applies once.
		r, err := smr.SignRestore(c.admin, "/v1/admin/snapshot", time.Now().Unix()+int64(round), snap.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if res, err := leader.n.SnapshotRestore(ctx, r); err != nil || res.Code != smr.CodeOK {
			t.Fatalf("restore: %+v %v", res, err)
		}
		for _, f := range c.followers(leader) {
			got, idx, err := configValue(ctx, f, "k", false)
			if err != nil || got != old {
				t.Errorf("round %d: linearizable read on %s after an acknowledged restore: %q at index %d, %v; want %q", round, f.id, got, idx, err, old)
			}
		}
	}
}
