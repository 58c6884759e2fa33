package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/smr"
)

// installBase stores Config.Base as the snapshot at height 0 of a replica
// that has stored no snapshot yet, so that rebuild starts the state machine
// from the handed-over state and the log continues at Base.Index+1. A
// replica that already stored one (a restart within the epoch) keeps it.
func (e *Engine) installBase() error {
	b := e.cfg.Base
	if b == nil {
		return nil
	}
	snap, err := e.store.snapshot()
	if err != nil {
		return err
	}
	if snap != nil {
		return nil
	}
	if err := checkSnapshotIndex(b.Snapshot, b.Index); err != nil {
		return fmt.Errorf("base state: %w", err)
	}
	if err := e.store.saveSnapshot(storedSnapshot{height: 0, index: b.Index, data: b.Snapshot}); err != nil {
		return fmt.Errorf("store the base state: %w", err)
	}
	return nil
}

// checkSnapshotIndex checks that snap is a state machine snapshot taken at
// log index idx (a handed-over base state or a transferred checkpoint).
func checkSnapshotIndex(snap []byte, idx uint64) error {
	got, _, err := smr.SnapshotInfo(snap)
	if err != nil {
		return err
	}
	if got != idx {
		return fmt.Errorf("the snapshot is at index %d, not %d", got, idx)
	}
	return nil
}

// ProposeEpochSwitch orders an epoch switch entry, the command that ends
// this epoch (DESIGN invariant 10). Errors as for Propose.
func (e *Engine) ProposeEpochSwitch(ctx context.Context, s *smr.EpochSwitch) (smr.Result, error) {
	if s == nil {
		return smr.Result{}, errors.New("hotstuff engine: propose epoch switch: switch is nil")
	}
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewEpochSwitchEntry(t, *s) })
}
