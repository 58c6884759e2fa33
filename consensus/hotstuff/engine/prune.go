package engine

import (
	"context"
	"fmt"
)

// Pruning the committed chain behind a stable checkpoint (DESIGN invariant
// 12).
//
// The block store keeps every committed block from the horizon (the lowest
// stored height) to the root. Compact raises the horizon; it never deletes
// what this replica needs itself or what it was asked to keep:
//
//   - its own state machine snapshot's block and every block above it
//     (a restart restores the snapshot and replays the blocks above it);
//   - the last keepRecent blocks, root included (recentCommitted: the
//     history a restarted core gets back);
//   - every block holding an entry at or after keepFrom: the caller passes
//     the lower of the previous stable checkpoint's index and the newest
//     one's minus log_retention, so peers that lag by less than that still
//     catch up by fetching blocks.
//
// Pending blocks (above the root) are never touched. A peer asking for a
// block below the horizon gets a pruned frame naming it (serveBlocks); a
// replica that needs blocks below every peer's horizon starts from a
// transferred checkpoint instead (transfer.go).

// keepRecent is how many committed blocks, root included, pruning always
// keeps; a variable only so that tests can prune short chains.
var keepRecent uint64 = recentCommitted

// Compact prunes the committed blocks that lie wholly below what must be
// kept (see above) and returns the new horizon: the lowest committed
// height still stored (0 when nothing was ever pruned). It runs on the
// engine's loop, the block store's only writer.
func (e *Engine) Compact(ctx context.Context, keepFrom uint64) (uint64, error) {
	var horizon uint64
	var cerr error
	if err := e.inLoop(ctx, "compact", func() { horizon, cerr = e.compact(keepFrom) }); err != nil {
		return 0, err
	}
	return horizon, cerr
}

// pruneLimit is the height below which the committed chain may be pruned
// when entries from keepFrom on must be kept: 0 when nothing may go.
func (e *Engine) pruneLimit(keepFrom uint64) (uint64, error) {
	if e.snapIndex == 0 || e.height < keepRecent {
		return 0, nil // the whole chain is replayed at restart, or is recent
	}
	limit := min(e.snapHeight, e.height+1-keepRecent)
	if keepFrom <= e.lastIndex {
		ce, ok, err := e.store.holding(keepFrom, max(e.horizon, 1), e.height)
		if err != nil {
			return 0, err
		}
		if ok {
			limit = min(limit, ce.height)
		}
	}
	return limit, nil
}

// setHorizon records h as the horizon, for the engine and its metrics.
func (e *Engine) setHorizon(h uint64) {
	e.horizon = h
	e.stats.horizon.Store(h)
}

func (e *Engine) compact(keepFrom uint64) (uint64, error) {
	limit, err := e.pruneLimit(keepFrom)
	if err != nil {
		return e.horizon, fmt.Errorf("hotstuff engine: compact: %w", err)
	}
	if limit <= max(e.horizon, 1) {
		return e.horizon, nil
	}
	n, err := e.store.prune(limit)
	if err != nil {
		return e.horizon, fmt.Errorf("hotstuff engine: prune the committed blocks below height %d: %w", limit, err)
	}
	e.setHorizon(limit)
	e.stats.blocksPruned.Add(uint64(n))
	e.log.Info("committed blocks pruned", "pruned", n, "below_height", limit, "keep_from_index", keepFrom,
		"snapshot_height", e.snapHeight, "snapshot_index", e.snapIndex, "committed_height", e.height)
	return limit, nil
}
