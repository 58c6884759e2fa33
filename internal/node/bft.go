package node

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/smr"
)

// consensus_mode bft: the node runs the HotStuff engine over the peer
// port's BFT protocol. The committee is static: initial_members lists every
// member's peer address and node public key (id=host:port/key), and this
// node signs votes, timeouts and proposals with data_dir/node.key, whose
// public half must be the key listed for it. There is no leader to forward
// to: every node takes writes (the engine queues them and forwards them to
// its peers, and whichever member leads the next view orders them) and
// serves linearizable reads (a read marker ordered through consensus).

// bftMode reports whether the node runs the HotStuff engine.
func (n *Node) bftMode() bool { return n.currentMode() == config.ModeBFT }

// newBFTEngine builds the HotStuff engine of consensus_mode bft from the
// configuration.
func (n *Node) newBFTEngine(key ed25519.PrivateKey, logger *slog.Logger) (*hsengine.Engine, error) {
	return n.newBFTEngineAt(key, logger, 0, n.cfg.DataDir, nil)
}

// newBFTEngineAt builds a HotStuff engine for epoch (0: the default) with
// its storage under dataDir. An epoch that starts from a handed-over state
// passes it as base; it has no genesis entry.
func (n *Node) newBFTEngineAt(key ed25519.PrivateKey, logger *slog.Logger, epoch uint64, dataDir string, base *hsengine.Base) (*hsengine.Engine, error) {
	ms, err := n.cfg.Members()
	if err != nil {
		return nil, err
	}
	members := make([]hsengine.Member, 0, len(ms))
	for _, m := range ms {
		if m.PublicKey == nil {
			return nil, fmt.Errorf("initial_members: %s has no node public key; bft mode needs id=host:port/key for every member", m.ID)
		}
		if m.ID == n.cfg.NodeID && !m.PublicKey.Equal(key.Public()) {
			return nil, fmt.Errorf("initial_members lists %s for this node, but data_dir/node.key has public key %s: list the key `tandem init` printed for this data directory",
				smr.FormatKey(m.PublicKey), smr.FormatKey(key.Public().(ed25519.PublicKey)))
		}
		members = append(members, hsengine.Member{ID: types.NodeID(m.ID), Addr: m.Addr, PublicKey: m.PublicKey})
	}
	live := n.Effective() // reloaded timeouts carry over to a new epoch's engine
	genesis := &n.genesis
	if base != nil {
		genesis = nil
	}
	variant, err := core.ParseVariant(n.cfg.BFTCommitRule)
	if err != nil {
		return nil, fmt.Errorf("bft_commit_rule: %w", err)
	}
	cfg := hsengine.Config{
		Variant:              variant,
		ID:                   types.NodeID(n.cfg.NodeID),
		Members:              members,
		Key:                  key,
		Epoch:                epoch,
		DataDir:              dataDir,
		Network:              n.mux,
		FSM:                  n.fsm,
		Genesis:              genesis,
		Base:                 base,
		ViewChangeTimeout:    live.ViewChangeTimeout,
		VoteTimeout:          live.VoteTimeout,
		MaxViewChangeRetries: live.MaxViewChangeRetries,
		MaxClockSkew:         max(hsengine.DefaultMaxClockSkew, live.ViewChangeTimeout),
		SnapshotInterval:     live.CheckpointInterval,
		MaxBatch:             n.cfg.BFTMaxBatch,
		MaxBatchDelay:        n.cfg.BFTMaxBatchDelay,
		Logger:               logger,
		OnEvidence:           n.det.onEngineEvidence,
	}
	if n.ckpt != nil {
		// Peers prune committed blocks behind stable checkpoints; a
		// replica that misses pruned blocks starts from a checkpoint.
		cfg.StateTransfer = n.ckpt.hotstuffStateTransfer
	}
	n.det.observeEngine(&cfg) // signature failures and vote latencies (detector_observe.go)
	e, err := hsengine.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	return e, nil
}

// staticCommittee is the answer to a membership change in bft mode.
func staticCommittee(op string) error {
	return smr.Errorf(smr.CodeMalformed, "%s: consensus_mode is bft, and %v", op, hsengine.ErrStaticCommittee)
}

// watchGenesis warns, once the cluster is initialized, when this node's
// bootstrap_admin_keys or limits differ from the replicated genesis (in
// bft mode every member queues its own genesis entry and votes only for a
// block whose genesis entry equals its own).
func (n *Node) watchGenesis(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if g, ok := n.fsm.Genesis(); ok {
			if !sameGenesis(g, n.genesis) {
				n.log.Warn("this node's bootstrap_admin_keys or limits differ from the cluster's genesis; the cluster's values are in effect",
					"cluster", g.Info(), "configured", n.genesis.Info())
			} else {
				n.log.Info("cluster initialized", "genesis", g.Info())
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchEngine stops the node when the HotStuff engine halts (its storage
// failed): a replica that cannot persist must not keep serving.
func (n *Node) watchEngine(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := n.bftEng().Err(); err != nil {
			return fmt.Errorf("hotstuff engine halted: %w", err)
		}
	}
}
