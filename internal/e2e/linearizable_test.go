package e2e

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/linearize"
)

var longRun = flag.Duration("tandem.long", 0,
	"run the linearizability tests under load for this long, one kill/restart cycle per 10s, instead of a single 10s cycle")

// linzCycle is one fault cycle: load, SIGKILL a node after a third of it,
// restart it after two thirds, load to the end.
const linzCycle = 10 * time.Second

// linzKeys are the config keys the load works on: few, so that clients
// contend on them.
var linzKeys = []string{"lin-a", "lin-b", "lin-c", "lin-d"}

// TestLinearizableCFT: seven SDK clients (the odd ones batching their
// writes through one client.Batcher) put, delete and linearizably read
// four config keys of a 3-node Raft cluster while the leader is killed with
// SIGKILL and restarted. The whole client history is linearizable
// (porcupine; a timeout fails), and no acknowledged write is missing.
func TestLinearizableCFT(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), linzBudget())
	defer cancel()
	eps := c.layout.Endpoints()
	batcher := c.batcher()
	sdks := c.linzClients(ctx, 7, func(i int, key ed25519.PrivateKey) *client.Client {
		// Each client starts at a different node; followers forward. The
		// odd ones send their writes in shared batches.
		cfg := c.clientConfig(key, append(slices.Clone(eps[i%len(eps):]), eps[:i%len(eps)]...)...)
		if i%2 == 1 {
			cfg.Batcher = batcher
		}
		return c.clientWith(cfg)
	})
	c.runLinearizable(ctx, sdks, func(live []string) string { return c.waitLeader(live, 15*time.Second) })
	requireBatched(t, batcher)
}

// requireBatched fails the test when no write went through b.
func requireBatched(t *testing.T, b *client.Batcher) {
	t.Helper()
	st := b.Stats()
	if st.Writes == 0 {
		t.Fatal("no write went through the batcher")
	}
	t.Logf("batcher: %d writes in %d batches", st.Writes, st.Batches)
}

// TestLinearizableBFT: seven clients configured with the committee (writes
// accepted on f+1 matching signed replies, reads ordered; the odd ones
// batched through one client.Batcher) run the same load
// on a 4-node bft cluster while the replica leading the current view is
// killed with SIGKILL and restarted. The history is linearizable and no
// acknowledged write is missing.
func TestLinearizableBFT(t *testing.T) {
	c := startBFTCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), linzBudget())
	defer cancel()
	committee, err := c.layout.Committee()
	if err != nil {
		t.Fatal(err)
	}
	batcher := c.batcher()
	sdks := c.linzClients(ctx, 7, func(i int, key ed25519.PrivateKey) *client.Client {
		cfg := c.clientConfig(key)
		cfg.Committee = committee
		cfg.Retry.MaxAttempts = 10
		if i%2 == 1 {
			// The odd clients' writes travel in shared batches, whose
			// replies each replica signs once.
			cfg.Batcher = batcher
		}
		return c.clientWith(cfg)
	})
	c.runLinearizable(ctx, sdks, func(live []string) string {
		// The view's leader as a live replica reports it; any live one
		// when that leader is not among them.
		for _, id := range live {
			if st, err := c.status(id); err == nil && slices.Contains(live, st.LeaderID) {
				return st.LeaderID
			}
		}
		return live[len(live)-1]
	})
	requireBatched(t, batcher)
}

// linzBudget bounds a whole test: the load, the in-flight operations at its
// end, the final reads and the check.
func linzBudget() time.Duration {
	return max(*longRun, linzCycle) + 40*time.Second
}

// linzClients invites n fresh keys with config.write and returns the SDK
// clients newSDK builds for them (client i gets key i).
func (c *cluster) linzClients(ctx context.Context, n int, newSDK func(i int, key ed25519.PrivateKey) *client.Client) []*client.Client {
	c.t.Helper()
	admin := c.newClient(c.admin)
	out := make([]*client.Client, n)
	for i := range out {
		out[i] = newSDK(i, c.allowedKey(ctx, admin))
	}
	return out
}

// runLinearizable runs the random load of sdks on linzKeys for one fault
// cycle (or -tandem.long), killing the node victim picks among the live ones
// and restarting it each cycle, then reads every key, checks the recorded
// history with porcupine and checks that no acknowledged write is missing.
// On a failed check it writes the history's visualization to a directory
// named in the log.
func (c *cluster) runLinearizable(ctx context.Context, sdks []*client.Client, victim func(live []string) string) {
	t := c.t
	duration := linzCycle
	if *longRun > 0 {
		duration = *longRun
	}
	seed := time.Now().UnixNano()
	t.Logf("load: %d clients, keys %v, %s, seed %d", len(sdks), linzKeys, duration, seed)

	rec := linearize.NewRecorder()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i, sdk := range sdks {
		lc := rec.Client(i, sdk)
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; !stop.Load() && ctx.Err() == nil; j++ {
				key := linzKeys[rng.IntN(len(linzKeys))]
				opCtx, cancel := context.WithTimeout(ctx, 8*time.Second)
				switch r := rng.IntN(100); {
				case r < 40:
					lc.Put(opCtx, key, fmt.Sprintf("c%d-%d", i, j))
				case r < 55:
					lc.Delete(opCtx, key)
				default:
					lc.Get(opCtx, key)
				}
				cancel()
			}
		}()
	}

	var firstKill time.Duration
	end := time.Now().Add(duration)
	for cycle := 1; time.Now().Before(end); cycle++ {
		start := time.Now()
		time.Sleep(linzCycle / 3)
		v := victim(c.ids())
		t.Logf("cycle %d: SIGKILL %s (pid %d)", cycle, v, c.Pid(v))
		if err := c.Kill(v); err != nil {
			t.Fatal(err)
		}
		if firstKill == 0 {
			firstKill = rec.Since(time.Now())
		}
		time.Sleep(time.Until(start.Add(2 * linzCycle / 3)))
		if err := c.Start(v); err != nil {
			t.Fatal(err)
		}
		c.waitLeader(nil, 20*time.Second)
		t.Logf("cycle %d: %s restarted and follows the leader", cycle, v)
		time.Sleep(time.Until(start.Add(linzCycle)))
	}
	stop.Store(true)
	wg.Wait()

	final := c.linzFinalReads(ctx, rec.Client(len(sdks), sdks[0]))
	h := rec.History()
	afterKill := 0
	for _, op := range h {
		if op.Outcome == linearize.OutcomeOK && op.Call > firstKill {
			afterKill++
		}
	}
	t.Logf("operations: %d (%s); puts %s; deletes %s; gets %s; %d ok ones invoked after the first kill",
		len(h), h.Counts(0), h.Counts(linearize.KindPut), h.Counts(linearize.KindDelete), h.Counts(linearize.KindGet), afterKill)
	if n := h.Counts(linearize.KindPut).OK; n < 20 {
		t.Errorf("only %d puts acknowledged", n)
	}
	if n := h.Counts(linearize.KindGet).OK; n < 20 {
		t.Errorf("only %d linearizable reads answered", n)
	}
	if afterKill < 10 {
		t.Errorf("only %d operations completed after the first kill", afterKill)
	}

	began := time.Now()
	res, err := linearize.Check(h, 30*time.Second)
	t.Logf("porcupine: %s over %d operations in %s", res.Verdict, res.Checked, time.Since(began).Round(time.Millisecond))
	if err != nil {
		t.Error(err)
	}
	if err := linearize.CheckAcknowledged(h, final); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		c.linzDump(h, res)
	}
}

// linzFinalReads reads every key linearizably once the load has stopped,
// retrying until each read gets a definitive answer.
func (c *cluster) linzFinalReads(ctx context.Context, reader *linearize.Client) map[string]linearize.Output {
	c.t.Helper()
	final := map[string]linearize.Output{}
	for _, key := range linzKeys {
		for {
			op := reader.Get(ctx, key)
			if op.Outcome == linearize.OutcomeOK {
				final[key] = op.Output
				break
			}
			if ctx.Err() != nil {
				c.t.Fatalf("final read of %s: %s", key, op.Err)
			}
		}
	}
	return final
}

// linzDump writes the history, as text and as porcupine's visualization,
// to a directory that outlives the test, and logs where.
func (c *cluster) linzDump(h linearize.History, res linearize.Result) {
	dir, err := os.MkdirTemp("", "tandem-linearizable-")
	if err != nil {
		c.t.Logf("keep history: %v", err)
		return
	}
	var text []byte
	for _, op := range h {
		text = fmt.Appendf(text, "%s\n", op)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.txt"), text, 0o600); err != nil {
		c.t.Logf("keep history: %v", err)
	}
	html := filepath.Join(dir, "history.html")
	if err := res.WriteHTML(html); err != nil {
		c.t.Logf("keep history: %v", err)
		return
	}
	c.t.Logf("history kept in %s (history.txt, history.html)", dir)
}
