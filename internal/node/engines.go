package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// eng returns the running consensus engine (in auto mode: the current
// epoch's, which may be stopped while a switch is under way).
func (n *Node) eng() consensus.Engine {
	n.engMu.RLock()
	defer n.engMu.RUnlock()
	return n.engine
}

// raftEng returns the Raft engine of the current or of the last Raft
// epoch (nil if none ran).
func (n *Node) raftEng() *raftengine.Engine {
	n.engMu.RLock()
	defer n.engMu.RUnlock()
	return n.raft
}

// bftEng returns the HotStuff engine of the current or of the last BFT
// epoch (nil if none ran).
func (n *Node) bftEng() *hsengine.Engine {
	n.engMu.RLock()
	defer n.engMu.RUnlock()
	return n.bft
}

// currentMode is the mode of the running engine: cft or bft.
func (n *Node) currentMode() string {
	n.engMu.RLock()
	defer n.engMu.RUnlock()
	return n.mode
}

// epochAnswer turns what an ended epoch answers into a retryable error: the
// write was not executed, and the next epoch executes it when the client
// sends it again (same seq).
func (n *Node) epochAnswer(res smr.Result, err error) (smr.Result, error) {
	if err == nil && res.Code == smr.CodeEpochEnded {
		return smr.Result{}, fmt.Errorf("%w: %s", api.ErrEpochSwitching, res.Message)
	}
	if n.sel != nil && errors.Is(err, consensus.ErrStopped) {
		return smr.Result{}, fmt.Errorf("%w; send the request again", api.ErrEpochSwitching)
	}
	return res, err
}

// startEpoch builds and starts the engine of epoch rec from base (the
// certified state the epoch starts from; nil for epoch 1) and makes it
// the running engine.
func (n *Node) startEpoch(rec epochRecord, base []byte) error {
	if base != nil {
		if err := n.fsm.Restore(base); err != nil {
			return fmt.Errorf("install the base state of epoch %d: %w", rec.Epoch, err)
		}
	}
	switch rec.Mode {
	case smr.ModeCFT:
		if _, err := n.startRaft(n.epochRaftConfig(rec)); err != nil {
			return fmt.Errorf("raft engine of epoch %d: %w", rec.Epoch, err)
		}
	case smr.ModeBFT:
		var hb *hsengine.Base
		if rec.Cert != nil {
			hb = &hsengine.Base{Index: rec.BaseIndex, Snapshot: base, Digest: rec.Cert.Statement.Digest()}
		}
		b, err := n.newBFTEngineAt(n.signKey, n.log.With("epoch", rec.Epoch), rec.Epoch, n.epochDir(rec.Epoch), hb)
		if err != nil {
			return fmt.Errorf("hotstuff engine of epoch %d: %w", rec.Epoch, err)
		}
		n.swapEngine(b, nil)
	default:
		return fmt.Errorf("epoch %d: unknown mode %q", rec.Epoch, rec.Mode)
	}
	return nil
}

// epochBase is the certified base state epoch rec starts from, read from
// the epoch's directory; nil for epoch 1, which starts empty.
func (n *Node) epochBase(rec epochRecord) ([]byte, error) {
	if rec.Epoch <= 1 {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(n.epochDir(rec.Epoch), baseSnapshotName))
	if err != nil {
		return nil, fmt.Errorf("base state of epoch %d: %w", rec.Epoch, err)
	}
	return b, nil
}

// cftRaftConfig is the Raft engine configuration of consensus_mode cft.
func (n *Node) cftRaftConfig() raftengine.Config {
	rc := raftengine.Config{
		NodeID:    n.cfg.NodeID,
		DataDir:   n.cfg.DataDir,
		Advertise: n.cfg.PeerAdvertiseAddr(),
		Stream:    n.mux.RaftLayer(),
		FSM:       n.fsm,
		Raft:      n.Effective().Raft,
		LogLimits: raftLogLimits(n.Effective()),
		Logger:    n.log,
	}
	// The leader signs what it proposes; with every member's key (a
	// detector) the replicas check it.
	rc.Signer, rc.Epoch = n.signKey, cftEpoch
	// Every Raft request's sender is checked against the connection's
	// certificate, with or without a detector.
	rc.PeerID = transport.PeerID
	if n.det != nil {
		n.det.raftChecks(&rc)
	}
	return rc
}

// epochRaftConfig is the Raft engine configuration of the cft epoch rec.
func (n *Node) epochRaftConfig(rec epochRecord) raftengine.Config {
	rc := raftengine.Config{
		NodeID:    n.cfg.NodeID,
		DataDir:   n.epochDir(rec.Epoch),
		Advertise: n.cfg.PeerAdvertiseAddr(),
		Stream:    n.mux.RaftLayerEpoch(rec.Epoch),
		FSM:       n.fsm,
		IndexBase: rec.BaseIndex,
		Raft:      n.Effective().Raft,
		LogLimits: raftLogLimits(n.Effective()),
		Logger:    n.log.With("epoch", rec.Epoch),
		Signer:    n.signKey,
		Epoch:     rec.Epoch,
	}
	n.det.raftChecks(&rc)
	return rc
}

// raftLogLimits are log_size_limit and log_retention of c for a Raft
// engine: past the limit it snapshots without waiting for a stable
// checkpoint.
func raftLogLimits(c config.Config) raftengine.LogLimits {
	return raftengine.LogLimits{SizeBytes: c.LogSizeLimit, Retention: c.LogRetention}
}

// hotstuffLogLimits are log_size_limit and log_retention of c for a
// HotStuff engine: past the limit it prunes committed blocks without
// waiting for a stable checkpoint.
func hotstuffLogLimits(c config.Config) hsengine.LogLimits {
	return hsengine.LogLimits{SizeBytes: c.LogSizeLimit, Retention: c.LogRetention}
}

// startRaft starts a Raft engine with rc and makes it the running engine.
func (n *Node) startRaft(rc raftengine.Config) (*raftengine.Engine, error) {
	e, err := raftengine.New(rc)
	if err != nil {
		return nil, err
	}
	n.swapEngine(nil, e)
	return e, nil
}

// attachRaft hands the detector, if there is one, the Raft engine e to
// apply the quarantine list to.
func (n *Node) attachRaft(e *raftengine.Engine) {
	if n.det != nil {
		n.det.attach(cftQuarantine{e: e, self: n.cfg.NodeID, log: n.det.log})
	}
}

// setLogLimits hands the running engine log_size_limit and log_retention
// of c (a reload).
func (n *Node) setLogLimits(c config.Config) {
	if b := n.bftEng(); n.bftMode() && b != nil {
		n.setHotstuffLogLimits(b, c)
	} else if r := n.raftEng(); r != nil {
		r.SetLogLimits(raftLogLimits(c))
	}
}

// setHotstuffLogLimits hands b its log limits, only with periodic
// checkpoints: a replica that falls behind its peers' pruned horizon
// needs one to start from.
func (n *Node) setHotstuffLogLimits(b *hsengine.Engine, c config.Config) {
	if n.ckpt != nil {
		b.SetLogLimits(hotstuffLogLimits(c))
	}
}

// swapEngine makes the HotStuff engine b or (b nil) the Raft engine r the
// running engine, and its metrics the registered ones. A HotStuff engine
// gets its log limits here (the Raft engine's come with its
// configuration).
func (n *Node) swapEngine(b *hsengine.Engine, r *raftengine.Engine) {
	if b != nil {
		n.setHotstuffLogLimits(b, n.Effective())
	}
	n.engMu.Lock()
	if b != nil {
		n.engine, n.mode, n.bft = b, config.ModeBFT, b
	} else {
		n.engine, n.mode, n.raft = r, config.ModeCFT, r
	}
	n.engMu.Unlock()
	if n.engMetrics != nil {
		n.registry.Unregister(n.engMetrics)
	}
	if b != nil {
		n.engMetrics = b.Collector()
	} else {
		n.engMetrics = r.Collector()
	}
	if err := n.registry.Register(n.engMetrics); err != nil {
		n.log.Warn("engine metrics not registered", "err", err)
	}
}

// runEpochTasks runs what the current epoch's engine needs beside it until
// ctx ends: bootstrap and genesis on Raft, the engine watch on HotStuff.
func (n *Node) runEpochTasks(ctx context.Context) error {
	rec := n.sel.record()
	g, gctx := errgroup.WithContext(ctx)
	n.det.setEpochMode(rec.Epoch, n.currentMode())
	if n.bftMode() {
		n.det.attach(n.bftEng())
		g.Go(func() error { return n.watchEngine(gctx) })
		if rec.Epoch == 1 {
			g.Go(func() error { n.watchGenesis(gctx); return nil })
		}
	} else {
		n.attachRaft(n.raftEng())
		g.Go(func() error { return n.bootstrapEpoch(rec) })
		g.Go(func() error { n.ensureGenesis(gctx); return nil })
	}
	return g.Wait()
}

// bootstrapEpoch forms the Raft cluster of an epoch on a node without Raft
// state in it: every member bootstraps the same configuration (the
// epoch's members at their configured peer addresses).
func (n *Node) bootstrapEpoch(rec epochRecord) error {
	r := n.raftEng()
	has, err := r.HasState()
	if err != nil {
		return fmt.Errorf("raft state: %w", err)
	}
	if has {
		return nil
	}
	ms, err := n.cfg.Members()
	if err != nil {
		return err
	}
	in := map[string]bool{}
	for _, id := range rec.Members {
		in[id] = true
	}
	var members []consensus.Member
	for _, m := range ms {
		if in[m.ID] {
			members = append(members, consensus.Member{ID: m.ID, Address: m.Addr, Voter: true})
		}
	}
	if !in[n.cfg.NodeID] {
		n.log.Warn("this node is not a member of the epoch's Raft cluster (quarantined); it stays out", "epoch", rec.Epoch)
		return nil
	}
	if err := r.Bootstrap(members); err != nil {
		return fmt.Errorf("bootstrap epoch %d: %w", rec.Epoch, err)
	}
	n.log.Info("epoch cluster bootstrapped", "epoch", rec.Epoch, "members", len(members))
	return nil
}

// escalate runs when the detector's decision asks for BFT (an irrefutable
// proof, or f+1 signed accusations): while the cluster runs a Raft epoch,
// whichever correct node leads proposes the switch to HotStuff. Every
// correct node reaches the same decision, so the node that leads after a
// quarantined leader lost its followers proposes it too. If the Raft
// leader is one of the members the decision's evidence (ids) accuses, is
// not quarantined (a quarantined one loses its followers), and the switch
// entry is not applied within view_change_timeout of the decision, the
// node ends the epoch without it (selector.gateUnswitched, handoff.go).
// It gives up when the epoch changes or ctx ends.
func (n *Node) escalate(ctx context.Context, reason string, ids []evidence.ID) {
	if len(reason) > smr.MaxSwitchReasonBytes-len("detector: ") {
		reason = reason[:smr.MaxSwitchReasonBytes-len("detector: ")]
	}
	decided := time.Now()
	accused := n.accusedBy(ids)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	start := n.sel.record().Epoch
	for {
		rec := n.sel.record()
		if rec.Epoch != start || rec.Mode != smr.ModeCFT {
			return
		}
		var st consensus.Status
		r := n.raftEng()
		if r != nil {
			st = r.Status()
		}
		suspect := st.LeaderID != "" && slices.Contains(accused, st.LeaderID)
		if suspect {
			n.sel.noteSuspects(rec.Epoch, st.LeaderID, accused, reason)
		}
		if rec.EndIndex != 0 {
			return
		}
		// A quarantined leader is not waited out: the correct members
		// refuse its RPCs, elect one of them, and that leader orders the
		// switch. Gating then would stop members at indices of their own
		// while others apply the switch entry, and no f+1 might match.
		if suspect && !slices.Contains(n.quarantinedMembers(), st.LeaderID) && time.Since(decided) >= n.Effective().ViewChangeTimeout {
			n.sel.gateUnswitched(rec.Epoch, st.LeaderID, accused, reason)
			return
		}
		if st.Role == "leader" {
			pctx, cancel := context.WithTimeout(ctx, n.cfg.ViewChangeTimeout+time.Second)
			res, err := r.ProposeEpochSwitch(pctx, &smr.EpochSwitch{Epoch: rec.Epoch + 1, Mode: smr.ModeBFT, Reason: "detector: " + reason})
			cancel()
			switch {
			case err != nil:
				n.log.Warn("escalation to bft not ordered yet", "err", err)
			case res.Code != smr.CodeOK:
				n.log.Warn("escalation to bft refused", "code", res.Code, "message", res.Message)
			default:
				n.log.Warn("escalating to bft on the detector's decision", "epoch", rec.Epoch+1, "reason", reason, "index", res.Index)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// accusedBy returns the sorted members that the evidence ids names as
// offenders (evidence the detector no longer holds is skipped).
func (n *Node) accusedBy(ids []evidence.ID) []string {
	var out []string
	for _, id := range ids {
		e, err := n.det.evidenceByID(id)
		if err != nil {
			n.log.Warn("escalation evidence not found", "id", id.String(), "err", err)
			continue
		}
		if o := string(e.Offender); !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}
