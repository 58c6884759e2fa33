package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus"
	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
)

// compact shortens the log behind a stable checkpoint (DESIGN invariant
// 12). The checkpoint store keeps this checkpoint and the previous one
// (prev, nil when there is none) with their snapshots.
//
//   - Raft (cft mode, and the Raft epochs of auto mode): a Raft snapshot
//     (raftengine.Engine.Compact), after which hashicorp/raft keeps
//     max(raft.trailing_logs, log_retention) entries behind it for the
//     followers that lag. Raft's own snapshots when the log passes
//     raft.snapshot_threshold entries still run, and keep as many.
//   - HotStuff: the engine snapshots its state machine every
//     checkpoint_interval entries (Config.SnapshotInterval) and replays only
//     the blocks above that snapshot on restart. Here it prunes the
//     committed blocks below the lower of the previous checkpoint's index
//     and this one's minus log_retention, and never its own snapshot's
//     block or anything above it (hsengine.Engine.Compact). A replica
//     that needs blocks below its peers' horizon (its storage was lost, or
//     it was away for longer than log_retention) starts from the newest
//     stable checkpoint instead: the engine asks hotstuffStateTransfer.
//
// Both engines also compact on their own when their log passes
// log_size_limit, without waiting for the next stable checkpoint
// (swapEngine and the Raft configurations hand them the limit and
// log_retention): HotStuff prunes its committed blocks by the rules above
// with keepFrom the last log_retention entries, snapshotting first when
// its own snapshot holds the horizon down; Raft takes a snapshot after
// which it keeps max(raft.trailing_logs, log_retention) entries. The
// checkpoint store keeps this checkpoint and the previous one whatever
// the engines pruned. log_retention wins over the limit.
func (c *checkpointer) compact(ctx context.Context, prev, cert *checkpoint.Certificate) {
	retain := c.n.Effective().LogRetention
	if c.n.bftMode() {
		c.pruneBlocks(ctx, prev, cert, retain)
		return
	}
	r := c.n.raftEng()
	if r == nil {
		return
	}
	idx, err := r.Compact(retain)
	switch {
	case errors.Is(err, consensus.ErrStopped):
	case err != nil:
		c.log.Warn("log not compacted after the stable checkpoint", "checkpoint", cert.Statement.Index, "err", err)
	case idx != 0:
		c.log.Info("log compacted after the stable checkpoint", "checkpoint", cert.Statement.Index, "raft_snapshot_index", idx, "log_retention", retain)
	}
}

// keepFrom is the first log index the HotStuff engine keeps the blocks of
// after the stable checkpoint cert: the lower of the previous checkpoint's
// index and cert's index minus retain.
func keepFrom(prev, cert *checkpoint.Certificate, retain uint64) uint64 {
	k := uint64(0)
	if cert.Statement.Index > retain {
		k = cert.Statement.Index - retain
	}
	if prev != nil {
		k = min(k, prev.Statement.Index)
	}
	return k
}

// pruneBlocks prunes the HotStuff engine's committed blocks behind cert.
func (c *checkpointer) pruneBlocks(ctx context.Context, prev, cert *checkpoint.Certificate, retain uint64) {
	e := c.n.bftEng()
	if e == nil {
		return
	}
	keep := keepFrom(prev, cert, retain)
	h, err := e.Compact(ctx, keep)
	switch {
	case errors.Is(err, consensus.ErrStopped) || ctx.Err() != nil:
	case err != nil:
		c.log.Warn("committed blocks not pruned after the stable checkpoint", "checkpoint", cert.Statement.Index, "err", err)
	default:
		c.log.Debug("committed blocks pruned after the stable checkpoint", "checkpoint", cert.Statement.Index,
			"keep_from_index", keep, "pruned_below_height", h, "log_retention", retain)
	}
}

// hotstuffStateTransfer is the HotStuff engine's Config.StateTransfer: the
// newest stable checkpoint this node holds when it is at minIndex or above
// (its certificate was verified when it became stable), else the newest
// one its peers serve, verified by checkpoint.Fetch (certificate against
// the committee, snapshot against the certificate) and made this node's
// stable checkpoint before it is handed over.
func (c *checkpointer) hotstuffStateTransfer(ctx context.Context, minIndex uint64) (*hsengine.Transferred, error) {
	if cert, snap, err := c.store.Latest(); err == nil && cert.Statement.Index >= minIndex {
		return &hsengine.Transferred{Index: cert.Statement.Index, Snapshot: snap}, nil
	}
	cert, snap, _, err := c.fetchVerified(ctx, minIndex, nil)
	if err != nil {
		return nil, fmt.Errorf("no verified stable checkpoint at index %d or above: %w", minIndex, err)
	}
	c.install(cert, snap)
	return &hsengine.Transferred{Index: cert.Statement.Index, Snapshot: snap}, nil
}
