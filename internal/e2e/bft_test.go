package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// startBFTCluster lays out and starts four `tandem serve` processes in
// consensus_mode bft (a static committee from initial_members) and waits
// until every node is ready: its genesis entry is applied.
func startBFTCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	layout, err := devcluster.Prepare(devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: "bft",
		Extra: map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms"}})
	if err != nil {
		t.Fatal(err)
	}
	var out io.Writer = io.Discard
	if os.Getenv("TANDEM_E2E_LOG") != "" {
		out = os.Stderr
	}
	c := &cluster{Cluster: devcluster.New(layout, binary, out), t: t, layout: layout}
	t.Cleanup(func() { _ = c.StopAll(5 * time.Second) })
	c.tls, err = identity.ClientTLS(layout.CAFile, layout.ClientCertFile, layout.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.admin, err = identity.LoadKeyFile(layout.AdminKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(30 * time.Second)
	return c
}

// TestBFTServesThroughEveryNode: four processes in bft mode commit a write
// sent to each node (every node takes writes; there is no leader to
// forward to), serve linearizable reads through every node that see all of
// them, report the HotStuff view and leader, and reach the same state hash.
func TestBFTServesThroughEveryNode(t *testing.T) {
	c := startBFTCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, n := range c.layout.Nodes {
		cl := c.newClient(c.admin, n.Endpoint())
		res, err := cl.SetConfig(ctx, "written-via-"+n.ID, n.ID)
		if err != nil {
			t.Fatalf("write through %s: %v", n.ID, err)
		}
		if res.Index == 0 || res.Duplicate {
			t.Fatalf("write through %s: unexpected result %+v", n.ID, res)
		}
	}
	for _, reader := range c.layout.Nodes {
		cl := c.newClient(nil, reader.Endpoint())
		for _, writer := range c.layout.Nodes {
			e, _, err := cl.GetConfig(ctx, "written-via-"+writer.ID)
			if err != nil {
				t.Fatalf("read %s through %s: %v", writer.ID, reader.ID, err)
			}
			if e.Value != writer.ID {
				t.Fatalf("read through %s: key of %s = %q", reader.ID, writer.ID, e.Value)
			}
		}
		st, err := c.status(reader.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode != "bft" || st.Term == 0 || st.LeaderID == "" {
			t.Fatalf("%s status: %+v", reader.ID, st)
		}
	}
	c.waitConverged(c.ids(), 10*time.Second)
}

// TestBFTLeaderKillUnderLoad: kill -9 of the process leading the current
// view while clients write concurrently through every node. The survivors
// change view and keep committing; every acknowledged write is present
// exactly once on every survivor, writes with an unknown outcome at most
// once; the survivors reach the same state hash; the killed node,
// restarted, catches up to it.
func TestBFTLeaderKillUnderLoad(t *testing.T) {
	c := startBFTCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	admin := c.newClient(c.admin)

	const writers = 6
	clients := make([]*client.Client, writers)
	for i := range clients {
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.UpdateACL(ctx, smr.FormatKey(k.Public().(ed25519.PublicKey)), smr.PermConfigWrite, smr.EffectAllow); err != nil {
			t.Fatal(err)
		}
		// Each writer starts at a different node; the SDK moves on to the
		// next endpoint when one fails.
		eps := c.layout.Endpoints()
		rot := append(append([]string(nil), eps[i%len(eps):]...), eps[:i%len(eps)]...)
		clients[i] = c.newClient(k, rot...)
	}

	var (
		mu       sync.Mutex
		outcomes []writeOutcome
		stop     atomic.Bool
		afterAck atomic.Int64
		killed   atomic.Bool
		wg       sync.WaitGroup
	)
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; !stop.Load(); j++ {
				key := fmt.Sprintf("w%d-%d", i, j)
				startedAfterKill := killed.Load()
				wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := cl.SetConfig(wctx, key, "v")
				wcancel()
				o := writeOutcome{key: key, ok: err == nil, unknown: client.IsOutcomeUnknown(err)}
				if err != nil && !o.unknown && !client.IsUnavailable(err) {
					t.Errorf("write %s: unexpected definitive error: %v", key, err)
				}
				if o.ok && startedAfterKill {
					afterAck.Add(1)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	st, err := c.status("node1")
	if err != nil {
		t.Fatal(err)
	}
	victim := st.LeaderID
	t.Logf("killing %s, leader of view %d (pid %d)", victim, st.Term, c.Pid(victim))
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	killedAt := time.Now()
	survivors := without(c.ids(), victim)
	deadline := time.Now().Add(30 * time.Second)
	var firstAck time.Duration
	for afterAck.Load() < 20 && time.Now().Before(deadline) {
		if firstAck == 0 && afterAck.Load() > 0 {
			firstAck = time.Since(killedAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if afterAck.Load() < 20 {
		t.Fatalf("only %d writes acknowledged after %s was killed", afterAck.Load(), victim)
	}
	t.Logf("first write acknowledged %s after the kill; %d after it", firstAck.Round(time.Millisecond), afterAck.Load())

	hash := c.waitConverged(survivors, 20*time.Second)
	var acked, unknown int
	for _, id := range survivors {
		reader := c.newClient(nil, c.endpoint(id))
		entries, _, err := reader.ListConfig(ctx, client.Stale())
		if err != nil {
			t.Fatalf("list on %s: %v", id, err)
		}
		present := map[string]int{}
		for _, e := range entries {
			present[e.Key]++
		}
		acked, unknown = 0, 0
		for _, o := range outcomes {
			switch {
			case o.ok:
				acked++
				if present[o.key] != 1 {
					t.Errorf("%s: acknowledged write %s present %d times", id, o.key, present[o.key])
				}
			case o.unknown:
				unknown++
				if present[o.key] > 1 {
					t.Errorf("%s: write %s with unknown outcome present %d times", id, o.key, present[o.key])
				}
			}
		}
	}
	t.Logf("writes: %d acknowledged, %d unknown, %d total", acked, unknown, len(outcomes))

	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	if got := c.waitConverged(c.ids(), 30*time.Second); got != hash {
		t.Fatalf("restarted %s converged to %s, want %s", victim, got, hash)
	}
}
