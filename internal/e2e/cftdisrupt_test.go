package e2e

import (
	"context"
	"crypto/ed25519"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// disrupting is the log text of node4's disruptive elections.
const disrupting = "byzantine: disrupt-elections"

// TestCFTDisruptiveCandidateEscalates: four processes in cft mode with
// member keys, node4 the byzantine build told to disrupt-elections: it
// campaigns without pre-vote, and every election timeout while it follows
// a live leader it asks the others for real votes of ever higher terms.
// The RPC inspector of every correct member sees each such vote arrive
// while it leads or has heard from its leader within the election
// timeout; above disruptive_elections_per_hour (10, the default) in an
// hour each signs a log-conflicts accusation, so with f+1 = 2 accusers
// node4's score on every correct node is at the escalate level (≥
// anomaly_threshold 0.7, < quarantine_threshold 0.9), the threat level
// too, no one is quarantined, and every log-conflicts accusation a correct
// node keeps names node4, comes from a correct member and verifies. Writes
// through the correct nodes keep committing. The detection latency
// (node4's first disruptive election to the verdict on the last correct
// node, polled) is logged. Whenever node4 leads (it disrupts only while
// it follows), the test moves leadership to a correct node.
func TestCFTDisruptiveCandidateEscalates(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)

	s := newByzantineSetup(t, byzBinary, "cft", map[string]any{"raft": fastRaft}, "disrupt-elections", disrupting)
	c, correct, watch := s.c, s.correct, s.watch
	s.startCorrect(t)
	s.startByzantine(t)
	c.waitReady(30 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	b := s.run(t)
	defer b.adm.http.CloseIdleConnections()

	// One writer through each correct node for the whole test, each with
	// a key of its own allowed to write config.
	setup := c.newClient(c.admin, s.endpoints()...)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	for i, id := range correct {
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := setup.UpdateACL(ctx, smr.FormatKey(k.Public().(ed25519.PublicKey)), smr.PermConfigWrite, smr.EffectAllow); err != nil {
			t.Fatalf("allowing a writer: %v", err)
		}
		cl := c.newClient(k, c.endpoint(id))
		load.Add(1)
		go func() {
			defer load.Done()
			for j := 0; loadCtx.Err() == nil; j++ {
				wctx, wcancel := context.WithTimeout(loadCtx, 3*time.Second)
				if _, err := cl.SetConfig(wctx, "w"+strconv.Itoa(i)+"-"+strconv.Itoa(j), "v"); err == nil {
					ok.Add(1)
				} else if loadCtx.Err() == nil {
					failed.Add(1)
					lastErr.Store(err.Error())
				}
				wcancel()
			}
		}()
	}
	stopLoadOnce := sync.OnceFunc(func() {
		stopLoad()
		load.Wait()
	})
	defer stopLoadOnce()

	// node4 disrupts only while it follows: whenever it leads (elected at
	// the start, or after one of its own elections without pre-vote), hand
	// leadership to a correct node.
	var moved time.Time
	transfers := 0
	toNode4 := c.newClient(c.admin, c.endpoint(byzantineNode)) // a transfer is asked of the leader
	keepFollowing := func() {
		st, err := c.status(correct[0])
		if err != nil || st.LeaderID != byzantineNode || time.Since(moved) < 2*time.Second {
			return
		}
		moved = time.Now()
		if err := toNode4.TransferLeader(ctx, correct[0]); err != nil {
			t.Logf("moving leadership away from %s: %v", byzantineNode, err)
			return
		}
		transfers++
	}

	at := map[string]time.Time{}
	deadline := time.Now().Add(60 * time.Second)
	for len(at) < len(correct) {
		keepFollowing()
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s only %v reached the verdict (node4 disrupted: %v; %d writes committed, %d failed)",
				at, !watch.first().IsZero(), ok.Load(), failed.Load())
		}
		for _, id := range correct {
			if _, done := at[id]; done {
				continue
			}
			if q := metricFloat(t, b, id, "tandem_quarantined_members"); q > 0 {
				t.Fatalf("%s quarantined %v members on election disruption", id, q)
			}
			if score := metricFloat(t, b, id, `tandem_detector_score{member="node4"}`); score >= 0.7 {
				at[id] = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	first := watch.first()
	if first.IsZero() {
		t.Fatalf("node4 reached a verdict but never logged %q", disrupting)
	}
	last := latest(at)
	before := ok.Load()
	t.Logf("cft disrupt-elections: detection latency %s from node4's first disruptive election (%s) to escalate on the last correct node; per node: %v; %d writes committed, %d failed (last error: %v); leadership moved away from node4 %d times",
		last.Sub(first).Round(time.Millisecond), first.Format(time.RFC3339Nano), at, before, failed.Load(), lastErr.Load(), transfers)

	// Writes still commit while node4 keeps disrupting.
	waitUntil := time.Now().Add(30 * time.Second)
	for ok.Load() < before+10 {
		if time.Now().After(waitUntil) {
			t.Fatalf("only %d writes committed in 30 s after the verdict", ok.Load()-before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopLoadOnce()

	for _, id := range correct {
		if q := metricFloat(t, b, id, "tandem_quarantined_members"); q != 0 {
			t.Fatalf("%s: tandem_quarantined_members is %v, want 0", id, q)
		}
		b.requireEscalated(ctx, t, id, evidence.MetricLogConflicts)
	}
}
