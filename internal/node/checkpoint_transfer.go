package node

import (
	"context"
	"errors"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/smr"
)

// State transfer of the newest stable checkpoint to a node that starts
// without one (a new node, or one whose data_dir was wiped).
//
// The node asks its peers in the order of initial_members for their
// newest stable checkpoint (checkpoint.Fetch over the peer port) and takes
// the first one whose certificate verifies against the committee (a
// quorum of members that are not quarantined) and whose snapshot passes
// its own checks and carries the certified index and state hash. A peer
// that serves a forged certificate or a tampered snapshot is skipped with
// a warning naming it and the reason, counted in
// tandem_checkpoint_transfer_rejected_total, and the next peer is asked;
// each peer gets state_transfer_timeout. Nothing is stored before it
// verified. The verified checkpoint becomes this node's stable checkpoint:
// it is what the node serves to others and reports.
//
// The engines rebuild the state itself from their peers: Raft's leader
// installs its snapshot on a follower without a log (InstallSnapshot), and
// a HotStuff replica fetches the committed blocks it misses. Once this
// node applies the checkpoint's index, its capture is compared with the
// certificate; another state is reported as a divergence (checkpoint.go).

// transferRetryEvery is the pause between rounds over the peers while
// some were unreachable.
const transferRetryEvery = time.Second

// fetchLatest runs once when the node starts without a stable checkpoint.
// It stops when a checkpoint was fetched, when every peer answered that it
// has none, when state_transfer_timeout has passed since the first round
// without success, or when ctx ends.
func (c *checkpointer) fetchLatest(ctx context.Context) {
	if c.stable.Load() != nil || len(c.peers) == 0 {
		return
	}
	timeout := c.n.Effective().StateTransferTimeout
	deadline := time.Now().Add(timeout)
	for {
		cert, snap, missing, err := c.fetchVerified(ctx, 1, periodicCheckpoint)
		if err == nil {
			c.install(cert, snap)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if missing == len(c.peers) {
			c.log.Debug("state transfer: no peer holds a stable checkpoint yet")
			return
		}
		if time.Now().After(deadline) || c.stable.Load() != nil {
			if c.stable.Load() == nil {
				c.log.Warn("state transfer: no peer served a verified checkpoint within state_transfer_timeout", "timeout", timeout, "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(transferRetryEvery):
		}
	}
}

// statePeers are the members this node asks for state, in the order of
// initial_members.
func (c *checkpointer) statePeers() []checkpoint.Peer {
	peers := make([]checkpoint.Peer, 0, len(c.peers))
	for _, m := range c.peers {
		peers = append(peers, checkpoint.Peer{ID: m.ID, URL: "http://" + m.Addr + pathCheckpointState})
	}
	return peers
}

// periodicCheckpoint is a FetchConfig.Want that takes periodic checkpoints
// only.
func periodicCheckpoint(cert *checkpoint.Certificate) error {
	if cert.Statement.Kind != checkpoint.KindCheckpoint {
		return errors.New("not a periodic checkpoint")
	}
	return nil
}

// fetchVerified asks the peers in turn (statePeers) for their newest
// stable checkpoint at minIndex or above that want (if set) accepts, and
// returns the first one checkpoint.Fetch verified: its certificate
// against the committee and this node's quarantine list, its snapshot
// against the certificate. Each peer gets state_transfer_timeout. A peer
// that served a checkpoint this node refused is logged with the reason
// and counted in tandem_checkpoint_transfer_rejected_total; missing is
// the number of peers that hold no such checkpoint.
func (c *checkpointer) fetchVerified(ctx context.Context, minIndex uint64, want func(*checkpoint.Certificate) error) (cert *checkpoint.Certificate, snap []byte, missing int, err error) {
	cert, snap, rejected, err := checkpoint.Fetch(ctx, checkpoint.FetchConfig{
		Peers: c.statePeers(), Client: c.n.rpc, Committee: c.committee, Quarantined: c.n.quarantinedMembers(),
		Info: smr.SnapshotInfo, MinIndex: minIndex, Timeout: c.n.Effective().StateTransferTimeout, MaxBytes: maxStateBytes,
		Want: want,
	})
	for _, r := range rejected {
		switch r.Reason {
		case checkpoint.ReasonNotFound:
			missing++
		case checkpoint.ReasonUnreachable, checkpoint.ReasonTimeout:
			c.log.Debug("state transfer: peer not reached", "peer", r.Peer, "err", r.Err)
		case checkpoint.ReasonStale:
			c.log.Debug("state transfer: a peer's checkpoint is below the index asked for", "peer", r.Peer, "min_index", minIndex, "err", r.Err)
		default:
			c.metrics.rejected.WithLabelValues(r.Reason).Inc()
			c.log.Warn("state transfer: refused the checkpoint a peer served; trying the next peer",
				"peer", r.Peer, "reason", r.Reason, "min_index", minIndex, "err", r.Err)
		}
	}
	return cert, snap, missing, err
}

// install makes a fetched, verified checkpoint this node's stable one.
func (c *checkpointer) install(cert *checkpoint.Certificate, snap []byte) {
	if s := c.stable.Load(); s != nil && s.Statement.Index >= cert.Statement.Index {
		return
	}
	if err := c.store.Save(cert, snap); err != nil {
		c.log.Error("state transfer: the verified checkpoint was not stored", "statement", cert.Statement.String(), "err", err)
		return
	}
	c.stable.Store(cert)
	c.metrics.stableIndex.Set(float64(cert.Statement.Index))
	c.log.Info("state transfer: stable checkpoint fetched and verified", "statement", cert.Statement.String(),
		"signers", cert.Signers(), "bytes", len(snap), "applied", c.applied.Load())
	c.poke()
}
