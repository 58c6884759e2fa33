package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/devcluster"
)

// TestHotStuffPruningAndStartFromCheckpoint: four processes in bft mode
// with checkpoint_interval 50 and log_retention 100. node4 is stopped and
// its data directory wiped (all but its node key); the others write on
// until their stable checkpoints have pruned their committed blocks
// (tandem_hotstuff_pruned_height above 1), so node4 cannot fetch its way
// back from genesis. Restarted, it starts from the stable checkpoint
// (tandem_hotstuff_state_transfers_total), reaches the others' state hash,
// takes writes, and no node reports a checkpoint divergence.
func TestHotStuffPruningAndStartFromCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	c := launch(t, devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: "bft",
		Extra: map[string]any{"view_change_timeout": "300ms", "vote_timeout": "100ms",
			"checkpoint_interval": ckptInterval, "log_retention": 2 * ckptInterval}})
	c.waitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 3 * time.Second}
	defer hc.CloseIdleConnections()
	writers := c.inviteWriters(ctx, 4, true)

	c.writeN(ctx, writers, "a", 2*ckptInterval+10)
	c.waitConverged(c.ids(), 20*time.Second)
	nl := c.nodeLayout(wipedNode)
	if err := c.Stop(wipedNode, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	wipeDataDir(t, nl.DataDir)

	// Write on until every live node has pruned: each stable checkpoint
	// prunes, and the last 256 blocks are always kept.
	live := without(c.ids(), wipedNode)
	pruned := func() (bool, string) {
		for _, id := range live {
			v := metricLine(t, hc, c.endpoint(id), "tandem_hotstuff_pruned_height")
			if h, err := strconv.ParseFloat(v, 64); err != nil || h <= 1 {
				return false, fmt.Sprintf("%s: pruned height %q", id, v)
			}
		}
		return true, ""
	}
	deadline := time.Now().Add(150 * time.Second)
	for round := 0; ; round++ {
		c.writeN(ctx, writers, fmt.Sprintf("b%d", round), ckptInterval+10)
		ok, state := pruned()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live nodes did not prune within 150s: %s", state)
		}
	}
	c.waitConverged(live, 20*time.Second)

	if err := c.Start(wipedNode); err != nil {
		t.Fatal(err)
	}
	hash := c.waitConverged(c.ids(), 90*time.Second)
	if v := metricLine(t, hc, c.endpoint(wipedNode), "tandem_hotstuff_state_transfers_total"); v != "1" {
		t.Fatalf("%s made %q starts from a transferred checkpoint, want 1", wipedNode, v)
	}
	t.Logf("%s started from a checkpoint and converged: state %.12s", wipedNode, hash)
	c.writeN(ctx, writers, "c", ckptInterval+10)
	c.waitConverged(c.ids(), 30*time.Second)
	for _, id := range c.ids() {
		if v := metricLine(t, hc, c.endpoint(id), "tandem_checkpoint_divergence_total"); v != "0" {
			t.Errorf("%s reports %s checkpoint divergences", id, v)
		}
	}
}
