package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/devcluster"
)

// startBFTCluster lays out and starts four `tandem serve` processes in
// consensus_mode bft (a static committee from initial_members) and waits
// until every node is ready: its genesis entry is applied.
func startBFTCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	c := launch(t, devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: "bft",
		Extra: map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms"}})
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

	c.writeAndReadThroughEveryNode(ctx)
	for _, reader := range c.layout.Nodes {
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
	// Each writer starts at a different node; the SDK moves on to the next
	// endpoint when one fails.
	load := startWriteLoad(t, ctx, c.inviteWriters(ctx, 6, true))

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
	load.markFault()
	killedAt := time.Now()
	survivors := without(c.ids(), victim)
	deadline := time.Now().Add(30 * time.Second)
	var firstAck time.Duration
	for load.afterAck.Load() < 20 && time.Now().Before(deadline) {
		if firstAck == 0 && load.afterAck.Load() > 0 {
			firstAck = time.Since(killedAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
	outcomes := load.finish()
	if n := load.afterAck.Load(); n < 20 {
		t.Fatalf("only %d writes acknowledged after %s was killed", n, victim)
	}
	t.Logf("first write acknowledged %s after the kill; %d after it", firstAck.Round(time.Millisecond), load.afterAck.Load())

	hash := c.waitConverged(survivors, 20*time.Second)
	acked, unknown := c.checkOutcomes(ctx, survivors, outcomes)
	t.Logf("writes: %d acknowledged, %d unknown, %d total", acked, unknown, len(outcomes))

	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	if got := c.waitConverged(c.ids(), 30*time.Second); got != hash {
		t.Fatalf("restarted %s converged to %s, want %s", victim, got, hash)
	}
}

// TestBFTSignedClientProtocol: a client configured with the committee
// sends each write to all four members and accepts it on f+1 = 2 matching
// signed replies; ordered and fast reads are accepted on matching signed
// replies too, and a read-your-write sees the value. A client that names a
// wrong key for one member still works (that member's replies are ignored
// and counted); with wrong keys for three members nothing is accepted.
func TestBFTSignedClientProtocol(t *testing.T) {
	c := startBFTCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	committee, err := c.layout.Committee()
	if err != nil {
		t.Fatal(err)
	}
	bftClient := func(members []client.CommitteeMember) *client.Client {
		cfg := c.clientConfig(c.admin)
		cfg.Committee = members
		// Every request goes to every member at once, so that each
		// member's reply is checked whichever members the client's key
		// makes it ask first.
		cfg.HedgeDelay = -1
		cfg.Retry.MaxAttempts = 5
		return c.clientWith(cfg)
	}
	cl := bftClient(committee)
	for i := range 5 {
		v := fmt.Sprintf("v%d", i)
		res, err := cl.SetConfig(ctx, "bft-key", v)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if res.Index == 0 {
			t.Fatalf("write %d: result %+v", i, res)
		}
		got, idx, err := cl.GetConfig(ctx, "bft-key")
		if err != nil {
			t.Fatalf("ordered read %d: %v", i, err)
		}
		if got.Value != v || idx < res.Index {
			t.Fatalf("ordered read %d: %+v at %d, want %q at >= %d", i, got, idx, v, res.Index)
		}
	}
	c.waitConverged(c.ids(), 10*time.Second)
	got, _, err := cl.GetConfig(ctx, "bft-key", client.FastRead())
	if err != nil || got.Value != "v4" {
		t.Fatalf("fast read: %+v %v", got, err)
	}
	if st := cl.BFTStats(); st.BadSignatures+st.WrongSigner+st.Mismatched+st.Conflicts != 0 {
		t.Fatalf("an honest committee produced ignored replies: %+v", st)
	}

	// One member listed with a wrong key: its replies are ignored.
	wrong := slices.Clone(committee)
	other, _, _ := ed25519.GenerateKey(nil)
	wrong[0].PublicKey = other
	cw := bftClient(wrong)
	if _, err := cw.SetConfig(ctx, "bft-key", "w"); err != nil {
		t.Fatalf("write with one unverifiable member: %v", err)
	}
	if v, _, err := cw.GetConfig(ctx, "bft-key"); err != nil || v.Value != "w" {
		t.Fatalf("read with one unverifiable member: %+v %v", v, err)
	}
	if st := cw.BFTStats(); st.BadSignatures == 0 {
		t.Fatalf("bad signatures not counted: %+v", st)
	}

	// Two members unverifiable: the other two still make f+1.
	other2, _, _ := ed25519.GenerateKey(nil)
	wrong[1].PublicKey = other2
	if _, err := bftClient(wrong).SetConfig(ctx, "bft-key", "y"); err != nil {
		t.Fatalf("write with two unverifiable members: %v", err)
	}
	// Three unverifiable: one reply verifies, fewer than f+1, so neither
	// the client's seq read nor a write may report an outcome.
	other3, _, _ := ed25519.GenerateKey(nil)
	wrong[2].PublicKey = other3
	_, err = bftClient(wrong).SetConfig(ctx, "bft-key", "x")
	if err == nil || !(client.IsOutcomeUnknown(err) || client.IsUnavailable(err)) {
		t.Fatalf("write with three unverifiable members: %v, want outcome unknown or unavailable", err)
	}
}
