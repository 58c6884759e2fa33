package node

import (
	"context"
	"slices"
	"testing"

	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

func TestForwardWatchCheck(t *testing.T) {
	w := &forwardWatch{leader: "n4", term: 2, from: 100}
	follow := func(leader string, term, applied uint64) raftengine.Contact {
		return raftengine.Contact{Follower: true, LeaderID: leader, Term: term, AppliedIndex: applied, LastIndex: applied}
	}
	cases := []struct {
		name string
		c    raftengine.Contact
		want fwdVerdict
	}{
		{"log moved less than the bound", follow("n4", 2, 227), fwdWait},
		{"log moved the bound", follow("n4", 2, 228), fwdOmitted},
		{"another leader", follow("n3", 3, 1000), fwdDrop},
		{"same leader, new term", follow("n4", 3, 1000), fwdDrop},
		{"no leader known", follow("", 2, 1000), fwdDrop},
		{"this node is no longer a follower", raftengine.Contact{LeaderID: "n4", Term: 2, AppliedIndex: 1000}, fwdDrop},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.check(tc.c, 128); got != tc.want {
				t.Fatalf("verdict %d, want %d", got, tc.want)
			}
		})
	}
}

func TestOmitBound(t *testing.T) {
	if b, err := omitBound(64); err != nil || b != 128 {
		t.Fatalf("omitBound(64) = %d, %v; want 128", b, err)
	}
	if _, err := omitBound(0); err == nil {
		t.Fatal("omitBound(0) accepted")
	}
}

// TestCFTOmissionAccusesAndEscalatesWithFPlusOne: n1 forwarded writes to
// leader n4; those still proposable once the log moved the bound past them
// count (a write applied or rejected meanwhile, one answered, and one
// whose leader changed do not); one accusation per leader per window; with
// a second accuser n4's score is at the escalate level, no quarantine.
func TestCFTOmissionAccusesAndEscalatesWithFPlusOne(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	applied := map[*smr.Envelope]bool{}
	d.fwd = newForwardWatcher(128, func(env *smr.Envelope) bool { return !applied[env] })
	c := func(leader string, term, index uint64) raftengine.Contact {
		return raftengine.Contact{Follower: true, LeaderID: leader, Term: term, AppliedIndex: index, LastIndex: index}
	}
	watch := func(leader string, term, from uint64) (*smr.Envelope, uint64) {
		env := testEnvelope(t)
		return env, d.fwd.add(&forwardWatch{leader: leader, term: term, from: from, env: env})
	}
	watch("n4", 2, 100)
	watch("n4", 2, 100)
	done, _ := watch("n4", 2, 100)
	applied[done] = true // applied (or rejected) by the time the bound passed
	_, answered := watch("n4", 2, 100)
	d.fwd.remove(answered)

	d.sweepForwards(ctx, c("n4", 2, 200))
	if got := accusationsBy(d, evidence.MetricSelectiveOmission); len(got) != 0 {
		t.Fatalf("accusations before the bound: %v", got)
	}
	d.sweepForwards(ctx, c("n4", 2, 228))
	if got := accusationsBy(d, evidence.MetricSelectiveOmission); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want n1>n4", got)
	}
	if v := d.evidenceList()[0].Accusation.Value; v != 2 {
		t.Fatalf("accusation value %d, want 2 (the writes still proposable)", v)
	}
	if len(d.fwd.live) != 0 {
		t.Fatalf("%d forwards still watched after the verdict", len(d.fwd.live))
	}

	// A leader change: the write to the old leader never counts.
	watch("n4", 2, 300)
	d.sweepForwards(ctx, c("n3", 3, 1000))
	watch("n3", 3, 1000) // this node's own later forward, to the new leader
	d.sweepForwards(ctx, c("n4", 4, 5000))
	// Within the rate limit: counted, not accused.
	watch("n4", 4, 5000)
	d.sweepForwards(ctx, c("n4", 4, 5200))
	if got := accusationsBy(d, evidence.MetricSelectiveOmission); len(got) != 1 {
		t.Fatalf("accusations %v, want still one", got)
	}
	f.clock = f.clock.Add(omitAccuseEvery)
	watch("n4", 4, 5200)
	d.sweepForwards(ctx, c("n4", 4, 5400))
	values := accusationValues(d)
	if !slices.Equal(values, []int64{2, 2}) {
		t.Fatalf("accusation values %v, want [2 2] (the first two, then the two since)", values)
	}
	if s := scoreOf(d, "n4"); s != 0 {
		t.Fatalf("one accuser gives n4 score %v, want 0", s)
	}

	if res, err := d.handle(ctx, f.accusation("n2", "n4", evidence.MetricSelectiveOmission, 1), "n2"); res != resultAdded || err != nil {
		t.Fatalf("n2's accusation: %s, %v", res, err)
	}
	if s := scoreOf(d, "n4"); s < d.scfg.AnomalyThreshold || s >= d.scfg.QuarantineThreshold {
		t.Fatalf("n4's score with f+1 accusers %v, want in [%v, %v)", s, d.scfg.AnomalyThreshold, d.scfg.QuarantineThreshold)
	}
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("quarantined %v on omission accusations", d.manager.IDs())
	}
}

// TestWatchedForwardEndBeforeStart: a forward that returns before its
// request was reported written is never watched.
func TestWatchedForwardEndBeforeStart(t *testing.T) {
	fw := newForwardWatcher(128, func(*smr.Envelope) bool { return true })
	call := &watchedForward{}
	call.end(fw)
	call.start(fw, nil, "n4", testEnvelope(t)) // must not touch the engine either
	if len(fw.live) != 0 {
		t.Fatal("an ended forward was watched")
	}
}
