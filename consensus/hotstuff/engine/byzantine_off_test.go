//go:build !byzantine

package engine

import (
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// TestDefaultBuildIgnoresByzantine: without the byzantine build tag the
// engine sends every message itself, whatever TANDEM_BYZANTINE says.
func TestDefaultBuildIgnoresByzantine(t *testing.T) {
	t.Setenv("TANDEM_BYZANTINE", "equivocate,forge-signature,double-vote,withhold-votes,garbage,omit-requests")
	e := &Engine{cfg: Config{ID: "n1"}}
	for _, m := range []core.Outbound{
		{Msg: &types.Proposal{Block: &types.Block{View: 1, Proposer: "n1"}}},
		{To: "n2", Msg: &types.Vote{View: 1, Voter: "n1"}},
		{Msg: &types.Vote{View: 1, Voter: "n1"}},
	} {
		if e.misbehave(m) {
			t.Fatalf("the default build misbehaved on %T", m.Msg)
		}
	}
	if e.omitCommand([]byte("any command")) {
		t.Fatal("the default build omitted a forwarded command")
	}
}
