package node

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
)

// Re-sync in bft mode (and in the HotStuff epochs of auto mode).
//
// As in cft, the divergence is in this replica's state machine, not in the
// chain: the committed blocks are the cluster's, certified by QCs. The
// replica rebuilds its state from the chain as a replica with a wiped
// block store does:
//
//  1. It stops its HotStuff engine and moves the block store (blocks and
//     the state machine snapshot taken from the diverged state) aside
//     (hotstuff/blocks.db.diverged, the previous such copy is deleted).
//  2. It keeps the safety file: the last view it voted in and its locked
//     QC stay on record, so the fresh engine never votes twice in a view
//     and never against its lock. A HotStuff replica is never needed for
//     progress while it catches up (q of n, and it is one of the f a
//     quorum can do without).
//  3. It resets the state machine (empty, or the epoch's certified base
//     state in auto mode) and starts a fresh engine on the same storage
//     directory: the engine fetches the committed blocks from its peers,
//     each verified by the chain of hashes from a QC, and applies them;
//     blocks its peers pruned come as a certified checkpoint instead
//     (engine/transfer.go).
//  4. Once it has applied past the diverged index it serves again; a
//     later stable checkpoint of its own state confirms the re-sync.
//
// A restart during the re-sync needs no resuming: the engine starts from
// whatever blocks the fresh store holds and catches up the same way.

// resyncBFT runs steps 1–4.
func (r *resyncer) resyncBFT(ctx context.Context, rep resyncReport) error {
	n := r.n
	n.ckpt.dropOwnVotes()
	if err := r.saveDiverged(rep, false); err != nil {
		return err
	}
	// 1.
	if err := n.bftEng().Stop(); err != nil {
		r.log.Warn("re-sync: stopping the HotStuff engine", "err", err)
	}
	dataDir := n.cfg.DataDir
	var rec *epochRecord
	if n.sel != nil {
		x := n.sel.record()
		rec = &x
		dataDir = n.epochDir(x.Epoch)
	}
	store := filepath.Join(dataDir, "hotstuff", hsengine.BlockStoreName)
	if err := moveAside(store, store+".diverged"); err != nil {
		return fmt.Errorf("move the diverged block store aside: %w", err)
	}
	r.log.Warn("re-sync: the block store was moved aside (the safety file stays); rebuilding the state from the chain", "index", rep.Index, "moved_to", store+".diverged")
	// 3.
	if rec != nil {
		base, err := n.epochBase(*rec)
		if err != nil {
			return err
		}
		if err := n.startEpoch(*rec, base); err != nil {
			return fmt.Errorf("restart the hotstuff engine: %w", err)
		}
	} else {
		if err := r.resetState(nil); err != nil {
			return err
		}
		b, err := n.newBFTEngine(n.signKey, n.log)
		if err != nil {
			return fmt.Errorf("restart the hotstuff engine: %w", err)
		}
		n.swapEngine(b, nil)
	}
	if n.det != nil {
		n.det.attach(n.bftEng())
		n.det.pushQuarantine(ctx)
	}
	// 4.
	return r.catchUpPast(ctx, rep.Index)
}

// catchUpPast waits until the state machine applied an entry above index.
func (r *resyncer) catchUpPast(ctx context.Context, index uint64) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(resyncCatchUpTimeout)
	for r.n.fsm.AppliedIndex() <= index {
		if err := r.n.bftEng().Err(); err != nil {
			return fmt.Errorf("the fresh hotstuff engine halted: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the fresh hotstuff engine applied up to index %d, not past the diverged index %d, within %s", r.n.fsm.AppliedIndex(), index, resyncCatchUpTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
