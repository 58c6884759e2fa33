package types

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden files")

// TestQuorumArithmetic: f = ⌊(n−1)/3⌋, q = n − f (design invariant 5).
func TestQuorumArithmetic(t *testing.T) {
	for _, tc := range []struct{ n, f, q int }{{1, 0, 1}, {3, 0, 3}, {4, 1, 3}, {5, 1, 4}, {6, 1, 5}, {7, 2, 5}, {10, 3, 7}} {
		fx := newFixture(t, tc.n, 1)
		if fx.c.F() != tc.f || fx.c.Quorum() != tc.q {
			t.Errorf("n=%d: f=%d q=%d, want f=%d q=%d", tc.n, fx.c.F(), fx.c.Quorum(), tc.f, tc.q)
		}
	}
}

func TestNewCommitteeRejects(t *testing.T) {
	key := make([]byte, 32)
	cases := map[string][]Member{
		"none":      nil,
		"duplicate": {{ID: "a", PublicKey: key}, {ID: "a", PublicKey: key}},
		"empty id":  {{ID: "", PublicKey: key}},
		"no key":    {{ID: "a"}},
		"short key": {{ID: "a", PublicKey: key[:5]}},
		"long id":   {{ID: NodeID(strings.Repeat("x", MaxIDLen+1)), PublicKey: key}},
	}
	for name, ms := range cases {
		if _, err := NewCommittee(CommitteeConfig{Members: ms}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestVerifyQC: one case per check in VerifyQC's doc comment.
func TestVerifyQC(t *testing.T) {
	fx := newFixture(t, 4, 7)
	other := newFixture(t, 4, 8) // same keys, another epoch
	var h Hash
	h[0] = 1
	valid := fx.qc(5, h, "n0", "n1", "n2")
	badSig := fx.qc(5, h, "n0", "n1", "n2")
	badSig.Sigs[1].Sig = bytes.Clone(badSig.Sigs[1].Sig)
	badSig.Sigs[1].Sig[0] ^= 1
	wrongView := valid
	wrongView.View = 6
	nonMember := valid
	nonMember.Sigs = append([]PartialSig{{Signer: "mallory", Sig: valid.Sigs[0].Sig}}, valid.Sigs[1:]...)
	dup := valid
	dup.Sigs = []PartialSig{valid.Sigs[0], valid.Sigs[0], valid.Sigs[1]}
	cases := []struct {
		name string
		qc   QC
		want error
	}{
		{"valid", valid, nil},
		{"all four", fx.qc(5, h, "n0", "n1", "n2", "n3"), nil},
		{"genesis", GenesisQC(fx.genesis.Hash()), nil},
		{"genesis for another block", GenesisQC(h), ErrInvalidCertificate},
		{"view 0 with signatures", fx.qc(0, fx.genesis.Hash(), "n0", "n1", "n2"), ErrInvalidCertificate},
		{"too few", fx.qc(5, h, "n0", "n1"), ErrTooFewSignatures},
		{"none", QC{View: 5, Block: h}, ErrTooFewSignatures},
		{"duplicate signer", dup, ErrDuplicateSigner},
		{"non-member", nonMember, ErrUnknownSigner},
		{"bad signature", badSig, ErrBadSignature},
		{"signed for another view", wrongView, ErrBadSignature},
		{"signed in another epoch", other.qc(5, h, "n0", "n1", "n2"), ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := fx.c.VerifyQC(tc.qc)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyTC(t *testing.T) {
	fx := newFixture(t, 4, 1)
	gqc := GenesisQC(fx.genesis.Hash())
	b1 := fx.block(fx.genesis, gqc, 1, "n1")
	qc1 := fx.qc(1, b1.Hash(), "n0", "n1", "n2")
	ids := []NodeID{"n0", "n1", "n2"}
	valid := fx.tc(3, ids, []QC{qc1, gqc, qc1})
	lowHigh := fx.tc(3, ids, []QC{qc1, gqc, qc1})
	lowHigh.HighQC = gqc
	future := fx.tc(1, ids, []QC{qc1, qc1, qc1})
	bad := fx.tc(3, ids, []QC{qc1, gqc, qc1})
	bad.Sigs[2].HighQCView = 0 // claims a different view than it signed
	cases := []struct {
		name string
		tc   *TC
		want error
	}{
		{"valid", valid, nil},
		{"all genesis", fx.tc(2, ids, []QC{gqc, gqc, gqc}), nil},
		{"nil", nil, ErrInvalidCertificate},
		{"too few", fx.tc(3, ids[:2], []QC{qc1, qc1}), ErrTooFewSignatures},
		{"high QC not the max", lowHigh, ErrInvalidCertificate},
		{"high QC not below view", future, ErrInvalidCertificate},
		{"altered high QC view", bad, ErrBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := fx.c.VerifyTC(tc.tc)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyTimeoutAndVote(t *testing.T) {
	fx := newFixture(t, 4, 1)
	gqc := GenesisQC(fx.genesis.Hash())
	to := fx.timeout("n1", 2, gqc)
	if err := fx.c.VerifyTimeout(to); err != nil {
		t.Fatal(err)
	}
	to.LastTC = fx.tc(1, []NodeID{"n0", "n1", "n2"}, []QC{gqc, gqc, gqc})
	if err := fx.c.VerifyTimeout(to); err != nil {
		t.Fatalf("with last TC: %v", err)
	}
	to.LastTC = fx.tc(0+1, []NodeID{"n0", "n1"}, []QC{gqc, gqc})
	if err := fx.c.VerifyTimeout(to); !errors.Is(err, ErrTooFewSignatures) {
		t.Fatalf("weak last TC: %v", err)
	}
	forged := fx.timeout("n1", 2, gqc)
	forged.Sender = "n2"
	if err := fx.c.VerifyTimeout(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged sender: %v", err)
	}
	v := fx.vote("n3", 4, fx.genesis.Hash())
	if err := fx.c.VerifyVote(v); err != nil {
		t.Fatal(err)
	}
	v.View = 5
	if err := fx.c.VerifyVote(v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("vote moved to another view: %v", err)
	}
	v.Voter = "x"
	if err := fx.c.VerifyVote(v); !errors.Is(err, ErrUnknownSigner) {
		t.Fatalf("non-member voter: %v", err)
	}
}

// TestQCCache: successes are remembered, failures are not, and eviction
// keeps the cache bounded.
func TestQCCache(t *testing.T) {
	fx := newFixture(t, 4, 1)
	var h Hash
	q := NewQCCache(fx.c, 16)
	good := fx.qc(3, h, "n0", "n1", "n2")
	if err := q.VerifyQC(good); err != nil {
		t.Fatal(err)
	}
	if len(q.seen) != 1 {
		t.Fatalf("%d cached", len(q.seen))
	}
	bad := good
	bad.Sigs = bad.Sigs[:2]
	for range 2 {
		if err := q.VerifyQC(bad); !errors.Is(err, ErrTooFewSignatures) {
			t.Fatalf("bad QC: %v", err)
		}
	}
	if len(q.seen) != 1 {
		t.Fatal("a failure was cached")
	}
	for v := range View(40) {
		h[0] = byte(v)
		if err := q.VerifyQC(fx.qc(v+1, h, "n1", "n2", "n3")); err != nil {
			t.Fatal(err)
		}
	}
	if len(q.seen) != 16 || len(q.order) != 16 {
		t.Fatalf("cache holds %d/%d, want 16", len(q.seen), len(q.order))
	}
}

// TestSignBytesGolden pins the canonical sign-bytes and hashes; a change is
// a protocol change. Rewrite with -update only after review.
func TestSignBytesGolden(t *testing.T) {
	fx := newFixture(t, 4, 3)
	var h Hash
	for i := range h {
		h[i] = byte(i)
	}
	b := &Block{Parent: h, View: 9, Height: 4, Justify: fx.qc(8, h, "n0", "n1", "n2"), Proposer: "n1", Payload: [][]byte{[]byte("set a=1"), nil}}
	var out strings.Builder
	fmt.Fprintf(&out, "vote %x\n", VoteSignBytes(3, 9, h))
	fmt.Fprintf(&out, "timeout %x\n", TimeoutSignBytes(3, 9, 8))
	fmt.Fprintf(&out, "proposal %x\n", ProposalSignBytes(3, 9, h))
	fmt.Fprintf(&out, "payload %x\n", PayloadHash(b.Payload))
	ph := b.Hash()
	fmt.Fprintf(&out, "block %s\n", hex.EncodeToString(ph[:]))
	gh := NewGenesis(nil).Hash()
	fmt.Fprintf(&out, "genesis %s\n", hex.EncodeToString(gh[:]))
	path := filepath.Join("testdata", "signbytes.golden")
	if *update {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("sign-bytes changed:\n got: %s\nwant: %s", out.String(), want)
	}
}

// TestDomainSeparation: the same fields signed as a vote and as a proposal
// give different bytes, so one signature cannot be replayed as the other.
func TestDomainSeparation(t *testing.T) {
	var h Hash
	if bytes.Equal(VoteSignBytes(1, 2, h), ProposalSignBytes(1, 2, h)) {
		t.Fatal("vote and proposal sign-bytes coincide")
	}
	if bytes.Equal(VoteSignBytes(1, 2, h), VoteSignBytes(2, 2, h)) {
		t.Fatal("epoch not bound")
	}
}
