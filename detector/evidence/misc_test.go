package evidence

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNamesRoundTrip(t *testing.T) {
	for _, k := range kinds {
		got, err := ParseKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k, got, err)
		}
	}
	if _, err := ParseKind("nope"); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseKind(nope) = %v", err)
	}
	if Kind(99).String() != "kind(99)" || Kind(99).Irrefutable() || KindAccusation.Irrefutable() || !KindLogFork.Irrefutable() {
		t.Error("kind predicates")
	}
	for _, m := range Metrics() {
		got, err := ParseMetric(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMetric(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMetric("nope"); !errors.Is(err, ErrMalformed) || Metric(0).Valid() || Metric(0).String() != "metric(0)" {
		t.Errorf("ParseMetric(nope) = %v", err)
	}
	f := newFixture(t)
	e := f.doubleVote()
	id, err := ParseID(e.ID().String())
	if err != nil || id != e.ID() || id.Compare(e.ID()) != 0 || len(id.Short()) != 12 {
		t.Fatalf("ParseID: %v %v", id, err)
	}
	if _, err := ParseID("abc"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseID(abc) = %v", err)
	}
	for name, e := range f.samples() {
		if s := e.String(); !strings.Contains(s, string(e.Offender)) || strings.Contains(s, "no proof") {
			t.Errorf("%s: String() = %q", name, s)
		}
	}
	var nilEv *Evidence
	var nilAtt *ProposalAttestation
	var nilAcc *Accusation
	if nilEv.String() == "" || nilAtt.String() == "" || nilAcc.String() == "" {
		t.Error("nil String")
	}
	a := f.leaderEquivocation().Proposals[0]
	if !strings.Contains(a.String(), "term 3 seq 4") || !strings.Contains(f.accusation("n0", "n1", MetricLogConflicts, 4, 5).Accusation.String(), "log-conflicts=4") {
		t.Error("attestation or accusation String")
	}
	if !slices.Equal(f.members.IDs(), []NodeID{"n0", "n1", "n2", "n3"}) {
		t.Errorf("IDs = %v", f.members.IDs())
	}
	if _, ok := f.members.ByKey([]byte("short")); ok {
		t.Error("ByKey accepted a short key")
	}
}

func TestSignErrors(t *testing.T) {
	f := newFixture(t)
	priv := f.priv["n0"]
	if _, err := SignProposal(priv[:10], "n0", 1, 1, 1, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("short key: %v", err)
	}
	if _, err := SignProposal(priv, "", 1, 1, 1, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty leader: %v", err)
	}
	good := Accusation{Accuser: "n0", Accused: "n1", Metric: MetricLogConflicts, Value: 4}
	bad := map[string]func(*Accusation){
		"no accuser":     func(a *Accusation) { a.Accuser = "" },
		"no accused":     func(a *Accusation) { a.Accused = "" },
		"long detail":    func(a *Accusation) { a.Detail = strings.Repeat("x", MaxDetail+1) },
		"unknown metric": func(a *Accusation) { a.Metric = 42 },
	}
	for name, mut := range bad {
		a := good
		mut(&a)
		if _, err := SignAccusation(priv, a); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := SignAccusation(priv[:3], good); !errors.Is(err, ErrMalformed) {
		t.Errorf("short key: %v", err)
	}
	for name, fn := range map[string]func() error{
		"nil entry attestation": func() error { _, err := NewInvalidEntry(nil, nil); return err },
		"nil equivocation":      func() error { _, err := NewLeaderEquivocation(nil, nil); return err },
		"nil invalid proof":     func() error { _, err := FromInvalidProof(nil, f.members, 1); return err },
		"nil accusation":        func() error { _, err := FromAccusation(nil); return err },
		"nil fork proof":        func() error { _, err := FromForkProof(nil, f.members, 1); return err },
	} {
		if err := fn(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAttestationVerifySignature(t *testing.T) {
	f := newFixture(t)
	a := f.attest("n1", 1, 2, 3, []byte("p"))
	if err := a.VerifySignature(f.members); err != nil {
		t.Fatal(err)
	}
	a.Seq++
	if err := a.VerifySignature(f.members); err == nil {
		t.Fatal("altered attestation verifies")
	}
	b := f.attest("n9", 1, 2, 3, []byte("p"))
	if err := b.VerifySignature(f.members); err == nil {
		t.Fatal("non-member attestation verifies")
	}
}

// TestValidateClientPayload: both payload formats, valid and not.
func TestValidateClientPayload(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		valid   bool
	}{
		{"valid envelope", envelope(t, true, "x"), true},
		{"forged envelope", envelope(t, false, "x"), false},
		{"valid entry", entry(t, true, "x"), true},
		{"forged entry", entry(t, false, "x"), false},
		{"valid batch", batch(t, true, true), true},
		{"batch with a forged envelope", batch(t, true, false), false},
		{"read marker", append([]byte{0xFF, 'R', 2, 'n', '1'}, make([]byte, 8)...), true},
		{"read marker of the wrong length", append([]byte{0xFF, 'R', 2, 'n', '1'}, make([]byte, 7)...), false},
		{"read marker without an id", append([]byte{0xFF, 'R', 0}, make([]byte, 8)...), false},
		{"garbage", []byte("garbage"), false},
		{"empty", nil, false},
	}
	for _, c := range cases {
		if err := ValidateClientPayload(c.payload); (err == nil) != c.valid {
			t.Errorf("%s: ValidateClientPayload = %v", c.name, err)
		}
	}
}
