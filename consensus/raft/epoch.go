package raftengine

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/smr"
)

// ProposeEpochSwitch orders an epoch switch entry (the barrier that ends
// this Raft epoch; DESIGN invariant 10). Every replica checks its
// authorisation when it applies it. Errors as for Propose.
func (e *Engine) ProposeEpochSwitch(ctx context.Context, s *smr.EpochSwitch) (smr.Result, error) {
	if s == nil {
		return smr.Result{}, errors.New("raft engine: propose epoch switch: switch is nil")
	}
	if e.dropsEpochSwitch() {
		// The byzantine build's block-switch: nothing is appended, and
		// the caller learns nothing before it gives up.
		<-ctx.Done()
		return smr.Result{}, fmt.Errorf("raft engine: propose epoch switch: %w", ctx.Err())
	}
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewEpochSwitchEntry(t, *s) })
}
