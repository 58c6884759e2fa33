package leaderrotation

import (
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// ReputationConfig tunes Reputation.
type ReputationConfig struct {
	// Window is how many views of committed history are looked at.
	Window int
	// Lag is how far behind the view being decided the window ends: the
	// leader of view v depends on views [v−Lag−Window, v−Lag). With a
	// 3-chain commit rule, blocks commit about 3 views after they are
	// proposed, so Lag ≥ 3 keeps the leader of the current view a function
	// of history every replica has already committed during normal
	// operation.
	Lag int
}

// DefaultReputationConfig returns Window = 2·n views, Lag = 4 views. A
// short window matters: failures are judged only on committed history, so
// while commits stall (for example because a crashed member that has not
// been judged yet keeps getting views) an exclusion made earlier can only
// end by sliding out of the window.
func DefaultReputationConfig(n int) ReputationConfig {
	return ReputationConfig{Window: 2 * max(n, 1), Lag: 4}
}

// Validate checks the config.
func (c ReputationConfig) Validate() error {
	if c.Window < 1 {
		return fmt.Errorf("reputation: window is %d views, must be at least 1", c.Window)
	}
	if c.Lag < 1 {
		return fmt.Errorf("reputation: lag is %d views, must be at least 1", c.Lag)
	}
	return nil
}

// Reputation rotates away from leaders that recently failed to produce a
// block that got committed.
//
// Definitions, all functions of the committed chain (genesis counts as
// committed in view 0). Let H be the highest committed view. A view x ≤ H
// succeeded if a committed block has view x, and failed otherwise (no
// block of that view made it into the chain: its leader was silent,
// crashed, equivocated, or its block was orphaned).
//
// The window of view v is [v−Lag−Window, v−Lag). It is judged once
// H ≥ v−Lag−1: every view in it is then known to have succeeded or failed,
// and no later commit can change that, so every replica with a judged
// window computes the same leader:
//
//   - L*(v), for v with a judged window: a member is excluded if, among the
//     window's views it led (by L*), the most recent one failed; L*(v) =
//     eligible[v mod len(eligible)], eligible being the non-excluded
//     members in ID order (all members if none is eligible). L* recurses
//     only into lower views and is memoized.
//   - While v's window is not judged (commits lag more than Lag views
//     behind, for example while a crashed member keeps stalling the chain),
//     the leader is plain round-robin: a replica never acts on partial
//     history, so replicas that committed different amounts still agree.
//
// Leader(v) is that choice unless the member is quarantined, in which case
// it is the next member of the same list that is not quarantined (falling
// back to any non-quarantined member).
//
// Blame for a failed view x goes to L*(x). When view x was actually run
// under the round-robin fallback, or a quarantined member was replaced, the
// member that really led x may differ, so blame is then approximate: a
// correct member can be skipped for one window, never more. This is the
// price of using only committed history, which every replica agrees on.
//
// Views far below H are forgotten (memory is bounded to about
// 3·(Window+Lag) views); do not ask for them.
type Reputation struct {
	cfg         ReputationConfig
	members     []types.NodeID
	quarantined map[types.NodeID]bool

	highest   types.View                  // H
	committed map[types.View]bool         // committed views ≥ floor
	memo      map[types.View]types.NodeID // final L* values ≥ floor
	floor     types.View
	next      types.View // lowest view not yet memoized
}

// NewReputation returns a Reputation over members; cfg must be valid.
func NewReputation(members []types.NodeID, cfg ReputationConfig) *Reputation {
	return &Reputation{
		cfg:         cfg,
		members:     sortedCopy(members),
		quarantined: map[types.NodeID]bool{},
		committed:   map[types.View]bool{0: true},
		memo:        map[types.View]types.NodeID{},
		next:        1,
	}
}

// SetQuarantined implements Quarantiner.
func (r *Reputation) SetQuarantined(ids []types.NodeID) {
	r.quarantined = make(map[types.NodeID]bool, len(ids))
	for _, id := range ids {
		r.quarantined[id] = true
	}
}

// Committed implements CommitObserver. Blocks at or below the highest
// committed view are ignored.
func (r *Reputation) Committed(b *types.Block) { r.CommittedView(b.View) }

// CommittedView records that a block of view v was committed (for replay
// from a compact list of committed views).
func (r *Reputation) CommittedView(v types.View) {
	if v <= r.highest {
		return
	}
	r.highest = v
	r.committed[v] = true
	r.extendMemo()
	r.prune()
}

// final reports whether u's window is judged (H ≥ u−Lag−1).
func (r *Reputation) final(u types.View) bool {
	return uint64(u) <= uint64(r.highest)+uint64(r.cfg.Lag)+1
}

// extendMemo computes L* for every newly final view, in increasing order
// (each needs only lower, already memoized views).
func (r *Reputation) extendMemo() {
	for ; r.final(r.next); r.next++ {
		r.memo[r.next] = r.compute(r.next)
	}
}

func (r *Reputation) prune() {
	keep := uint64(3 * (r.cfg.Window + r.cfg.Lag))
	if uint64(r.highest) <= keep {
		return
	}
	floor := types.View(uint64(r.highest) - keep)
	for v := r.floor; v < floor; v++ {
		delete(r.memo, v)
		delete(r.committed, v)
	}
	r.floor = floor
}

// leaderStar returns L*(u), memoized when final.
func (r *Reputation) leaderStar(u types.View) types.NodeID {
	if id, ok := r.memo[u]; ok {
		return id
	}
	if u < r.floor || u == 0 {
		return r.members[uint64(u)%uint64(len(r.members))]
	}
	return r.compute(u)
}

// eligible returns the members not excluded for view u, whose window must
// be judged (final(u)).
func (r *Reputation) eligible(u types.View) []types.NodeID {
	lag, win := uint64(r.cfg.Lag), uint64(r.cfg.Window)
	if uint64(u) <= lag {
		return r.members
	}
	end := uint64(u) - lag // exclusive; end-1 ≤ H because the window is judged
	start := uint64(0)
	if end > win {
		start = end - win
	}
	start = max(start, 1, uint64(r.floor))
	decided := make(map[types.NodeID]bool, len(r.members))
	excluded := make(map[types.NodeID]bool, len(r.members))
	for x := end; x > start; {
		x--
		l := r.leaderStar(types.View(x))
		if decided[l] {
			continue
		}
		decided[l] = true
		if !r.committed[types.View(x)] {
			excluded[l] = true
		}
		if len(decided) == len(r.members) {
			break
		}
	}
	if len(excluded) == 0 {
		return r.members
	}
	out := make([]types.NodeID, 0, len(r.members))
	for _, m := range r.members {
		if !excluded[m] {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return r.members
	}
	return out
}

func (r *Reputation) compute(u types.View) types.NodeID {
	el := r.eligible(u)
	return el[uint64(u)%uint64(len(el))]
}

// Leader implements Rotation.
func (r *Reputation) Leader(v types.View) types.NodeID {
	el := r.members // round-robin while v's window is not judged
	if r.final(v) {
		el = r.eligible(v)
	}
	i := uint64(v) % uint64(len(el))
	if !r.quarantined[el[i]] {
		return el[i]
	}
	for k := 1; k < len(el); k++ {
		if c := el[(i+uint64(k))%uint64(len(el))]; !r.quarantined[c] {
			return c
		}
	}
	for k := range r.members {
		if c := r.members[(uint64(v)+uint64(k))%uint64(len(r.members))]; !r.quarantined[c] {
			return c
		}
	}
	return el[i]
}
