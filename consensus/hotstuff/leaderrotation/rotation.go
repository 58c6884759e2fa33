// Package leaderrotation decides the leader of each view. Every strategy is
// deterministic: replicas that were given the same members, the same
// quarantine set and (for Reputation) the same committed history compute the
// same leader for every view, with no local clock or randomness.
//
// Strategies:
//   - RoundRobin: members in ID order, quarantined members skipped.
//   - Reputation: round-robin over members that did not fail their most
//     recent leadership (a view that produced no committed block) within a
//     sliding window of the committed history.
//   - Fixed: a given leader per view (Twins scenarios), with a fallback.
//
// The quarantine set is an input (SetQuarantined). Replicas that apply a
// quarantine at different moments may disagree about a leader for a few
// views; that costs liveness for those views (they time out), never safety.
//
// Nothing in this package is safe for concurrent use.
package leaderrotation

import (
	"slices"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Rotation returns the leader of a view.
type Rotation interface {
	Leader(v types.View) types.NodeID
}

// Quarantiner is implemented by strategies that skip quarantined members.
// SetQuarantined replaces the whole set.
type Quarantiner interface {
	SetQuarantined(ids []types.NodeID)
}

// CommitObserver is implemented by strategies that learn from the committed
// chain. The core calls Committed for every committed block, in commit
// order; a restarted replica must replay the epoch's committed blocks
// (their views suffice) before asking for leaders.
type CommitObserver interface {
	Committed(b *types.Block)
}

var (
	_ Rotation       = (*RoundRobin)(nil)
	_ Quarantiner    = (*RoundRobin)(nil)
	_ Rotation       = (*Reputation)(nil)
	_ Quarantiner    = (*Reputation)(nil)
	_ CommitObserver = (*Reputation)(nil)
	_ Rotation       = (*Fixed)(nil)
)

// RoundRobin rotates over the members in ascending ID order, skipping
// quarantined ones: leader(v) = active[v mod len(active)], where active is
// the sorted list of non-quarantined members (all members if every member is
// quarantined).
type RoundRobin struct {
	members     []types.NodeID
	quarantined map[types.NodeID]bool
	active      []types.NodeID
}

// NewRoundRobin returns a round-robin over members (order does not matter).
func NewRoundRobin(members []types.NodeID) *RoundRobin {
	r := &RoundRobin{members: sortedCopy(members)}
	r.SetQuarantined(nil)
	return r
}

func sortedCopy(ids []types.NodeID) []types.NodeID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// SetQuarantined implements Quarantiner.
func (r *RoundRobin) SetQuarantined(ids []types.NodeID) {
	r.quarantined = make(map[types.NodeID]bool, len(ids))
	for _, id := range ids {
		r.quarantined[id] = true
	}
	r.active = r.active[:0]
	for _, m := range r.members {
		if !r.quarantined[m] {
			r.active = append(r.active, m)
		}
	}
	if len(r.active) == 0 {
		r.active = append(r.active, r.members...)
	}
}

// Leader implements Rotation.
func (r *RoundRobin) Leader(v types.View) types.NodeID {
	return r.active[uint64(v)%uint64(len(r.active))]
}

// Fixed returns Schedule[v] when present and Fallback's leader otherwise.
type Fixed struct {
	Schedule map[types.View]types.NodeID
	Fallback Rotation
}

// Leader implements Rotation.
func (f *Fixed) Leader(v types.View) types.NodeID {
	if id, ok := f.Schedule[v]; ok {
		return id
	}
	return f.Fallback.Leader(v)
}
