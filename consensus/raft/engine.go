package raftengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/logging"
)

var (
	_ consensus.Engine            = (*Engine)(nil)
	_ consensus.MembershipChanger = (*Engine)(nil)
)

// ErrNotEnqueued is returned (wrapping raft.ErrEnqueueTimeout) when the
// leader could not queue an operation within the apply timeout, typically
// because it is overloaded. Nothing was appended to the log: retrying is
// safe and does not risk a double execution.
var ErrNotEnqueued = fmt.Errorf("raft engine: the leader could not queue the request in time; nothing was appended, retry later: %w", consensus.ErrUnavailable)

// logCacheSize is the number of recent log entries kept in memory.
const logCacheSize = 512

// Engine is the Raft consensus engine of one node.
type Engine struct {
	cfg    Config
	logger *slog.Logger

	raft      *raft.Raft
	bolt      *raftboltdb.BoltStore
	logs      raft.LogStore
	snaps     raft.SnapshotStore
	transport raft.Transport
	fsm       *fsm
	// refuser refuses quarantined members' connections (nil without a
	// stream layer or Config.PeerID).
	refuser  *refusingLayer
	attester attester
	// inspector looks at the RPCs Raft receives (nil without
	// Config.OnPeerRPC; inspect.go).
	inspector *inspector

	observer *raft.Observer
	obsCh    chan raft.Observation
	leaderCh chan string // capacity 1, latest leader ID

	timeMu   sync.Mutex
	lastTime int64 // last proposed entry time, Unix nanos

	barrierMu   sync.Mutex
	barrierCur  *barrierGroup // in flight
	barrierNext *barrierGroup // waits for barrierCur, then starts
	barriers    atomic.Uint64 // barriers issued (for tests and metrics)
	// barrierStopped is set by Stop (under barrierMu) before it waits for
	// the engine's goroutines, so no barrier starts after that wait.
	barrierStopped bool

	// limits are the log limits in effect (Config.LogLimits, replaced by
	// SetLogLimits); sizeCh wakes the size goroutine and sizeSnaps counts
	// its snapshots (size.go).
	limits    atomic.Pointer[LogLimits]
	sizeCh    chan struct{}
	sizeSnaps atomic.Uint64

	// propCh queues Propose calls for the proposer goroutine (propose.go).
	propCh chan *proposal
	// inflight holds one token per batch entry handed to Raft and not yet
	// applied (maxInflightEntries, propose.go).
	inflight chan struct{}

	stopped  atomic.Bool
	stopOnce sync.Once
	stopErr  error
	stopCh   chan struct{}
	wg       sync.WaitGroup // observer loop, proposer, batch waiters and barrier runners
}

// New opens the engine's storage and starts Raft. A node with no existing
// state stays idle (no leader, no elections) until Bootstrap is called on
// it or another node adds it to a cluster.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	rc, err := cfg.raftConfig()
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "raft")
	rc.Logger = logging.NewHCLog(cfg.Logger, "raft")

	dir, err := prepareDir(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("raft engine: %w", err)
	}
	bolt, err := openBolt(filepath.Join(dir, boltName))
	if err != nil {
		return nil, fmt.Errorf("raft engine: %w", err)
	}
	e := &Engine{
		cfg:      cfg,
		logger:   logger,
		bolt:     bolt,
		fsm:      &fsm{sm: cfg.FSM, maxBytes: cfg.MaxSnapshotBytes, onCheck: cfg.OnCheck, base: cfg.IndexBase},
		leaderCh: make(chan string, 1),
		stopCh:   make(chan struct{}),
		propCh:   make(chan *proposal, maxBatchEnvelopes),
		inflight: make(chan struct{}, maxInflightEntries),
		sizeCh:   make(chan struct{}, 1),
	}
	e.SetLogLimits(cfg.LogLimits)
	e.fsm.onApplied = e.onApplied
	if cfg.Members != nil {
		e.fsm.checker = &checker{epoch: cfg.Epoch, members: cfg.Members, current: e.currentLeader, leaders: map[uint64]string{}}
	} else {
		logger.Warn("leader attestations are not checked: the member public keys are unknown (list initial_members as id=host:port/<hex key> to check them)")
	}
	fail := func(err error) (*Engine, error) {
		if e.inspector != nil {
			_ = e.inspector.close() // closes e.transport too
		} else if e.transport != nil {
			_ = closeTransport(e.transport)
		}
		bolt.Close()
		return nil, fmt.Errorf("raft engine: %w", err)
	}
	if e.logs, e.snaps, err = openStores(dir, bolt, cfg.Raft.SnapshotRetain, rc.Logger); err != nil {
		return fail(err)
	}
	if cfg.Transport != nil {
		e.transport = cfg.Transport
	} else {
		stream := cfg.Stream
		if cfg.PeerID != nil {
			e.refuser = newRefusingLayer(stream, cfg.PeerID, logger, maxRequestBytes(rc.MaxAppendEntries, cfg.MaxSnapshotBytes), cfg.OnPeerRPC)
			stream = e.refuser
		}
		e.transport = newNetworkTransport(stream, cfg.Advertise, cfg.TransportTimeout, rc.Logger)
	}
	tr := e.transport
	if cfg.OnPeerRPC != nil {
		e.inspector = newInspector(tr, cfg.NodeID, e.logs, cfg.OnPeerRPC, time.Now)
		tr = e.inspector.transport()
	}
	r, err := raft.NewRaft(rc, e.fsm, e.logs, bolt, e.snaps, e.misbehaveTransport(tr))
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	e.raft = r
	if e.inspector != nil {
		e.inspector.attach(r)
	}

	e.obsCh = make(chan raft.Observation, 16)
	e.observer = raft.NewObserver(e.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(e.observer)
	e.wg.Add(3)
	go e.observe()
	go e.propose()
	go e.sizeSnapshots()
	e.misbehave()
	logger.Info("raft engine started", "advertise", cfg.Advertise, "data_dir", cfg.DataDir)
	return e, nil
}

// advertisedLayer reports the advertise address as its Addr, which
// NetworkTransport uses as this node's address in Raft messages.
type advertisedLayer struct {
	raft.StreamLayer
	addr net.Addr
}

func (l advertisedLayer) Addr() net.Addr { return l.addr }

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// observe forwards leader changes to LeaderChanges until Stop.
func (e *Engine) observe() {
	defer e.wg.Done()
	for {
		select {
		case <-e.stopCh:
			return
		case o := <-e.obsCh:
			lo, ok := o.Data.(raft.LeaderObservation)
			if !ok {
				continue
			}
			e.logger.Info("leader changed", "leader", lo.LeaderID, "leader_addr", lo.LeaderAddr, "term", e.raft.CurrentTerm())
			// Keep only the latest value: drop an unread one first. This
			// goroutine is the only sender, so the send cannot block.
			select {
			case <-e.leaderCh:
			default:
			}
			e.leaderCh <- string(lo.LeaderID)
		}
	}
}

// currentLeader returns the current term and the leader this node knows.
func (e *Engine) currentLeader() (uint64, string) {
	term := e.raft.CurrentTerm()
	_, id := e.raft.LeaderWithID()
	return term, string(id)
}

// SetRefused makes this node refuse the Raft connections of members ids
// (quarantined members), in both directions, closing the open ones; it
// replaces the previous list. Without Config.PeerID it does nothing.
func (e *Engine) SetRefused(ids []string) {
	if e.refuser != nil {
		e.refuser.setRefused(ids)
	}
}

// LeaderChanges returns a channel that carries the new leader's ID ("" when
// no leader is known) after each change this node observes. It holds only
// the latest value: a slow reader misses intermediate leaders, not the
// current one. Read Status for the full picture. The channel is never
// closed.
func (e *Engine) LeaderChanges() <-chan string { return e.leaderCh }

// HasState reports whether the node's storage already holds Raft state (a
// log, a term or a snapshot), in which case Bootstrap is not needed.
func (e *Engine) HasState() (bool, error) {
	if e.stopped.Load() {
		return false, consensus.ErrStopped
	}
	ok, err := raft.HasExistingState(e.logs, e.bolt, e.snaps)
	if err != nil {
		return false, fmt.Errorf("raft engine: inspect state: %w", err)
	}
	return ok, nil
}

// Bootstrap makes members the first configuration of a new cluster. Call it
// on every initial member with the same list (or on one of them). members
// must include this node. On a node that already has state Bootstrap does
// nothing and returns nil: "already bootstrapped" is not an error, so a
// restarted node may run the same start-up sequence.
func (e *Engine) Bootstrap(members []consensus.Member) error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	if len(members) == 0 {
		return errors.New("raft engine: bootstrap needs at least one member")
	}
	var conf raft.Configuration
	seen := make(map[string]bool, len(members))
	self := false
	for _, m := range members {
		if m.ID == "" || m.Address == "" {
			return fmt.Errorf("raft engine: bootstrap member %+v needs an ID and an address", m)
		}
		if seen[m.ID] {
			return fmt.Errorf("raft engine: bootstrap member %q is listed twice", m.ID)
		}
		seen[m.ID] = true
		self = self || m.ID == e.cfg.NodeID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Address)})
	}
	if !self {
		return fmt.Errorf("raft engine: bootstrap members do not include this node %q", e.cfg.NodeID)
	}
	err := e.raft.BootstrapCluster(conf).Error()
	switch {
	case err == nil:
		e.logger.Info("bootstrapped cluster", "members", len(members))
		return nil
	case errors.Is(err, raft.ErrCantBootstrap):
		e.logger.Info("not bootstrapping: this node already has raft state")
		return nil
	default:
		return e.mapErr(fmt.Errorf("raft engine: bootstrap: %w", err))
	}
}

// Status reports this node's view of Raft. After Stop the role is
// "shutdown".
func (e *Engine) Status() consensus.Status {
	addr, id := e.raft.LeaderWithID()
	st := consensus.Status{
		Mode:         "cft",
		NodeID:       e.cfg.NodeID,
		Role:         strings.ToLower(e.raft.State().String()),
		Term:         e.raft.CurrentTerm(),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		CommitIndex:  e.raft.CommitIndex(),
		AppliedIndex: e.raft.AppliedIndex(),
		LastIndex:    e.raft.LastIndex(),
	}
	if !e.stopped.Load() {
		if v, err := strconv.ParseUint(e.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
			st.LastSnapshotIndex = v
		}
	}
	return st
}

// Contact is what a node knows of its Raft leader, read cheaply (no
// statistics map, unlike Status).
type Contact struct {
	// Follower: this node is a follower (not leader, candidate or
	// shut down).
	Follower bool
	// Leader: this node is the leader.
	Leader   bool
	LeaderID string
	Term     uint64
	// AppliedIndex and LastIndex are Raft's (every entry kind counts).
	AppliedIndex, LastIndex uint64
	// LastContact is when this node last heard from the leader (an
	// AppendEntries or heartbeat of the current term); zero before any
	// contact. It means something only while this node is a follower.
	LastContact time.Time
}

// Contact returns what this node knows of its leader now.
func (e *Engine) Contact() Contact {
	_, id := e.raft.LeaderWithID()
	state := e.raft.State()
	return Contact{
		Follower:     state == raft.Follower && !e.stopped.Load(),
		Leader:       state == raft.Leader,
		LeaderID:     string(id),
		Term:         e.raft.CurrentTerm(),
		AppliedIndex: e.raft.AppliedIndex(),
		LastIndex:    e.raft.LastIndex(),
		LastContact:  e.raft.LastContact(),
	}
}

// Members lists the latest Raft configuration (possibly not yet
// committed), marking the leader as this node knows it.
func (e *Engine) Members(ctx context.Context) ([]consensus.Member, error) {
	if e.stopped.Load() {
		return nil, consensus.ErrStopped
	}
	f := e.raft.GetConfiguration()
	if err := e.wait(ctx, f); err != nil {
		return nil, e.mapErr(fmt.Errorf("raft engine: read configuration: %w", err))
	}
	_, leader := e.raft.LeaderWithID()
	servers := f.Configuration().Servers
	out := make([]consensus.Member, 0, len(servers))
	for _, s := range servers {
		out = append(out, consensus.Member{
			ID:      string(s.ID),
			Address: string(s.Address),
			Voter:   s.Suffrage == raft.Voter,
			Leader:  s.ID == leader,
		})
	}
	return out, nil
}

// TransferLeadership hands leadership to member id, or to the most
// up-to-date follower when id is empty. It must run on the leader.
func (e *Engine) TransferLeadership(ctx context.Context, id string) error {
	if err := e.leaderOnly(); err != nil {
		return err
	}
	var f raft.Future
	if id == "" {
		f = e.raft.LeadershipTransfer()
	} else {
		addr, err := e.memberAddr(id)
		if err != nil {
			return err
		}
		f = e.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := e.wait(ctx, f); err != nil {
		return e.mapErr(fmt.Errorf("raft engine: transfer leadership to %q: %w", id, err))
	}
	return nil
}

func (e *Engine) memberAddr(id string) (raft.ServerAddress, error) {
	f := e.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", e.mapErr(fmt.Errorf("raft engine: read configuration: %w", err))
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s.Address, nil
		}
	}
	return "", fmt.Errorf("raft engine: %q is not a member of the cluster", id)
}

// AddMember adds m as a voter (or, if m.Voter is false, a non-voter) and
// waits until the configuration change commits. Adding an existing member
// with a new address updates its address. It must run on the leader.
func (e *Engine) AddMember(ctx context.Context, m consensus.Member) error {
	if m.ID == "" || m.Address == "" {
		return fmt.Errorf("raft engine: member %+v needs an ID and an address", m)
	}
	if err := e.leaderOnly(); err != nil {
		return err
	}
	timeout := e.enqueueTimeout(ctx)
	var f raft.IndexFuture
	if m.Voter {
		f = e.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.Address), 0, timeout)
	} else {
		f = e.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.Address), 0, timeout)
	}
	if err := e.wait(ctx, f); err != nil {
		return e.mapErr(fmt.Errorf("raft engine: add member %q at %s: %w", m.ID, m.Address, err))
	}
	e.logger.Info("member added", "member", m.ID, "address", m.Address, "voter", m.Voter)
	return nil
}

// RemoveMember removes member id and waits until the change commits.
// Removing this node (the leader) makes it step down. It must run on the
// leader.
func (e *Engine) RemoveMember(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("raft engine: member ID is empty")
	}
	if err := e.leaderOnly(); err != nil {
		return err
	}
	f := e.raft.RemoveServer(raft.ServerID(id), 0, e.enqueueTimeout(ctx))
	if err := e.wait(ctx, f); err != nil {
		return e.mapErr(fmt.Errorf("raft engine: remove member %q: %w", id, err))
	}
	e.logger.Info("member removed", "member", id)
	return nil
}

// Stop shuts Raft down, closes the transport and the log store, and waits
// for the engine's goroutines. Operations in flight end with ErrStopped or
// ErrOutcomeUnknown. It is idempotent; later calls return the first call's
// error.
func (e *Engine) Stop() error {
	e.stopOnce.Do(func() {
		e.stopped.Store(true)
		var errs []error
		// Shutdown waits for Raft's goroutines and closes the transport
		// (and with it the stream layer).
		if err := e.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
		}
		if nt, ok := e.transport.(*raft.NetworkTransport); ok {
			nt.CloseStreams()
		}
		if e.inspector != nil {
			// Raft's shutdown closed it already, unless a wrapper hid
			// Close; close is idempotent.
			if err := e.inspector.close(); err != nil {
				errs = append(errs, fmt.Errorf("close transport: %w", err))
			}
		}
		e.raft.DeregisterObserver(e.observer)
		e.barrierMu.Lock()
		e.barrierStopped = true
		e.barrierMu.Unlock()
		close(e.stopCh)
		e.wg.Wait()
		if err := e.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close log store: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			e.stopErr = fmt.Errorf("raft engine: stop: %w", err)
		}
		e.logger.Info("raft engine stopped")
	})
	return e.stopErr
}

// leaderOnly returns a *consensus.NotLeaderError unless this node leads,
// and ErrStopped after Stop.
func (e *Engine) leaderOnly() error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	if e.raft.State() != raft.Leader {
		return e.notLeader()
	}
	return nil
}

func (e *Engine) notLeader() *consensus.NotLeaderError {
	addr, id := e.raft.LeaderWithID()
	return &consensus.NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// mapErr translates hashicorp/raft's sentinel errors found in err into the
// consensus package's errors, keeping err's text and chain.
func (e *Engine) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", consensus.ErrStopped, err)
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return e.notLeader()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrNotEnqueued, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w: %w", consensus.ErrOutcomeUnknown, err)
	}
	return err
}

// enqueueTimeout is the apply timeout, shortened to ctx's deadline.
func (e *Engine) enqueueTimeout(ctx context.Context) time.Duration {
	t := e.cfg.Raft.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = max(left, time.Millisecond)
		}
	}
	return t
}

// errWaitAborted is wrapped (with ctx's error) by wait when ctx ends before
// the future resolves.
var errWaitAborted = errors.New("stopped waiting for the raft operation")

// wait waits for f or ctx. hashicorp futures cannot be cancelled: when ctx
// ends first the future keeps running and resolves later (Raft resolves
// every future by shutdown at the latest), and wait returns an error
// wrapping errWaitAborted and ctx.Err().
func (e *Engine) wait(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errWaitAborted, ctx.Err())
	}
}
