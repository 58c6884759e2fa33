package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
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
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	direct, forwarded := omittingLeaderWriters(ctx, t, c, b)

	directLoad := startWriters(ctx, direct, "direct-", 2*time.Second, 0)
	defer directLoad.stop()
	forwardedLoad := startWriters(ctx, forwarded, "forwarded-", 2*time.Second, 0)
	defer forwardedLoad.stop()
	directOK, forwardedOK := &directLoad.ok, &forwardedLoad.ok

	// Poll every correct node until node4's score there is at the escalate
	// level; a quarantine anywhere fails at once.
	at := b.waitEscalated(t, "omission", nil, func() string {
		return fmt.Sprintf("node4 dropped writes: %v; %d direct, %d forwarded writes", !watch.first().IsZero(), directOK.Load(), forwardedOK.Load())
	})
	directLoad.stop()
	forwardedLoad.stop()
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
		b.requireEscalated(ctx, t, id, evidence.MetricSelectiveOmission)
	}
}

// omittingLeaderWriters makes node4 the Raft leader and returns writers,
// each with a key of its own allowed to write config, set up through
// node4 (node4 may lead already, and then drops what correct nodes
// forward to it; as a follower it forwards like any node): two that write
// to node4 directly, and one through each correct node.
func omittingLeaderWriters(ctx context.Context, t *testing.T, c *cluster, b *byzantineRun) (direct, forwarded []*client.Client) {
	t.Helper()
	setup := c.newClient(c.admin, c.endpoint(byzantineNode))
	direct = []*client.Client{c.allowWriter(ctx, setup, c.endpoint(byzantineNode)), c.allowWriter(ctx, setup, c.endpoint(byzantineNode))}
	for _, id := range b.correct {
		forwarded = append(forwarded, c.allowWriter(ctx, setup, c.endpoint(id)))
	}
	if c.waitLeader(nil, 30*time.Second) != byzantineNode {
		if err := b.cl.TransferLeader(ctx, byzantineNode); err != nil {
			t.Fatalf("transfer leadership to %s: %v", byzantineNode, err)
		}
	}
	if got := c.waitLeader(nil, 30*time.Second); got != byzantineNode {
		t.Fatalf("leader %s, want %s", got, byzantineNode)
	}
	return direct, forwarded
}
