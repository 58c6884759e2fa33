package engine

import (
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Starting from a transferred checkpoint (DESIGN invariant 12).
//
// A replica learns that its peers pruned the committed blocks it misses
// from a pruned frame (serveBlocks): a peer could not serve a block's
// ancestry below its horizon H, and this replica's chain ends below H−1.
// Then, on the loop:
//
//  1. Config.StateTransfer gets a state machine snapshot at an index k
//     past this replica's log, certified by a stable checkpoint
//     certificate (the node verifies both before handing it over).
//  2. Every peer is asked which committed block holds index k (anchor
//     request). A peer answers with the block B from its chain, B's height
//     and log indexes, and a QC certifying B. The QC and the hash make B a
//     certified block; f+1 members naming the same height, hash and
//     indexes include a correct one, so B is the committed block there and
//     its indexes are right. The request goes out again every view change
//     timeout, anchorRetries times at most.
//  3. The snapshot is restored, B's entries above k are applied, and B
//     becomes the only committed block in the store (with its QC, a fresh
//     snapshot and the horizon at B); the core restarts from B.
//  4. The blocks above B are fetched and committed as by any replica that
//     fell behind: each verified by the chain of hashes from a QC'd block.

const (
	// anchorRetries bounds the anchor requests of one transfer.
	anchorRetries = 10
	// transferBackoffTimeouts is how many view change timeouts pass after a
	// failed transfer before another may start.
	transferBackoffTimeouts = 5
)

// transfer is a state transfer in progress.
type transfer struct {
	asking  bool // Config.StateTransfer is running
	index   uint64
	snap    []byte
	askedAt uint64 // tick of the last anchor request
	tries   int
	claims  map[types.NodeID]anchorKey
	cands   map[anchorKey]*anchorInfo
}

// anchorKey is what the peers' anchors must agree on.
type anchorKey struct {
	height, first, last uint64
	hash                types.Hash
}

func (e *Engine) resendTicks() uint64 { return uint64(max(e.cfg.ViewChangeTimeout/e.cfg.Tick, 1)) }

// onPruned handles a peer's answer that it pruned what this replica asked
// for: a state transfer starts when this replica's chain ends below the
// peer's horizon.
func (e *Engine) onPruned(from types.NodeID, h types.Hash, horizon uint64) {
	if horizon <= e.height+1 || e.xfer != nil || e.ticks < e.xferAfter {
		return
	}
	if e.cfg.StateTransfer == nil {
		e.xferAfter = e.ticks + transferBackoffTimeouts*e.resendTicks()
		e.log.Warn("a peer pruned the committed blocks this replica misses, and this engine has no state transfer: it stays behind",
			"peer", string(from), "block", h.String(), "peer_horizon", horizon, "committed_height", e.height)
		return
	}
	e.log.Warn("a peer pruned the committed blocks this replica misses: starting from a transferred checkpoint",
		"peer", string(from), "block", h.String(), "peer_horizon", horizon, "committed_height", e.height, "log_index", e.lastIndex)
	x := &transfer{asking: true}
	e.xfer = x
	minIndex := e.lastIndex + 1
	e.bgWG.Add(1)
	go func() {
		defer e.bgWG.Done()
		t, err := e.cfg.StateTransfer(e.bgCtx, minIndex)
		select {
		case e.ctrlCh <- func() { e.transferred(x, t, err) }:
		case <-e.stopCh:
		}
	}()
}

// abandon ends transfer x; another may start after a back-off.
func (e *Engine) abandon(x *transfer, msg string, args ...any) {
	if e.xfer != x {
		return
	}
	e.xfer = nil
	e.xferAfter = e.ticks + transferBackoffTimeouts*e.resendTicks()
	e.log.Warn("state transfer abandoned: "+msg, args...)
}

// transferred takes the result of Config.StateTransfer.
func (e *Engine) transferred(x *transfer, t *Transferred, err error) {
	if e.xfer != x {
		return
	}
	switch {
	case err != nil:
		e.abandon(x, "no verified checkpoint", "err", err)
		return
	case t == nil || t.Index <= e.lastIndex:
		e.abandon(x, "the checkpoint is not past this replica's log", "log_index", e.lastIndex)
		return
	}
	if err := checkSnapshotIndex(t.Snapshot, t.Index); err != nil {
		e.abandon(x, "the checkpoint's snapshot does not match its index", "index", t.Index, "err", err)
		return
	}
	x.asking, x.index, x.snap = false, t.Index, t.Snapshot
	x.claims, x.cands = map[types.NodeID]anchorKey{}, map[anchorKey]*anchorInfo{}
	e.askAnchor(x)
}

func (e *Engine) askAnchor(x *transfer) {
	x.tries++
	x.askedAt = e.ticks
	e.log.Info("asking the peers for the committed block holding the checkpoint's index", "index", x.index, "try", x.tries)
	e.net.broadcast(encodeU64Frame(frameAnchorReq, x.index))
}

// transferTick sends the anchor request again, or gives up.
func (e *Engine) transferTick() {
	x := e.xfer
	if x == nil || x.asking || e.ticks-x.askedAt < e.resendTicks() {
		return
	}
	if x.tries >= anchorRetries {
		e.abandon(x, "f+1 members did not name the same block holding the checkpoint's index", "index", x.index, "answers", len(x.claims))
		return
	}
	e.askAnchor(x)
}

// serveAnchor answers a peer's anchor request from the committed chain.
func (e *Engine) serveAnchor(to types.NodeID, index uint64) {
	if index == 0 || index > e.lastIndex || !e.allowServe(to) {
		return
	}
	a, err := e.anchorFor(index)
	if err != nil {
		e.log.Error("reading the anchor block for a peer", "peer", string(to), "index", index, "err", err)
		return
	}
	if a != nil {
		e.net.send(to, encodeAnchorFrame(a))
	}
}

// anchorFor returns the stored committed block holding index with a QC
// that certifies it, or nil when it is not stored.
func (e *Engine) anchorFor(index uint64) (*anchorInfo, error) {
	ce, ok, err := e.store.holding(index, max(e.horizon, 1), e.height)
	if err != nil || !ok || ce.first > index {
		return nil, err
	}
	b, err := e.store.block(ce.hash)
	if err != nil || b == nil {
		return nil, err
	}
	var qc types.QC
	if ce.height == e.height {
		if qc, err = e.store.rootQC(); err != nil {
			return nil, err
		}
	} else {
		child, ok, err := e.store.chainAt(ce.height + 1)
		if err != nil || !ok {
			return nil, err
		}
		cb, err := e.store.block(child.hash)
		if err != nil || cb == nil {
			return nil, err
		}
		qc = cb.Justify
	}
	if qc.Block != ce.hash {
		return nil, fmt.Errorf("no QC for the committed block at height %d", ce.height)
	}
	return &anchorInfo{index: index, height: ce.height, first: ce.first, last: ce.last, qc: qc, block: b}, nil
}

// onAnchor takes a peer's anchor; f+1 matching ones start the replica
// from the transferred checkpoint.
func (e *Engine) onAnchor(from types.NodeID, a *anchorInfo) {
	x := e.xfer
	if x == nil || x.asking || a.index != x.index {
		return
	}
	if x.index <= e.lastIndex || a.height <= e.height {
		// The core caught up past the checkpoint meanwhile (a peer still
		// served the blocks): installing it would go back.
		e.abandon(x, "this replica committed past the checkpoint meanwhile", "index", x.index, "log_index", e.lastIndex)
		return
	}
	h := a.block.Hash()
	if a.qc.Block != h || a.block.Height != a.height || countEntries(a.block) != a.last+1-a.first {
		e.log.Warn("a peer's anchor block does not match its claim", "peer", string(from), "index", a.index, "height", a.height)
		return
	}
	if err := e.coreCfg.Verifier.VerifyQC(a.qc); err != nil {
		e.log.Warn("a peer's anchor QC does not verify", "peer", string(from), "index", a.index, "err", err)
		return
	}
	k := anchorKey{height: a.height, first: a.first, last: a.last, hash: h}
	x.claims[from] = k
	if _, ok := x.cands[k]; !ok {
		x.cands[k] = a
	}
	n := 0
	for _, c := range x.claims {
		if c == k {
			n++
		}
	}
	if n >= e.committee.F()+1 {
		e.install(x, x.cands[k], n)
	}
}

// install restarts this replica from the transferred snapshot and the
// anchor block a. The old core's unhandled work is dropped: its blocks
// are replaced, its votes unsent, and the safety data it signed with
// stays in the safety store.
func (e *Engine) install(x *transfer, a *anchorInfo, agreed int) {
	if err := e.fsm.Restore(x.snap); err != nil {
		e.abandon(x, "the checkpoint's snapshot does not restore", "err", err)
		return
	}
	e.xfer = nil
	if got := e.fsm.AppliedIndex(); got != x.index {
		e.loopErr = fmt.Errorf("state transfer: the restored snapshot reports index %d, the checkpoint %d", got, x.index)
		return
	}
	if last := e.applyCommands(a.block, a.first, x.index, applyInstall); last != a.last {
		e.loopErr = fmt.Errorf("state transfer: the anchor block ends at log index %d, its record says %d", last, a.last)
		return
	}
	data, err := e.fsm.Snapshot()
	if err != nil {
		e.loopErr = fmt.Errorf("state transfer: snapshot after the anchor block: %w", err)
		return
	}
	entry := chainEntry{height: a.height, hash: a.qc.Block, first: a.first, last: a.last}
	if err := e.store.rebase(a.block, entry, a.qc, storedSnapshot{height: a.height, index: a.last, data: data}); err != nil {
		e.loopErr = fmt.Errorf("state transfer: store the anchor: %w", err)
		return
	}
	c, err := e.newCore(&core.Restore{Root: a.block, RootQC: a.qc, Committed: []*types.Block{a.block}})
	if err != nil {
		e.loopErr = fmt.Errorf("state transfer: restart the core from the anchor: %w", err)
		return
	}
	e.core = c
	e.height, e.lastIndex = a.height, a.last
	e.snapIndex, e.snapHeight = a.last, a.height
	e.setHorizon(horizonOf(a.height)) // the store's chain begins at the anchor
	logBytes, err := e.store.logBytes()
	if err != nil {
		e.loopErr = fmt.Errorf("state transfer: read the stored log size: %w", err)
		return
	}
	e.setLogBytes(logBytes)
	e.stats.transfers.Add(1)
	e.log.Info("started from a transferred checkpoint", "checkpoint_index", x.index, "anchor_height", a.height,
		"anchor_indexes", fmt.Sprintf("%d..%d", a.first, a.last), "members_agreeing", agreed, "log_index", e.lastIndex)
}
