package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", binary, "github.com/tandem-consensus/tandem/cmd/tandem")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building tandem:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// fastRaft makes elections quick so failover tests stay short.
var fastRaft = map[string]any{
	"heartbeat_timeout":    "300ms",
	"election_timeout":     "300ms",
	"leader_lease_timeout": "150ms",
	"commit_timeout":       "20ms",
}

type cluster struct {
	*devcluster.Cluster
	t      *testing.T
	layout *devcluster.Layout
	tls    *tls.Config
	admin  ed25519.PrivateKey
}

// startCluster lays out and starts n real processes and waits until every
// node reports the same leader.
func startCluster(t *testing.T, n int, extra map[string]any) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	if extra == nil {
		extra = map[string]any{}
	}
	if _, ok := extra["raft"]; !ok {
		extra["raft"] = fastRaft
	}
	c := launch(t, devcluster.Options{Dir: t.TempDir(), Nodes: n, Extra: extra})
	c.waitLeader(nil, 30*time.Second)
	c.waitReady(30 * time.Second)
	return c
}

// launch lays out and starts the processes of opts and returns the
// cluster with a client TLS config and the admin key; StopAll runs at
// cleanup.
func launch(t *testing.T, opts devcluster.Options) *cluster {
	t.Helper()
	layout, err := devcluster.Prepare(opts)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, layout, processLog())
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	return c
}

// processLog is where the processes' output goes: standard error when
// TANDEM_E2E_LOG is set, nowhere otherwise.
func processLog() io.Writer {
	if os.Getenv("TANDEM_E2E_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// newCluster returns the cluster of layout, not started, with a client
// TLS config and the admin key; its processes write to out, and StopAll
// runs at cleanup.
func newCluster(t *testing.T, layout *devcluster.Layout, out io.Writer) *cluster {
	t.Helper()
	c := &cluster{Cluster: devcluster.New(layout, binary, out), t: t, layout: layout}
	t.Cleanup(func() { _ = c.StopAll(5 * time.Second) })
	var err error
	if c.tls, err = identity.ClientTLS(layout.CAFile, layout.ClientCertFile, layout.ClientKeyFile); err != nil {
		t.Fatal(err)
	}
	if c.admin, err = identity.LoadKeyFile(layout.AdminKeyPath); err != nil {
		t.Fatal(err)
	}
	return c
}

// buildByzantine builds the binary with the byzantine behaviours (build
// tag byzantine) and returns its path.
func buildByzantine(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tandem-byzantine")
	build := exec.Command("go", "build", "-tags", "byzantine", "-o", bin, "github.com/tandem-consensus/tandem/cmd/tandem")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building the byzantine binary: %v", err)
	}
	return bin
}

// waitReady waits until every node answers /readyz with 200: a leader is
// known and the genesis entry has been applied.
func (c *cluster) waitReady(timeout time.Duration) {
	c.t.Helper()
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 2 * time.Second}
	defer httpc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for _, n := range c.layout.Nodes {
		for {
			resp, err := httpc.Get(n.Endpoint() + "/readyz")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s not ready within %s (%v)", n.ID, timeout, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// requestTimeout is the request timeout of the tests' SDK clients and
// batchers.
const requestTimeout = 3 * time.Second

// newClient returns an SDK client for the given endpoints (all when nil).
func (c *cluster) newClient(key ed25519.PrivateKey, endpoints ...string) *client.Client {
	c.t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.layout.Endpoints()
	}
	return c.clientWith(c.clientConfig(key, endpoints...))
}

// clientConfig returns the default SDK config signing with key, over
// endpoints (none: the caller sets Endpoints or Committee), with up to 20
// attempts per call.
func (c *cluster) clientConfig(key ed25519.PrivateKey, endpoints ...string) client.Config {
	cfg := client.DefaultConfig()
	cfg.Endpoints = endpoints
	cfg.Key = key
	cfg.Retry.MaxAttempts = 20
	return cfg
}

// clientWith returns an SDK client of cfg with the cluster's TLS and
// requestTimeout, closed when the test ends.
func (c *cluster) clientWith(cfg client.Config) *client.Client {
	c.t.Helper()
	cfg.TLS = c.tls
	cfg.RequestTimeout = requestTimeout
	cl, err := client.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// batcher returns an SDK Batcher for the cluster, closed when the test
// ends (after the clients that use it, which close first).
func (c *cluster) batcher() *client.Batcher {
	b := client.NewBatcher(client.BatcherConfig{TLS: c.tls, RequestTimeout: requestTimeout})
	c.t.Cleanup(func() { _ = b.Close() })
	return b
}

func (c *cluster) endpoint(id string) string {
	for _, n := range c.layout.Nodes {
		if n.ID == id {
			return n.Endpoint()
		}
	}
	c.t.Fatalf("no node %s", id)
	return ""
}

// status polls one node.
func (c *cluster) status(id string) (*client.NodeStatus, error) {
	cl := c.statusClient()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cl.Status(ctx, c.endpoint(id))
}

// bftViewSpread is how far apart the views of live bft nodes may be for
// waitLeader: views advance every few milliseconds under load.
const bftViewSpread = 64

func (c *cluster) statusClient() *client.Client {
	cfg := client.DefaultConfig()
	cfg.Endpoints = c.layout.Endpoints()
	cfg.TLS = c.tls
	cfg.Retry.MaxAttempts = 1
	cl, err := client.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// waitLeader waits until every node in ids (all when nil) names the same
// leader, and returns it. In bft mode, where the leader changes with every
// view (a view lasts milliseconds under load, less than polling four nodes
// takes), it waits until every node is in a view within bftViewSpread of
// the others' and returns the leader of the highest: the nodes are live and
// follow one sequence of views.
func (c *cluster) waitLeader(ids []string, timeout time.Duration) string {
	c.t.Helper()
	if ids == nil {
		ids = c.ids()
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		leader, why := c.agreedLeader(ids)
		if why == "" {
			return leader
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader among %v within %s (last: %s)", ids, timeout, last)
	return ""
}

// agreedLeader polls the nodes in ids once and returns the leader they
// agree on as waitLeader means it, or why there is none.
func (c *cluster) agreedLeader(ids []string) (leader, why string) {
	sts := make([]*client.NodeStatus, len(ids))
	bft := true
	for i, id := range ids {
		st, err := c.status(id)
		if err != nil || st.LeaderID == "" {
			return "", fmt.Sprintf("%s: %+v %v", id, st, err)
		}
		sts[i] = st
		bft = bft && st.Mode == "bft"
	}
	if bft {
		lo, hi := sts[0].View, sts[0].View
		leader = sts[0].LeaderID
		for _, st := range sts[1:] {
			lo = min(lo, st.View)
			if st.View >= hi {
				hi, leader = st.View, st.LeaderID
			}
		}
		if hi-lo > bftViewSpread {
			return "", fmt.Sprintf("views %d..%d", lo, hi)
		}
		return leader, ""
	}
	for i, st := range sts {
		if st.LeaderID != sts[0].LeaderID {
			return "", fmt.Sprintf("%s: %+v", ids[i], st)
		}
	}
	return sts[0].LeaderID, ""
}

// waitConverged waits until the nodes report the same applied index and
// state hash, and returns the hash.
func (c *cluster) waitConverged(ids []string, timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var idx uint64
		hash, same := "", true
		for i, id := range ids {
			st, err := c.status(id)
			if err != nil {
				same, last = false, fmt.Sprintf("%s: %v", id, err)
				break
			}
			if i == 0 {
				idx, hash = st.AppliedIndex, st.StateHash
			} else if st.AppliedIndex != idx || st.StateHash != hash {
				same = false
				last = fmt.Sprintf("%s at %d/%s vs %d/%s", id, st.AppliedIndex, st.StateHash, idx, hash)
				break
			}
		}
		if same {
			return hash
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("nodes %v did not converge within %s: %s", ids, timeout, last)
	return ""
}

func (c *cluster) ids() []string {
	var ids []string
	for _, n := range c.layout.Nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

func without(ids []string, drop string) []string {
	var out []string
	for _, id := range ids {
		if id != drop {
			out = append(out, id)
		}
	}
	return out
}
