// Package consensus defines what every consensus engine of Tandem provides to
// the node: ordering signed client envelopes into one log that drives the
// replicated state machine (smr), linearizable reads, status and membership.
//
// Engines: consensus/raft (crash faults, hashicorp/raft) and
// consensus/hotstuff/engine (Byzantine faults, Tandem's own chained
// HotStuff).
package consensus

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/smr"
)

// Engine orders client envelopes and applies them to the state machine.
//
// All methods are safe for concurrent use.
type Engine interface {
	// Propose orders env and waits until it has been applied on this node,
	// returning the state machine's Result. It returns a *NotLeaderError when
	// this node cannot order entries (the caller forwards), an error wrapping
	// ErrUnavailable when nothing was proposed (queue full, ctx ended
	// first), ErrOutcomeUnknown when the entry may or may not commit later
	// (leadership lost or the engine stopped after it was handed over, or ctx
	// expired while waiting), and ErrStopped when the engine was already
	// stopped before the call.
	Propose(ctx context.Context, env *smr.Envelope) (smr.Result, error)

	// ReadBarrier returns once this node's state machine reflects every write
	// that was committed before the call (a linearizable read point). It
	// confirms leadership with a quorum and never relies on a lease alone.
	// Followers get a *NotLeaderError.
	ReadBarrier(ctx context.Context) error

	// Status reports this node's view of the engine.
	Status() Status

	// Members lists the current voting configuration.
	Members(ctx context.Context) ([]Member, error)

	// TransferLeadership moves leadership to the member with id, or to any
	// suitable member when id is empty (in BFT mode: a view change).
	TransferLeadership(ctx context.Context, id string) error

	// Stop shuts the engine down and releases its storage. It is idempotent.
	Stop() error
}

// MembershipChanger is implemented by engines whose member set can change
// at run time (the Raft engine).
type MembershipChanger interface {
	AddMember(ctx context.Context, m Member) error
	RemoveMember(ctx context.Context, id string) error
}

// Status is a point-in-time report of an engine on one node.
type Status struct {
	Mode         string `json:"mode"` // "cft" or "bft"
	NodeID       string `json:"node_id"`
	Role         string `json:"role"` // leader, follower, candidate, shutdown
	Term         uint64 `json:"term"` // Raft term, or HotStuff view
	LeaderID     string `json:"leader_id,omitempty"`
	LeaderAddr   string `json:"leader_addr,omitempty"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	// LastSnapshotIndex is the index of the newest local snapshot, 0 if none.
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`

	// HotStuff (mode "bft") only; zero and omitted in mode "cft".
	View            uint64 `json:"view,omitempty"`             // current view (Term repeats it)
	HighQCView      uint64 `json:"high_qc_view,omitempty"`     // view of the highest QC this node knows
	LockedQCView    uint64 `json:"locked_qc_view,omitempty"`   // view of the QC this node is locked on
	CommittedHeight uint64 `json:"committed_height,omitempty"` // height of the last committed block
	CommittedView   uint64 `json:"committed_view,omitempty"`   // view of the last committed block
	// ViewChangeAlert is set while max_view_change_retries consecutive views
	// have timed out without progress.
	ViewChangeAlert bool `json:"view_change_alert,omitempty"`
}

// Member is one voting member of the cluster.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"` // node-to-node (peer) address
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
}

// Sentinel errors.
var (
	// ErrOutcomeUnknown is returned by Propose when the entry may still
	// commit. The caller must report the outcome as unknown; retrying the same
	// (client, seq) is safe because execution is exactly-once.
	ErrOutcomeUnknown = errors.New("outcome unknown: the request may or may not have been applied")
	// ErrStopped is returned by every method after Stop.
	ErrStopped = errors.New("consensus engine stopped")
	// ErrUnavailable is wrapped by errors after which nothing was proposed
	// (no leader reachable, the leader's queue was full, the caller gave up
	// before proposing); retrying, elsewhere or later, is safe.
	ErrUnavailable = errors.New("unavailable")
)

// NotLeaderError is returned when an operation needs the leader. LeaderID and
// LeaderAddr are empty when no leader is known.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader, and no leader is known"
	}
	return fmt.Sprintf("not the leader; leader is %s at %s", e.LeaderID, e.LeaderAddr)
}
