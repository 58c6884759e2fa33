package core

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/blocktree"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Errors returned by the core's inputs.
var (
	// ErrNotMember: a message was sent or signed by a node outside the
	// committee.
	ErrNotMember = errors.New("sender is not a committee member")
	// ErrNotLeader: a proposal was signed by a member that is not the
	// leader of its view (by this replica's rotation).
	ErrNotLeader = errors.New("proposer is not the leader of the view")
	// ErrInvalidBlock: a block is structurally wrong (justify does not
	// certify the parent, bad height or view).
	ErrInvalidBlock = errors.New("invalid block")
	// ErrInvalidCommand: Propose was given a command the Validator rejects.
	ErrInvalidCommand = errors.New("command rejected by the validator")
	// ErrQueueFull: Propose was given more commands than MaxPending allows.
	ErrQueueFull = errors.New("command queue full")
)

// Config configures a Core.
type Config struct {
	// ID is this replica's member ID; it must equal Safety.ID().
	ID types.NodeID
	// Committee is the epoch's committee.
	Committee *types.Committee
	// Genesis is the epoch's genesis block; its hash must be
	// Committee.Genesis().
	Genesis *types.Block
	// Safety is this replica's safety kernel, built over the same committee
	// with Variant's VoteRule (see NewSafety).
	Safety *safety.Rules
	// Verifier checks certificates; share it with Safety (a QCCache).
	// Nil means a fresh QCCache over Committee.
	Verifier types.CertVerifier
	// Variant picks the commit rule. It must match Safety's VoteRule.
	Variant Variant
	// CommitRule overrides Variant's commit rule (tests only).
	CommitRule CommitRule
	// Rotation decides leaders. Nil means RoundRobin over the committee.
	Rotation leaderrotation.Rotation
	// Validator checks each command of a proposal before this replica
	// votes; nil accepts everything.
	Validator types.Validator
	// CommandKey says which commands are the same request for the queue:
	// a command is not queued while one with the same key is, not put in
	// a block whose uncommitted ancestors hold one with the same key, and
	// leaves the queue when one with the same key commits. Nil means
	// types.CommandHash (the exact bytes). A shell whose replicas wrap one
	// client request in different bytes (each its own timestamp) keys by
	// the request, so that it is ordered once however many replicas took
	// it. Only this replica's choice of commands depends on it, never the
	// validity of a block.
	CommandKey func(cmd []byte) types.Hash
	// Pacemaker holds the view timeouts in ticks.
	Pacemaker pacemaker.Config
	// MaxBatch is the most commands this replica puts in one block.
	MaxBatch int
	// MaxBatchBytes bounds the total bytes of the commands in one block
	// (default DefaultMaxBatchBytes; at least types.MaxCommandBytes, so a
	// single command always fits). It keeps every proposal well below the
	// transport's frame limit whatever the command sizes.
	MaxBatchBytes int
	// MaxPending bounds queued, not yet committed commands.
	MaxPending int
	// IdlePropose is how many ticks a leader with nothing to order (no
	// queued command and no uncommitted non-empty block on its chain) waits
	// before proposing an empty block. It keeps an idle cluster from
	// producing blocks back to back. 0 proposes at once; must be below
	// Pacemaker.ViewTimeout.
	IdlePropose int
	// BatchDelay is how many ticks a leader holding some commands, but
	// fewer than MaxBatch, may wait in its view for more before it
	// proposes (bft_max_batch_delay): larger blocks for a little latency.
	// 0 proposes at once. At most half the view timeout is ever waited,
	// so a reloaded shorter timeout never turns the wait into a timeout.
	BatchDelay int
	// SyncBatch is how many blocks one BlockRequest asks for.
	SyncBatch int
	// RetainCommitted is how many committed blocks are kept to serve
	// lagging peers.
	RetainCommitted int
	// MaxOrphans bounds blocks and proposals held while their ancestors are
	// fetched.
	MaxOrphans int
	// Restore is the state a restarted replica loaded from its block store;
	// nil starts from Genesis.
	Restore *Restore
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

// Restore is what a shell persisted from earlier Ready batches: the last
// committed block, the QC that certified it (Ready.CommitQC), and the
// uncommitted blocks it had accepted above it (from Ready.Blocks).
type Restore struct {
	Root   *types.Block
	RootQC types.QC
	Blocks []*types.Block
	// Committed lists the epoch's committed blocks in order, ending with
	// Root (or at least the most recent ones): they feed CommitObserver
	// rotations, and the last RetainCommitted of them are served to lagging
	// peers. Optional, but a replica restarted without them cannot help
	// peers that are behind its root.
	Committed []*types.Block
}

// DefaultMaxBatchBytes is the default bound on a block's command bytes.
const DefaultMaxBatchBytes = 16 << 20

// DefaultConfig returns the tunables' defaults; the caller fills ID,
// Committee, Genesis and Safety.
func DefaultConfig() Config {
	return Config{
		Pacemaker:       pacemaker.DefaultConfig(),
		MaxBatch:        256,
		MaxBatchBytes:   DefaultMaxBatchBytes,
		MaxPending:      100_000,
		IdlePropose:     5,
		SyncBatch:       32,
		RetainCommitted: 1024,
		MaxOrphans:      4096,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Committee == nil || c.Genesis == nil || c.Safety == nil:
		return errors.New("core: Committee, Genesis and Safety are required")
	case !c.Committee.IsMember(c.ID):
		return fmt.Errorf("core: ID %q is not a committee member", c.ID)
	case c.Safety.ID() != c.ID:
		return fmt.Errorf("core: safety signer is %q, ID is %q", c.Safety.ID(), c.ID)
	case c.Genesis.Hash() != c.Committee.Genesis():
		return fmt.Errorf("core: genesis block hash %s differs from the committee's %s", c.Genesis.Hash(), c.Committee.Genesis())
	case c.MaxBatchBytes != 0 && c.MaxBatchBytes < types.MaxCommandBytes:
		return fmt.Errorf("core: max batch bytes %d is below the largest command (%d bytes)", c.MaxBatchBytes, types.MaxCommandBytes)
	case c.MaxBatch < 1 || c.MaxBatch > types.MaxCommands:
		return fmt.Errorf("core: max batch %d outside [1, %d]", c.MaxBatch, types.MaxCommands)
	case c.MaxPending < c.MaxBatch:
		return fmt.Errorf("core: max pending %d is below max batch %d", c.MaxPending, c.MaxBatch)
	case c.IdlePropose < 0 || c.IdlePropose >= c.Pacemaker.ViewTimeout:
		return fmt.Errorf("core: idle propose delay %d ticks must be in [0, view timeout %d)", c.IdlePropose, c.Pacemaker.ViewTimeout)
	case c.BatchDelay < 0:
		return fmt.Errorf("core: batch delay is %d ticks, must not be negative", c.BatchDelay)
	case c.SyncBatch < 1 || c.SyncBatch > types.MaxBlocksPerResponse:
		return fmt.Errorf("core: sync batch %d outside [1, %d]", c.SyncBatch, types.MaxBlocksPerResponse)
	case c.RetainCommitted < 0:
		return fmt.Errorf("core: retain committed is %d, must not be negative", c.RetainCommitted)
	case c.MaxOrphans < 1:
		return fmt.Errorf("core: max orphans is %d, must be positive", c.MaxOrphans)
	case c.Variant != ThreeChain && c.Variant != TwoChain:
		return fmt.Errorf("core: unknown variant %d", c.Variant)
	}
	return c.Pacemaker.Validate()
}

// Outbound is a message to send. To is the recipient, or "" for every
// member other than this replica.
type Outbound struct {
	To  types.NodeID
	Msg types.Message
}

// EventKind classifies an Event.
type EventKind uint8

// Event kinds.
const (
	// EventEvidence: Evidence proves a member misbehaved.
	EventEvidence EventKind = iota + 1
	// EventAlert: MaxRetries consecutive views timed out.
	EventAlert
	// EventAlertCleared: a QC ended the alert.
	EventAlertCleared
	// EventViewChange: this replica entered View (Detail says why).
	EventViewChange
)

func (k EventKind) String() string {
	switch k {
	case EventEvidence:
		return "evidence"
	case EventAlert:
		return "alert"
	case EventAlertCleared:
		return "alert-cleared"
	case EventViewChange:
		return "view-change"
	default:
		return fmt.Sprintf("event(%d)", uint8(k))
	}
}

// Event is something the shell should know about.
type Event struct {
	Kind     EventKind
	View     types.View
	Evidence *types.Evidence
	Detail   string
}

// Ready is a batch of work for the shell. The shell must, in order:
//
//  1. persist Blocks (its block WAL), and make the safety kernel's store
//     durable if it defers its writes to this step (the engine's does:
//     nothing the kernel signed is in flight before step 2);
//  2. send Messages;
//  3. apply Committed, in order, to the state machine (and may persist
//     CommitQC with the last one, for Restore);
//  4. act on Events;
//  5. call Advance.
//
// Slices belong to the shell after Ready returns; the blocks and messages
// they point to must not be modified.
type Ready struct {
	// View and Leader are the current view and its leader.
	View   types.View
	Leader types.NodeID
	// Alert mirrors the pacemaker alert.
	Alert bool
	// Messages to send.
	Messages []Outbound
	// Blocks accepted into the block tree since the last Ready.
	Blocks []*types.Block
	// Committed blocks since the last Ready, lowest first; each extends the
	// previous one (and the previous batch's last one).
	Committed []*types.Block
	// CommitQC certifies the last block in Committed (zero if Committed is
	// empty).
	CommitQC types.QC
	// Events since the last Ready.
	Events []Event
	// Safety is the current SafetyData when it changed since the last
	// Ready (nil otherwise): saved to the kernel's Store, and durable once
	// step 1 is done.
	Safety *safety.SafetyData
}

// Status is a snapshot of the core's state.
type Status struct {
	ID                  types.NodeID
	View                types.View
	Leader              types.NodeID
	HighQCView          types.View
	LockedQCView        types.View
	LastVotedView       types.View
	CommittedHeight     uint64
	CommittedView       types.View
	CommittedHash       types.Hash
	ConsecutiveTimeouts int
	ViewTicks           int  // ticks spent in the view before it timed out
	ViewDuration        int  // the view's timeout in ticks
	TimedOut            bool // this replica timed out the current view
	Alert               bool
	Pending             int
	TreeSize            int
	Suspects            []types.NodeID // members suspected of being down, in ID order
}

// NewSafety builds the safety kernel that matches cfg-style wiring: the
// variant's vote rule over committee, verifying with verifier.
func NewSafety(store safety.Store, signer types.Signer, committee *types.Committee, verifier types.CertVerifier, v Variant) (*safety.Rules, error) {
	return safety.New(safety.Config{Store: store, Signer: signer, Committee: committee, Verifier: verifier, Rule: v.VoteRule()})
}

// want is a block being fetched.
type want struct {
	hints   []types.NodeID
	lastAsk int
	tries   int
	count   uint16 // blocks to ask for (the block and its ancestors)
}

type orphanProposal struct {
	p    *types.Proposal
	hash types.Hash
	from types.NodeID
}

type voteKey struct {
	view  types.View
	voter types.NodeID
}

type propKey struct {
	view     types.View
	proposer types.NodeID
}

type seenBlock struct {
	block *types.Block
	hash  types.Hash
}

type evKey struct {
	kind     types.EvidenceKind
	offender types.NodeID
	view     types.View
}

type queued struct {
	key  types.Hash // CommandKey
	cmd  []byte
	dead bool // left the queue; dropped from the slice lazily
}

type inboxMsg struct {
	from types.NodeID
	msg  types.Message
}

// Core is the HotStuff state machine of one replica. It is driven by Step
// (messages), Tick (time), Propose (commands), SetQuarantined and
// ForceViewChange, and reports its work through Ready/Advance.
//
// A Core performs no I/O of its own except through Safety's Store; it
// starts no goroutines and reads no clock. It is not safe for concurrent
// use: one goroutine (the engine's loop) owns it.
type Core struct {
	cfg       Config
	id        types.NodeID
	committee *types.Committee
	verifier  types.CertVerifier
	safety    *safety.Rules
	commit    CommitRule
	rotation  leaderrotation.Rotation
	validator types.Validator
	log       *slog.Logger

	tree     *blocktree.Tree
	pm       *pacemaker.Pacemaker
	now      int
	view     types.View
	highQC   types.QC
	pendQC   types.QC // highest verified QC whose block is missing
	highTC   *types.TC
	rootQC   types.QC
	proposed types.View
	lastVote *types.Vote
	myTO     *types.Timeout
	alert    bool

	quarantined map[types.NodeID]bool
	// suspects are members that let one of this replica's views time out
	// (as its leader or as the collector of its votes) without sending
	// anything during it, and have sent nothing since; see
	// suspectOnTimeout. steps counts Step calls; heard is the count at each
	// member's last message and viewFrom the count when the view began.
	suspects map[types.NodeID]bool
	steps    uint64
	heard    map[types.NodeID]uint64
	viewFrom uint64

	votes      map[types.View]map[types.Hash]map[types.NodeID]*types.Vote
	qcFormed   map[types.View]bool
	firstVote  map[voteKey]*types.Vote
	timeouts   map[types.View]map[types.NodeID]*types.Timeout
	tcFormed   map[types.View]bool
	proposals  map[propKey]seenBlock
	evidence   map[evKey]bool
	syncSentAt map[types.NodeID]int

	wants     map[types.Hash]*want
	orphans   map[types.Hash][]orphanProposal // by missing parent
	nOrphans  int
	loose     map[types.Hash]*types.Block // fetched blocks waiting for their parent
	looseKids map[types.Hash][]types.Hash // parent -> loose children

	queue       []*queued // in arrival order, dead entries included
	queued      map[types.Hash]*queued
	dead        int                 // dead entries in queue
	recentCmds  map[types.Hash]bool // exact hashes of recently committed commands
	recentOrder []types.Hash
	retained    map[types.Hash]*types.Block
	retainOrder []types.Hash

	inbox []inboxMsg

	// Ready accumulators and what the last Ready handed out.
	msgs        []Outbound
	newBlocks   []*types.Block
	committed   []*types.Block
	commitQC    types.QC
	events      []Event
	safetyDirty bool
	handed      struct {
		msgs, blocks, committed, events int
		safety                          bool
	}
}

// New returns a Core, restored from cfg.Restore when set.
func New(cfg Config) (*Core, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Core{
		cfg:         cfg,
		id:          cfg.ID,
		committee:   cfg.Committee,
		verifier:    cfg.Verifier,
		safety:      cfg.Safety,
		commit:      cfg.CommitRule,
		rotation:    cfg.Rotation,
		validator:   cfg.Validator,
		log:         cfg.Logger,
		quarantined: map[types.NodeID]bool{},
		suspects:    map[types.NodeID]bool{},
		heard:       map[types.NodeID]uint64{},
		votes:       map[types.View]map[types.Hash]map[types.NodeID]*types.Vote{},
		qcFormed:    map[types.View]bool{},
		firstVote:   map[voteKey]*types.Vote{},
		timeouts:    map[types.View]map[types.NodeID]*types.Timeout{},
		tcFormed:    map[types.View]bool{},
		proposals:   map[propKey]seenBlock{},
		evidence:    map[evKey]bool{},
		syncSentAt:  map[types.NodeID]int{},
		wants:       map[types.Hash]*want{},
		orphans:     map[types.Hash][]orphanProposal{},
		loose:       map[types.Hash]*types.Block{},
		looseKids:   map[types.Hash][]types.Hash{},
		queued:      map[types.Hash]*queued{},
		recentCmds:  map[types.Hash]bool{},
		retained:    map[types.Hash]*types.Block{},
	}
	if c.verifier == nil {
		c.verifier = types.NewQCCache(cfg.Committee, 4096)
	}
	if c.commit == nil {
		c.commit = cfg.Variant.CommitRule()
	}
	if c.rotation == nil {
		c.rotation = leaderrotation.NewRoundRobin(cfg.Committee.Members())
	}
	if c.validator == nil {
		c.validator = types.AcceptAll{}
	}
	if c.cfg.CommandKey == nil {
		c.cfg.CommandKey = types.CommandHash
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("node", string(c.id))

	root, rootQC := cfg.Genesis, types.GenesisQC(cfg.Committee.Genesis())
	if r := cfg.Restore; r != nil && r.Root != nil {
		if err := c.verifier.VerifyQC(r.RootQC); err != nil {
			return nil, fmt.Errorf("core: restore: root QC: %w", err)
		}
		if r.RootQC.Block != r.Root.Hash() {
			return nil, fmt.Errorf("core: restore: root QC certifies %s, root is %s", r.RootQC.Block, r.Root.Hash())
		}
		root, rootQC = r.Root, r.RootQC
	}
	c.tree = blocktree.New(root, rootQC.Block)
	c.rootQC = rootQC
	c.highQC = rootQC
	if r := cfg.Restore; r != nil {
		if obs, ok := c.rotation.(leaderrotation.CommitObserver); ok {
			for _, b := range r.Committed {
				obs.Committed(b)
			}
		}
		from := max(len(r.Committed)-cfg.RetainCommitted, 0)
		for _, b := range r.Committed[from:] {
			c.retain(b, b.Hash())
		}
		blocks := slices.Clone(r.Blocks)
		slices.SortFunc(blocks, func(a, b *types.Block) int {
			if a.Height != b.Height {
				return cmp.Compare(a.Height, b.Height)
			}
			ha, hb := a.Hash(), b.Hash()
			return bytes.Compare(ha[:], hb[:])
		})
		for _, b := range blocks {
			h := b.Hash()
			if ok, _ := c.tree.Insert(b, h); ok {
				c.noteQC(b.Justify)
			}
		}
	}
	sd := c.safety.Data()
	if sd.Epoch != cfg.Committee.Epoch() {
		return nil, fmt.Errorf("core: safety data epoch %d, committee epoch %d", sd.Epoch, cfg.Committee.Epoch())
	}
	c.noteQC(sd.HighQC)
	c.noteQC(sd.LockedQC)
	if sd.LastProposal != nil {
		c.proposed = sd.LastProposal.View
	}
	c.lastVote = sd.LastVote
	c.highTC = sd.LastTC
	c.view = max(c.highQC.View+1, sd.LastVotedView, 1)
	c.pm = pacemaker.New(cfg.Pacemaker, c.view)
	if t := sd.LastTimeout; t != nil && t.View == c.view {
		c.myTO = t
		c.pm.TimeoutNow()
	}
	return c, nil
}

// noteQC raises highQC to qc if qc's block is in the tree.
func (c *Core) noteQC(qc types.QC) {
	if qc.View > c.highQC.View && c.tree.Contains(qc.Block) {
		c.highQC = qc
	}
}

// ID returns the replica's ID.
func (c *Core) ID() types.NodeID { return c.id }

// View returns the current view.
func (c *Core) View() types.View { return c.view }

// Leader returns the leader of view v as this replica computes it.
func (c *Core) Leader(v types.View) types.NodeID { return c.rotation.Leader(v) }

// Status returns a snapshot of the core's state.
func (c *Core) Status() Status {
	root, rh := c.tree.Root()
	sd := c.safety.Data()
	return Status{
		ID:                  c.id,
		View:                c.view,
		Leader:              c.rotation.Leader(c.view),
		HighQCView:          c.highQC.View,
		LockedQCView:        sd.LockedQC.View,
		LastVotedView:       sd.LastVotedView,
		CommittedHeight:     root.Height,
		CommittedView:       root.View,
		CommittedHash:       rh,
		ConsecutiveTimeouts: c.pm.Consecutive(),
		ViewTicks:           c.pm.Elapsed(),
		ViewDuration:        c.pm.Duration(),
		TimedOut:            c.pm.TimedOut(),
		Alert:               c.alert,
		Pending:             len(c.queued),
		TreeSize:            c.tree.Len(),
		Suspects:            c.suspectList(),
	}
}

// HasReady reports whether Ready has anything new.
func (c *Core) HasReady() bool {
	return len(c.msgs) > c.handed.msgs || len(c.newBlocks) > c.handed.blocks ||
		len(c.committed) > c.handed.committed || len(c.events) > c.handed.events ||
		(c.safetyDirty && !c.handed.safety)
}

// Ready returns the work accumulated since the last Advance. Calling it
// again before Advance returns the same work plus anything new.
func (c *Core) Ready() Ready {
	rd := Ready{
		View:      c.view,
		Leader:    c.rotation.Leader(c.view),
		Alert:     c.alert,
		Messages:  slices.Clone(c.msgs),
		Blocks:    slices.Clone(c.newBlocks),
		Committed: slices.Clone(c.committed),
		Events:    slices.Clone(c.events),
	}
	if len(rd.Committed) > 0 {
		rd.CommitQC = c.commitQC
	}
	if c.safetyDirty {
		sd := c.safety.Data()
		rd.Safety = &sd
	}
	c.handed.msgs, c.handed.blocks, c.handed.committed, c.handed.events = len(c.msgs), len(c.newBlocks), len(c.committed), len(c.events)
	c.handed.safety = c.safetyDirty
	return rd
}

// Advance acknowledges the last Ready: the shell has persisted, sent and
// applied everything it contained.
func (c *Core) Advance() {
	c.msgs = slices.Delete(c.msgs, 0, c.handed.msgs)
	c.newBlocks = slices.Delete(c.newBlocks, 0, c.handed.blocks)
	c.committed = slices.Delete(c.committed, 0, c.handed.committed)
	c.events = slices.Delete(c.events, 0, c.handed.events)
	if c.handed.safety {
		c.safetyDirty = false
	}
	c.handed = struct {
		msgs, blocks, committed, events int
		safety                          bool
	}{}
}

// Tick advances the logical clock by one tick: view timeouts, timeout
// re-sends, block re-requests and delayed empty proposals happen here.
func (c *Core) Tick() {
	c.now++
	switch c.pm.Tick() {
	case pacemaker.Timeout:
		c.log.Debug("view timed out", "view", c.view, "ticks", c.pm.Duration())
		c.suspectOnTimeout()
		c.sendTimeout()
	case pacemaker.Resend:
		c.resend()
	}
	c.retryWants()
	c.tryPropose()
	c.drain()
}

// Step processes one message received from the member from (the
// transport-authenticated sender). It returns an error for a message that
// is malformed, badly signed or from a non-member; such a message changed
// nothing. Messages signed by quarantined members are dropped silently.
func (c *Core) Step(from types.NodeID, m types.Message) error {
	if !c.committee.IsMember(from) {
		return fmt.Errorf("message %s from %q: %w", typeOf(m), from, ErrNotMember)
	}
	if c.quarantined[from] {
		return nil
	}
	// Anything authenticated from a member shows it is up: it leads and
	// collects again at normal speed.
	c.steps++
	c.heard[from] = c.steps
	delete(c.suspects, from)
	err := c.handle(from, m)
	c.drain()
	return err
}

func typeOf(m types.Message) string {
	if m == nil {
		return "nil"
	}
	return m.MsgType().String()
}

// Propose queues commands for ordering. Commands are ordered by whichever
// replica leads; a client in BFT mode sends its request to every replica.
// Each command must pass the Validator (ErrInvalidCommand, and nothing is
// queued). Commands already queued (by CommandKey) or recently committed
// (these exact bytes) are ignored.
// ErrQueueFull is returned when the queue cannot take all of them (nothing
// is queued).
func (c *Core) Propose(cmds ...[]byte) error {
	for i, cmd := range cmds {
		if len(cmd) > types.MaxCommandBytes {
			return fmt.Errorf("command %d has %d bytes, limit %d: %w", i, len(cmd), types.MaxCommandBytes, ErrInvalidCommand)
		}
		if err := c.validator.Validate(cmd); err != nil {
			return fmt.Errorf("command %d: %w: %w", i, ErrInvalidCommand, err)
		}
	}
	if len(c.queued)+len(cmds) > c.cfg.MaxPending {
		return fmt.Errorf("%d queued + %d new exceeds %d: %w", len(c.queued), len(cmds), c.cfg.MaxPending, ErrQueueFull)
	}
	for _, cmd := range cmds {
		k := c.cfg.CommandKey(cmd)
		if c.queued[k] != nil || c.recentCmds[types.CommandHash(cmd)] {
			continue
		}
		q := &queued{key: k, cmd: slices.Clone(cmd)}
		c.queued[k] = q
		c.queue = append(c.queue, q)
	}
	c.tryPropose()
	c.drain()
	return nil
}

// SetQuarantined replaces the set of quarantined members: they are skipped
// in leader rotation, their messages are dropped and their votes never count.
// If the current leader becomes quarantined, this replica times out the view
// at once.
func (c *Core) SetQuarantined(ids []types.NodeID) {
	leader := c.rotation.Leader(c.view)
	c.quarantined = make(map[types.NodeID]bool, len(ids))
	for _, id := range ids {
		c.quarantined[id] = true
	}
	if q, ok := c.rotation.(leaderrotation.Quarantiner); ok {
		q.SetQuarantined(ids)
	}
	if c.quarantined[leader] && c.pm.TimeoutNow() {
		c.log.Info("leader quarantined: view change", "view", c.view, "leader", string(leader))
		c.sendTimeout()
	}
	c.drain()
}

// ForceViewChange times out the current view now (an operator's manual view
// change). A view change needs a TC, so it takes effect when a quorum of
// replicas time out: force it on every replica, or on f+1 (the others join
// when they see f+1 timeouts).
func (c *Core) ForceViewChange() {
	if c.pm.TimeoutNow() {
		c.log.Info("forced view change", "view", c.view)
		c.sendTimeout()
	}
	c.drain()
}
