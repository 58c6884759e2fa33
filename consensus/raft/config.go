package raftengine

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

// StateMachine is what the engine drives. *smr.StateMachine implements it.
//
// Raft calls Apply, Snapshot and Restore from its FSM goroutine, never
// concurrently with each other. Engine.SaveSnapshot also calls Snapshot from
// the caller's goroutine, concurrently with Apply, so Snapshot must return a
// consistent copy under concurrent Apply (*smr.StateMachine takes a read
// lock). Apply must be deterministic and must not panic; Restore must leave
// the state unchanged when it returns an error.
type StateMachine interface {
	Apply(index uint64, data []byte) smr.Result
	Snapshot() ([]byte, error)
	Restore(snapshot []byte) error
}

// Defaults used when the corresponding field is zero.
const (
	DefaultApplyTimeout     = 5 * time.Second
	DefaultSnapshotRetain   = 2
	DefaultMaxSnapshotBytes = 1 << 30 // 1 GiB
	DefaultTransportTimeout = 10 * time.Second
	DefaultTransportMaxPool = 3
)

// Config configures an Engine.
type Config struct {
	// NodeID is this node's Raft server ID.
	NodeID string
	// DataDir holds the engine's storage under DataDir/raft.
	DataDir string
	// Advertise is the peer address (host:port) other nodes dial to reach
	// this node; it is what Raft records in its configuration. It must not
	// be an unspecified address (0.0.0.0, ::).
	Advertise string
	// Stream is the stream layer the NetworkTransport runs on. Exactly one
	// of Stream and Transport must be set.
	Stream raft.StreamLayer
	// Transport overrides the network transport (tests use
	// raft.InmemTransport). The engine takes ownership and closes it.
	Transport raft.Transport
	// FSM is the replicated state machine.
	FSM StateMachine
	// IndexBase is added to every Raft log index handed to FSM.Apply. An
	// epoch that starts from a handed-over state at index B (DESIGN
	// invariant 10) runs a fresh Raft log whose entry i is state machine
	// index B+i, so the state machine's index keeps growing across epochs.
	IndexBase uint64
	// Raft tunes hashicorp/raft; zero fields keep raft.DefaultConfig values
	// (and DefaultApplyTimeout, DefaultSnapshotRetain).
	Raft config.RaftConfig
	// LogLimits are the log size limit and the retention
	// (log_size_limit, log_retention; see size.go); SetLogLimits replaces
	// them while the engine runs. The zero value has no size limit: the
	// log is compacted by Raft's snapshot_threshold and by Compact only.
	LogLimits LogLimits
	// Logger receives the engine's and hashicorp/raft's logs. Default:
	// slog.Default().
	Logger *slog.Logger
	// Clock is the source of entry times. Default: time.Now.
	Clock func() time.Time
	// InspectSnapshot checks a snapshot without installing it and returns
	// the applied index it carries. SaveSnapshot checks what it writes with
	// it. Default: InspectSMRSnapshot.
	InspectSnapshot func(snapshot []byte) (index uint64, err error)
	// MaxSnapshotBytes bounds a snapshot read from Raft or a user. Default:
	// DefaultMaxSnapshotBytes.
	MaxSnapshotBytes int64
	// TransportTimeout is the NetworkTransport I/O deadline. Default:
	// DefaultTransportTimeout.
	TransportTimeout time.Duration

	// Signer is this node's key (optional). When it is set, the leader
	// attaches a signed evidence.ProposalAttestation to every entry it
	// proposes, in raft.Log.Extensions (see attest.go).
	Signer ed25519.PrivateKey
	// Epoch is the epoch bound into the attestations this node signs and
	// expects.
	Epoch uint64
	// Members holds the member keys that applied entries' attestations are
	// checked against. Nil: nothing is checked (the engine says so once in
	// its log).
	Members *evidence.Members
	// OnCheck receives the outcome of every applied command entry's
	// attestation check when Members is set. It runs on the FSM goroutine
	// and must not block.
	OnCheck func(AttestationCheck)
	// PeerID returns the verified node ID of a stream-layer connection
	// (mutual TLS). With it, SetRefused can refuse the Raft RPCs of given
	// members, and every request received must name the connection's
	// member as its sender (rpccheck.go). Nil: SetRefused refuses nothing
	// and senders are not checked.
	PeerID func(net.Conn) string
	// OnPeerRPC, when set, receives what the RPC inspector (inspect.go)
	// sees in the RPCs this node receives before Raft handles them: log
	// conflicts and election disruptions; it runs on the inspector's
	// goroutine, which hands the RPCs to Raft in order. With PeerID set it
	// also receives the forged senders the stream layer refused
	// (ObservedForgedSender), from the connections' goroutines. It may
	// thus be called concurrently and must not block. Nil: Raft reads the
	// transport directly.
	OnPeerRPC func(PeerObservation)
}

// Validate checks the fields that New cannot default, and the Raft tuning
// as hashicorp/raft will see it.
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("raft engine: node ID is empty")
	}
	if c.DataDir == "" {
		return errors.New("raft engine: data directory is empty")
	}
	if err := validateAdvertise(c.Advertise); err != nil {
		return err
	}
	switch {
	case c.Stream == nil && c.Transport == nil:
		return errors.New("raft engine: neither a stream layer nor a transport is set")
	case c.Stream != nil && c.Transport != nil:
		return errors.New("raft engine: both a stream layer and a transport are set; set one")
	}
	if c.FSM == nil {
		return errors.New("raft engine: state machine is nil")
	}
	if c.Raft.SnapshotRetain < 0 {
		return fmt.Errorf("raft engine: snapshot_retain is %d, must be >= 1 (or 0 for the default %d)", c.Raft.SnapshotRetain, DefaultSnapshotRetain)
	}
	if c.Raft.ApplyTimeout < 0 {
		return fmt.Errorf("raft engine: apply_timeout %s is negative", c.Raft.ApplyTimeout)
	}
	if c.Signer != nil && len(c.Signer) != ed25519.PrivateKeySize {
		return fmt.Errorf("raft engine: signer key has %d bytes, want %d", len(c.Signer), ed25519.PrivateKeySize)
	}
	if c.MaxSnapshotBytes < 0 {
		return fmt.Errorf("raft engine: max snapshot bytes %d is negative", c.MaxSnapshotBytes)
	}
	if _, err := c.raftConfig(); err != nil {
		return err
	}
	return nil
}

func validateAdvertise(addr string) error {
	if addr == "" {
		return errors.New("raft engine: advertise address is empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("raft engine: advertise address %q is not host:port: %w", addr, err)
	}
	if host == "" || port == "" || port == "0" {
		return fmt.Errorf("raft engine: advertise address %q needs a host and a non-zero port", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("raft engine: advertise address %q is unspecified; other nodes cannot dial it", addr)
	}
	return nil
}

// raftConfig maps c onto a validated raft.Config (without Logger).
func (c *Config) raftConfig() (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	t := c.Raft
	setDur := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	setDur(&rc.HeartbeatTimeout, t.HeartbeatTimeout)
	setDur(&rc.ElectionTimeout, t.ElectionTimeout)
	setDur(&rc.LeaderLeaseTimeout, t.LeaderLeaseTimeout)
	setDur(&rc.CommitTimeout, t.CommitTimeout)
	setDur(&rc.SnapshotInterval, t.SnapshotInterval)
	if t.SnapshotThreshold != 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.TrailingLogs != 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
	if t.MaxAppendEntries != 0 {
		rc.MaxAppendEntries = t.MaxAppendEntries
	}
	// The state machine lives in memory: it must be rebuilt from the latest
	// snapshot and the log on every start.
	rc.NoSnapshotRestoreOnStart = false
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raft engine: invalid raft settings: %w", err)
	}
	return rc, nil
}

// withDefaults returns c with zero optional fields filled.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.InspectSnapshot == nil {
		c.InspectSnapshot = InspectSMRSnapshot
	}
	if c.MaxSnapshotBytes == 0 {
		c.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if c.TransportTimeout == 0 {
		c.TransportTimeout = DefaultTransportTimeout
	}
	if c.Raft.ApplyTimeout == 0 {
		c.Raft.ApplyTimeout = DefaultApplyTimeout
	}
	if c.Raft.SnapshotRetain == 0 {
		c.Raft.SnapshotRetain = DefaultSnapshotRetain
	}
	return c
}
