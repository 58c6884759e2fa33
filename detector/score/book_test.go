package score

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

func newBook(t *testing.T, n int, mut ...func(*Config)) *Book {
	t.Helper()
	c := Default()
	for _, f := range mut {
		f(&c)
	}
	b, err := NewBook(c, cluster(t, n))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAdd(t *testing.T, b *Book, e *evidence.Evidence, now time.Time, want bool) {
	t.Helper()
	got, err := b.Add(e, now)
	if err != nil {
		t.Fatalf("Add(%v): %v", e, err)
	}
	if got != want {
		t.Fatalf("Add(%v) = %v, want %v", e, got, want)
	}
}

func TestNewBookValidates(t *testing.T) {
	c := Default()
	c.HalfLife = 0
	if _, err := NewBook(c, cluster(t, 4)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	if _, err := NewBook(Default(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
}

func TestBookAddVerifiesAndDedupes(t *testing.T) {
	b := newBook(t, 4)
	bad := accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0)
	bad.Accusation.Value = 3
	if _, err := b.Add(bad, t0); !errors.Is(err, evidence.ErrInvalidEvidence) {
		t.Fatalf("forged accusation: err = %v", err)
	}
	a := accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0)
	mustAdd(t, b, a, t0, true)
	mustAdd(t, b, a, t0, false)
	p := proof(t, "m2", 1)
	mustAdd(t, b, p, t0, true)
	// A second proof of the same offence (same slot, other payloads) is
	// not kept.
	x, _ := evidence.SignProposal(key("m2"), "m2", epoch, 1, 1, []byte("three"))
	y, _ := evidence.SignProposal(key("m2"), "m2", epoch, 1, 1, []byte("four"))
	again, err := evidence.NewLeaderEquivocation(x, y)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, b, again, t0, false)
	if b.Len() != 2 || len(b.Against("m2")) != 1 {
		t.Fatalf("Len %d Against(m2) %d", b.Len(), len(b.Against("m2")))
	}
	if got, ok := b.Get(p.ID()); !ok || got != p {
		t.Fatal("Get lost the proof")
	}
}

func TestBookStale(t *testing.T) {
	b := newBook(t, 4)
	c := Default()
	for name, at := range map[string]time.Time{
		"too old":    t0.Add(-c.MaxAge - time.Second),
		"far future": t0.Add(c.MaxClockSkew + time.Second),
	} {
		if _, err := b.Add(accuse(t, "m0", "m1", evidence.MetricSelectiveOmission, 1, at), t0); !errors.Is(err, ErrStale) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	mustAdd(t, b, accuse(t, "m0", "m1", evidence.MetricSelectiveOmission, 1, t0.Add(-time.Hour)), t0, true)
	if n := b.Prune(t0.Add(c.MaxAge)); n != 1 || b.Len() != 0 {
		t.Fatalf("Prune removed %d, %d left", n, b.Len())
	}
}

// TestBookBounds: a flooding accuser keeps at most MaxPerPair accusations
// per metric (the newest), and an offender at most MaxProofsPerNode
// proofs.
func TestBookBounds(t *testing.T) {
	b := newBook(t, 4, func(c *Config) { c.MaxPerPair = 3; c.MaxProofsPerNode = 2 })
	for i := range 10 {
		mustAdd(t, b, accuse(t, "m0", "m1", evidence.MetricVoteLatencyP99, latencyOver, t0.Add(time.Duration(i)*time.Second)), t0.Add(time.Minute), true)
	}
	// Older than everything kept: dropped.
	mustAdd(t, b, accuse(t, "m0", "m1", evidence.MetricVoteLatencyP99, latencyOver, t0.Add(-time.Second)), t0.Add(time.Minute), false)
	kept := b.Against("m1")
	if len(kept) != 3 {
		t.Fatalf("kept %d accusations, want 3", len(kept))
	}
	for _, e := range kept {
		if e.Accusation.At < t0.Add(7*time.Second).UnixNano() {
			t.Fatalf("kept an old accusation at %v", e.Accusation.Time())
		}
	}
	// Another metric of the same pair has its own bound.
	mustAdd(t, b, accuse(t, "m0", "m1", evidence.MetricSelectiveOmission, 1, t0), t0, true)
	mustAdd(t, b, proof(t, "m3", 1), t0, true)
	mustAdd(t, b, proof(t, "m3", 2), t0, true)
	mustAdd(t, b, proof(t, "m3", 3), t0, false)
}

// TestBookLift: only an explicit lift clears a proven node; the lift
// survives re-delivery of the same proof and a restart (Forgive), and a new
// offence counts again.
func TestBookLift(t *testing.T) {
	b := newBook(t, 4)
	p := proof(t, "m1", 1)
	mustAdd(t, b, p, t0, true)
	mustAdd(t, b, accuse(t, "m0", "m1", evidence.MetricSignatureFailure, 1, t0), t0, true)
	mustAdd(t, b, accuse(t, "m2", "m1", evidence.MetricSignatureFailure, 1, t0), t0, true)
	for _, now := range []time.Time{t0, t0.Add(time.Hour), t0.Add(365 * 24 * time.Hour)} {
		if d := b.Decide(now); !slices.Equal(d.Quarantine, []NodeID{"m1"}) {
			t.Fatalf("proof stopped counting at %v: %v", now, d.Quarantine)
		}
	}
	lift := b.Lift("m1", t0.Add(time.Minute))
	if !slices.Equal(lift.Offenses, []string{p.OffenseKey()}) {
		t.Fatalf("Forgiveness offences %v", lift.Offenses)
	}
	if b.Len() != 0 {
		t.Fatalf("%d records left after lift", b.Len())
	}
	mustAdd(t, b, p, t0.Add(2*time.Minute), false)
	if d := b.Decide(t0.Add(2 * time.Minute)); len(d.Quarantine) != 0 || d.Escalate {
		t.Fatalf("lifted node quarantined again: %v", d.Quarantine)
	}

	// A restarted node restores the lift before gossip brings the proof.
	b2 := newBook(t, 4)
	b2.Forgive(lift)
	mustAdd(t, b2, p, t0, false)
	mustAdd(t, b2, proof(t, "m1", 2), t0, true)
	if d := b2.Decide(t0); !slices.Equal(d.Quarantine, []NodeID{"m1"}) {
		t.Fatalf("new offence after lift: %v", d.Quarantine)
	}
}

func TestBookSetMembers(t *testing.T) {
	b := newBook(t, 5)
	mustAdd(t, b, proof(t, "m4", 1), t0, true)
	mustAdd(t, b, accuse(t, "m4", "m0", evidence.MetricSelectiveOmission, 1, t0), t0, true)
	mustAdd(t, b, accuse(t, "m1", "m0", evidence.MetricSelectiveOmission, 1, t0), t0, true)
	if n := b.SetMembers(cluster(t, 4)); n != 2 || b.Len() != 1 {
		t.Fatalf("SetMembers dropped %d, %d left", n, b.Len())
	}
}
