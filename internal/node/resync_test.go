package node

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

func report(index uint64, own, certified byte, signers ...string) resyncReport {
	return resyncReport{Epoch: 1, Index: index, Own: [32]byte{own}, Certified: [32]byte{certified}, Signers: signers}
}

// TestResyncGuard: a certificate for another state signed by others starts
// a re-sync; none starts while one runs, when this node signed the
// certificate or holds its state, or for the state before a completed
// re-sync; a second divergence soon after a re-sync keeps the node out,
// and one after the window re-syncs again.
func TestResyncGuard(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	g := resyncGuard{self: "n4", window: time.Hour}
	others := []string{"n1", "n2", "n3"}

	if v, why := g.decide(report(20, 1, 1, others...), t0); v != verdictIgnore || !strings.Contains(why, "quorum") {
		t.Fatalf("same hash: %v %q, want ignore", v, why)
	}
	if v, _ := g.decide(report(20, 1, 2, "n1", "n2", "n4"), t0); v != verdictIgnore {
		t.Fatalf("this node among the signers: %v, want ignore", v)
	}
	if v, _ := g.decide(report(20, 1, 2, others...), t0); v != verdictStart {
		t.Fatalf("diverged: %v, want start", v)
	}
	g.phase = resyncRunning
	if v, _ := g.decide(report(40, 1, 2, others...), t0); v != verdictIgnore {
		t.Fatalf("while re-syncing: %v, want ignore", v)
	}
	// The re-sync completed at applied index 45.
	g.phase, g.lastDone, g.doneIndex = resyncIdle, t0.Add(time.Second), 45
	if v, _ := g.decide(report(40, 1, 2, others...), t0.Add(2*time.Second)); v != verdictIgnore {
		t.Fatalf("a late report of the old state: %v, want ignore", v)
	}
	if v, _ := g.decide(report(60, 3, 3, others...), t0.Add(2*time.Second)); v != verdictIgnore {
		t.Fatalf("the rebuilt state matches: %v, want ignore", v)
	}
	if v, why := g.decide(report(60, 3, 4, others...), t0.Add(time.Minute)); v != verdictStayOut || !strings.Contains(why, "again") {
		t.Fatalf("diverged again within the window: %v %q, want stay out", v, why)
	}
	if v, _ := g.decide(report(60, 3, 4, others...), t0.Add(2*time.Hour)); v != verdictStart {
		t.Fatalf("diverged again after the window: %v, want start", v)
	}
	g.phase = resyncOut
	if v, _ := g.decide(report(80, 3, 4, others...), t0.Add(3*time.Hour)); v != verdictIgnore {
		t.Fatalf("staying out: %v, want ignore", v)
	}
}

// newTestResyncer returns a resyncer of a node with data directory dir,
// not running.
func newTestResyncer(t *testing.T, dir string) *resyncer {
	t.Helper()
	n := &Node{cfg: config.Config{NodeID: "n4", DataDir: dir}, log: slog.New(slog.DiscardHandler), registry: prometheus.NewRegistry()}
	n.ckpt = &checkpointer{}
	r, err := n.newResyncer()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestResyncHoldsSignedCheckpoints: after a re-sync started, the node
// signs no checkpoint of the epoch at or below the indexes it applied
// before (a second signature there would sign another state: a checkpoint
// equivocation), and a restart keeps that hold and resumes a re-sync that
// was rejoining, out of service until it completes.
func TestResyncHoldsSignedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	r := newTestResyncer(t, dir)
	if r.holds(1, 20) || r.serving() != nil {
		t.Fatal("a fresh node holds a checkpoint back or is out of service")
	}
	if err := r.saveRecord(resyncRecord{Epoch: 1, SignedUpTo: 47, Rejoining: true, Index: 40}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		epoch, index uint64
		hold         bool
	}{{1, 20, true}, {1, 47, true}, {1, 48, false}, {2, 20, false}} {
		if got := r.holds(c.epoch, c.index); got != c.hold {
			t.Errorf("holds(epoch %d, index %d) = %v, want %v", c.epoch, c.index, got, c.hold)
		}
	}
	again := newTestResyncer(t, dir)
	if !again.holds(1, 47) || again.holds(1, 48) {
		t.Fatal("the hold did not survive a restart")
	}
	if err := again.serving(); err == nil || !strings.Contains(err.Error(), "re-syncing") {
		t.Fatalf("a node restarted while rejoining serves: %v", err)
	}
}

// TestResyncReportsAndAccusations: a checkpointer's divergence report
// reaches the loop (the newest index wins); the detector's re-sync
// decision makes the node look for a certificate once per accusation, and
// never names a report itself; a decision about another member does
// nothing.
func TestResyncReportsAndAccusations(t *testing.T) {
	r := newTestResyncer(t, t.TempDir())
	cert := func(index uint64, h byte) *checkpoint.Certificate {
		return &checkpoint.Certificate{Statement: checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: 1, Index: index, StateHash: [32]byte{h}}}
	}
	own := func(index uint64, h byte) checkpoint.Statement {
		return checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: 1, Index: index, StateHash: [32]byte{h}}
	}
	r.diverged(own(40, 1), cert(40, 2))
	r.diverged(own(20, 1), cert(20, 2))
	if r.pending == nil || r.pending.Index != 40 || r.pending.Certified != [32]byte{2} || r.pending.Own != [32]byte{1} {
		t.Fatalf("pending report %+v, want index 40", r.pending)
	}
	if len(r.kick) != 1 {
		t.Fatal("the loop was not woken")
	}

	acc := &evidence.Evidence{Kind: evidence.KindAccusation, Offender: "n4", Accusation: &evidence.Accusation{Accuser: "n1", Accused: "n4", Metric: evidence.MetricStateDivergence, Value: 1}}
	other := score.Decision{Reasons: []score.Reason{{Node: "n2", Action: score.ActionResync, Evidence: []*evidence.Evidence{acc}}}}
	r.accused(other)
	if r.look {
		t.Fatal("a decision about another member made this node look")
	}
	mine := score.Decision{Reasons: []score.Reason{{Node: "n4", Action: score.ActionResync, Evidence: []*evidence.Evidence{acc}}}}
	r.accused(mine)
	if !r.look {
		t.Fatal("the re-sync decision did not make this node look for a certificate")
	}
	r.look = false
	r.accused(mine)
	if r.look {
		t.Fatal("the same accusation made this node look twice")
	}
	var nilR *resyncer
	nilR.diverged(own(1, 1), cert(1, 2))
	nilR.accused(mine)
	if nilR.holds(1, 1) || nilR.serving() != nil {
		t.Fatal("a node without re-sync holds or refuses")
	}
}
