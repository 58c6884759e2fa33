package raftengine

import (
	"errors"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
)

// Snapshots on the log size limit (log_size_limit).
//
// hashicorp/raft snapshots when raft.snapshot_threshold entries were
// appended since the last snapshot, whatever their size, and the node
// snapshots after every stable checkpoint (Compact). A few large entries
// can make the log grow far past what either would allow, so the engine
// also counts the bytes of the entries its state machine applied since
// the last snapshot (the FSM adds each batch's entry data and extensions,
// and a snapshot or a restore sets the count back to zero; after a restart
// Raft replays the entries above its snapshot, which counts them again).
// Once the count reaches LogLimits.SizeBytes, a goroutine of the engine
// takes a snapshot as Compact does, after which Raft truncates the log
// behind it but the last max(raft.trailing_logs, LogLimits.Retention)
// entries. Retention wins over the limit: when those trailing entries
// alone held about as many bytes as the limit (the snapshot covered no
// more entries than the retention keeps), the engine says so once in a
// warning.

// LogLimits bound the log the engine keeps (Config.LogLimits).
type LogLimits struct {
	// SizeBytes is log_size_limit: once the entries applied since the last
	// snapshot hold this many bytes, the engine snapshots. 0: no size
	// trigger.
	SizeBytes uint64
	// Retention is log_retention: Raft keeps at least this many entries
	// behind the snapshot.
	Retention uint64
}

// reached reports whether bytes applied since the last snapshot call for
// a snapshot.
func (l LogLimits) reached(bytes uint64) bool { return l.SizeBytes != 0 && bytes >= l.SizeBytes }

// sizeRetryDelay is how long the engine waits after a failed size
// snapshot before it tries again.
const sizeRetryDelay = time.Second

// SetLogLimits replaces the engine's log limits (Config.LogLimits); the
// next applied batch is checked against them. It is safe for concurrent
// use.
func (e *Engine) SetLogLimits(l LogLimits) { e.limits.Store(&l) }

// LogLimits returns the engine's log limits in effect.
func (e *Engine) LogLimits() LogLimits { return *e.limits.Load() }

// onApplied is the FSM's hook after each batch: bytes is the count since
// the last snapshot. It runs on the FSM goroutine, so it only signals the
// size goroutine, which cannot be waited for there (a snapshot needs the
// FSM goroutine).
func (e *Engine) onApplied(bytes uint64) {
	if !e.LogLimits().reached(bytes) {
		return
	}
	select {
	case e.sizeCh <- struct{}{}:
	default: // one is pending
	}
}

// sizeSnapshots takes a snapshot whenever onApplied signals, until Stop.
func (e *Engine) sizeSnapshots() {
	defer e.wg.Done()
	warned := false
	for {
		select {
		case <-e.stopCh:
			return
		case <-e.sizeCh:
		}
		lim := e.LogLimits()
		bytes, entries := e.fsm.bytes.Load(), e.fsm.entries.Load()
		if !lim.reached(bytes) {
			continue // a snapshot came first
		}
		idx, err := e.Compact(lim.Retention)
		switch {
		case errors.Is(err, consensus.ErrStopped):
			return
		case err != nil:
			e.logger.Warn("log not compacted on log_size_limit", "log_bytes", bytes, "log_size_limit", lim.SizeBytes, "err", err)
			select {
			case <-e.stopCh:
				return
			case <-time.After(sizeRetryDelay):
			}
			continue
		case idx == 0:
			continue
		}
		e.sizeSnaps.Add(1)
		trailing := e.raft.ReloadableConfig().TrailingLogs
		e.logger.Info("log compacted on log_size_limit", "raft_snapshot_index", idx, "log_bytes", bytes, "entries", entries,
			"log_size_limit", lim.SizeBytes, "trailing_logs", trailing)
		if entries <= trailing && !warned {
			warned = true
			e.logger.Warn("the entries Raft keeps behind a snapshot hold about log_size_limit or more: max(raft.trailing_logs, log_retention) wins over the limit",
				"trailing_logs", trailing, "log_retention", lim.Retention, "entries_since_last_snapshot", entries, "log_bytes", bytes, "log_size_limit", lim.SizeBytes)
		}
	}
}
