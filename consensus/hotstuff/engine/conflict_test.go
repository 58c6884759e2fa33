package engine

import (
	"crypto/ed25519"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// TestConflictingProposalsReported: a signed proposal of a view after the
// committed block's that does not extend it (at most as high, or one
// higher with another parent) is reported; a late proposal of an earlier
// view, one that extends the committed block or whose parent is unknown
// above it, one whose signature fails, and this replica's own are not.
// Reference: HotStuff (PODC'19) §4 safety — every QC of a later view
// extends a committed block, so a correct leader never forks below it.
func TestConflictingProposalsReported(t *testing.T) {
	f := newObserveFixture(t)
	var got []ConflictObservation
	f.e.cfg.OnConflict = func(o ConflictObservation) { got = append(got, o) }
	committed := types.Hash{7, 7, 7}
	f.e.status.Store(&statusSnap{core: core.Status{CommittedHeight: 10, CommittedView: 20, CommittedHash: committed}})

	block := func(signer types.NodeID, epoch uint64, view types.View, height uint64, parent types.Hash) *types.Proposal {
		b := &types.Block{Parent: parent, View: view, Height: height, Proposer: signer, Payload: [][]byte{[]byte("x")}}
		b.Sig = ed25519.Sign(f.keys[signer], types.ProposalSignBytes(epoch, view, b.Hash()))
		return &types.Proposal{Block: b}
	}
	other := types.Hash{1}
	cases := []struct {
		name string
		p    *types.Proposal
		want bool
	}{
		{"below the committed height", block("n2", 5, 25, 8, other), true},
		{"at the committed height", block("n2", 5, 21, 10, other), true},
		{"one above, another parent", block("n3", 5, 25, 11, other), true},
		{"one above, on the committed block", block("n3", 5, 25, 11, committed), false},
		{"higher, parent unknown", block("n3", 5, 25, 13, other), false},
		{"late proposal of an earlier view", block("n2", 5, 15, 8, other), false},
		{"of the committed view", block("n2", 5, 20, 10, other), false},
		{"signed in another epoch", block("n2", 4, 25, 8, other), false},
		{"own proposal", block("n1", 5, 25, 8, other), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got = nil
			f.e.noteConflict(c.p)
			if (len(got) == 1) != c.want || len(got) > 1 {
				t.Fatalf("reported %+v, want reported = %v", got, c.want)
			}
			if c.want {
				b := c.p.Block
				if o := got[0]; o.Proposer != b.Proposer || o.View != b.View || o.Height != b.Height || o.CommittedHeight != 10 || o.CommittedView != 20 {
					t.Fatalf("observation %+v does not describe %v", o, b)
				}
			}
		})
	}

	bad := block("n2", 5, 25, 8, other)
	bad.Block.Sig[0] ^= 1
	got = nil
	f.e.noteConflict(bad)
	if len(got) != 0 {
		t.Fatalf("a proposal whose signature fails was reported: %+v", got)
	}
	f.e.cfg.OnConflict = nil
	f.e.noteConflict(block("n2", 5, 25, 8, other)) // no hook: nothing to call
}
