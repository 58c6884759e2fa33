package e2e

import (
	"context"
	"crypto/ed25519"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// omitting is the log text of a write node4 drops as the Raft leader.
const omitting = "byzantine: omit-requests"

// TestCFTOmittingLeaderEscalates: four processes in cft mode with member
// keys, node4 the byzantine build told to omit-requests and made leader.
// As leader it proposes the writes its own clients send it but never
// proposes nor answers those the other nodes forward to it. Each correct
// follower that forwarded a write sees the log move on past the bound
// without it and signs a selective-omission accusation; with f+1 = 2
// accusers node4's score on every correct node is at the escalate level
// (≥ anomaly_threshold 0.7, < quarantine_threshold 0.9), the threat level
// too, no one is quarantined, and every selective-omission accusation a
// correct node keeps names node4, comes from a correct member and
// verifies against the member keys. In cft mode the escalation is the
// detector's verdict (consensus_mode auto would switch to bft on it). The
// detection latency (node4's first dropped write to the verdict on the
// last correct node, polled) is logged.
func TestCFTOmittingLeaderEscalates(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)

	s := newByzantineSetup(t, byzBinary, "cft", map[string]any{"raft": fastRaft}, "omit-requests", omitting)
	c, correct, watch := s.c, s.correct, s.watch
	s.startCorrect(t)
	s.startByzantine(t)
	c.waitReady(30 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	b := s.run(t)
	defer b.adm.http.CloseIdleConnections()

	// Writers, each with a key of its own allowed to write config, set up
	// through node4 (node4 may lead already, and then drops what correct
	// nodes forward to it; as a follower it forwards like any node). Two
	// write to node4 directly, one through each correct node.
	setup := c.newClient(c.admin, c.endpoint(byzantineNode))
	newWriter := func(endpoint string) *client.Client {
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := setup.UpdateACL(ctx, smr.FormatKey(k.Public().(ed25519.PublicKey)), smr.PermConfigWrite, smr.EffectAllow); err != nil {
			t.Fatalf("allowing a writer: %v", err)
		}
		return c.newClient(k, endpoint)
	}
	direct := []*client.Client{newWriter(c.endpoint(byzantineNode)), newWriter(c.endpoint(byzantineNode))}
	var forwarded []*client.Client
	for _, id := range correct {
		forwarded = append(forwarded, newWriter(c.endpoint(id)))
	}

	// Make node4 lead.
	if c.waitLeader(nil, 30*time.Second) != byzantineNode {
		if err := b.cl.TransferLeader(ctx, byzantineNode); err != nil {
			t.Fatalf("transfer leadership to %s: %v", byzantineNode, err)
		}
	}
	if got := c.waitLeader(nil, 30*time.Second); got != byzantineNode {
		t.Fatalf("leader %s, want %s", got, byzantineNode)
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	var directOK, forwardedOK atomic.Int64
	run := func(cl *client.Client, name string, ok *atomic.Int64) {
		load.Add(1)
		go func() {
			defer load.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				wctx, wcancel := context.WithTimeout(loadCtx, 2*time.Second)
				if _, err := cl.SetConfig(wctx, name+"-"+strconv.Itoa(i), "v"); err == nil {
					ok.Add(1)
				}
				wcancel()
			}
		}()
	}
	for i, cl := range direct {
		run(cl, "direct-"+strconv.Itoa(i), &directOK)
	}
	for i, cl := range forwarded {
		run(cl, "forwarded-"+strconv.Itoa(i), &forwardedOK)
	}
	stopLoadOnce := sync.OnceFunc(func() {
		stopLoad()
		load.Wait()
	})
	defer stopLoadOnce()

	// Poll every correct node until node4's score there is at the escalate
	// level; a quarantine anywhere fails at once.
	at := map[string]time.Time{}
	deadline := time.Now().Add(60 * time.Second)
	for len(at) < len(correct) {
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s only %v reached the verdict (node4 dropped writes: %v; %d direct, %d forwarded writes)",
				at, !watch.first().IsZero(), directOK.Load(), forwardedOK.Load())
		}
		for _, id := range correct {
			if _, ok := at[id]; ok {
				continue
			}
			if q := metricFloat(t, b, id, "tandem_quarantined_members"); q > 0 {
				t.Fatalf("%s quarantined %v members on omission", id, q)
			}
			if score := metricFloat(t, b, id, `tandem_detector_score{member="node4"}`); score >= 0.7 {
				at[id] = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopLoadOnce()
	first := watch.first()
	if first.IsZero() {
		t.Fatalf("node4 reached a verdict but never logged %q", omitting)
	}
	last := latest(at)
	t.Logf("cft omit-requests: detection latency %s from node4's first dropped write (%s) to escalate on the last correct node; per node: %v; %d direct writes, %d forwarded writes answered",
		last.Sub(first).Round(time.Millisecond), first.Format(time.RFC3339Nano), at, directOK.Load(), forwardedOK.Load())
	if forwardedOK.Load() != 0 {
		t.Logf("%d forwarded writes were answered (before node4 led, or through a correct leader)", forwardedOK.Load())
	}

	// The verdict on every correct node: escalate, not quarantine, on
	// selective-omission accusations of node4 by f+1 correct members.
	for _, id := range correct {
		if q := metricFloat(t, b, id, "tandem_quarantined_members"); q != 0 {
			t.Fatalf("%s: tandem_quarantined_members is %v, want 0", id, q)
		}
		b.requireEscalated(ctx, t, id, evidence.MetricSelectiveOmission)
	}
}
