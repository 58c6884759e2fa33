package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
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
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	// One writer through each correct node for the whole test, each with
	// a key of its own allowed to write config.
	setup := c.newClient(c.admin, s.endpoints()...)
	var writers []*client.Client
	for _, id := range correct {
		writers = append(writers, c.allowWriter(ctx, setup, c.endpoint(id)))
	}
	load := startWriters(ctx, writers, "w", 3*time.Second, 0)
	defer load.stop()

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

	at := b.waitEscalated(t, "election disruption", keepFollowing, func() string {
		return fmt.Sprintf("node4 disrupted: %v; %d writes committed, %d failed", !watch.first().IsZero(), load.ok.Load(), load.failed.Load())
	})
	first := watch.first()
	if first.IsZero() {
		t.Fatalf("node4 reached a verdict but never logged %q", disrupting)
	}
	last := latest(at)
	before := load.ok.Load()
	t.Logf("cft disrupt-elections: detection latency %s from node4's first disruptive election (%s) to escalate on the last correct node; per node: %v; %d writes committed, %d failed (last error: %v); leadership moved away from node4 %d times",
		last.Sub(first).Round(time.Millisecond), first.Format(time.RFC3339Nano), at, before, load.failed.Load(), load.lastErr.Load(), transfers)

	// Writes still commit while node4 keeps disrupting.
	waitUntil := time.Now().Add(30 * time.Second)
	for load.ok.Load() < before+10 {
		if time.Now().After(waitUntil) {
			t.Fatalf("only %d writes committed in 30 s after the verdict", load.ok.Load()-before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	load.stop()

	for _, id := range correct {
		b.requireEscalated(ctx, t, id, evidence.MetricLogConflicts)
	}
}
