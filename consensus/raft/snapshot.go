package raftengine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// SaveSnapshot writes a copy of the replicated state to w and returns the
// log index it reflects. It must run on the leader.
//
// The copy is taken as ReadBarrier followed by StateMachine.Snapshot, so it
// includes every write committed before the call (it is linearizable) and
// is internally consistent (the state machine snapshots under its lock).
// raft.Snapshot is deliberately not used: it compacts the log as a side
// effect, fails with ErrNothingNewToSnapshot when nothing changed since the
// last snapshot, and reflects only this node's applied index, not a
// linearizable point. The bytes are checked with Config.InspectSnapshot
// before they are written, so a saved file is always restorable.
func (e *Engine) SaveSnapshot(ctx context.Context, w io.Writer) (index uint64, err error) {
	if err := e.ReadBarrier(ctx); err != nil {
		return 0, err
	}
	b, err := e.cfg.FSM.Snapshot()
	if err != nil {
		return 0, fmt.Errorf("raft engine: save snapshot: %w", err)
	}
	index, err = e.cfg.InspectSnapshot(b)
	if err != nil {
		return 0, fmt.Errorf("raft engine: save snapshot: the state machine produced a snapshot it cannot read back: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return 0, fmt.Errorf("raft engine: save snapshot: write: %w", err)
	}
	return index, nil
}

// InspectSMRSnapshot checks that b is a valid smr snapshot by restoring it
// into a scratch state machine, and returns the applied index it carries.
// It is the default Config.InspectSnapshot.
func InspectSMRSnapshot(b []byte) (uint64, error) {
	// The genesis of the scratch machine is irrelevant: Restore replaces
	// the whole state. smr.New only requires one well-formed admin key.
	scratch, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{make(ed25519.PublicKey, ed25519.PublicKeySize)}})
	if err != nil {
		return 0, fmt.Errorf("create scratch state machine: %w", err)
	}
	if err := scratch.Restore(b); err != nil {
		return 0, err
	}
	return scratch.AppliedIndex(), nil
}

// Compact takes a Raft snapshot of the state applied so far, after which
// hashicorp/raft deletes the log up to the snapshot but the last retain
// entries (or more, when trailing_logs is higher). The node calls it after
// a stable checkpoint. retain is log_retention: it raises the trailing
// logs kept by this and by Raft's own threshold snapshots, never lowers
// them (a settings reload sets them back to trailing_logs, and the next
// Compact raises them again). It returns the Raft log index of the
// snapshot, or 0 when nothing was applied since the last one.
func (e *Engine) Compact(retain uint64) (uint64, error) {
	if e.stopped.Load() {
		return 0, consensus.ErrStopped
	}
	if rc := e.raft.ReloadableConfig(); rc.TrailingLogs < retain {
		rc.TrailingLogs = retain
		if err := e.raft.ReloadConfig(rc); err != nil {
			return 0, fmt.Errorf("raft engine: compact: keep %d trailing entries: %w", retain, err)
		}
	}
	f := e.raft.Snapshot()
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return 0, nil
		}
		return 0, fmt.Errorf("raft engine: compact: %w", e.mapErr(err))
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("raft engine: compact: open the snapshot taken: %w", err)
	}
	_ = rc.Close()
	return meta.Index, nil
}
