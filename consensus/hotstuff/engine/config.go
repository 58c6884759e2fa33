package engine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// StateMachine is what the engine applies committed entries to.
// *smr.StateMachine implements it.
//
// The engine calls Apply, Snapshot and Restore from its loop goroutine
// only. Apply must be deterministic. Restore replaces the state with a
// snapshot taken by Snapshot (and takes its applied index). AppliedIndex may
// be called from any goroutine.
type StateMachine interface {
	Apply(index uint64, data []byte) smr.Result
	Snapshot() ([]byte, error)
	Restore(snapshot []byte) error
	AppliedIndex() uint64
}

// Base is the handed-over state an epoch starts from.
type Base struct {
	// Index is the state machine's applied index in Snapshot.
	Index uint64
	// Snapshot is the state machine snapshot (smr.StateMachine.Snapshot).
	Snapshot []byte
	// Digest identifies the certificate that made the state the epoch's
	// genesis (checkpoint.Statement.Digest); every member must pass the
	// same one.
	Digest [32]byte
}

// Transferred is a state machine snapshot a replica starts from when the
// committed blocks it misses were pruned by its peers.
type Transferred struct {
	// Index is the snapshot's applied index.
	Index uint64
	// Snapshot is the state machine snapshot (smr.StateMachine.Snapshot).
	Snapshot []byte
}

// Member is one member of the static committee.
type Member struct {
	ID types.NodeID
	// Addr is the member's peer address (host:port), dialled for BFT
	// connections.
	Addr string
	// PublicKey is the member's node signing key.
	PublicKey ed25519.PublicKey
}

// Rotation strategies (Config.Rotation).
const (
	RotationReputation = "reputation"
	RotationRoundRobin = "round-robin"
)

// Defaults used when the corresponding Config field is zero.
const (
	DefaultTick                 = 10 * time.Millisecond
	DefaultViewChangeTimeout    = time.Second
	DefaultMaxViewChangeRetries = 6
	DefaultMaxBatch             = 256
	DefaultMaxPending           = 100_000
	DefaultMaxClockSkew         = 5 * time.Second
	DefaultMaxFrameBytes        = 64 << 20
	DefaultSendQueueLen         = 4096
	DefaultSendQueueBytes       = 128 << 20
	DefaultSnapshotInterval     = 10_000
	DefaultEpoch                = 1
	DefaultReputationWindow     = 100
)

// Config configures an Engine.
type Config struct {
	// ID is this node's member ID.
	ID types.NodeID
	// Members is the committee of the epoch; it must include ID. Quorums
	// are n − ⌊(n−1)/3⌋; use n ≥ 4 to tolerate a Byzantine member.
	Members []Member
	// Epoch is bound into every signature (default DefaultEpoch).
	Epoch uint64
	// Key is this node's Ed25519 signing key; its public half must be ID's
	// key in Members.
	Key ed25519.PrivateKey
	// DataDir holds the engine's files under DataDir/hotstuff: the safety
	// data (fsynced before any vote leaves) and the block store.
	DataDir string
	// Network carries BFT connections (the node's *transport.Mux).
	Network Network
	// PeerID returns the verified node ID of a connection from Network.
	// Default: transport.PeerID.
	PeerID func(net.Conn) string
	// FSM is the replicated state machine. It must be fresh (nothing
	// applied): the engine rebuilds it from its snapshot and committed log.
	FSM StateMachine
	// Base, when set, is the state this epoch starts from (a hand-over
	// from the previous epoch, DESIGN invariant 10): a fresh replica
	// installs Base.Snapshot as its stored snapshot at height 0, so its log
	// continues at Base.Index+1, and the genesis block binds Base.Digest.
	// Genesis must be nil then: the state is initialized already.
	Base *Base
	// Genesis, when set, is proposed as the first entry while this replica
	// has committed nothing, and is the only genesis entry it votes for.
	// Every member must be configured with the same genesis.
	Genesis *smr.Genesis
	// Tick is the pacemaker's clock step (default DefaultTick).
	Tick time.Duration
	// ViewChangeTimeout is Δ, the base view timeout (view_change_timeout;
	// default DefaultViewChangeTimeout).
	ViewChangeTimeout time.Duration
	// VoteTimeout is how often a replica that timed out re-sends its
	// timeout (vote_timeout; default ViewChangeTimeout/3).
	VoteTimeout time.Duration
	// MaxViewChangeRetries caps the backoff exponent and raises the alert
	// (max_view_change_retries; default DefaultMaxViewChangeRetries; at
	// most 20).
	MaxViewChangeRetries int
	// IdlePropose is how long a leader with nothing to order waits before
	// proposing an empty block (default ViewChangeTimeout/2): an idle
	// cluster makes one block per IdlePropose, which is what its block
	// store grows by. Commands never wait for it. It must be below
	// ViewChangeTimeout, leaving time for the block to reach the others.
	IdlePropose time.Duration
	// MaxBatch is the most commands in one block (default
	// DefaultMaxBatch).
	MaxBatch int
	// MaxBatchDelay is how long a leader with some commands, but fewer
	// than MaxBatch, may wait in its view for more before it proposes
	// (bft_max_batch_delay; default 0: at once). At most half the view
	// timeout is waited.
	MaxBatchDelay time.Duration
	// MaxPending bounds the commands queued for ordering (default
	// DefaultMaxPending).
	MaxPending int
	// MaxClockSkew is how far ahead of this replica's clock an entry time
	// may be (default DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// Variant is the protocol variant (default core.ThreeChain).
	Variant core.Variant
	// Rotation is RotationReputation (default) or RotationRoundRobin.
	Rotation string
	// ReputationWindow is how many views of committed history the
	// reputation rotation judges leaders on (default
	// DefaultReputationWindow, at least 2n). A leader whose last view in
	// the window failed is skipped until that failure leaves the window, so
	// a crashed member costs one view timeout per window.
	ReputationWindow int
	// MaxFrameBytes bounds one frame on a BFT connection (default
	// DefaultMaxFrameBytes); a longer frame closes the connection.
	MaxFrameBytes int
	// SendQueueLen and SendQueueBytes bound each peer's send queue
	// (defaults DefaultSendQueueLen, DefaultSendQueueBytes); the oldest
	// frames are dropped when it is full.
	SendQueueLen   int
	SendQueueBytes int
	// SnapshotInterval is how many log entries pass between local state
	// machine snapshots, which bound the replay at restart (default
	// DefaultSnapshotInterval).
	SnapshotInterval uint64
	// LogLimits bound the committed blocks the engine stores
	// (log_size_limit, log_retention; see prune.go); SetLogLimits
	// replaces them while the engine runs. The zero value has no size
	// limit: blocks are pruned by Compact only.
	LogLimits LogLimits
	// Logger receives the engine's logs. Default: slog.Default().
	Logger *slog.Logger
	// Clock is the source of entry times and of the time bound. Default:
	// time.Now.
	Clock func() time.Time
	// StateTransfer, when set, is how this replica gets a state to start
	// from once its peers pruned the committed blocks it misses: a state
	// machine snapshot at an index of at least minIndex that a stable
	// checkpoint certificate certifies. The caller verifies the
	// certificate and the snapshot; the engine trusts the state only
	// through it. It runs on its own goroutine and must return when ctx
	// ends. Without it, such a replica stays behind (and says so in its
	// log).
	StateTransfer func(ctx context.Context, minIndex uint64) (*Transferred, error)
	// OnEvidence, when set, receives every proof of misbehaviour the core
	// reports (equivocating proposals, double votes, invalid client
	// payloads). It is called from the engine's loop and must not block.
	OnEvidence func(*types.Evidence)
	// OnSignatureFailure, when set, is called for every proposal, vote or
	// timeout that names its sender as its signer and whose own signature
	// fails (not one valid in the previous or next epoch): an observation
	// over the sender's authenticated channel, which proves nothing to a
	// third party. It is called from the engine's loop and must not block.
	OnSignatureFailure func(from types.NodeID, kind types.MsgType)
	// OnVote, when set, receives the votes this replica collects (as the
	// leader of the next view) with their latency from the proposal, and
	// each member whose vote did not arrive within VoteWait (Missing). It
	// is called from the engine's loop and must not block.
	OnVote func(VoteObservation)
	// OnOmission, when set, receives the commands handed over on this
	// replica and forwarded to a leader that the leader left out of a
	// proposal it made after it had them, with room for them (see
	// omission.go for the rule), counted per leader. It is called from
	// the engine's loop and must not block.
	OnOmission func(OmissionObservation)
	// OnProposalWait, when set, receives, per view led by another member,
	// how long this replica waited for the leader's proposal (see
	// proposalwait.go for when the wait starts), and each view that ended
	// by a TC without its proposal (TimedOut). It is called from the
	// engine's loop and must not block.
	OnProposalWait func(ProposalWaitObservation)
	// OnConflict, when set, receives each signed proposal of a view after
	// this replica's committed block that forks off below it (see
	// conflict.go). It is called from the engine's loop and must not
	// block.
	OnConflict func(ConflictObservation)
}

// Validate checks the fields that have no default and the combinations.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("hotstuff engine: "+format, args...)) }
	if c.ID == "" {
		add("ID is empty")
	}
	if len(c.Members) == 0 {
		add("no committee members")
	}
	self := -1
	for i, m := range c.Members {
		if m.ID == c.ID {
			self = i
		}
		if m.Addr == "" {
			add("member %q has no peer address", m.ID)
		}
		if len(m.PublicKey) != ed25519.PublicKeySize {
			add("member %q has a %d-byte public key, want %d", m.ID, len(m.PublicKey), ed25519.PublicKeySize)
		}
	}
	if self < 0 && c.ID != "" && len(c.Members) > 0 {
		add("this node %q is not a committee member", c.ID)
	}
	if len(c.Key) != ed25519.PrivateKeySize {
		add("signing key has %d bytes, want %d", len(c.Key), ed25519.PrivateKeySize)
	} else if self >= 0 && !c.Key.Public().(ed25519.PublicKey).Equal(c.Members[self].PublicKey) {
		add("the signing key does not match the public key listed for %q in the committee", c.ID)
	}
	if c.DataDir == "" {
		add("DataDir is empty")
	}
	if c.Network == nil {
		add("Network is nil")
	}
	if c.FSM == nil {
		add("FSM is nil")
	}
	if c.Base != nil {
		if c.Genesis != nil {
			add("Base and Genesis are both set; an epoch that starts from a handed-over state has no genesis entry")
		}
		if c.Base.Index == 0 || len(c.Base.Snapshot) == 0 {
			add("Base has index %d and a %d-byte snapshot; both are needed", c.Base.Index, len(c.Base.Snapshot))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Tick", c.Tick}, {"ViewChangeTimeout", c.ViewChangeTimeout}, {"VoteTimeout", c.VoteTimeout}, {"IdlePropose", c.IdlePropose}, {"MaxBatchDelay", c.MaxBatchDelay}, {"MaxClockSkew", c.MaxClockSkew}} {
		if d.v < 0 {
			add("%s is negative (%s)", d.name, d.v)
		}
	}
	switch c.Rotation {
	case "", RotationReputation, RotationRoundRobin:
	default:
		add("rotation %q is not %q or %q", c.Rotation, RotationReputation, RotationRoundRobin)
	}
	if c.MaxBatch < 0 || c.MaxPending < 0 || c.ReputationWindow < 0 || c.MaxFrameBytes < 0 || c.SendQueueLen < 0 || c.SendQueueBytes < 0 {
		add("MaxBatch, MaxPending, MaxFrameBytes and the send queue limits must not be negative")
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Epoch == 0 {
		c.Epoch = DefaultEpoch
	}
	if c.PeerID == nil {
		c.PeerID = transport.PeerID
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.ViewChangeTimeout == 0 {
		c.ViewChangeTimeout = DefaultViewChangeTimeout
	}
	if c.VoteTimeout == 0 {
		c.VoteTimeout = c.ViewChangeTimeout / 3
	}
	if c.MaxViewChangeRetries == 0 {
		c.MaxViewChangeRetries = DefaultMaxViewChangeRetries
	}
	c.MaxViewChangeRetries = min(c.MaxViewChangeRetries, 20)
	if c.IdlePropose == 0 {
		c.IdlePropose = c.ViewChangeTimeout / 2
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.Rotation == "" {
		c.Rotation = RotationReputation
	}
	if c.ReputationWindow == 0 {
		c.ReputationWindow = DefaultReputationWindow
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.SendQueueLen == 0 {
		c.SendQueueLen = DefaultSendQueueLen
	}
	if c.SendQueueBytes == 0 {
		c.SendQueueBytes = DefaultSendQueueBytes
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// pacemakerConfig maps the durations to ticks.
func (c *Config) pacemakerConfig() (pacemaker.Config, int, error) {
	pm, err := pacemaker.FromDurations(c.Tick, c.ViewChangeTimeout, c.VoteTimeout, c.MaxViewChangeRetries)
	if err != nil {
		return pacemaker.Config{}, 0, fmt.Errorf("hotstuff engine: %w", err)
	}
	idle := int(c.IdlePropose / c.Tick)
	if idle >= pm.ViewTimeout {
		return pacemaker.Config{}, 0, fmt.Errorf("hotstuff engine: idle propose delay %s must be below the view timeout %s", c.IdlePropose, c.ViewChangeTimeout)
	}
	return pm, idle, nil
}
