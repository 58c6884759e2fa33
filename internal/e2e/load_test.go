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

type writeOutcome struct {
	key     string
	ok      bool
	unknown bool
}

// inviteWriters creates n clients with fresh keys holding config.write.
// With rotate, client i starts at endpoint i (mod the node count).
func (c *cluster) inviteWriters(ctx context.Context, n int, rotate bool) []*client.Client {
	c.t.Helper()
	admin := c.newClient(c.admin)
	clients := make([]*client.Client, n)
	for i := range clients {
		eps := c.layout.Endpoints()
		if rotate {
			eps = append(append([]string(nil), eps[i%len(eps):]...), eps[:i%len(eps)]...)
		}
		clients[i] = c.allowWriter(ctx, admin, eps...)
	}
	return clients
}

// allowWriter has grant allow a fresh key config.write and returns a
// client of that key for eps (every endpoint when none).
func (c *cluster) allowWriter(ctx context.Context, grant *client.Client, eps ...string) *client.Client {
	c.t.Helper()
	return c.newClient(c.allowedKey(ctx, grant), eps...)
}

// allowedKey has grant allow a fresh key config.write and returns the key.
func (c *cluster) allowedKey(ctx context.Context, grant *client.Client) ed25519.PrivateKey {
	c.t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := grant.UpdateACL(ctx, smr.FormatKey(k.Public().(ed25519.PublicKey)), smr.PermConfigWrite, smr.EffectAllow); err != nil {
		c.t.Fatalf("allowing a writer: %v", err)
	}
	return k
}

// bgWriters is one goroutine per client writing config keys back to back
// until stop.
type bgWriters struct {
	ok, failed atomic.Int64
	lastOK     atomic.Int64 // unix nanoseconds of the last acknowledged write
	lastErr    atomic.Value // string: the last failure's error

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWriters starts one writer per client: client i writes the keys
// prefix<i>-<j>, each write within timeout, pausing pause after each.
// Failures after stop are not counted.
func startWriters(ctx context.Context, clients []*client.Client, prefix string, timeout, pause time.Duration) *bgWriters {
	return startWritersAcked(ctx, clients, prefix, timeout, pause, nil)
}

// startWritersAcked is startWriters that also hands each acknowledged
// write, its key and result, to onAck (nil: nothing).
func startWritersAcked(ctx context.Context, clients []*client.Client, prefix string, timeout, pause time.Duration, onAck func(key string, res smr.Result)) *bgWriters {
	ctx, cancel := context.WithCancel(ctx)
	w := &bgWriters{cancel: cancel}
	for i, cl := range clients {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for j := 0; ctx.Err() == nil; j++ {
				key := fmt.Sprintf("%s%d-%d", prefix, i, j)
				wctx, wcancel := context.WithTimeout(ctx, timeout)
				res, err := cl.SetConfig(wctx, key, "v")
				wcancel()
				if err == nil {
					w.ok.Add(1)
					w.lastOK.Store(time.Now().UnixNano())
					if onAck != nil {
						onAck(key, res)
					}
				} else if ctx.Err() == nil {
					w.failed.Add(1)
					w.lastErr.Store(err.Error())
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return w
}

// stop ends the writers and waits for them; it may be called again.
func (w *bgWriters) stop() {
	w.cancel()
	w.wg.Wait()
}

// writeLoad runs one goroutine per client writing unique keys back to back
// and records every outcome. A definitive error other than "unavailable"
// fails the test: under crash faults writes either succeed, are reported
// unknown, or were never proposed.
type writeLoad struct {
	mu       sync.Mutex
	outcomes []writeOutcome
	stop     atomic.Bool
	fault    atomic.Bool
	afterAck atomic.Int64 // acks of writes started after markFault
	wg       sync.WaitGroup
}

func startWriteLoad(t *testing.T, ctx context.Context, clients []*client.Client) *writeLoad {
	l := &writeLoad{}
	for i, cl := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for j := 0; !l.stop.Load(); j++ {
				key := fmt.Sprintf("w%d-%d", i, j)
				after := l.fault.Load()
				wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := cl.SetConfig(wctx, key, "v")
				cancel()
				o := writeOutcome{key: key, ok: err == nil, unknown: client.IsOutcomeUnknown(err)}
				if err != nil && !o.unknown && !client.IsUnavailable(err) {
					t.Errorf("write %s: unexpected definitive error: %v", key, err)
				}
				if o.ok && after {
					l.afterAck.Add(1)
				}
				l.mu.Lock()
				l.outcomes = append(l.outcomes, o)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// markFault notes that the fault was injected: later acks are counted.
func (l *writeLoad) markFault() { l.fault.Store(true) }

// finish stops the writers and returns every outcome.
func (l *writeLoad) finish() []writeOutcome {
	l.stop.Store(true)
	l.wg.Wait()
	return l.outcomes
}

// checkOutcomes reads every survivor's config (stale, after convergence)
// and checks that each acknowledged write is present exactly once and each
// unknown one at most once. It returns the counts of the last survivor.
func (c *cluster) checkOutcomes(ctx context.Context, survivors []string, outcomes []writeOutcome) (acked, unknown int) {
	c.t.Helper()
	for _, id := range survivors {
		reader := c.newClient(nil, c.endpoint(id))
		entries, _, err := reader.ListConfig(ctx, client.Stale())
		if err != nil {
			c.t.Fatalf("list on %s: %v", id, err)
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
					c.t.Errorf("%s: acknowledged write %s present %d times", id, o.key, present[o.key])
				}
			case o.unknown:
				unknown++
				if present[o.key] > 1 {
					c.t.Errorf("%s: write %s with unknown outcome present %d times", id, o.key, present[o.key])
				}
			}
		}
	}
	return acked, unknown
}

// writeAndReadThroughEveryNode writes one key through each node and then
// reads every key through every node with linearizable reads: each read
// must see every acknowledged write, whichever node serves it.
func (c *cluster) writeAndReadThroughEveryNode(ctx context.Context) {
	c.t.Helper()
	for _, n := range c.layout.Nodes {
		cl := c.newClient(c.admin, n.Endpoint())
		res, err := cl.SetConfig(ctx, "written-via-"+n.ID, n.ID)
		if err != nil {
			c.t.Fatalf("write through %s: %v", n.ID, err)
		}
		if res.Index == 0 || res.Duplicate {
			c.t.Fatalf("write through %s: unexpected result %+v", n.ID, res)
		}
	}
	for _, reader := range c.layout.Nodes {
		cl := c.newClient(nil, reader.Endpoint())
		for _, writer := range c.layout.Nodes {
			e, _, err := cl.GetConfig(ctx, "written-via-"+writer.ID)
			if err != nil {
				c.t.Fatalf("read %s through %s: %v", writer.ID, reader.ID, err)
			}
			if e.Value != writer.ID {
				c.t.Fatalf("read through %s: key of %s = %q", reader.ID, writer.ID, e.Value)
			}
		}
	}
}
