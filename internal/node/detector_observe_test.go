package node

import (
	"context"
	"slices"
	"testing"
	"time"

	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// accusation signs an accusation by accuser from the fixture's keys.
func (f *detectorFixture) accusation(accuser, accused evidence.NodeID, m evidence.Metric, value int64) *evidence.Evidence {
	f.t.Helper()
	a, err := evidence.SignAccusation(f.keys[accuser], evidence.Accusation{Accuser: accuser, Accused: accused, Metric: m, Value: value, Epoch: 1, At: f.clock.UnixNano()})
	if err != nil {
		f.t.Fatal(err)
	}
	e, err := evidence.FromAccusation(a)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// accusationsBy returns the accusations of metric m in d's book, as
// "accuser>accused:value".
// accusationValues returns the values of d's accusations, sorted.
func accusationValues(d *detector) []int64 {
	var values []int64
	for _, e := range d.evidenceList() {
		values = append(values, e.Accusation.Value)
	}
	slices.Sort(values)
	return values
}

func accusationsBy(d *detector, m evidence.Metric) []string {
	var out []string
	for _, e := range d.evidenceList() {
		if e.Kind == evidence.KindAccusation && e.Accusation.Metric == m {
			out = append(out, string(e.Accusation.Accuser)+">"+string(e.Accusation.Accused))
		}
	}
	slices.Sort(out)
	return out
}

// TestSignatureFailuresAccuseAndQuarantineWithFPlusOne: n1's engine sees
// bad signatures from n4; n1 signs one accusation per window (one accuser
// changes nothing); with n2's accusation (f+1 = 2 of 4 members) n4 is
// quarantined. One liar (n3 accusing n2) gets nothing.
func TestSignatureFailuresAccuseAndQuarantineWithFPlusOne(t *testing.T) {
	f := newDetectorFixture(t)
	d, eng := f.open()
	ctx := context.Background()

	for range 5 {
		d.observe(ctx, observation{at: f.clock, other: sigFailure{from: "n4", kind: types.MsgVote}})
	}
	d.observe(ctx, observation{at: f.clock, other: sigFailure{from: "n1", kind: types.MsgVote}})     // self: never
	d.observe(ctx, observation{at: f.clock, other: sigFailure{from: "nobody", kind: types.MsgVote}}) // not a member
	if got := accusationsBy(d, evidence.MetricSignatureFailure); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want one by n1 of n4", got)
	}
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("one accuser quarantined %v", d.manager.IDs())
	}

	// A liar alone: nothing.
	if res, err := d.handle(ctx, f.accusation("n3", "n2", evidence.MetricSignatureFailure, 9), "n3"); res != resultAdded || err != nil {
		t.Fatalf("n3's accusation: %s, %v", res, err)
	}
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("one liar quarantined %v", d.manager.IDs())
	}

	// A second accuser of n4: f+1 distinct accusers, quarantine.
	if res, err := d.handle(ctx, f.accusation("n2", "n4", evidence.MetricSignatureFailure, 3), "n2"); res != resultAdded || err != nil {
		t.Fatalf("n2's accusation: %s, %v", res, err)
	}
	if ids := d.manager.IDs(); !slices.Equal(ids, []evidence.NodeID{"n4"}) {
		t.Fatalf("quarantined %v, want [n4]", ids)
	}
	if !slices.Equal(eng.last(), []types.NodeID{"n4"}) {
		t.Fatalf("engine list %v", eng.last())
	}
	for _, en := range d.manager.List() {
		accusers := map[evidence.NodeID]bool{}
		for _, e := range en.Evidence {
			if e.Kind != evidence.KindAccusation || e.Offender != "n4" {
				t.Fatalf("quarantine evidence %s", e)
			}
			accusers[e.Accusation.Accuser] = true
		}
		if len(accusers) < 2 {
			t.Fatalf("quarantine justified by %d accusers", len(accusers))
		}
	}
	// A quarantined member is not accused again.
	f.clock = f.clock.Add(time.Hour)
	d.observe(ctx, observation{at: f.clock, other: sigFailure{from: "n4", kind: types.MsgVote}})
	if got := accusationsBy(d, evidence.MetricSignatureFailure); len(got) != 3 {
		t.Fatalf("accusations after the quarantine %v", got)
	}
}

// TestSignatureFailureRateLimit: further failures within the window are
// counted into the next accusation.
func TestSignatureFailureRateLimit(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	t0 := f.clock
	for i := range 4 {
		d.observe(ctx, observation{at: t0.Add(time.Duration(i) * time.Second), other: sigFailure{from: "n3", kind: types.MsgTimeout}})
	}
	f.clock = t0.Add(sigAccuseEvery)
	d.observe(ctx, observation{at: f.clock, other: sigFailure{from: "n3", kind: types.MsgProposal}})
	values := accusationValues(d)
	if !slices.Equal(values, []int64{1, 4}) {
		t.Fatalf("accusation values %v, want [1 4] (the first failure, then the four since)", values)
	}
}

// TestWithheldVotesWarnOnly: a member whose votes never arrive is accused
// of vote latency once enough votes are missing; with f+1 accusers it is
// warned, never quarantined, however many accusations pile up.
func TestWithheldVotesWarnOnly(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	missing := func(n int) {
		for range n {
			f.clock = f.clock.Add(100 * time.Millisecond)
			d.observe(ctx, observation{at: f.clock, vote: hsengine.VoteObservation{From: "n4", View: 1, Latency: hsengine.VoteWait, Missing: true}})
			d.observe(ctx, observation{at: f.clock, vote: hsengine.VoteObservation{From: "n2", View: 1, Latency: 20 * time.Millisecond}})
		}
	}
	missing(latencyMinSamples - 1)
	if got := accusationsBy(d, evidence.MetricVoteLatencyP99); len(got) != 0 {
		t.Fatalf("accused on %d samples: %v", latencyMinSamples-1, got)
	}
	missing(1)
	if got := accusationsBy(d, evidence.MetricVoteLatencyP99); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want one by n1 of n4 (n2's votes are fast)", got)
	}
	for i := range 20 { // more accusations over time, from n2 and n3 as well
		f.clock = f.clock.Add(latencyAccuseEvery)
		missing(1)
		for _, by := range []evidence.NodeID{"n2", "n3"} {
			if _, err := d.handle(ctx, f.accusation(by, "n4", evidence.MetricVoteLatencyP99, int64(time.Second)+int64(i)), by); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("vote latency quarantined %v", d.manager.IDs())
	}
	d.mu.Lock()
	dec := d.book.Decide(f.clock)
	d.mu.Unlock()
	if !slices.Equal(dec.Warn, []evidence.NodeID{"n4"}) || dec.Escalate || len(dec.Quarantine) != 0 {
		t.Fatalf("decision %+v, want a warning of n4 only", dec)
	}
	if dec.Threat <= 0 || dec.Threat > score.Default().WarningCeiling {
		t.Fatalf("threat %v, want in (0, warning ceiling]", dec.Threat)
	}
}

func TestLatencyP99(t *testing.T) {
	var s []latencySample
	for i := 1; i <= 200; i++ {
		s = append(s, latencySample{latency: time.Duration(i) * time.Millisecond, missing: i > 198})
	}
	p, m := latencyP99(s)
	if p != 198*time.Millisecond || m != 2 {
		t.Fatalf("p99 %s, missing %d; want 198ms, 2", p, m)
	}
	p, _ = latencyP99(s[:16])
	if p != 16*time.Millisecond {
		t.Fatalf("p99 of 16 samples %s, want the largest", p)
	}
}
