package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/smr"
)

func startAutoCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	c := launch(t, devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: "auto",
		Extra: map[string]any{"raft": fastRaft, "view_change_timeout": "400ms", "vote_timeout": "120ms"}})
	c.waitLeader(nil, 30*time.Second)
	c.waitReady(30 * time.Second)
	return c
}

// epochOf asks node id for its epoch.
func (c *cluster) epochOf(ctx context.Context, cl *client.Client, id string) (api.EpochStatus, error) {
	var st api.EpochStatus
	err := cl.AdminJSON(ctx, c.endpoint(id), http.MethodGet, "/v1/admin/mode", nil, &st)
	return st, err
}

// waitEpoch waits until every node in ids runs epoch in mode.
func (c *cluster) waitEpoch(ctx context.Context, cl *client.Client, ids []string, epoch uint64, mode string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		for _, id := range ids {
			st, err := c.epochOf(ctx, cl, id)
			if err != nil || st.Epoch != epoch || st.Mode != mode || st.Switching {
				ok, last = false, fmt.Sprintf("%s: %+v %v", id, st, err)
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("nodes %v not in epoch %d (%s) within %s; last: %s", ids, epoch, mode, timeout, last)
}

// switchMode asks the cluster, as the admin, to start epoch in mode.
func switchMode(ctx context.Context, cl *client.Client, epoch uint64, mode string) (api.SubmitResponse, error) {
	body, _ := json.Marshal(smr.SwitchRequest{Mode: mode, Epoch: epoch, Reason: "e2e: operator switch to " + mode})
	var res api.SubmitResponse
	err := cl.AdminJSON(ctx, "", http.MethodPost, "/v1/admin/mode", body, &res)
	return res, err
}

// TestAutoModeSwitchesBothWays: a 4-process auto cluster starts on Raft
// (epoch 1), an operator switches it to HotStuff (epoch 2) and back to
// Raft (epoch 3). Every write acknowledged in an epoch is read in the
// next ones; the state hash converges after each switch; the hand-over
// certificate of each epoch carries a quorum of distinct signers; stale
// and repeated switch requests are refused and change nothing; a node
// restarted in epoch 3 comes back in epoch 3 with the same state.
func TestAutoModeSwitchesBothWays(t *testing.T) {
	c := startAutoCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cl := c.newClient(c.admin)
	defer cl.Close()

	c.waitEpoch(ctx, cl, c.ids(), 1, "cft", 10*time.Second)
	written := map[string]string{}
	write := func(tag string, n int) {
		t.Helper()
		for i := range n {
			k, v := fmt.Sprintf("%s-%d", tag, i), fmt.Sprintf("value-%s-%d", tag, i)
			if _, err := cl.SetConfig(ctx, k, v); err != nil {
				t.Fatalf("write %s: %v", k, err)
			}
			written[k] = v
		}
	}
	checkAll := func(when string) {
		t.Helper()
		for k, v := range written {
			got, _, err := cl.GetConfig(ctx, k)
			if err != nil || got.Value != v {
				t.Fatalf("%s: read %s = %+v, %v; want %q", when, k, got, err, v)
			}
		}
	}
	write("epoch1", 10)

	// A switch for the wrong epoch or to the running mode is refused.
	if _, err := switchMode(ctx, cl, 5, "bft"); err == nil {
		t.Fatal("a switch to epoch 5 from epoch 1 was accepted")
	}
	if _, err := switchMode(ctx, cl, 2, "cft"); err == nil {
		t.Fatal("a switch to the running mode was accepted")
	}

	start := time.Now()
	if _, err := switchMode(ctx, cl, 2, "bft"); err != nil {
		t.Fatalf("switch to bft: %v", err)
	}
	c.waitEpoch(ctx, cl, c.ids(), 2, "bft", 30*time.Second)
	t.Logf("cft -> bft: every node in epoch 2 after %s", time.Since(start).Round(time.Millisecond))
	st, err := c.epochOf(ctx, cl, "node1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Certificate == nil || len(st.Certificate.Sigs) < 3 || st.Certificate.Statement.Mode != "bft" || st.Certificate.Statement.Epoch != 2 {
		t.Fatalf("epoch 2 certificate: %+v", st.Certificate)
	}
	checkAll("after the switch to bft")
	write("epoch2", 10)
	c.waitConverged(c.ids(), 20*time.Second)
	for _, id := range c.ids() {
		ns, err := c.status(id)
		if err != nil || ns.Mode != "bft" {
			t.Fatalf("%s status in epoch 2: %+v %v", id, ns, err)
		}
	}

	start = time.Now()
	if _, err := switchMode(ctx, cl, 3, "cft"); err != nil {
		t.Fatalf("switch back to cft: %v", err)
	}
	c.waitEpoch(ctx, cl, c.ids(), 3, "cft", 30*time.Second)
	t.Logf("bft -> cft: every node in epoch 3 after %s", time.Since(start).Round(time.Millisecond))
	c.waitLeader(nil, 20*time.Second)
	checkAll("after the switch back to cft")
	write("epoch3", 10)
	hash := c.waitConverged(c.ids(), 20*time.Second)

	// The CLI reports every node in epoch 3 (one JSON object per endpoint).
	show := exec.CommandContext(ctx, binary, "-o", "json", "admin", "--client-config", c.layout.ClientConfigPath, "mode", "show")
	outb, err := show.CombinedOutput()
	if err != nil {
		t.Fatalf("tandem admin mode show: %v\n%s", err, outb)
	}
	var rows []struct {
		Endpoint string           `json:"endpoint"`
		Epoch    *api.EpochStatus `json:"epoch"`
	}
	if err := json.Unmarshal(outb, &rows); err != nil || len(rows) != len(c.ids()) {
		t.Fatalf("admin mode show -o json: %v\n%s", err, outb)
	}
	for _, r := range rows {
		if r.Epoch == nil || r.Epoch.Epoch != 3 || r.Epoch.Mode != "cft" {
			t.Fatalf("admin mode show: %s reports %+v", r.Endpoint, r.Epoch)
		}
	}

	// A restart inside epoch 3 keeps the epoch and the state.
	if err := c.Stop("node2", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	write("node2-down", 5)
	if err := c.Start("node2"); err != nil {
		t.Fatal(err)
	}
	c.waitEpoch(ctx, cl, c.ids(), 3, "cft", 30*time.Second)
	if h := c.waitConverged(c.ids(), 30*time.Second); h == hash {
		t.Fatal("state hash did not move with the writes made while node2 was down")
	}
	checkAll("after node2 restarted")
}
