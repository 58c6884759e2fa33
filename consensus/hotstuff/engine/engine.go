package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/smr"
)

var _ consensus.Engine = (*Engine)(nil)

// ErrStaticCommittee is returned by membership changes in bft mode: the
// committee of an epoch is fixed (initial_members); changing it needs a new
// epoch.
var ErrStaticCommittee = errors.New("the BFT committee is fixed for the epoch (initial_members): members cannot be added or removed at run time")

// Engine tuning that is not configurable.
const (
	// recentCommitted is how many committed blocks a restarted core gets
	// back (leader reputation history).
	recentCommitted = 256
	// maxOrphans bounds the blocks a core holds while it fetches their
	// ancestors; it is also the longest gap a lagging replica can close by
	// fetching blocks.
	maxOrphans = 16384
	// maxResponseBytes bounds the blocks of one BlockResponse this node
	// sends.
	maxResponseBytes = 8 << 20
	// maxBlockRequestsPerSecond bounds the block requests served to one
	// peer per second (each reads up to MaxBlocksPerResponse blocks from
	// the store), so a member cannot keep this node busy reading for it.
	// A replica catching up needs far fewer.
	maxBlockRequestsPerSecond = 200
	// maxDrain is how many queued inputs one loop iteration takes before it
	// handles the resulting Ready.
	maxDrain = 256
	// inboxLen is the capacity of the inbound frame queue; readers block
	// (and TCP pushes back on the sender) when it is full.
	inboxLen = 4096
	// maxInflight bounds the locally handed-over commands tracked for
	// re-forwarding.
	maxInflight = 100_000
	// lazyForwardTicks is how long a command handed over here waits before
	// it is forwarded to every peer, unless a proposal carried it first.
	// Until then it only goes to the leaders of the current and the next
	// two views (forwardLeaderViews), who order it; the others see it in
	// their proposals, so forwarding it to every peer at once would cost
	// each a frame and a signature check per command for nothing.
	lazyForwardTicks = 2
)

// Engine is the HotStuff consensus engine of one node: the shell around the
// pure core (consensus/hotstuff/core). One goroutine, the loop, owns the
// core; it feeds it ticks, inbound messages and commands, and handles each
// Ready in order: persist (the safety data Rules signed with goes to its
// file while blocks and the committed chain go to the block store), send,
// apply, then Advance. Every
// exported method is safe for concurrent use.
type Engine struct {
	cfg       Config
	log       *slog.Logger
	committee *types.Committee
	// safeStore holds what Rules signed until processReady persists it.
	safeStore *deferredSafety
	addrs     map[types.NodeID]string
	members   []consensus.Member
	validator *entryValidator
	genesis   []byte // encoded genesis entry, nil if none configured
	store     *blockStore
	net       *peerNet
	ln        net.Listener
	fsm       StateMachine
	stats     *counters
	lat       *latencyStats             // latency histograms (latency.go); written by the loop
	limits    atomic.Pointer[LogLimits] // Config.LogLimits, replaced by SetLogLimits

	// Owned by the loop.
	core        *core.Core
	lastIndex   uint64         // log index of the last committed entry
	height      uint64         // height of the last committed block
	snapIndex   uint64         // log index of the stored snapshot
	snapHeight  uint64         // committed height of the stored snapshot
	horizon     uint64         // lowest committed height still stored (0: nothing pruned)
	logBytes    uint64         // encoded size of the committed blocks stored (prune.go)
	sizeFloor   uint64         // logBytes after a size compaction that left it above the limit, 0 below it (prune.go)
	xfer        *transfer      // a state transfer in progress (transfer.go), or nil
	coreCfg     core.Config    // how the core was built, to rebuild it (transfer.go)
	quarantined []types.NodeID // the last SetQuarantined set
	xferAfter   uint64         // no state transfer starts before this tick
	loopErr     error          // set on the loop when it must halt
	ticks       uint64
	viewReqAt   map[types.NodeID]time.Time
	viewReqs    map[types.NodeID]types.View  // the view each member (self included) last asked to leave
	served      map[types.NodeID]*rateWindow // block requests served per peer
	inflight    map[types.Hash]*inflightCmd
	outCmds     [][]byte     // handed over this iteration, to forward to the leaders
	outKeys     []types.Hash // their command keys
	lazy        []types.Hash // handed over, in order, to forward to every peer later
	lastView    types.View
	obs         observer         // vote observation (observe.go)
	omit        *omissionTracker // omission observation (omission.go); nil when off

	proposeCh chan proposal
	ctrlCh    chan func()

	waitMu  sync.Mutex
	waiters map[types.Hash][]chan smr.Result

	status   atomic.Pointer[statusSnap]
	viewMu   sync.Mutex
	viewChan chan struct{} // closed and replaced when the view changes

	timeMu   sync.Mutex
	lastTime int64

	markerBase uint64
	markerSeq  atomic.Uint64
	readMu     sync.Mutex
	readCur    *readGroup
	readNext   *readGroup
	readClosed bool // set by Stop under readMu: no marker starts after it
	readWG     sync.WaitGroup

	stopCh   chan struct{}
	loopDone chan struct{}
	bgCtx    context.Context // ends at Stop: background work (state transfer)
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	stopOnce sync.Once
	stopped  atomic.Bool
	stopErr  error
	fatal    atomic.Pointer[error]
}

type proposal struct {
	cmd   []byte
	reply chan error
}

type inflightCmd struct {
	cmd      []byte
	sent     uint64 // tick of the last forward to every peer
	born     uint64
	proposed bool // seen in a proposal: no lazy forward needed
	// For the latency histograms (latency.go): when it was handed over
	// and in which view, when and in which view a proposal first carried
	// it.
	at, proposedAt time.Time
	view, propView types.View
}

type statusSnap struct {
	core      core.Status
	lastIndex uint64
}

// counters are the engine's event counters (the transport has its own).
type counters struct {
	net                                 netCounters
	stepErrors, invalidForwarded        atomic.Uint64
	evidence, alerts                    atomic.Uint64
	viewChangesQC, viewChangesTC        atomic.Uint64
	forcedViewChanges, remoteViewChange atomic.Uint64
	blocksCommitted, entriesApplied     atomic.Uint64
	blockRequestsServed, reforwarded    atomic.Uint64
	blockRequestsRefused                atomic.Uint64
	blocksPruned, horizon               atomic.Uint64
	logBytes, sizeCompactions           atomic.Uint64
	prunedAnswers, transfers            atomic.Uint64
	signatureFailures                   atomic.Uint64
}

// genesisState derives the genesis block's content from the epoch and the
// committee, so that every member configured with the same committee starts
// from the same genesis block, and another committee's blocks and
// certificates never verify here. A variant other than the default 3-chain
// is bound too: members that disagree on the commit rule (which would void
// its safety argument) never accept each other's certificates.
func genesisState(epoch uint64, ms []Member, base *Base, v core.Variant) []byte {
	sorted := slices.Clone(ms)
	slices.SortFunc(sorted, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	h := sha256.New()
	h.Write([]byte("tandem/hotstuff/genesis/v1\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, epoch))
	for _, m := range sorted {
		h.Write([]byte{byte(len(m.ID))})
		h.Write([]byte(m.ID))
		h.Write(m.PublicKey)
	}
	if base != nil {
		// Epochs that start from a handed-over state bind it; the epoch
		// number alone already separates them from every earlier one.
		h.Write([]byte("base"))
		h.Write(binary.BigEndian.AppendUint64(nil, base.Index))
		h.Write(base.Digest[:])
	}
	if v != core.ThreeChain {
		h.Write([]byte("variant"))
		h.Write([]byte(v.String()))
	}
	return h.Sum(nil)
}

// BlockStoreName is the block store's file under DataDir/hotstuff: the
// blocks, the committed chain and the state machine snapshot. The safety
// file beside it ("safety") is kept apart: a replica may lose its blocks
// and fetch them again, never its safety data.
const BlockStoreName = "blocks.db"

// New opens the engine's storage under DataDir/hotstuff, rebuilds the state
// machine from the stored snapshot and committed chain, restores the core,
// and starts the transport and the loop. A fresh replica starts from the
// genesis block and, if Config.Genesis is set, proposes the genesis entry.
//
// New refuses to start when the safety data is corrupt (voting without it
// could sign twice in one view) or the block store belongs to another
// committee.
func New(cfg Config) (_ *Engine, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// Checked before anything is opened; newCore maps them for the core.
	if _, _, err := cfg.pacemakerConfig(); err != nil {
		return nil, err
	}
	if n := cfg.FSM.AppliedIndex(); n != 0 && (cfg.Base == nil || n != cfg.Base.Index) {
		return nil, fmt.Errorf("hotstuff engine: the state machine has applied index %d; it must be fresh, the engine rebuilds it from its own storage", n)
	}
	log := cfg.Logger.With("component", "hotstuff")
	e := &Engine{
		cfg:       cfg,
		log:       log,
		addrs:     map[types.NodeID]string{},
		fsm:       cfg.FSM,
		stats:     &counters{},
		lat:       newLatencyStats(),
		viewReqAt: map[types.NodeID]time.Time{},
		viewReqs:  map[types.NodeID]types.View{},
		served:    map[types.NodeID]*rateWindow{},
		inflight:  map[types.Hash]*inflightCmd{},
		obs:       observer{views: map[types.View]*observedView{}},
		omit:      omissionTrackerFor(cfg),
		proposeCh: make(chan proposal, 1024),
		ctrlCh:    make(chan func()),
		waiters:   map[types.Hash][]chan smr.Result{},
		viewChan:  make(chan struct{}),
		stopCh:    make(chan struct{}),
		loopDone:  make(chan struct{}),
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("hotstuff engine: random marker nonce: %w", err)
	}
	e.markerBase = binary.BigEndian.Uint64(nonce[:])

	tm := make([]types.Member, 0, len(cfg.Members))
	for _, m := range cfg.Members {
		tm = append(tm, types.Member{ID: m.ID, PublicKey: m.PublicKey})
		e.addrs[m.ID] = m.Addr
		e.members = append(e.members, consensus.Member{ID: string(m.ID), Address: m.Addr, Voter: true})
	}
	slices.SortFunc(e.members, func(a, b consensus.Member) int { return cmp.Compare(a.ID, b.ID) })
	genesisBlock := types.NewGenesis(genesisState(cfg.Epoch, cfg.Members, cfg.Base, cfg.Variant))
	e.committee, err = types.NewCommittee(types.CommitteeConfig{Epoch: cfg.Epoch, Members: tm, Genesis: genesisBlock.Hash()})
	if err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	if cfg.Genesis != nil {
		ent := smr.NewGenesisEntry(0, *cfg.Genesis)
		if e.genesis, err = ent.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("hotstuff engine: genesis entry: %w", err)
		}
	}
	e.validator = &entryValidator{now: cfg.Clock, maxSkew: cfg.MaxClockSkew, genesis: e.genesis}

	dir := filepath.Join(cfg.DataDir, "hotstuff")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	e.store, err = openStore(filepath.Join(dir, BlockStoreName), genesisBlock.Hash())
	if err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	defer func() {
		if err != nil {
			_ = e.store.close()
		}
	}()
	if err := e.installBase(); err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	horizon, err := e.store.horizon()
	if err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	e.setHorizon(horizon)
	logBytes, err := e.store.logBytes()
	if err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	e.setLogBytes(logBytes)
	e.SetLogLimits(cfg.LogLimits)
	st, err := e.store.load(recentCommitted)
	if err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	if err := e.rebuild(st); err != nil {
		return nil, fmt.Errorf("hotstuff engine: rebuild the state machine: %w", err)
	}

	verifier := types.NewQCCache(e.committee, 4096)
	safetyPath := filepath.Join(dir, "safety")
	e.safeStore = &deferredSafety{file: safety.NewFileStore(safetyPath)}
	rules, err := core.NewSafety(e.safeStore, types.NewEd25519Signer(cfg.ID, cfg.Key), e.committee, verifier, cfg.Variant)
	if err != nil {
		if safety.IsCorruption(err) {
			return nil, fmt.Errorf("hotstuff engine: refusing to start: %w (restore %s from a backup; deleting it lets this replica vote twice in views it already voted in)", err, safetyPath)
		}
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	ids := e.committee.Members()
	cc := core.DefaultConfig()
	cc.ID = cfg.ID
	cc.Committee = e.committee
	cc.Genesis = genesisBlock
	cc.Safety = rules
	cc.Verifier = verifier
	cc.Variant = cfg.Variant
	cc.Validator = e.validator
	cc.CommandKey = commandKey
	cc.MaxBatch = cfg.MaxBatch
	cc.BatchDelay = int(cfg.MaxBatchDelay / cfg.Tick)
	cc.MaxPending = max(cfg.MaxPending, cfg.MaxBatch)
	cc.RetainCommitted = recentCommitted
	cc.MaxOrphans = maxOrphans
	cc.Logger = log
	e.coreCfg = cc
	var restore *core.Restore
	if st.root != nil {
		restore = &core.Restore{Root: st.root, RootQC: st.rootQC, Blocks: st.pending, Committed: st.recent}
	}
	if e.core, err = e.newCore(restore); err != nil {
		return nil, fmt.Errorf("hotstuff engine: %w", err)
	}
	e.lastView = e.core.View()
	e.publishStatus()

	e.ln = cfg.Network.BFTListener()
	e.net = newPeerNet(peerNetConfig{
		self:       cfg.ID,
		network:    cfg.Network,
		peerID:     cfg.PeerID,
		addrs:      e.addrs,
		maxFrame:   cfg.MaxFrameBytes,
		queueLen:   cfg.SendQueueLen,
		queueBytes: cfg.SendQueueBytes,
		inboxLen:   inboxLen,
		log:        log,
		stats:      &e.stats.net,
		precheck:   e.precheck,
	})
	// Log before the loop starts: from then on only the loop reads its
	// fields.
	log.Info("hotstuff engine starting", "members", len(ids), "quorum", e.committee.Quorum(), "view", e.core.View(),
		"committed_height", e.height, "log_index", e.lastIndex, "variant", cfg.Variant.String(), "rotation", cfg.Rotation,
		"view_change_timeout", cfg.ViewChangeTimeout, "tick", cfg.Tick)
	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
	e.net.start(e.ln)
	go e.run()
	return e, nil
}

// newCore builds a core from coreCfg with a fresh leader rotation,
// restored from r when set.
func (e *Engine) newCore(r *core.Restore) (*core.Core, error) {
	cc := e.coreCfg
	ids := e.committee.Members()
	if e.cfg.Rotation == RotationRoundRobin {
		cc.Rotation = leaderrotation.NewRoundRobin(ids)
	} else {
		rc := leaderrotation.DefaultReputationConfig(len(ids))
		rc.Window = max(rc.Window, e.cfg.ReputationWindow)
		cc.Rotation = leaderrotation.NewReputation(ids, rc)
	}
	pm, idle, err := e.cfg.pacemakerConfig() // reloaded timeouts included
	if err != nil {
		return nil, err
	}
	cc.Pacemaker, cc.IdlePropose = pm, idle
	cc.Restore = r
	c, err := core.New(cc)
	if err != nil {
		return nil, err
	}
	if len(e.quarantined) > 0 {
		c.SetQuarantined(e.quarantined)
	}
	return c, nil
}

// rebuild restores the state machine from the stored snapshot and replays
// the committed blocks above it, in order, through Apply.
func (e *Engine) rebuild(st state) error {
	e.height = st.last.height
	from, idx := uint64(0), uint64(0)
	snap, err := e.store.snapshot()
	if err != nil {
		return err
	}
	if snap != nil && snap.height <= st.last.height {
		if err := e.fsm.Restore(snap.data); err != nil {
			e.log.Warn("stored state machine snapshot does not restore; replaying the whole committed log", "err", err)
		} else if got := e.fsm.AppliedIndex(); got != snap.index {
			return fmt.Errorf("snapshot at height %d claims log index %d, the state machine reports %d", snap.height, snap.index, got)
		} else {
			from, idx = snap.height, snap.index
			e.snapIndex, e.snapHeight = snap.index, snap.height
		}
	}
	if from+1 < e.horizon {
		return fmt.Errorf("the committed blocks below height %d were pruned and the stored snapshot (height %d) does not restore: the state cannot be rebuilt from this data directory; wipe it to start from a transferred checkpoint", e.horizon, from)
	}
	replayed := 0
	err = e.store.replay(from, func(ce chainEntry, b *types.Block) error {
		if ce.first != idx+1 {
			return fmt.Errorf("committed block at height %d starts at log index %d, want %d", ce.height, ce.first, idx+1)
		}
		idx = e.applyCommands(b, ce.first, 0, applyReplay)
		if idx != ce.last {
			return fmt.Errorf("committed block at height %d ends at log index %d, the record says %d", ce.height, idx, ce.last)
		}
		replayed++
		return nil
	})
	if err != nil {
		return err
	}
	e.lastIndex = idx
	if replayed > 0 || snap != nil {
		e.log.Info("state machine rebuilt", "snapshot_index", e.snapIndex, "blocks_replayed", replayed, "log_index", idx, "committed_height", e.height)
	}
	return nil
}

// --- the loop ---

// needsGenesis reports whether the state machine still waits for its
// genesis entry: asked of the state machine when it can tell (entries that
// committed before the genesis must not stop it from being proposed again
// after a restart), else inferred from an empty log.
func (e *Engine) needsGenesis() bool {
	if sm, ok := e.cfg.FSM.(interface{ Initialized() bool }); ok {
		return !sm.Initialized()
	}
	return e.lastIndex == 0
}

func (e *Engine) run() {
	defer close(e.loopDone)
	ticker := time.NewTicker(e.cfg.Tick)
	defer ticker.Stop()
	if e.genesis != nil && e.needsGenesis() {
		if err := e.core.Propose(e.genesis); err != nil {
			e.log.Error("cannot queue the genesis entry", "err", err)
		}
	}
	resendTicks := uint64(max(e.cfg.ViewChangeTimeout/e.cfg.Tick, 1))
	for {
		select {
		case <-e.stopCh:
			return
		case <-ticker.C:
			e.ticks++
			e.core.Tick()
			e.forwardLazy()
			e.transferTick()
			if e.ticks%sweepTicks == 0 {
				e.sweepVotes()
				e.sweepOmissions()
			}
			if e.ticks%resendTicks == 0 {
				e.reforward(resendTicks)
			}
		case in := <-e.net.inbox:
			e.handleInbound(in)
		drainIn:
			for range maxDrain {
				select {
				case in := <-e.net.inbox:
					e.handleInbound(in)
				default:
					break drainIn
				}
			}
		case p := <-e.proposeCh:
			e.handlePropose(p)
		drainProp:
			for range maxDrain {
				select {
				case p := <-e.proposeCh:
					e.handlePropose(p)
				default:
					break drainProp
				}
			}
		case fn := <-e.ctrlCh:
			fn()
		}
		err := e.processReady()
		if err == nil {
			err = e.loopErr
		}
		if err != nil {
			e.log.Error("hotstuff engine halted: cannot persist consensus state", "err", err)
			e.fatal.Store(&err)
			return
		}
		e.publishStatus()
	}
}

func (e *Engine) handleInbound(in inbound) {
	switch in.f.kind {
	case frameMessage:
		var keys []types.Hash // a proposal's command keys, once needed
		switch m := in.f.msg.(type) {
		case *types.BlockRequest:
			e.serveBlocks(in.from, m)
			return
		case *types.Proposal:
			e.noteProposed(m, &keys)
		}
		err := e.core.Step(in.from, in.f.msg)
		if err != nil {
			e.stats.stepErrors.Add(1)
			e.log.Debug("message rejected", "from", string(in.from), "type", in.f.msg.MsgType().String(), "err", err)
			e.noteRejected(in.from, in.f.msg, err)
			return
		}
		switch m := in.f.msg.(type) {
		case *types.Proposal:
			if m.Block != nil {
				e.noteProposalSeen(m.Block.View)
			}
			e.noteLeaderProposal(in.from, m, &keys)
			e.noteWaitProposal(in.from, m)
			e.noteConflict(m)
		case *types.Vote:
			e.noteVote(in.from, m)
		}
	case frameCommands:
		for _, c := range in.f.cmds {
			if e.omitCommand(c) {
				continue
			}
			if err := e.core.Propose(c); err != nil {
				e.stats.invalidForwarded.Add(1)
				e.log.Debug("forwarded command not queued", "from", string(in.from), "err", err)
			}
		}
	case frameViewChange:
		e.onViewChangeRequest(in.from, in.f.view)
	case framePruned:
		e.onPruned(in.from, in.f.prunedHash, in.f.prunedHorizon)
	case frameAnchorReq:
		e.serveAnchor(in.from, in.f.index)
	case frameAnchor:
		e.onAnchor(in.from, in.f.anchor)
	}
}

// serveBlocks answers a block request from the block store, which holds
// every committed block from its horizon on (the core alone keeps only
// recent ones), so a replica that was away can fetch its way back. When
// the walk down the ancestry stops at the horizon, or the block is not
// stored at all and something was pruned, a pruned frame follows: the
// requester learns that this replica cannot serve what lies below, instead
// of waiting for an answer that never comes.
func (e *Engine) serveBlocks(to types.NodeID, r *types.BlockRequest) {
	n := min(int(r.Count), types.MaxBlocksPerResponse)
	if n == 0 {
		return
	}
	if !e.allowServe(to) {
		return
	}
	blocks, err := e.store.ancestry(r.Hash, n, min(maxResponseBytes, e.cfg.MaxFrameBytes/2))
	if err != nil {
		e.log.Error("reading blocks for a peer", "peer", string(to), "err", err)
		return
	}
	if len(blocks) > 0 {
		e.stats.blockRequestsServed.Add(1)
		e.net.send(to, encodeMessageFrame(&types.BlockResponse{Blocks: blocks}))
	}
	if e.horizon > 1 && (len(blocks) == 0 || blocks[len(blocks)-1].Height <= e.horizon) {
		e.stats.prunedAnswers.Add(1)
		e.net.send(to, encodePrunedFrame(r.Hash, e.horizon))
	}
}

// allowServe counts one request of peer to against its rate.
func (e *Engine) allowServe(to types.NodeID) bool {
	w := e.served[to]
	if w == nil {
		w = &rateWindow{}
		e.served[to] = w
	}
	if !w.allow(e.cfg.Clock(), maxBlockRequestsPerSecond) {
		e.stats.blockRequestsRefused.Add(1)
		return false
	}
	return true
}

func (e *Engine) handlePropose(p proposal) {
	if e.holdProbe(p.cmd) { // omission.go
		p.reply <- nil
		return
	}
	err := e.core.Propose(p.cmd)
	p.reply <- err
	if err != nil {
		return
	}
	h := commandKey(p.cmd)
	if _, ok := e.inflight[h]; !ok && len(e.inflight) < maxInflight {
		e.inflight[h] = &inflightCmd{cmd: p.cmd, sent: e.ticks, born: e.ticks, at: time.Now(), view: e.core.View()}
		e.lazy = append(e.lazy, h)
	}
	e.outCmds = append(e.outCmds, p.cmd)
	e.outKeys = append(e.outKeys, h)
}

// forwardLeaderViews is how many views, from the current one on, whose
// leaders get a command handed over here at once (forwardToLeaders). The
// leader of the next view usually proposes soon after this replica
// entered the current one (it proposes once the votes for the current
// view's block reach it), so a command handed over later in the view
// often misses that proposal; the leader of the view after it then orders
// it, instead of it waiting for the lazy forward or the next leader's own
// turn.
const forwardLeaderViews = 3

// forwardTargets returns the distinct leaders of views v to
// v+forwardLeaderViews−1 (leader gives them), but self, in view order.
func forwardTargets(self types.NodeID, v types.View, leader func(types.View) types.NodeID) []types.NodeID {
	var to []types.NodeID
	for i := range types.View(forwardLeaderViews) {
		if id := leader(v + i); id != self && !slices.Contains(to, id) {
			to = append(to, id)
		}
	}
	return to
}

// forwardToLeaders sends commands handed over on this node to the leaders
// of the current and the next views (forwardTargets) but itself, who will
// order them; the other peers get them lazily (forwardLazy). keys are
// their command keys.
func (e *Engine) forwardToLeaders(cmds [][]byte, keys []types.Hash) {
	to := forwardTargets(e.cfg.ID, e.core.View(), e.core.Leader)
	e.noteForwarded(cmds, keys, to)
	for _, f := range e.commandFrames(cmds) {
		for _, id := range to {
			e.net.send(id, f)
		}
	}
}

// forwardLazy forwards to every peer the commands handed over here at least
// lazyForwardTicks ago that no proposal has carried yet, so that any leader
// can order them if the leaders they went to do not.
func (e *Engine) forwardLazy() {
	n := 0
	var cmds [][]byte
	var keys []types.Hash
	for _, h := range e.lazy {
		c, ok := e.inflight[h]
		if ok && e.ticks-c.born < lazyForwardTicks {
			break
		}
		n++
		if ok && !c.proposed {
			c.sent = e.ticks
			cmds = append(cmds, c.cmd)
			keys = append(keys, h)
		}
	}
	e.lazy = e.lazy[n:]
	if len(cmds) > 0 {
		e.forward(cmds, keys)
	}
}

// payloadKeys returns the command keys of b's payload, computed into
// *keys on the first call for b (the callers pass one cache per proposal).
func payloadKeys(b *types.Block, keys *[]types.Hash) []types.Hash {
	if *keys == nil {
		ks := make([]types.Hash, len(b.Payload))
		for i, cmd := range b.Payload {
			ks[i] = commandKey(cmd)
		}
		*keys = ks
	}
	return *keys
}

// noteProposed marks the handed-over commands a proposal carries: they no
// longer need a lazy forward. keys caches its payload's command keys
// (payloadKeys).
func (e *Engine) noteProposed(p *types.Proposal, keys *[]types.Hash) {
	if p.Block == nil || len(e.inflight) == 0 {
		return
	}
	now := time.Now()
	for _, k := range payloadKeys(p.Block, keys) {
		if c, ok := e.inflight[k]; ok {
			c.proposed = true
			c.noteProposedAt(now, p.Block.View)
		}
	}
}

// forward sends commands, of command keys keys, to every peer, so that
// whichever replica leads the next views can order them.
func (e *Engine) forward(cmds [][]byte, keys []types.Hash) {
	e.noteForwarded(cmds, keys, nil)
	for _, f := range e.commandFrames(cmds) {
		e.net.broadcast(f)
	}
}

// commandFrames encodes cmds as commands frames.
func (e *Engine) commandFrames(cmds [][]byte) [][]byte {
	var frames [][]byte
	limit := max(e.cfg.MaxFrameBytes/2, 1)
	for len(cmds) > 0 {
		n, size := 0, 0
		for n < len(cmds) && n < MaxForwardBatch && (n == 0 || size+len(cmds[n])+4 <= limit) {
			size += len(cmds[n]) + 4
			n++
		}
		frames = append(frames, encodeCommandsFrame(cmds[:n]))
		cmds = cmds[n:]
	}
	return frames
}

// reforward sends again the commands handed over here that have waited at
// least every ticks since their last forward (a frame may have been dropped
// by a full send queue or a broken connection), and forgets those that
// waited ten times as long.
func (e *Engine) reforward(every uint64) {
	var again [][]byte
	var keys []types.Hash
	for h, c := range e.inflight {
		switch {
		case e.ticks-c.born >= 10*every:
			delete(e.inflight, h)
		case e.ticks-c.sent >= every:
			c.sent = e.ticks
			again = append(again, c.cmd)
			keys = append(keys, h)
		}
	}
	if len(again) > 0 {
		e.stats.reforwarded.Add(uint64(len(again)))
		e.forward(again, keys)
	}
}

// processReady handles the core's Ready in the order the core requires:
// persist, send, apply, events, Advance.
func (e *Engine) processReady() error {
	e.stepProbe() // omission.go
	if len(e.outCmds) > 0 {
		e.forwardToLeaders(e.outCmds, e.outKeys)
		e.outCmds, e.outKeys = nil, nil
	}
	if !e.core.HasReady() {
		return nil
	}
	rd := e.core.Ready()
	for _, m := range rd.Messages {
		if p, ok := m.Msg.(*types.Proposal); ok {
			var keys []types.Hash
			e.noteProposed(p, &keys) // this replica's own
			if p.Block != nil {
				e.noteProposalSeen(p.Block.View)
			}
			e.noteLeaderProposal(e.cfg.ID, p, &keys)
		}
	}

	// 1. Persist the accepted blocks and the committed chain (with the log
	// indexes its entries take), and the safety data.
	committed := make([]committedBlock, 0, len(rd.Committed))
	idx, height := e.lastIndex, e.height
	for _, b := range rd.Committed {
		if b.Height != height+1 {
			return fmt.Errorf("committed block at height %d does not follow height %d", b.Height, height)
		}
		n := countEntries(b)
		committed = append(committed, committedBlock{block: b, entry: chainEntry{height: b.Height, hash: b.Hash(), first: idx + 1, last: idx + n}})
		idx += n
		height = b.Height
	}
	// The safety data Rules signed with is written at the same time, to
	// its own file (deferredSafety).
	var safetyDone chan error
	if e.safeStore.dirty() {
		safetyDone = make(chan error, 1)
		go func() { safetyDone <- e.safeStore.flush() }()
	}
	persistStart := time.Now()
	added, err := e.store.save(rd.Blocks, committed, rd.CommitQC)
	if safetyDone != nil {
		err = errors.Join(err, <-safetyDone)
	}
	if len(rd.Blocks) > 0 || len(committed) > 0 || safetyDone != nil {
		e.lat.persist.Observe(time.Since(persistStart).Seconds())
	}
	if err != nil {
		return err
	}
	if added > 0 {
		e.setLogBytes(e.logBytes + added)
	}

	// 2. Send.
	for _, m := range rd.Messages {
		if e.misbehave(m) {
			continue
		}
		e.noteOwnVote(m)
		e.noteWaitVote(m)
		f := encodeMessageFrame(m.Msg)
		if m.To == "" {
			e.net.broadcast(f)
		} else {
			e.net.send(m.To, f)
		}
	}

	// 3. Apply.
	for _, c := range committed {
		e.applyCommands(c.block, c.entry.first, 0, applyCommit)
		e.lastIndex, e.height = c.entry.last, c.entry.height
		e.stats.blocksCommitted.Add(1)
	}
	if len(committed) > 0 && e.lastIndex >= e.snapIndex+e.cfg.SnapshotInterval {
		e.snapshot()
	}
	if len(committed) > 0 {
		if err := e.checkLogSize(); err != nil {
			e.log.Warn("committed blocks not pruned on the log size limit", "err", err)
		}
	}

	// 4. Events.
	for _, ev := range rd.Events {
		switch ev.Kind {
		case core.EventEvidence:
			e.stats.evidence.Add(1)
			e.reportEvidence(ev.Evidence)
		case core.EventAlert:
			e.stats.alerts.Add(1)
			e.log.Error("view change alert: consecutive views timed out without progress", "view", ev.View, "detail", ev.Detail)
		case core.EventAlertCleared:
			e.log.Warn("view change alert cleared: progress resumed", "view", ev.View)
		case core.EventViewChange:
			e.lat.noteView(time.Now())
			e.noteWaitView(ev.View, ev.Detail == "TC")
			if ev.Detail == "TC" {
				e.stats.viewChangesTC.Add(1)
			} else {
				e.stats.viewChangesQC.Add(1)
			}
		}
	}

	// 5. Advance.
	e.core.Advance()
	return nil
}

// countEntries is how many log indexes b's payload takes: every command
// but read markers.
func countEntries(b *types.Block) uint64 {
	var n uint64
	for _, c := range b.Payload {
		if !isReadMarker(c) {
			n++
		}
	}
	return n
}

// applyMode is what applyCommands does besides applying.
type applyMode int

const (
	// applyReplay: the replay at start-up, the state machine only.
	applyReplay applyMode = iota
	// applyInstall: a transferred anchor block; completes waiters and
	// forgets in-flight commands.
	applyInstall
	// applyCommit: a block committed here; as applyInstall, and the
	// omission observation learns the commands it carries.
	applyCommit
)

// applyCommands applies b's entries from log index first on, but those at
// or below skip (the state machine holds them already), and returns the
// last index used (first−1 when none); mode says what else it does.
func (e *Engine) applyCommands(b *types.Block, first, skip uint64, mode applyMode) uint64 {
	idx := first - 1
	for _, cmd := range b.Payload {
		var res smr.Result
		if !isReadMarker(cmd) {
			idx++
			if idx <= skip {
				continue
			}
			res = e.fsm.Apply(idx, cmd)
			e.stats.entriesApplied.Add(1)
		}
		if mode != applyReplay {
			h := commandKey(cmd)
			if c, ok := e.inflight[h]; ok && mode == applyCommit {
				e.lat.noteApplied(c, time.Now(), e.core.View())
			}
			delete(e.inflight, h)
			e.complete(h, res)
			if mode == applyCommit {
				e.noteCommittedCommand(b, h)
			}
		}
	}
	return idx
}

// snapshot stores a state machine snapshot at the current height.
func (e *Engine) snapshot() {
	data, err := e.fsm.Snapshot()
	if err != nil {
		e.log.Warn("state machine snapshot failed", "err", err)
		return
	}
	if err := e.store.saveSnapshot(storedSnapshot{height: e.height, index: e.lastIndex, data: data}); err != nil {
		e.log.Warn("storing the state machine snapshot failed", "err", err)
		return
	}
	e.snapIndex, e.snapHeight = e.lastIndex, e.height
	e.log.Debug("state machine snapshot stored", "height", e.height, "index", e.lastIndex, "bytes", len(data))
}

func (e *Engine) publishStatus() {
	st := e.core.Status()
	e.status.Store(&statusSnap{core: st, lastIndex: e.lastIndex})
	if st.View != e.lastView {
		e.lastView = st.View
		e.viewMu.Lock()
		close(e.viewChan)
		e.viewChan = make(chan struct{})
		e.viewMu.Unlock()
	}
}

// precheck runs in the transport's reader goroutines: it verifies the
// client signatures of forwarded commands (as a batch, dropping invalid
// ones) and of proposals' payloads (as a batch, only so that the loop's own
// checks, and Apply's, find them verified; the core still judges the
// proposal).
func (e *Engine) precheck(from types.NodeID, f *frame) bool {
	switch f.kind {
	case frameCommands:
		e.validator.prepare(f.cmds)
		keep := f.cmds[:0]
		for _, c := range f.cmds {
			if err := e.validator.Validate(c); err != nil {
				e.stats.invalidForwarded.Add(1)
				e.log.Debug("dropping an invalid forwarded command", "from", string(from), "err", err)
				continue
			}
			keep = append(keep, c)
		}
		f.cmds = keep
		return len(keep) > 0
	case frameMessage:
		if p, ok := f.msg.(*types.Proposal); ok && p.Block != nil {
			e.validator.prepare(p.Block.Payload)
		}
	}
	return true
}

// onViewChangeRequest records a peer's request to leave view v (an
// operator's transfer-leader there), at most once per view change timeout
// per peer and only for the view this replica is in. The replica leaves
// the view only once f+1 distinct members (itself included) asked for it:
// one faulty member alone cannot make every replica time out (DESIGN 8).
// An operator forces a view change by asking every node (the CLI does).
func (e *Engine) onViewChangeRequest(from types.NodeID, v types.View) {
	if v != e.core.View() {
		return
	}
	now := e.cfg.Clock()
	if last, ok := e.viewReqAt[from]; ok && now.Sub(last) < e.cfg.ViewChangeTimeout {
		return
	}
	e.viewReqAt[from] = now
	e.stats.remoteViewChange.Add(1)
	e.log.Info("view change requested by a peer", "peer", string(from), "view", v)
	e.viewReqs[from] = v
	e.maybeForceViewChange(v)
}

// maybeForceViewChange leaves view v once f+1 distinct members asked to.
func (e *Engine) maybeForceViewChange(v types.View) {
	n := 0
	for _, w := range e.viewReqs {
		if w == v {
			n++
		}
	}
	if n >= e.committee.F()+1 {
		e.core.ForceViewChange()
	}
}

// rateWindow counts events in the current one-second window.
type rateWindow struct {
	start time.Time
	n     int
}

// allow reports whether one more event fits under limit per second.
func (w *rateWindow) allow(now time.Time, limit int) bool {
	if now.Sub(w.start) >= time.Second || now.Before(w.start) {
		w.start, w.n = now, 0
	}
	if w.n >= limit {
		return false
	}
	w.n++
	return true
}

// --- waiters ---

func (e *Engine) addWaiter(h types.Hash) chan smr.Result {
	ch := make(chan smr.Result, 1)
	e.waitMu.Lock()
	e.waiters[h] = append(e.waiters[h], ch)
	e.waitMu.Unlock()
	return ch
}

func (e *Engine) removeWaiter(h types.Hash, ch chan smr.Result) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	ws := e.waiters[h]
	if i := slices.Index(ws, ch); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(e.waiters, h)
	} else {
		e.waiters[h] = ws
	}
}

func (e *Engine) complete(h types.Hash, res smr.Result) {
	e.waitMu.Lock()
	ws, ok := e.waiters[h]
	if ok {
		delete(e.waiters, h)
	}
	e.waitMu.Unlock()
	for _, ch := range ws {
		ch <- res // capacity 1, one send per waiter
	}
}

// --- consensus.Engine ---

// Propose orders env through HotStuff and returns the Result of applying
// it on this node. Any replica can take a proposal: it wraps env in an
// smr.Entry stamped with its own clock, queues it and forwards it to the
// leaders of the current and the next two views at once, and to every peer
// after lazyForwardTicks unless a proposal carried it by then, so whichever
// replica leads the next views orders it. Errors:
//
//   - an *smr.Error when the entry is invalid here (bad signature, too
//     large); nothing was proposed;
//   - consensus.ErrUnavailable (wrapped) when nothing was proposed (the
//     queue is full, or ctx ended before the hand-over);
//   - consensus.ErrOutcomeUnknown when the entry was handed over but ctx
//     ended, or the engine stopped, before it was applied here;
//   - consensus.ErrStopped after Stop.
func (e *Engine) Propose(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	if env == nil {
		return smr.Result{}, errors.New("hotstuff engine: propose: envelope is nil")
	}
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewCommandEntry(t, *env) })
}

// ProposeRestore orders an admin-signed restore entry; errors as for
// Propose. The whole entry travels in one block, so its snapshot must fit
// types.MaxCommandBytes.
func (e *Engine) ProposeRestore(ctx context.Context, r *smr.Restore) (smr.Result, error) {
	if r == nil {
		return smr.Result{}, errors.New("hotstuff engine: propose restore: restore is nil")
	}
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewRestoreEntry(t, *r) })
}

func (e *Engine) proposeEntry(ctx context.Context, mk func(t int64) smr.Entry) (smr.Result, error) {
	if e.stopped.Load() {
		return smr.Result{}, consensus.ErrStopped
	}
	ent := mk(e.nextTime())
	data, err := ent.MarshalBinary()
	if err != nil {
		return smr.Result{}, fmt.Errorf("hotstuff engine: propose: %w", err)
	}
	if len(data) > types.MaxCommandBytes {
		return smr.Result{}, smr.Errorf(smr.CodeTooLarge, "entry is %d bytes; one BFT log entry can carry at most %d", len(data), types.MaxCommandBytes)
	}
	return e.order(ctx, data)
}

// nextTime returns the clock in Unix nanoseconds, never below the previous
// value it returned.
func (e *Engine) nextTime() int64 {
	t := e.cfg.Clock().UnixNano()
	e.timeMu.Lock()
	defer e.timeMu.Unlock()
	t = max(t, e.lastTime)
	e.lastTime = t
	return t
}

// order validates cmd, hands it to the loop and waits until it is applied.
func (e *Engine) order(ctx context.Context, cmd []byte) (smr.Result, error) {
	if err := e.validator.Validate(cmd); err != nil {
		return smr.Result{}, fmt.Errorf("hotstuff engine: propose: %w", err)
	}
	h := commandKey(cmd)
	ch := e.addWaiter(h)
	p := proposal{cmd: cmd, reply: make(chan error, 1)}
	select {
	case e.proposeCh <- p:
	case <-ctx.Done():
		e.removeWaiter(h, ch)
		return smr.Result{}, fmt.Errorf("hotstuff engine: propose: %w: %w", consensus.ErrUnavailable, ctx.Err())
	case <-e.loopDone:
		e.removeWaiter(h, ch)
		return smr.Result{}, consensus.ErrStopped
	}
	select {
	case err := <-p.reply:
		if err != nil {
			e.removeWaiter(h, ch)
			if errors.Is(err, core.ErrQueueFull) {
				return smr.Result{}, fmt.Errorf("hotstuff engine: propose: %w: %w", consensus.ErrUnavailable, err)
			}
			return smr.Result{}, fmt.Errorf("hotstuff engine: propose: %w", err)
		}
	case <-e.loopDone:
		e.removeWaiter(h, ch)
		return smr.Result{}, fmt.Errorf("%w: the engine stopped while taking the entry", consensus.ErrOutcomeUnknown)
	}
	select {
	case res := <-ch:
		return res, nil
	case <-ctx.Done():
		e.removeWaiter(h, ch)
		return smr.Result{}, fmt.Errorf("%w: %w", consensus.ErrOutcomeUnknown, ctx.Err())
	case <-e.loopDone:
		e.removeWaiter(h, ch)
		return smr.Result{}, fmt.Errorf("%w: the engine stopped before the entry was applied", consensus.ErrOutcomeUnknown)
	}
}

// readGroup is one read marker shared by the ReadBarrier callers that
// joined it.
type readGroup struct {
	done chan struct{}
	err  error // set before done is closed
}

// ReadBarrier returns once this node's state machine reflects every write
// committed before the call. It orders a read marker (a command that
// changes nothing) through consensus and waits until this node has applied
// it: the marker's block extends every block committed before the marker
// existed. No lease and no leader are involved, so it works on every
// replica. Callers arriving while a marker is in flight share the next
// one, ordered after the current one completes. If ctx ends first, the
// error wraps consensus.ErrUnavailable and ctx.Err().
func (e *Engine) ReadBarrier(ctx context.Context) error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	g := e.joinRead()
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("hotstuff engine: read barrier: %w: %w", consensus.ErrUnavailable, ctx.Err())
	}
}

func (e *Engine) joinRead() *readGroup {
	e.readMu.Lock()
	defer e.readMu.Unlock()
	if e.readCur == nil {
		e.readCur = &readGroup{done: make(chan struct{})}
		e.startReadLocked(e.readCur)
		return e.readCur
	}
	if e.readNext == nil {
		e.readNext = &readGroup{done: make(chan struct{})}
	}
	return e.readNext
}

// startReadLocked orders g's marker in a goroutine; when it is applied the
// waiting group starts. readMu must be held.
func (e *Engine) startReadLocked(g *readGroup) {
	if e.readClosed {
		g.err = consensus.ErrStopped
		close(g.done)
		e.readCur = nil
		return
	}
	e.readWG.Add(1)
	go func() {
		defer e.readWG.Done()
		marker := newReadMarker(e.cfg.ID, e.markerBase+e.markerSeq.Add(1))
		_, err := e.order(context.Background(), marker)
		if err != nil {
			err = fmt.Errorf("hotstuff engine: read barrier: %w: %w", consensus.ErrUnavailable, err)
		}
		e.readMu.Lock()
		defer e.readMu.Unlock()
		g.err = err
		close(g.done)
		e.readCur, e.readNext = e.readNext, nil
		if e.readCur != nil {
			e.startReadLocked(e.readCur)
		}
	}()
}

// Status reports the view (also as Term), the leader of the current view,
// the highest QC, the committed height and the log indexes. Role is
// "leader" while this node leads the current view, "shutdown" after Stop,
// "follower" otherwise.
func (e *Engine) Status() consensus.Status {
	s := e.status.Load()
	role := "follower"
	switch {
	case e.stopped.Load() || e.fatal.Load() != nil:
		role = "shutdown"
	case s.core.Leader == e.cfg.ID:
		role = "leader"
	}
	return consensus.Status{
		Mode:            "bft",
		NodeID:          string(e.cfg.ID),
		Role:            role,
		Term:            uint64(s.core.View),
		LeaderID:        string(s.core.Leader),
		LeaderAddr:      e.addrs[s.core.Leader],
		CommitIndex:     s.lastIndex,
		AppliedIndex:    e.fsm.AppliedIndex(),
		LastIndex:       s.lastIndex,
		View:            uint64(s.core.View),
		HighQCView:      uint64(s.core.HighQCView),
		LockedQCView:    uint64(s.core.LockedQCView),
		CommittedHeight: s.core.CommittedHeight,
		CommittedView:   uint64(s.core.CommittedView),
		ViewChangeAlert: s.core.Alert,
	}
}

// Members lists the committee, marking the leader of the current view.
func (e *Engine) Members(context.Context) ([]consensus.Member, error) {
	if e.stopped.Load() {
		return nil, consensus.ErrStopped
	}
	leader := string(e.status.Load().core.Leader)
	out := slices.Clone(e.members)
	for i := range out {
		out[i].Leader = out[i].ID == leader
	}
	return out, nil
}

// TransferLeadership asks for a view change: leaders follow the rotation,
// so the next view's leader takes over. This replica records its request
// and sends it to every peer; a replica leaves the view once f+1 distinct
// members (itself included) asked for it, so an operator asks every node
// (the SDK does) and one faulty member cannot force view changes. Each
// peer counts at most one request per view change timeout per sender. id
// must be empty or name the next view's leader. It returns once this node
// has left the view, or with an error wrapping consensus.ErrUnavailable
// when ctx ends first.
func (e *Engine) TransferLeadership(ctx context.Context, id string) error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	var from types.View
	var cerr error
	done := make(chan struct{})
	e.viewMu.Lock()
	changed := e.viewChan
	e.viewMu.Unlock()
	fn := func() {
		defer close(done)
		from = e.core.View()
		if next := e.core.Leader(from + 1); id != "" && types.NodeID(id) != next {
			cerr = smr.Errorf(smr.CodeMalformed, "in bft mode leaders follow the rotation: the next view's leader is %q, not %q; omit the node ID to force a view change", next, id)
			return
		}
		e.stats.forcedViewChanges.Add(1)
		e.log.Info("forced view change requested", "view", from)
		e.viewReqs[e.cfg.ID] = from
		e.net.broadcast(encodeU64Frame(frameViewChange, uint64(from)))
		e.maybeForceViewChange(from)
	}
	select {
	case e.ctrlCh <- fn:
	case <-ctx.Done():
		return fmt.Errorf("hotstuff engine: view change: %w: %w", consensus.ErrUnavailable, ctx.Err())
	case <-e.loopDone:
		return consensus.ErrStopped
	}
	<-done
	if cerr != nil {
		return cerr
	}
	for {
		if e.status.Load().core.View > from {
			return nil
		}
		select {
		case <-changed:
			e.viewMu.Lock()
			changed = e.viewChan
			e.viewMu.Unlock()
		case <-ctx.Done():
			return fmt.Errorf("hotstuff engine: view change from view %d requested, still in it: %w: %w", from, consensus.ErrUnavailable, ctx.Err())
		case <-e.loopDone:
			return consensus.ErrStopped
		}
	}
}

// Stop stops the loop and the transport, fails the callers still waiting
// (ErrOutcomeUnknown for handed-over entries) and closes the block store.
// It is idempotent; later calls return the first call's error.
func (e *Engine) Stop() error {
	e.stopOnce.Do(func() {
		e.stopped.Store(true)
		close(e.stopCh)
		e.bgCancel()
		<-e.loopDone
		e.bgWG.Wait()
		e.net.close(e.ln)
		e.readMu.Lock()
		e.readClosed = true
		e.readMu.Unlock()
		e.readWG.Wait()
		if err := e.store.close(); err != nil {
			e.stopErr = fmt.Errorf("hotstuff engine: close block store: %w", err)
		}
		e.log.Info("hotstuff engine stopped", "view", e.status.Load().core.View, "log_index", e.status.Load().lastIndex)
	})
	return e.stopErr
}

// Err returns the error that halted the engine's loop (a failed write to
// its storage), or nil.
func (e *Engine) Err() error {
	if p := e.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Committee returns the epoch's committee.
func (e *Engine) Committee() *types.Committee { return e.committee }
