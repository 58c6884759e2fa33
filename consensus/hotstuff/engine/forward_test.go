package engine

import (
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// A command handed over in view v goes at once to the leaders of v, v+1
// and v+2 (but this replica), so that a command that misses the next
// leader's proposal is ordered by the leader after it.
func TestForwardTargets(t *testing.T) {
	ids := []types.NodeID{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}
	roundRobin := func(v types.View) types.NodeID { return ids[int(v)%len(ids)] }
	for _, tc := range []struct {
		name   string
		self   types.NodeID
		v      types.View
		leader func(types.View) types.NodeID
		want   []types.NodeID
	}{
		{"three other leaders", "n1", 3, roundRobin, []types.NodeID{"n4", "n5", "n6"}},
		{"self leads the next view", "n5", 3, roundRobin, []types.NodeID{"n4", "n6"}},
		{"self leads the view after next", "n6", 3, roundRobin, []types.NodeID{"n4", "n5"}},
		{"repeated leader once", "n1", 0, func(v types.View) types.NodeID { return ids[1+int(v)/2%2] }, []types.NodeID{"n2", "n3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := forwardTargets(tc.self, tc.v, tc.leader); !slices.Equal(got, tc.want) {
				t.Fatalf("forwardTargets(%s, %d) = %v, want %v", tc.self, tc.v, got, tc.want)
			}
		})
	}
}
