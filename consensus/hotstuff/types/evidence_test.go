package types

import (
	"errors"
	"strings"
	"testing"
)

var rejectBad = ValidatorFunc(func(c []byte) error {
	if strings.HasPrefix(string(c), "bad") {
		return errors.New("bad command")
	}
	return nil
})

// TestEvidenceVerify: one case per bullet of Evidence.Verify's doc comment,
// plus the encoding round trip of every valid case.
func TestEvidenceVerify(t *testing.T) {
	fx := newFixture(t, 4, 1)
	gqc := GenesisQC(fx.genesis.Hash())
	a := fx.block(fx.genesis, gqc, 3, "n2", "x")
	b := fx.block(fx.genesis, gqc, 3, "n2", "y")
	otherView := fx.block(fx.genesis, gqc, 4, "n2", "y")
	otherProposer := fx.block(fx.genesis, gqc, 3, "n1", "y")
	forged := *b
	forged.Sig = a.Sig
	va, vb := fx.vote("n3", 5, a.Hash()), fx.vote("n3", 5, b.Hash())
	bad := fx.block(fx.genesis, gqc, 6, "n0", "ok", "bad!")

	cases := []struct {
		name  string
		ev    *Evidence
		valid bool
	}{
		{"equivocation", &Evidence{Kind: EquivocatingProposal, Offender: "n2", View: 3, Blocks: [2]*Block{a, b}}, true},
		{"equivocation same block", &Evidence{Kind: EquivocatingProposal, Offender: "n2", View: 3, Blocks: [2]*Block{a, a}}, false},
		{"equivocation other view", &Evidence{Kind: EquivocatingProposal, Offender: "n2", View: 3, Blocks: [2]*Block{a, otherView}}, false},
		{"equivocation other proposer", &Evidence{Kind: EquivocatingProposal, Offender: "n2", View: 3, Blocks: [2]*Block{a, otherProposer}}, false},
		{"equivocation wrong offender", &Evidence{Kind: EquivocatingProposal, Offender: "n1", View: 3, Blocks: [2]*Block{a, b}}, false},
		{"equivocation forged signature", &Evidence{Kind: EquivocatingProposal, Offender: "n2", View: 3, Blocks: [2]*Block{a, &forged}}, false},
		{"equivocation one block", &Evidence{Kind: EquivocatingProposal, Offender: "n2", View: 3, Blocks: [2]*Block{a}}, false},
		{"duplicate vote", &Evidence{Kind: DuplicateVote, Offender: "n3", View: 5, Votes: [2]*Vote{va, vb}}, true},
		{"duplicate vote same block", &Evidence{Kind: DuplicateVote, Offender: "n3", View: 5, Votes: [2]*Vote{va, va}}, false},
		{"duplicate vote two voters", &Evidence{Kind: DuplicateVote, Offender: "n3", View: 5, Votes: [2]*Vote{va, fx.vote("n2", 5, b.Hash())}}, false},
		{"duplicate vote two views", &Evidence{Kind: DuplicateVote, Offender: "n3", View: 5, Votes: [2]*Vote{va, fx.vote("n3", 6, b.Hash())}}, false},
		{"invalid payload", &Evidence{Kind: InvalidPayload, Offender: "n0", View: 6, Blocks: [2]*Block{bad}, Command: 1, Reason: "bad command"}, true},
		{"invalid payload valid command", &Evidence{Kind: InvalidPayload, Offender: "n0", View: 6, Blocks: [2]*Block{bad}, Command: 0}, false},
		{"invalid payload index", &Evidence{Kind: InvalidPayload, Offender: "n0", View: 6, Blocks: [2]*Block{bad}, Command: 2}, false},
		{"invalid payload not signed by offender", &Evidence{Kind: InvalidPayload, Offender: "n1", View: 6, Blocks: [2]*Block{bad}, Command: 1}, false},
		{"unknown kind", &Evidence{Kind: 99, Offender: "n0"}, false},
		{"non-member", &Evidence{Kind: DuplicateVote, Offender: "zz", View: 5, Votes: [2]*Vote{va, vb}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ev.Verify(fx.c, rejectBad)
			if tc.valid != (err == nil) {
				t.Fatalf("Verify = %v, want valid=%v", err, tc.valid)
			}
			if err != nil && !errors.Is(err, ErrInvalidEvidence) {
				t.Fatalf("error %v does not wrap ErrInvalidEvidence", err)
			}
			got, err := UnmarshalEvidence(MarshalEvidence(tc.ev))
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			if !got.Equal(tc.ev) {
				t.Fatal("round trip changed the evidence")
			}
			if tc.valid {
				if err := got.Verify(fx.c, rejectBad); err != nil {
					t.Fatalf("decoded evidence no longer verifies: %v", err)
				}
			}
		})
	}
}
