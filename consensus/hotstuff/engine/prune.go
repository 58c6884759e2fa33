package engine

import (
	"context"
	"fmt"
)

// Pruning the committed chain (DESIGN invariant 12), behind a stable
// checkpoint (Compact) or once the stored blocks pass the log size limit
// (checkLogSize).
//
// The block store keeps every committed block from the horizon (the lowest
// stored height) to the root. Pruning raises the horizon; it never deletes
// what this replica needs itself or what it was asked to keep:
//
//   - its own state machine snapshot's block and every block above it
//     (a restart restores the snapshot and replays the blocks above it);
//   - the last keepRecent blocks, root included (recentCommitted: the
//     history a restarted core gets back);
//   - every block holding an entry at or after keepFrom. After a stable
//     checkpoint the caller passes the lower of the previous stable
//     checkpoint's index and the newest one's minus log_retention; the
//     size trigger passes the last committed index minus log_retention
//     (the last log_retention entries are kept). Peers that lag by less
//     than that still catch up by fetching blocks.
//
// Pending blocks (above the root) are never touched. A peer asking for a
// block below the horizon gets a pruned frame naming it (serveBlocks); a
// replica that needs blocks below every peer's horizon starts from a
// transferred checkpoint instead (transfer.go).
//
// The size trigger. The engine counts the encoded size of the committed
// blocks it stores (logBytes: added when a block joins the committed
// chain, subtracted when it is pruned, kept in the store's log_bytes
// record so that a restart reads it back). After every commit it reads
// its LogLimits (SetLogLimits may change them); once logBytes reaches LogLimits.SizeBytes it prunes at
// once, without waiting for a stable checkpoint: when its own snapshot is
// what holds the horizon down, it first snapshots the state machine at the
// current block (as the SnapshotInterval snapshots do), then prunes what
// the rules above allow. Retention wins over the limit: when the last
// log_retention entries (or the last keepRecent blocks) alone take more
// than the limit, the engine keeps them, says so once in a warning, and
// tries again only after the log grew by another quarter of the limit, so
// a log held above the limit does not cost a store search per commit.

// keepRecent is how many committed blocks, root included, pruning always
// keeps; a variable only so that tests can prune short chains.
var keepRecent uint64 = recentCommitted

// LogLimits bound the committed blocks an engine stores (Config.LogLimits).
type LogLimits struct {
	// SizeBytes is log_size_limit: once the committed blocks stored pass
	// this many bytes (their encoding), the engine prunes without waiting
	// for a stable checkpoint. 0: no size trigger.
	SizeBytes uint64
	// Retention is log_retention: the size trigger keeps the blocks
	// holding the last Retention entries.
	Retention uint64
}

// SetLogLimits replaces the engine's log limits (Config.LogLimits); the
// loop uses them from the next commit on. It is safe for concurrent use.
func (e *Engine) SetLogLimits(l LogLimits) { e.limits.Store(&l) }

// LogLimits returns the engine's log limits in effect (zero: none set).
func (e *Engine) LogLimits() LogLimits {
	if l := e.limits.Load(); l != nil {
		return *l
	}
	return LogLimits{}
}

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

// keepLimit is the height below which the committed chain may be pruned
// when entries from keepFrom on and the last keepRecent blocks must be
// kept, the snapshot aside (0 when nothing may go); byRetention reports
// whether keepFrom is what holds it down.
func (e *Engine) keepLimit(keepFrom uint64) (limit uint64, byRetention bool, err error) {
	if e.height < keepRecent {
		return 0, false, nil // the whole chain is recent
	}
	limit = e.height + 1 - keepRecent
	if keepFrom <= e.lastIndex {
		ce, ok, err := e.store.holding(keepFrom, max(e.horizon, 1), e.height)
		if err != nil {
			return 0, false, err
		}
		if ok && ce.height < limit {
			limit, byRetention = ce.height, true
		}
	}
	return limit, byRetention, nil
}

// pruneLimit is the height below which the committed chain may be pruned
// when entries from keepFrom on must be kept: 0 when nothing may go.
func (e *Engine) pruneLimit(keepFrom uint64) (uint64, error) {
	if e.snapIndex == 0 {
		return 0, nil // the whole chain is replayed at restart
	}
	limit, _, err := e.keepLimit(keepFrom)
	return min(limit, e.snapHeight), err
}

// setHorizon records h as the horizon, for the engine and its metrics.
func (e *Engine) setHorizon(h uint64) {
	e.horizon = h
	e.stats.horizon.Store(h)
}

// setLogBytes records n as the size of the stored committed blocks.
func (e *Engine) setLogBytes(n uint64) {
	e.logBytes = n
	e.stats.logBytes.Store(n)
}

func (e *Engine) compact(keepFrom uint64) (uint64, error) {
	limit, err := e.pruneLimit(keepFrom)
	if err != nil {
		return e.horizon, fmt.Errorf("hotstuff engine: compact: %w", err)
	}
	if limit <= max(e.horizon, 1) {
		return e.horizon, nil
	}
	n, freed, err := e.store.prune(limit)
	if err != nil {
		return e.horizon, fmt.Errorf("hotstuff engine: prune the committed blocks below height %d: %w", limit, err)
	}
	e.setHorizon(limit)
	e.setLogBytes(e.logBytes - min(freed, e.logBytes))
	e.stats.blocksPruned.Add(uint64(n))
	e.log.Info("committed blocks pruned", "pruned", n, "bytes", freed, "below_height", limit, "keep_from_index", keepFrom,
		"snapshot_height", e.snapHeight, "snapshot_index", e.snapIndex, "committed_height", e.height, "log_bytes", e.logBytes)
	return limit, nil
}

// checkLogSize prunes the committed chain when the stored blocks reached
// the log size limit (see above). It runs on the loop after a commit.
func (e *Engine) checkLogSize() error {
	lim := e.LogLimits()
	if lim.SizeBytes == 0 || e.logBytes < lim.SizeBytes {
		e.sizeFloor = 0
		return nil
	}
	if e.sizeFloor > 0 && e.logBytes < e.sizeFloor+lim.SizeBytes/4 {
		return nil // retention held the log above the limit: wait for growth
	}
	keepFrom := uint64(0)
	if e.lastIndex >= lim.Retention {
		keepFrom = e.lastIndex + 1 - lim.Retention
	}
	free, byRetention, err := e.keepLimit(keepFrom)
	if err != nil {
		return fmt.Errorf("hotstuff engine: size compaction: %w", err)
	}
	if free > max(e.horizon, 1) && (e.snapIndex == 0 || e.snapHeight < free) && e.lastIndex > 0 {
		// The snapshot holds the horizon down: take one at this block.
		e.snapshot()
	}
	before := e.horizon
	if _, err := e.compact(keepFrom); err != nil {
		return err
	}
	if e.horizon != before {
		e.stats.sizeCompactions.Add(1)
	}
	if e.logBytes < lim.SizeBytes {
		e.sizeFloor = 0
		return nil
	}
	warned := e.sizeFloor > 0 // logged when the log was first held above the limit
	e.sizeFloor = e.logBytes
	if !warned {
		what := "the last blocks every replica keeps"
		if byRetention {
			what = "log_retention"
		}
		e.log.Warn("the stored committed blocks stay above log_size_limit: "+what+" keeps them; retention wins over the limit",
			"log_bytes", e.logBytes, "log_size_limit", lim.SizeBytes, "log_retention", lim.Retention,
			"keep_recent_blocks", keepRecent, "committed_height", e.height, "horizon", e.horizon)
	}
	return nil
}
