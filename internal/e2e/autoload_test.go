package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/linearize"
)

// TestAutoLoadEscalatesAndCalmsDown: four processes in consensus_mode auto
// with auto_deescalate_after 2s; node4, built with -tags byzantine, leads
// Raft and equivocates. Six SDK clients write and read all the while
// (each over every correct node's endpoint, retrying a write with the same
// seq): four put, delete and linearizably read four contended keys, two
// put a fresh key each time. The cluster quarantines node4, escalates to
// HotStuff (epoch 2) and keeps serving; the history so far is
// linearizable (porcupine; an unknown verdict fails) and every write
// acknowledged so far reads back through every correct node. With node4
// quarantined and nothing new seen for 2s, the correct members sign calm
// statements and the cluster switches back to Raft (epoch 3) without
// node4, for the calm reason, under the same load; then the whole history
// is checked the same way. The longest gap without an acknowledged write
// around each switch is logged.
func TestAutoLoadEscalatesAndCalmsDown(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	s := newByzantineSetup(t, byzBinary, "auto",
		map[string]any{"raft": fastRaft, "view_change_timeout": "400ms", "vote_timeout": "120ms", "auto_deescalate_after": "2s"},
		"equivocate", equivocating)
	c, correct, watch := s.c, s.correct, s.watch
	// The correct nodes start first (3 of 4 voters are a Raft quorum) and
	// carry the load for a while; then node4 joins and is made leader.
	s.startCorrect(t)
	c.waitLeader(correct, 30*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	endpoints := s.endpoints()
	admin := c.newClient(c.admin, endpoints...)
	adm := s.admin()
	defer adm.http.CloseIdleConnections()

	const contending, fresh = 4, 2
	sdks := c.linzClients(ctx, contending+fresh, func(i int, key ed25519.PrivateKey) *client.Client {
		k := i % len(endpoints)
		return c.newClient(key, append(slices.Clone(endpoints[k:]), endpoints[:k]...)...)
	})
	load := startAutoLoad(ctx, sdks, contending)
	time.Sleep(2 * time.Second) // load on the correct nodes alone

	s.startByzantine(t)
	c.waitReady(30 * time.Second)
	for attempt := 0; c.waitLeader(nil, 30*time.Second) != byzantineNode && watch.first().IsZero(); attempt++ {
		err := admin.TransferLeader(ctx, byzantineNode)
		if err == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("transfer leadership to %s: %v", byzantineNode, err)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Escalation: node4 quarantined, every correct node in epoch 2 (bft).
	waitQuarantined(ctx, t, c, adm, correct, watch, func(int) bool { time.Sleep(50 * time.Millisecond); return false }, 100*time.Millisecond)
	c.waitEpoch(ctx, admin, correct, 2, "bft", 30*time.Second)
	inBFT := time.Now()
	for _, id := range correct {
		st, err := c.epochOf(ctx, admin, id)
		if err != nil || !strings.HasPrefix(st.Reason, "detector: ") {
			t.Fatalf("%s: epoch 2 %+v (%v): the reason does not name the detector", id, st, err)
		}
	}
	t.Logf("every correct node in epoch 2 (bft) %s after the first equivocation", inBFT.Sub(watch.first()).Round(time.Millisecond))
	load.checkPhase(t, c, correct, "escalation to bft")

	// De-escalation after the calm period, under the same load.
	c.waitEpoch(ctx, admin, correct, 3, "cft", 30*time.Second)
	inCFT := time.Now()
	for _, id := range correct {
		st, err := c.epochOf(ctx, admin, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(st.Reason, "calm for 2s after quarantining "+byzantineNode) {
			t.Fatalf("%s: epoch 3 reason %q does not name the calm period", id, st.Reason)
		}
		if slices.Contains(st.Members, byzantineNode) || len(st.Members) != len(correct) {
			t.Fatalf("%s: epoch 3 members %v, want the correct nodes %v", id, st.Members, correct)
		}
		if st.Certificate == nil || st.Certificate.Statement.Mode != "cft" {
			t.Fatalf("%s: epoch 3 certificate %+v", id, st.Certificate)
		}
	}
	t.Logf("every correct node in epoch 3 (cft) %s after every one was in epoch 2", inCFT.Sub(inBFT).Round(time.Millisecond))
	time.Sleep(3 * time.Second) // load in epoch 3
	load.stop()
	load.checkPhase(t, c, correct, "de-escalation to cft")

	// The write-unavailability window around each switch.
	h := load.rec.History()
	// The calm period is 2s, so the de-escalation begins more than 1s
	// after epoch 2 ran everywhere.
	esc := load.longestGap(h, watch.first(), inBFT.Add(time.Second))
	calm := load.longestGap(h, inBFT.Add(time.Second), inCFT.Add(time.Second))
	t.Logf("write unavailability: escalation %s (longest gap without an acknowledged write from the first equivocation to 1s after epoch 2 ran everywhere); de-escalation %s (from then to 1s after epoch 3 ran everywhere)",
		esc.Round(time.Millisecond), calm.Round(time.Millisecond))
	c.waitConverged(correct, 20*time.Second)
}

// autoLoad is the write and read load of TestAutoLoadEscalatesAndCalmsDown.
type autoLoad struct {
	ctx  context.Context
	rec  *linearize.Recorder
	sdks []*client.Client
	halt atomic.Bool
	wg   sync.WaitGroup
}

// startAutoLoad starts the load: clients below contending put, delete and
// get linzKeys; the others put a fresh key "fresh-<client>-<n>" each time.
func startAutoLoad(ctx context.Context, sdks []*client.Client, contending int) *autoLoad {
	l := &autoLoad{ctx: ctx, rec: linearize.NewRecorder(), sdks: sdks}
	seed := time.Now().UnixNano()
	for i, sdk := range sdks {
		lc := l.rec.Client(i, sdk)
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for j := 0; !l.halt.Load() && ctx.Err() == nil; j++ {
				opCtx, cancel := context.WithTimeout(ctx, 8*time.Second)
				key := linzKeys[rng.IntN(len(linzKeys))]
				switch r := rng.IntN(100); {
				case i >= contending:
					lc.Put(opCtx, fmt.Sprintf("fresh-%d-%d", i, j), fmt.Sprintf("v%d-%d", i, j))
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
	return l
}

func (l *autoLoad) stop() {
	l.halt.Store(true)
	l.wg.Wait()
}

// checkPhase checks the history recorded so far: porcupine over all of it
// (operations still running count as unknown), and every fresh key whose
// put was acknowledged before the read-back began reads back with its
// value through every correct node.
func (l *autoLoad) checkPhase(t *testing.T, c *cluster, correct []string, phase string) {
	t.Helper()
	readFrom := l.rec.Since(time.Now())
	found := map[string]map[string]string{}
	for _, id := range correct {
		cl := c.newClient(c.admin, c.endpoint(id))
		var entries map[string]string
		for attempt := 0; ; attempt++ {
			es, _, err := cl.ListConfig(l.ctx)
			if err == nil {
				entries = map[string]string{}
				for _, e := range es {
					entries[e.Key] = e.Value
				}
				break
			}
			if attempt == 20 || l.ctx.Err() != nil {
				t.Fatalf("%s: read back the config after %s: %v", phase, id, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		found[id] = entries
	}
	h := l.rec.History()
	acked, missing := 0, 0
	for _, op := range h {
		if op.Input.Kind != linearize.KindPut || op.Outcome != linearize.OutcomeOK || !strings.HasPrefix(op.Input.Key, "fresh-") || op.Return >= readFrom {
			continue
		}
		acked++
		for _, id := range correct {
			if got, ok := found[id][op.Input.Key]; !ok || got != op.Input.Value {
				missing++
				t.Errorf("%s: acknowledged write [%s] reads back through %s as %q (present %v)", phase, op, id, got, ok)
			}
		}
	}
	began := time.Now()
	res, err := linearize.Check(h, 30*time.Second)
	t.Logf("%s: %d operations (%s; puts %s; deletes %s; gets %s); porcupine %s over %d in %s; %d acknowledged fresh keys read back through %v, %d missing",
		phase, len(h), h.Counts(0), h.Counts(linearize.KindPut), h.Counts(linearize.KindDelete), h.Counts(linearize.KindGet),
		res.Verdict, res.Checked, time.Since(began).Round(time.Millisecond), acked, correct, missing)
	if err != nil {
		t.Errorf("%s: %v", phase, err)
	}
	if acked == 0 {
		t.Errorf("%s: no fresh write acknowledged", phase)
	}
	if t.Failed() {
		c.linzDump(h, res)
		t.FailNow()
	}
}

// longestGap returns the longest time without an acknowledged write
// (put or delete) that overlaps [from, to]: between two consecutive
// acknowledgements, or from the last one before to to when none follows.
func (l *autoLoad) longestGap(h linearize.History, from, to time.Time) time.Duration {
	var acks []time.Duration
	for _, op := range h {
		if op.Input.Kind != linearize.KindGet && op.Outcome == linearize.OutcomeOK {
			acks = append(acks, op.Return)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i] < acks[j] })
	lo, hi := l.rec.Since(from), l.rec.Since(to)
	var longest time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i] >= lo && acks[i-1] <= hi {
			longest = max(longest, acks[i]-acks[i-1])
		}
	}
	return longest
}
