package node

import (
	"context"
	"errors"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus"
)

// compact shortens the log behind a stable checkpoint (DESIGN invariant
// 12). The checkpoint store keeps this checkpoint and the previous one
// with their snapshots.
//
//   - Raft (cft mode, and the Raft epochs of auto mode): a Raft snapshot
//     (raftengine.Engine.Compact), after which hashicorp/raft keeps
//     max(raft.trailing_logs, log_retention) entries behind it for the
//     followers that lag. Raft's own snapshots when the log passes
//     raft.snapshot_threshold entries still run, and keep as many.
//   - HotStuff: the engine already snapshots its state machine every
//     checkpoint_interval entries (Config.SnapshotInterval) and replays only
//     the blocks above that snapshot on restart. It keeps its committed
//     blocks, because a replica that lost its storage catches up by
//     fetching them from its peers; pruning them waits for the engine to
//     start from a transferred checkpoint.
func (c *checkpointer) compact(_ context.Context, cert *checkpoint.Certificate) {
	if c.n.bftMode() {
		return
	}
	r := c.n.raftEng()
	if r == nil {
		return
	}
	retain := c.n.Effective().LogRetention
	idx, err := r.Compact(retain)
	switch {
	case errors.Is(err, consensus.ErrStopped):
	case err != nil:
		c.log.Warn("log not compacted after the stable checkpoint", "checkpoint", cert.Statement.Index, "err", err)
	case idx != 0:
		c.log.Info("log compacted after the stable checkpoint", "checkpoint", cert.Statement.Index, "raft_snapshot_index", idx, "log_retention", retain)
	}
}
