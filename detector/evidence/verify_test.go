package evidence

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/bftlog"
)

// TestVerifyAcceptsSamples: every well-formed proof of every kind verifies,
// also after a round trip through both encodings.
func TestVerifyAcceptsSamples(t *testing.T) {
	f := newFixture(t)
	for name, e := range f.samples() {
		t.Run(name, func(t *testing.T) {
			if err := Verify(e, f.members); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			b, err := Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := Verify(d, f.members); err != nil {
				t.Fatalf("Verify after decode: %v", err)
			}
			if d.ID() != e.ID() {
				t.Fatalf("ID changed across the binary round trip")
			}
			j, err := e.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var back Evidence
			if err := back.UnmarshalJSON(j); err != nil {
				t.Fatal(err)
			}
			if back.ID() != e.ID() {
				t.Fatalf("ID changed across the JSON round trip")
			}
			if e.Irrefutable() != (e.Kind != KindAccusation) {
				t.Fatalf("Irrefutable() = %v for %s", e.Irrefutable(), e.Kind)
			}
		})
	}
}

// TestVerifyChecks has one case per bullet of Verify's doc comment (CometBFT
// VerifyDuplicateVote style): each mutates a valid record so that exactly
// that check fails, and asserts the check Verify names.
func TestVerifyChecks(t *testing.T) {
	f := newFixture(t)
	flip := func(sig []byte) []byte {
		s := append([]byte(nil), sig...)
		s[0] ^= 1
		return s
	}
	cases := []struct {
		name  string
		build func() *Evidence
		check Check
	}{
		// Every kind.
		{"unknown kind", func() *Evidence { e := f.doubleVote(); e.Kind = 42; return e }, CheckKind},
		{"zero kind", func() *Evidence { e := f.doubleVote(); e.Kind = 0; return e }, CheckKind},
		{"accusation carrying a fork", func() *Evidence {
			e := f.accusation("n0", "n1", MetricStateDivergence, 1, 5)
			e.Fork = f.forkProof("n1")
			return e
		}, CheckShape},
		{"fork proof lacking a message", func() *Evidence { e := f.logFork(); e.Fork.B = nil; return e }, CheckShape},
		{"leader equivocation with one attestation", func() *Evidence { e := f.leaderEquivocation(); e.Proposals[1] = nil; return e }, CheckShape},
		{"entry without attestation", func() *Evidence { e := f.invalidEntry(); e.Entry.Attestation = nil; return e }, CheckShape},
		{"offender not a member", func() *Evidence { e := f.doubleVote(); e.Offender = "n9"; e.HotStuff.Offender = "n9"; return e }, CheckMember},

		// HotStuff kinds.
		{"hotstuff kind mismatch", func() *Evidence { e := f.doubleVote(); e.Kind = KindEquivocatingProposals; return e }, CheckOffender},
		{"hotstuff offender mismatch", func() *Evidence { e := f.doubleVote(); e.Offender = "n3"; return e }, CheckOffender},
		{"proposals with equal blocks", func() *Evidence {
			e := f.equivocatingProposals()
			e.HotStuff.Blocks[1] = e.HotStuff.Blocks[0]
			return e
		}, CheckHotStuff},
		{"vote with a bad signature", func() *Evidence {
			e := f.doubleVote()
			e.HotStuff.Votes[1].Sig = flip(e.HotStuff.Votes[1].Sig)
			return e
		}, CheckHotStuff},
		{"hotstuff evidence of another epoch", func() *Evidence { e := f.equivocatingProposals(); e.Epoch++; return e }, CheckHotStuff},
		{"hotstuff payload whose client signature verifies", func() *Evidence { return f.invalidPayload(true) }, CheckHotStuff},

		// InvalidClientSignature, Raft form.
		{"entry attested by another leader", func() *Evidence { e := f.invalidEntry(); e.Offender = "n1"; return e }, CheckOffender},
		{"entry of another epoch", func() *Evidence { e := f.invalidEntry(); e.Epoch++; return e }, CheckEpoch},
		{"entry attestation bad signature", func() *Evidence {
			e := f.invalidEntry()
			e.Entry.Attestation.Sig = flip(e.Entry.Attestation.Sig)
			return e
		}, CheckSignature},
		{"entry payload not the attested one", func() *Evidence { e := f.invalidEntry(); e.Entry.Payload = entry(t, false, "other"); return e }, CheckPayloadHash},
		{"entry whose client signature verifies", func() *Evidence {
			p := entry(t, true, "fine")
			return f.must(NewInvalidEntry(f.attest("n0", testEpoch, 3, 4, p), p))
		}, CheckPayload},
		{"entry that is a valid bare envelope", func() *Evidence {
			p := envelope(t, true, "fine")
			return f.must(NewInvalidEntry(f.attest("n0", testEpoch, 3, 4, p), p))
		}, CheckPayload},

		// LogFork.
		{"fork by another member's key", func() *Evidence { e := f.logFork(); e.Offender = "n0"; return e }, CheckOffender},
		{"fork not in canonical order", func() *Evidence { e := f.logFork(); e.Fork.A, e.Fork.B = e.Fork.B, e.Fork.A; return e }, CheckCanonical},
		{"fork of two messages with different prevs", func() *Evidence {
			a := f.msg("n3", bftlog.ID{}, nil, "first")
			b := f.msg("n3", a.ID(), nil, "second")
			if b.ID().Compare(a.ID()) < 0 {
				a, b = b, a
			}
			return &Evidence{Kind: KindLogFork, Offender: "n3", Epoch: testEpoch, Fork: &bftlog.ForkProof{A: a, B: b}}
		}, CheckForkProof},
		{"fork message with a bad signature", func() *Evidence {
			e := f.logFork()
			raw, _ := e.Fork.B.MarshalBinary()
			raw[len(raw)-1] ^= 1
			m, err := bftlog.DecodeMessage(raw)
			if err != nil {
				t.Fatal(err)
			}
			e.Fork.B = m
			return e
		}, CheckForkProof},

		// InvalidMessage.
		{"invalid message by another member's key", func() *Evidence { e := f.invalidMessage(); e.Offender = "n1"; return e }, CheckOffender},
		{"invalid message without its witness", func() *Evidence { e := f.invalidMessage(); e.Invalid.Witness = nil; return e }, CheckInvalidProof},
		{"invalid message with the wrong reason", func() *Evidence { e := f.invalidMessage(); e.Invalid.Reason = bftlog.ReasonSelfDep; return e }, CheckInvalidProof},

		// LeaderEquivocation.
		{"attestations by another leader", func() *Evidence { e := f.leaderEquivocation(); e.Offender = "n1"; return e }, CheckOffender},
		{"attestations of another epoch", func() *Evidence { e := f.leaderEquivocation(); e.Epoch++; return e }, CheckEpoch},
		{"attestations of different terms", func() *Evidence {
			return f.must(NewLeaderEquivocation(f.attest("n0", testEpoch, 3, 4, []byte("x")), f.attest("n0", testEpoch, 4, 4, []byte("y"))))
		}, CheckSameSlot},
		{"attestations of different seqs", func() *Evidence {
			return f.must(NewLeaderEquivocation(f.attest("n0", testEpoch, 3, 4, []byte("x")), f.attest("n0", testEpoch, 3, 5, []byte("y"))))
		}, CheckSameSlot},
		{"attestations of one payload", func() *Evidence {
			a := f.attest("n0", testEpoch, 3, 4, []byte("x"))
			return &Evidence{Kind: KindLeaderEquivocation, Offender: "n0", Epoch: testEpoch, Proposals: [2]*ProposalAttestation{a, a}}
		}, CheckConflict},
		{"attestations not in canonical order", func() *Evidence {
			e := f.leaderEquivocation()
			e.Proposals[0], e.Proposals[1] = e.Proposals[1], e.Proposals[0]
			return e
		}, CheckCanonical},
		{"attestation with a bad signature", func() *Evidence {
			e := f.leaderEquivocation()
			e.Proposals[1].Sig = flip(e.Proposals[1].Sig)
			return e
		}, CheckSignature},
		{"attestation signed by another member", func() *Evidence {
			a := f.attest("n0", testEpoch, 3, 4, []byte("x"))
			b := f.attest("n1", testEpoch, 3, 4, []byte("y"))
			b.Leader = "n0"
			return f.must(NewLeaderEquivocation(a, b))
		}, CheckSignature},

		// CheckpointEquivocation.
		{"checkpoint equivocation with one vote", func() *Evidence { e := f.checkpointEquivocation(); e.Checkpoints[0] = nil; return e }, CheckShape},
		{"checkpoint votes by another member", func() *Evidence { e := f.checkpointEquivocation(); e.Offender = "n1"; return e }, CheckOffender},
		{"checkpoint votes of two signers", func() *Evidence {
			return &Evidence{Kind: KindCheckpointEquivocation, Offender: "n2", Epoch: testEpoch,
				Checkpoints: ckptPair(f.checkpointVote("n2", testEpoch, 1200, 0x0a), f.checkpointVote("n3", testEpoch, 1200, 0x0b))}
		}, CheckOffender},
		{"checkpoint votes of another epoch", func() *Evidence { e := f.checkpointEquivocation(); e.Epoch++; return e }, CheckEpoch},
		{"checkpoint votes of two epochs", func() *Evidence {
			return f.must(NewCheckpointEquivocation(f.checkpointVote("n2", testEpoch, 1200, 0x0a), f.checkpointVote("n2", testEpoch+1, 1200, 0x0b)))
		}, CheckEpoch},
		{"checkpoint vote with an invalid statement", func() *Evidence {
			e := f.checkpointEquivocation()
			e.Checkpoints[1].Statement.Mode = checkpoint.ModeBFT // a checkpoint names no mode
			return e
		}, CheckStatement},
		{"checkpoint votes of different indexes", func() *Evidence {
			return f.must(NewCheckpointEquivocation(f.checkpointVote("n2", testEpoch, 1200, 0x0a), f.checkpointVote("n2", testEpoch, 1300, 0x0b)))
		}, CheckSameSlot},
		{"checkpoint and handoff votes", func() *Evidence {
			e := f.checkpointEquivocation()
			v, err := checkpoint.Sign(f.priv["n2"], "n2", checkpoint.Statement{Kind: checkpoint.KindHandoff, Epoch: testEpoch, Index: 1200,
				StateHash: e.Checkpoints[1].Statement.StateHash, Mode: checkpoint.ModeBFT, Members: []string{"n0", "n1", "n2", "n3"}})
			if err != nil {
				t.Fatal(err)
			}
			e.Checkpoints[1] = &v
			return e
		}, CheckSameSlot},
		{"checkpoint votes for one state", func() *Evidence {
			v := f.checkpointVote("n2", testEpoch, 1200, 0x0a)
			return &Evidence{Kind: KindCheckpointEquivocation, Offender: "n2", Epoch: testEpoch, Checkpoints: ckptPair(v, v)}
		}, CheckConflict},
		{"checkpoint votes not in canonical order", func() *Evidence {
			e := f.checkpointEquivocation()
			e.Checkpoints[0], e.Checkpoints[1] = e.Checkpoints[1], e.Checkpoints[0]
			return e
		}, CheckCanonical},
		{"checkpoint vote with a bad signature", func() *Evidence {
			e := f.checkpointEquivocation()
			e.Checkpoints[1].Sig = flip(e.Checkpoints[1].Sig)
			return e
		}, CheckSignature},
		{"checkpoint vote signed by another member", func() *Evidence {
			a := f.checkpointVote("n2", testEpoch, 1200, 0x0a)
			b := f.checkpointVote("n3", testEpoch, 1200, 0x0b)
			b.Signer = "n2"
			return f.must(NewCheckpointEquivocation(a, b))
		}, CheckSignature},
		{"checkpoint vote signed by a non-member", func() *Evidence {
			a := f.checkpointVote("n2", testEpoch, 1200, 0x0a)
			b := f.checkpointVote("n9", testEpoch, 1200, 0x0b)
			b.Signer = "n2"
			return f.must(NewCheckpointEquivocation(a, b))
		}, CheckSignature},

		// Accusation.
		{"accusation of someone else", func() *Evidence { e := f.accusation("n0", "n1", MetricLogConflicts, 5, 1); e.Offender = "n2"; return e }, CheckOffender},
		{"accusation of another epoch", func() *Evidence { e := f.accusation("n0", "n1", MetricLogConflicts, 5, 1); e.Epoch++; return e }, CheckEpoch},
		{"self accusation", func() *Evidence { return f.accusation("n1", "n1", MetricLogConflicts, 5, 1) }, CheckAccuser},
		{"accusation by a non-member", func() *Evidence { return f.accusation("n9", "n1", MetricLogConflicts, 5, 1) }, CheckAccuser},
		{"accusation with an unknown metric", func() *Evidence {
			e := f.accusation("n0", "n1", MetricLogConflicts, 5, 1)
			e.Accusation.Metric = 0
			return e
		}, CheckMetric},
		{"accusation with a negative value", func() *Evidence { return f.accusation("n0", "n1", MetricVoteLatencyP99, -1, 1) }, CheckMetric},
		{"accusation with a bad signature", func() *Evidence {
			e := f.accusation("n0", "n1", MetricLogConflicts, 5, 1)
			e.Accusation.Value = 6
			return e
		}, CheckSignature},
		{"accusation signed by another member", func() *Evidence {
			e := f.accusation("n2", "n1", MetricLogConflicts, 5, 1)
			e.Accusation.Accuser = "n0"
			return e
		}, CheckSignature},
	}
	covered := map[Check]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.build(), f.members)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a *VerifyError for %q", err, c.check)
			}
			if !errors.Is(err, ErrInvalidEvidence) {
				t.Fatalf("error %v does not wrap ErrInvalidEvidence", err)
			}
			if ve.Check != c.check {
				t.Fatalf("failed check %q (%v), want %q", ve.Check, err, c.check)
			}
		})
		covered[c.check] = true
	}
	for _, c := range []Check{CheckKind, CheckShape, CheckMember, CheckOffender, CheckEpoch, CheckHotStuff, CheckCanonical,
		CheckSameSlot, CheckConflict, CheckSignature, CheckPayloadHash, CheckPayload, CheckForkProof, CheckInvalidProof,
		CheckAccuser, CheckMetric, CheckStatement} {
		if !covered[c] {
			t.Errorf("no case for check %q", c)
		}
	}
}

// ckptPair returns copies of a and b as the two votes of evidence.
func ckptPair(a, b checkpoint.Vote) [2]*checkpoint.Vote { return [2]*checkpoint.Vote{&a, &b} }

func TestVerifyNil(t *testing.T) {
	f := newFixture(t)
	if err := Verify(nil, f.members); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("Verify(nil) = %v", err)
	}
	if err := Verify(f.doubleVote(), nil); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("Verify without members = %v", err)
	}
}

func TestFromHotStuffRejectsUnknownKind(t *testing.T) {
	if _, err := FromHotStuff(&types.Evidence{Kind: 9, Offender: "n1"}, 1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
	if _, err := FromHotStuff(nil, 1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
}

func TestFromForkProofNonMember(t *testing.T) {
	f := newFixture(t)
	if _, err := FromForkProof(f.forkProof("n9"), f.members, 1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
	// The constructor puts the proof in canonical order.
	p := f.forkProof("n1")
	p.A, p.B = p.B, p.A
	e := f.must(FromForkProof(p, f.members, 1))
	if e.Fork.A.ID().Compare(e.Fork.B.ID()) >= 0 {
		t.Fatal("fork proof not canonical")
	}
}

func TestMembers(t *testing.T) {
	k := testKey("a").Public().(ed25519.PublicKey)
	cases := []struct {
		name string
		ms   []Member
	}{
		{"empty", nil},
		{"empty id", []Member{{ID: "", PublicKey: k}}},
		{"duplicate id", []Member{{ID: "a", PublicKey: k}, {ID: "a", PublicKey: testKey("b").Public().(ed25519.PublicKey)}}},
		{"shared key", []Member{{ID: "a", PublicKey: k}, {ID: "b", PublicKey: k}}},
		{"short key", []Member{{ID: "a", PublicKey: k[:5]}}},
	}
	for _, c := range cases {
		if _, err := NewMembers(c.ms); !errors.Is(err, ErrInvalidMembers) {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
	for n, wantF := range map[int]int{1: 0, 3: 0, 4: 1, 6: 1, 7: 2, 10: 3} {
		var ms []Member
		for i := range n {
			ms = append(ms, Member{ID: NodeID(rune('a' + i)), PublicKey: testKey(string(rune('a' + i))).Public().(ed25519.PublicKey)})
		}
		m, err := NewMembers(ms)
		if err != nil {
			t.Fatal(err)
		}
		if m.N() != n || m.F() != wantF {
			t.Errorf("n=%d: N()=%d F()=%d, want F=%d", n, m.N(), m.F(), wantF)
		}
		if id, ok := m.ByKey(ms[0].PublicKey); !ok || id != ms[0].ID {
			t.Errorf("ByKey = %q %v", id, ok)
		}
	}
}

// TestOffenseKey: two proofs of the same offence share the key; offences
// in different views or slots do not.
func TestOffenseKey(t *testing.T) {
	f := newFixture(t)
	e1 := f.leaderEquivocation()
	e2 := f.must(NewLeaderEquivocation(f.attest("n0", testEpoch, 3, 4, []byte("p")), f.attest("n0", testEpoch, 3, 4, []byte("q"))))
	e3 := f.must(NewLeaderEquivocation(f.attest("n0", testEpoch, 3, 5, []byte("p")), f.attest("n0", testEpoch, 3, 5, []byte("q"))))
	if e1.OffenseKey() != e2.OffenseKey() {
		t.Errorf("same slot, different keys: %q %q", e1.OffenseKey(), e2.OffenseKey())
	}
	if e1.OffenseKey() == e3.OffenseKey() {
		t.Errorf("different slots, same key %q", e1.OffenseKey())
	}
	if a, b := f.logFork(), f.must(FromForkProof(f.forkProof("n3"), f.members, testEpoch+1)); a.OffenseKey() != b.OffenseKey() {
		t.Errorf("forks of one key differ: %q %q", a.OffenseKey(), b.OffenseKey())
	}
	seen := map[string]string{}
	for name, e := range f.samples() {
		k := e.OffenseKey()
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share offence key %q", name, other, k)
		}
		seen[k] = name
	}
}
