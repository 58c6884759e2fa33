package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
)

// ckptInterval is checkpoint_interval in the checkpoint test: small, so a
// few hundred writes cross several checkpoints.
const ckptInterval = 50

// tamperingNode serves tampered checkpoint snapshots; it is the first peer
// the wiped node asks.
const tamperingNode = "node1"

// wipedNode loses its data directory.
const wipedNode = "node4"

// TestCheckpointsAndStateTransferBFT: four processes in bft mode with
// checkpoint_interval 50. Writes past several intervals make every node
// report the same stable checkpoint, signed by a quorum. node4 is stopped,
// its data directory wiped (all but its node key), the others move on to
// a newer checkpoint without it, and node4 restarted reaches the same
// state hash and the same stable checkpoint. node1 runs a build that
// serves tampered snapshots: node4 refuses node1's (counted by reason)
// and takes node2's.
func TestCheckpointsAndStateTransferBFT(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	layout, err := devcluster.Prepare(devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: "bft",
		Extra: map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms",
			"checkpoint_interval": ckptInterval, "log_retention": 2 * ckptInterval}})
	if err != nil {
		t.Fatal(err)
	}
	out := processLog()
	c := newCluster(t, layout, out)
	t.Setenv("TANDEM_BYZANTINE", "tamper-checkpoint")
	byz := devcluster.New(layout, byzBinary, out)
	t.Cleanup(func() { _ = byz.StopAll(5 * time.Second) })
	for _, id := range without(c.ids(), tamperingNode) {
		if err := c.Start(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := byz.Start(tamperingNode); err != nil {
		t.Fatal(err)
	}
	c.waitReady(30 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 3 * time.Second}
	defer hc.CloseIdleConnections()
	writers := c.inviteWriters(ctx, 4, true)

	// Past four checkpoints: every node reports the same stable one.
	c.writeN(ctx, writers, "a", 4*ckptInterval+10)
	c.waitConverged(c.ids(), 20*time.Second)
	first := c.waitSameCheckpoint(hc, c.ids(), 4*ckptInterval, 30*time.Second)
	t.Logf("stable checkpoint on every node: index %d, state %.12s, signers %v", first.Index, first.StateHash, first.Signers)

	// Stop node4 and wipe its data directory but its node key.
	nl := c.nodeLayout(wipedNode)
	if err := c.Stop(wipedNode, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	wipeDataDir(t, nl.DataDir)

	// The others go on to a newer checkpoint without it (3 of 4 are a
	// quorum).
	live := without(c.ids(), wipedNode)
	c.writeN(ctx, writers, "b", ckptInterval+10)
	second := c.waitSameCheckpoint(hc, live, first.Index+ckptInterval, 30*time.Second)
	if err := c.Start(wipedNode); err != nil {
		t.Fatal(err)
	}
	hash := c.waitConverged(c.ids(), 60*time.Second)
	got := c.waitSameCheckpoint(hc, c.ids(), second.Index, 30*time.Second)
	if got.Index < second.Index {
		t.Fatalf("node4's checkpoint %d is older than the others' %d", got.Index, second.Index)
	}
	t.Logf("node4 recovered: state %.12s, stable checkpoint %d", hash, got.Index)

	rejected := metricLine(t, hc, c.endpoint(wipedNode), `tandem_checkpoint_transfer_rejected_total{reason="snapshot fails its checks"}`)
	if n, err := strconv.ParseFloat(rejected, 64); err != nil || n < 1 {
		t.Fatalf("node4 refused %q tampered checkpoints from %s, want at least one", rejected, tamperingNode)
	}
	for _, id := range without(c.ids(), tamperingNode) {
		if v := metricLine(t, hc, c.endpoint(id), "tandem_checkpoint_divergence_total"); v != "0" {
			t.Errorf("%s reports %s checkpoint divergences", id, v)
		}
	}
}

// writeN writes n config entries spread over the writers, concurrently.
func (c *cluster) writeN(ctx context.Context, writers []*client.Client, tag string, n int) {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(writers))
	for w, cl := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(writers) {
				if _, err := cl.SetConfig(ctx, fmt.Sprintf("%s-%d", tag, i), strconv.Itoa(i)); err != nil {
					errs <- fmt.Errorf("write %s-%d: %w", tag, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Fatal(err)
	}
}

// checkpointOf returns the node's last stable checkpoint (nil for none).
func (c *cluster) checkpointOf(hc *http.Client, id string) (*api.CheckpointStatus, error) {
	resp, err := hc.Get(c.endpoint(id) + "/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st api.NodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return st.Checkpoint, nil
}

// waitSameCheckpoint waits until every node of ids reports the same
// stable checkpoint, at index minIndex or above and signed by at least a
// quorum (3 of 4), and returns it.
func (c *cluster) waitSameCheckpoint(hc *http.Client, ids []string, minIndex uint64, timeout time.Duration) *api.CheckpointStatus {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		var first *api.CheckpointStatus
		same := true
		for _, id := range ids {
			cp, err := c.checkpointOf(hc, id)
			switch {
			case err != nil:
				same, last = false, fmt.Sprintf("%s: %v", id, err)
			case cp == nil || cp.Index < minIndex:
				same, last = false, fmt.Sprintf("%s: checkpoint %+v, want index >= %d", id, cp, minIndex)
			case len(cp.Signers) < 3 || cp.Form != "quorum":
				c.t.Fatalf("%s: stable checkpoint %+v is not a quorum certificate", id, cp)
			case first == nil:
				first = cp
			case cp.Index != first.Index || cp.StateHash != first.StateHash || cp.Epoch != first.Epoch:
				same, last = false, fmt.Sprintf("%s: %d/%.12s vs %d/%.12s", id, cp.Index, cp.StateHash, first.Index, first.StateHash)
			}
			if !same {
				break
			}
		}
		if same {
			return first
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("nodes %v did not report the same stable checkpoint within %s: %s", ids, timeout, last)
	return nil
}

func (c *cluster) nodeLayout(id string) devcluster.NodeLayout {
	for _, n := range c.layout.Nodes {
		if n.ID == id {
			return n
		}
	}
	c.t.Fatalf("no node %s", id)
	return devcluster.NodeLayout{}
}

// wipeDataDir deletes everything in dir but the node key, which names the
// member in the committee.
func wipeDataDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	wiped := 0
	for _, e := range entries {
		if e.Name() == identity.NodeKeyFileName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
		wiped++
	}
	if wiped == 0 {
		t.Fatalf("nothing to wipe in %s", dir)
	}
}
