//go:build !byzantine

package node

import (
	"testing"

	"github.com/tandem-consensus/tandem/checkpoint"
)

// TestDefaultCheckpointerSendsOneVote: without the byzantine build tag a
// node sends its one checkpoint vote to every peer, whatever
// TANDEM_BYZANTINE says (a byzantine build with equivocate-checkpoint
// would send some peers a second vote for another state).
func TestDefaultCheckpointerSendsOneVote(t *testing.T) {
	t.Setenv("TANDEM_BYZANTINE", "equivocate-checkpoint")
	f := newCkptFixture(t, 5)
	v := f.sign(t, 0, checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: cftEpoch, Index: 10, StateHash: [32]byte{0xa}})
	gs := f.replicas[0].c.voteGroups(v)
	if len(gs) != 1 || gs[0].to != nil || !gs[0].vote.Statement.Equal(v.Statement) || string(gs[0].vote.Sig) != string(v.Sig) {
		t.Fatalf("vote groups %+v, want the one vote for every peer", gs)
	}
}
