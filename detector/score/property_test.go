package score

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

var allMetrics = evidence.Metrics()

// world is a random cluster: n members, 1 to f of them Byzantine.
type world struct {
	n       int
	members *evidence.Members
	byz     map[NodeID]bool
}

func drawWorld(t *rapid.T, clusters map[int]*evidence.Members) world {
	n := rapid.IntRange(4, 10).Draw(t, "n")
	f := (n - 1) / 3
	idx := rapid.SliceOfNDistinct(rapid.IntRange(0, n-1), 1, f, rapid.ID[int]).Draw(t, "byzantine")
	w := world{n: n, members: clusters[n], byz: map[NodeID]bool{}}
	for _, i := range idx {
		w.byz[nodeID(i)] = true
	}
	return w
}

func clusters(t *testing.T) map[int]*evidence.Members {
	out := map[int]*evidence.Members{}
	for n := 3; n <= 10; n++ {
		out[n] = cluster(t, n)
	}
	return out
}

// drawAccusation draws an accusation by accuser of a node from targets, with
// a metric from metrics, dated in the last two hours before now (or up to
// the clock skew after it).
func drawAccusation(t *rapid.T, accuser NodeID, targets []NodeID, metrics []evidence.Metric, now time.Time, label string) *evidence.Evidence {
	to := rapid.SampledFrom(targets).Draw(t, label+" accused")
	m := rapid.SampledFrom(metrics).Draw(t, label+" metric")
	v := rapid.Int64Range(0, 10).Draw(t, label+" value")
	if m == evidence.MetricVoteLatencyP99 || m == evidence.MetricHeartbeatLatencyP99 {
		v = rapid.Int64Range(0, int64(5*time.Second)).Draw(t, label+" latency")
	}
	age := time.Duration(rapid.Int64Range(-int64(DefaultMaxClockSkew), int64(2*time.Hour)).Draw(t, label+" age"))
	return accuse(t, accuser, to, m, v, now.Add(-age))
}

// TestPropertyOneLiarGetsNothing (DESIGN invariant 8): for any n ≥ 4, when
// at most f members lie — accusing anyone of anything, any number of times
// — and correct members accuse only Byzantine members (or anyone of mere
// latency), no correct member is quarantined, escalated on or re-synced;
// escalation needs a proof or f+1 distinct accusers; and every member with
// a valid proof is quarantined.
func TestPropertyOneLiarGetsNothing(t *testing.T) {
	cs := clusters(t)
	now := t0
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t, cs)
		ids := w.members.IDs()
		var byzIDs []NodeID
		for _, id := range ids {
			if w.byz[id] {
				byzIDs = append(byzIDs, id)
			}
		}
		// The liars gang up on one correct victim half of the time.
		var honestIDs []NodeID
		for _, id := range ids {
			if !w.byz[id] {
				honestIDs = append(honestIDs, id)
			}
		}
		victim := rapid.SampledFrom(honestIDs).Draw(t, "victim")
		severe := []evidence.Metric{evidence.MetricSignatureFailure, evidence.MetricDuplicateVote, evidence.MetricStateDivergence,
			evidence.MetricLogConflicts, evidence.MetricSelectiveOmission}
		var evs []*evidence.Evidence
		for _, id := range ids {
			k := rapid.IntRange(0, 4).Draw(t, "count "+string(id))
			for i := range k {
				label := fmt.Sprintf("%s#%d", id, i)
				switch {
				case w.byz[id] && rapid.Bool().Draw(t, label+" at victim"):
					evs = append(evs, drawAccusation(t, id, []NodeID{victim}, severe, now, label))
				case w.byz[id]:
					evs = append(evs, drawAccusation(t, id, ids, allMetrics, now, label))
				case len(byzIDs) > 0 && rapid.Bool().Draw(t, label+" at byzantine"):
					evs = append(evs, drawAccusation(t, id, byzIDs, allMetrics, now, label))
				default: // a slow link makes correct members report even correct ones
					targets := ids
					if rapid.Bool().Draw(t, label+" latency of victim") {
						targets = []NodeID{victim}
					}
					evs = append(evs, drawAccusation(t, id, targets, []evidence.Metric{evidence.MetricVoteLatencyP99, evidence.MetricHeartbeatLatencyP99}, now, label))
				}
			}
		}
		proven := map[NodeID]bool{}
		for _, b := range byzIDs {
			if rapid.IntRange(0, 3).Draw(t, "proof against "+string(b)) == 0 {
				evs = append(evs, proof(t, b, 1))
				proven[b] = true
			}
		}
		d := Decide(Default(), Input{Members: w.members, Evidence: evs, Now: now})
		for _, r := range d.Rejected {
			if !isSelfAccusation(evs, r.ID) {
				t.Fatalf("valid evidence rejected: %v", r.Err)
			}
		}
		for _, id := range ids {
			if !w.byz[id] && d.ActionFor(id) > ActionWarn {
				t.Fatalf("correct member %s gets %s (byzantine %v)", id, d.ActionFor(id), byzIDs)
			}
		}
		for b := range proven {
			if !slices.Contains(d.Quarantine, b) || !d.Escalate {
				t.Fatalf("proven %s not quarantined (%v) or no escalation", b, d.Quarantine)
			}
		}
		if d.Escalate && len(proven) == 0 {
			ok := false
			for _, id := range ids {
				if distinctAccusers(evs, id) >= (w.n-1)/3+1 {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("escalated without a proof and without f+1 distinct accusers of any member")
			}
		}
	})
}

func isSelfAccusation(evs []*evidence.Evidence, id evidence.ID) bool {
	for _, e := range evs {
		if e.ID() == id {
			return e.Accusation != nil && e.Accusation.Accuser == e.Accusation.Accused
		}
	}
	return false
}

func distinctAccusers(evs []*evidence.Evidence, node NodeID) int {
	set := map[NodeID]bool{}
	for _, e := range evs {
		if a := e.Accusation; a != nil && a.Accused == node && a.Accuser != node {
			set[a.Accuser] = true
		}
	}
	return len(set)
}

// TestPropertyFewAccusersNoAction: accusations from at most f distinct
// members (whoever they accuse, of whatever) never cause any action above a
// warning, in any cluster of n ≥ 3 (with n = 3, MinAccusers keeps a single
// accuser from acting).
func TestPropertyFewAccusersNoAction(t *testing.T) {
	cs := clusters(t)
	now := t0
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(3, 10).Draw(t, "n")
		m := cs[n]
		ids := m.IDs()
		maxAccusers := max((n-1)/3, 1)
		accusers := rapid.SliceOfNDistinct(rapid.SampledFrom(ids), 1, maxAccusers, rapid.ID[NodeID]).Draw(t, "accusers")
		var evs []*evidence.Evidence
		for _, a := range accusers {
			for i := range rapid.IntRange(1, 6).Draw(t, "count") {
				evs = append(evs, drawAccusation(t, a, ids, allMetrics, now, fmt.Sprintf("%s#%d", a, i)))
			}
		}
		d := Decide(Default(), Input{Members: m, Evidence: evs, Now: now})
		if d.Escalate || len(d.Quarantine) > 0 || len(d.Resync) > 0 {
			t.Fatalf("%d accuser(s) in n=%d caused escalate=%v quarantine=%v resync=%v", len(accusers), n, d.Escalate, d.Quarantine, d.Resync)
		}
	})
}

// TestPropertyDecayMonotone: with no new evidence, no score and not the
// threat level ever rise as time passes, and Decay is non-increasing in age.
func TestPropertyDecayMonotone(t *testing.T) {
	cs := clusters(t)
	rapid.Check(t, func(t *rapid.T) {
		w := rapid.Float64Range(0, 1).Draw(t, "weight")
		a1 := time.Duration(rapid.Int64Range(-int64(time.Hour), int64(48*time.Hour)).Draw(t, "age1"))
		a2 := a1 + time.Duration(rapid.Int64Range(0, int64(48*time.Hour)).Draw(t, "later"))
		hl := time.Duration(rapid.Int64Range(1, int64(24*time.Hour)).Draw(t, "half-life"))
		if Decay(w, a2, hl) > Decay(w, a1, hl) || Decay(w, a1, hl) > w {
			t.Fatalf("Decay not monotone: %v at %v, %v at %v", Decay(w, a1, hl), a1, Decay(w, a2, hl), a2)
		}

		n := rapid.IntRange(4, 7).Draw(t, "n")
		m := cs[n]
		ids := m.IDs()
		var evs []*evidence.Evidence
		for i := range rapid.IntRange(0, 12).Draw(t, "accusations") {
			from := rapid.SampledFrom(ids).Draw(t, "from")
			e := drawAccusation(t, from, ids, allMetrics, t0, fmt.Sprint(i))
			if e.Accusation.At > t0.UnixNano() || e.Accusation.Accuser == e.Accusation.Accused {
				continue // future-dated ones start counting later by design
			}
			evs = append(evs, e)
		}
		t1 := t0.Add(time.Duration(rapid.Int64Range(0, int64(time.Hour)).Draw(t, "t1")))
		t2 := t1.Add(time.Duration(rapid.Int64Range(0, int64(30*time.Hour)).Draw(t, "t2")))
		d1 := Decide(Default(), Input{Members: m, Evidence: evs, Now: t1})
		d2 := Decide(Default(), Input{Members: m, Evidence: evs, Now: t2})
		if d2.Threat > d1.Threat {
			t.Fatalf("threat rose from %v to %v", d1.Threat, d2.Threat)
		}
		s1 := map[NodeID]float64{}
		for _, s := range d1.Scores {
			s1[s.Node] = s.Score
		}
		for _, s := range d2.Scores {
			if s.Score > s1[s.Node] {
				t.Fatalf("score of %s rose from %v to %v", s.Node, s1[s.Node], s.Score)
			}
			if s.Action > d1.ActionFor(s.Node) {
				t.Fatalf("action on %s rose from %s to %s", s.Node, d1.ActionFor(s.Node), s.Action)
			}
		}
	})
}

// TestPropertyDeterministic: the decision does not depend on the order of
// the evidence.
func TestPropertyDeterministic(t *testing.T) {
	cs := clusters(t)
	rapid.Check(t, func(t *rapid.T) {
		m := cs[4]
		ids := m.IDs()
		var evs []*evidence.Evidence
		for i := range rapid.IntRange(0, 10).Draw(t, "accusations") {
			from := rapid.SampledFrom(ids).Draw(t, "from")
			evs = append(evs, drawAccusation(t, from, ids, allMetrics, t0, fmt.Sprint(i)))
		}
		if rapid.Bool().Draw(t, "proof") {
			evs = append(evs, proof(t, rapid.SampledFrom(ids).Draw(t, "proven"), 1))
		}
		perm := rapid.Permutation(evs).Draw(t, "order")
		a := Decide(Default(), Input{Members: m, Evidence: evs, Now: t0})
		b := Decide(Default(), Input{Members: m, Evidence: perm, Now: t0})
		if fa, fb := fmt.Sprint(summary(a)), fmt.Sprint(summary(b)); fa != fb {
			t.Fatalf("order changed the decision:\n%s\n%s", fa, fb)
		}
	})
}

func summary(d Decision) []any {
	out := []any{d.Escalate, d.Quarantine, d.Resync, d.Warn, d.Threat, d.Scores}
	for _, r := range d.Reasons {
		ids := make([]string, len(r.Evidence))
		for i, e := range r.Evidence {
			ids[i] = e.ID().Short()
		}
		out = append(out, r.Node, r.Action, r.Accusers, ids)
	}
	return out
}
