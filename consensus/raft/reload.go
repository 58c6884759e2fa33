package raftengine

import (
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
)

// Reload applies the Raft settings hashicorp/raft can change while it runs:
// the heartbeat and election timeouts, the snapshot interval and threshold,
// and the trailing logs. Zero fields keep raft.DefaultConfig's values, as
// in New. The other fields of t (leader lease, commit timeout, append batch
// size, snapshot retention, apply timeout) are fixed when Raft starts and
// are ignored here. An invalid combination (checked by hashicorp/raft
// against the settings it runs with, e.g. a heartbeat timeout below the
// leader lease) is refused and changes nothing.
func (e *Engine) Reload(t config.RaftConfig) error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	cur := e.raft.ReloadableConfig()
	def := raft.DefaultConfig()
	next := raft.ReloadableConfig{
		HeartbeatTimeout:  orDefault(t.HeartbeatTimeout, def.HeartbeatTimeout),
		ElectionTimeout:   orDefault(t.ElectionTimeout, def.ElectionTimeout),
		SnapshotInterval:  orDefault(t.SnapshotInterval, def.SnapshotInterval),
		SnapshotThreshold: orDefault(t.SnapshotThreshold, def.SnapshotThreshold),
		TrailingLogs:      orDefault(t.TrailingLogs, def.TrailingLogs),
	}
	if next == cur {
		return nil
	}
	if err := e.raft.ReloadConfig(next); err != nil {
		return fmt.Errorf("raft engine: reload settings: %w", err)
	}
	e.logger.Info("raft settings changed", "heartbeat_timeout", next.HeartbeatTimeout, "election_timeout", next.ElectionTimeout,
		"snapshot_interval", next.SnapshotInterval, "snapshot_threshold", next.SnapshotThreshold, "trailing_logs", next.TrailingLogs)
	return nil
}

// Reloadable returns the reloadable Raft settings in effect, in the
// configuration's terms (the other fields are zero).
func (e *Engine) Reloadable() config.RaftConfig {
	rc := e.raft.ReloadableConfig()
	return config.RaftConfig{
		HeartbeatTimeout:  rc.HeartbeatTimeout,
		ElectionTimeout:   rc.ElectionTimeout,
		SnapshotInterval:  rc.SnapshotInterval,
		SnapshotThreshold: rc.SnapshotThreshold,
		TrailingLogs:      rc.TrailingLogs,
	}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
