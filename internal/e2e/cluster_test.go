package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// TestClusterServesThroughAnyNode: a 4-node cluster forms, elects a leader,
// accepts a write through every node (followers forward to the leader), and
// every node answers linearizable reads that see all of them.
func TestClusterServesThroughAnyNode(t *testing.T) {
	c := startCluster(t, 4, nil)
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
			// Linearizable read: it must see every acknowledged write,
			// whichever node it is served by.
			e, _, err := cl.GetConfig(ctx, "written-via-"+writer.ID)
			if err != nil {
				t.Fatalf("read %s through %s: %v", writer.ID, reader.ID, err)
			}
			if e.Value != writer.ID {
				t.Fatalf("read through %s: key of %s = %q", reader.ID, writer.ID, e.Value)
			}
		}
	}
	c.waitConverged(c.ids(), 10*time.Second)
}

type writeOutcome struct {
	key     string
	ok      bool
	unknown bool
}

// TestLeaderKillUnderLoad: kill -9 of the leader process while clients
// write concurrently. A new leader takes over; every acknowledged write is
// present on every surviving node (by state hash and by reading each key);
// writes whose outcome was unknown are present once or absent; the killed
// node, restarted, catches up to the same state hash.
func TestLeaderKillUnderLoad(t *testing.T) {
	c := startCluster(t, 3, nil)
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
		clients[i] = c.newClient(k)
	}

	var (
		mu       sync.Mutex
		outcomes []writeOutcome
		stop     atomic.Bool
		afterAck atomic.Int64 // acks of writes started after the kill
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
	old := c.waitLeader(nil, 10*time.Second)
	t.Logf("killing leader %s (pid %d)", old, c.Pid(old))
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	survivors := without(c.ids(), old)
	deadline := time.Now().Add(20 * time.Second)
	for afterAck.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if afterAck.Load() < 20 {
		t.Fatalf("only %d writes acknowledged after the leader was killed", afterAck.Load())
	}
	newLeader := c.waitLeader(survivors, 10*time.Second)
	if newLeader == old {
		t.Fatalf("leader is still %s after it was killed", old)
	}

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
	t.Logf("writes: %d acknowledged, %d unknown, %d total; new leader %s", acked, unknown, len(outcomes), newLeader)

	if err := c.Start(old); err != nil {
		t.Fatal(err)
	}
	if got := c.waitConverged(c.ids(), 30*time.Second); got != hash {
		t.Fatalf("restarted %s converged to %s, want %s", old, got, hash)
	}
}
