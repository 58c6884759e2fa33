package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// The detector's hooks (DESIGN invariant 9): the engine reports the proofs
// its core finds through Config.OnEvidence, and the node hands the
// quarantine list back through SetQuarantined.

// reportEvidence passes a proof found by the core to Config.OnEvidence.
// It runs on the loop.
func (e *Engine) reportEvidence(ev *types.Evidence) {
	if ev == nil || e.cfg.OnEvidence == nil {
		return
	}
	e.cfg.OnEvidence(ev)
}

// SetQuarantined replaces the set of quarantined members: every replica
// skips them in leader rotation, drops their consensus messages and never
// counts their votes; if one of them leads the current view, this replica
// times the view out at once (an immediate view change once a quorum does
// the same). Every correct replica must be given the same set, as each one
// is after verifying the same evidence. It returns once the loop has
// applied the set, or with an error wrapping consensus.ErrUnavailable when
// ctx ends first.
func (e *Engine) SetQuarantined(ctx context.Context, ids []types.NodeID) error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		if !e.committee.IsMember(id) {
			return fmt.Errorf("hotstuff engine: quarantine %q: not a committee member", id)
		}
	}
	return e.inLoop(ctx, "set quarantined", func() {
		e.log.Info("quarantined members set", "members", ids)
		e.quarantined = ids
		e.core.SetQuarantined(ids)
	})
}
