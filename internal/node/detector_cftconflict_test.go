package node

import (
	"context"
	"slices"
	"testing"
	"time"

	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// TestConflictCounter: an event counts once per (member, index) within the
// window, the count covers the last hour only, and memory is bounded.
func TestConflictCounter(t *testing.T) {
	c := newConflictCounter()
	t0 := time.Unix(1_800_000_000, 0)
	for i, want := range []int{1, 1, 2} {
		if got := c.add("n4", []uint64{7, 7, 8}[i], t0); got != want {
			t.Fatalf("add %d: count %d, want %d", i, got, want)
		}
	}
	if got := c.add("n3", 7, t0); got != 1 {
		t.Fatalf("another member's event: count %d, want 1", got)
	}
	if got := c.add("n4", 9, t0.Add(30*time.Minute)); got != 3 {
		t.Fatalf("count %d after 30 min, want 3", got)
	}
	if got := c.count("n4", t0.Add(conflictWindow)); got != 1 {
		t.Fatalf("count %d an hour later, want 1 (the events of the first instant expired)", got)
	}
	if got := c.add("n4", 7, t0.Add(conflictWindow)); got != 2 {
		t.Fatalf("an index counted again after the window: count %d, want 2", got)
	}

	big := newConflictCounter()
	for i := range maxConflictEvents + 10 {
		big.add("n4", uint64(i), t0)
	}
	if len(big.seen) > maxConflictEvents {
		t.Fatalf("%d events remembered, bound %d", len(big.seen), maxConflictEvents)
	}
	if got := big.add("n4", 1<<40, t0.Add(conflictWindow)); got != 1 || len(big.seen) > maxConflictEvents {
		t.Fatalf("after the window: count %d, %d remembered", got, len(big.seen))
	}
}

// TestRaftLogConflictsAccuseAndEscalateWithFPlusOne: committed entries
// rewritten by leader n4 count once per index; more than the table's 3 in
// an hour make one log-conflicts accusation (one per window); with a
// second accuser n4's score is at the escalate level, no quarantine.
func TestRaftLogConflictsAccuseAndEscalateWithFPlusOne(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	conflict := func(from string, index uint64) raftengine.PeerObservation {
		return raftengine.PeerObservation{Kind: raftengine.ObservedLogConflict, From: from, Term: 5, CurrentTerm: 5, Index: index, LocalTerm: 3, EntryTerm: 5, CommitIndex: 100}
	}
	for _, idx := range []uint64{90, 91, 91, 92, 92, 93} { // 4 distinct indexes: still ≤ 3 before the last
		if len(accusationsBy(d, evidence.MetricLogConflicts)) != 0 {
			t.Fatalf("accused before the fourth index (at %d)", idx)
		}
		d.observePeerRPC(ctx, conflict("n4", idx), f.clock)
	}
	if got := accusationsBy(d, evidence.MetricLogConflicts); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want n1>n4", got)
	}
	if v := d.evidenceList()[0].Accusation.Value; v != 4 {
		t.Fatalf("value %d, want 4 (distinct indexes in the hour)", v)
	}
	d.observePeerRPC(ctx, conflict("n4", 94), f.clock)
	if got := accusationsBy(d, evidence.MetricLogConflicts); len(got) != 1 {
		t.Fatalf("accusations %v within the rate limit, want one", got)
	}
	// Not a member, or this node: never accused.
	for _, from := range []string{"n9", "n1"} {
		for i := range uint64(10) {
			d.observePeerRPC(ctx, conflict(from, i), f.clock)
		}
	}
	if s := scoreOf(d, "n4"); s != 0 {
		t.Fatalf("one accuser gives n4 score %v, want 0", s)
	}
	if res, err := d.handle(ctx, f.accusation("n2", "n4", evidence.MetricLogConflicts, 4), "n2"); res != resultAdded || err != nil {
		t.Fatalf("n2's accusation: %s, %v", res, err)
	}
	if s := scoreOf(d, "n4"); s < d.scfg.AnomalyThreshold || s >= d.scfg.QuarantineThreshold {
		t.Fatalf("n4's score with f+1 accusers %v, want in [%v, %v)", s, d.scfg.AnomalyThreshold, d.scfg.QuarantineThreshold)
	}
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("quarantined %v on log-conflict accusations", d.manager.IDs())
	}
	for _, e := range d.evidenceList() {
		if e.Accusation.Accused != "n4" {
			t.Fatalf("accusation of %s", e.Accusation.Accused)
		}
	}
}

// TestElectionDisruptionsAccuseAboveTheConfiguredRate: elections a member
// starts while this node has a live leader count once per term; the
// accusation comes only above disruptive_elections_per_hour, which a
// reload moves, and expired elections no longer count.
func TestElectionDisruptionsAccuseAboveTheConfiguredRate(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	if got := d.conflicts.disruptLimit.Load(); got != 10 {
		t.Fatalf("default limit %d, want 10 (disruptive_elections_per_hour's default)", got)
	}
	vote := func(term uint64) raftengine.PeerObservation {
		return raftengine.PeerObservation{Kind: raftengine.ObservedElectionDisruption, From: "n3", Term: term, CurrentTerm: 4, Leader: "n2", SinceContact: 50 * time.Millisecond}
	}
	// A restarted node's few elections, each RPC seen twice: nothing.
	for term := uint64(5); term <= 14; term++ {
		d.observePeerRPC(ctx, vote(term), f.clock)
		d.observePeerRPC(ctx, vote(term), f.clock)
	}
	if got := accusationsBy(d, evidence.MetricLogConflicts); len(got) != 0 {
		t.Fatalf("accused at the limit (10 elections): %v", got)
	}
	d.observePeerRPC(ctx, vote(15), f.clock)
	if got := accusationsBy(d, evidence.MetricLogConflicts); !slices.Equal(got, []string{"n1>n3"}) {
		t.Fatalf("accusations %v, want n1>n3", got)
	}
	if v := d.evidenceList()[0].Accusation.Value; v != 11 {
		t.Fatalf("value %d, want 11", v)
	}

	// An hour later the old elections are gone; a lower limit (reload)
	// applies to the new ones.
	f.clock = f.clock.Add(conflictWindow)
	d.setDisruptLimit(3)
	for term := uint64(20); term < 23; term++ {
		d.observePeerRPC(ctx, vote(term), f.clock)
	}
	if n := len(accusationsBy(d, evidence.MetricLogConflicts)); n != 1 {
		t.Fatalf("%d accusations with 3 fresh elections and limit 3, want still 1", n)
	}
	d.observePeerRPC(ctx, vote(23), f.clock)
	if n := len(accusationsBy(d, evidence.MetricLogConflicts)); n != 2 {
		t.Fatalf("%d accusations after the fourth fresh election, want 2", n)
	}
	var nilDet *detector
	nilDet.setDisruptLimit(5) // no detector: nothing to set
}

// TestBFTConflictsAccusePerProposerAndView: proposals forking off below
// the committed block count once per (proposer, view); the fourth view in
// an hour makes a log-conflicts accusation.
func TestBFTConflictsAccusePerProposerAndView(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	obs := func(view uint64) hsengine.ConflictObservation {
		return hsengine.ConflictObservation{Proposer: "n2", View: types.View(view), Height: 3, CommittedHeight: 9, CommittedView: 12}
	}
	for _, v := range []uint64{20, 20, 24, 28, 28} {
		d.observe(ctx, observation{at: f.clock, other: forkedProposal(obs(v))})
	}
	if got := accusationsBy(d, evidence.MetricLogConflicts); len(got) != 0 {
		t.Fatalf("accused after 3 views: %v", got)
	}
	d.observe(ctx, observation{at: f.clock, other: forkedProposal(obs(32))})
	if got := accusationsBy(d, evidence.MetricLogConflicts); !slices.Equal(got, []string{"n1>n2"}) {
		t.Fatalf("accusations %v, want n1>n2", got)
	}
}

// TestForgedSenderAccusesTheCertificatesMember: a Raft request on n3's
// connection that named n2 (refused by the stream layer) accuses n3 of a
// signature failure, never n2, at most once per sigAccuseEvery with the
// count since the last accusation.
func TestForgedSenderAccusesTheCertificatesMember(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	forged := raftengine.PeerObservation{Kind: raftengine.ObservedForgedSender, From: "n3", Claimed: "n2", RPCType: 1}
	d.observe(ctx, observation{at: f.clock, other: peerRPC(forged)})
	d.observe(ctx, observation{at: f.clock, other: peerRPC(forged)})
	if got := accusationsBy(d, evidence.MetricSignatureFailure); !slices.Equal(got, []string{"n1>n3"}) {
		t.Fatalf("accusations %v, want n1>n3 only", got)
	}
	f.clock = f.clock.Add(sigAccuseEvery)
	d.observe(ctx, observation{at: f.clock, other: peerRPC(forged)})
	got := accusationsBy(d, evidence.MetricSignatureFailure)
	if !slices.Equal(got, []string{"n1>n3", "n1>n3"}) {
		t.Fatalf("accusations %v after %s, want a second n1>n3", got, sigAccuseEvery)
	}
	var values []int64
	for _, e := range d.evidenceList() {
		if a := e.Accusation; a != nil && a.Metric == evidence.MetricSignatureFailure {
			values = append(values, a.Value)
		}
	}
	slices.Sort(values)
	if !slices.Equal(values, []int64{1, 2}) {
		t.Fatalf("accusation values %v, want 1 and 2 (the second counts the one held back)", values)
	}
}
