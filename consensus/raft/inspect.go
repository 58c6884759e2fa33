package raftengine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// The RPC inspector (Config.OnPeerRPC) sits between the transport and
// hashicorp/raft:
//
//	transport.Consumer() ──> inspector goroutine ──> Raft's Consumer()
//	                          │ reads Raft's state and, for committed
//	                          │ indexes only, the log store; never changes
//	                          │ the RPC, its order or its response channel
//	                          ▼
//	              Config.OnPeerRPC(PeerObservation)   (must not block)
//
// It reports two things a correct member never does:
//
//   - a log conflict: an AppendEntries, of a term not below this node's,
//     carries an entry at an index this node holds at or below its commit
//     index with another term. A leader holds every committed entry (Raft's
//     Leader Completeness), so an honest leader never rewrites one; entries
//     above the commit index that differ are Raft's normal truncation and
//     are not looked at.
//   - an election disruption: a RequestVote (a real vote: pre-votes come by
//     another RPC; not a leadership transfer) of a term above this node's,
//     while this node leads or has heard from its leader within the
//     election timeout. With pre-vote, a correct node asks for real votes
//     only after a quorum agreed there was no leader.
//
// Heartbeats that the transport hands to Raft's heartbeat handler (the
// NetworkTransport's fast path) carry no entries and no votes: they are not
// seen here. The sender (From) is the member named by the verified
// certificate of the connection the RPC came on: with Config.PeerID set,
// the stream layer closes a connection whose request header names another
// server ID before the transport reads the request (rpccheck.go), so the
// header's ID, which is what is read here, is the certificate's. (Without
// Config.PeerID, as with an in-memory transport, nothing ties the two.)

// PeerObservationKind says what the inspector saw.
type PeerObservationKind uint8

// Kinds of PeerObservation.
const (
	// ObservedLogConflict: From's AppendEntries rewrites a committed
	// entry.
	ObservedLogConflict PeerObservationKind = iota + 1
	// ObservedElectionDisruption: From asked for a real vote of a higher
	// term while this node had a live leader.
	ObservedElectionDisruption
	// ObservedForgedSender: a request on From's connection named another
	// server ID (Claimed) as its sender; the connection was closed and
	// the request never reached Raft (rpccheck.go). Reported by the
	// stream layer, not the inspector, from the connection's goroutine.
	ObservedForgedSender
)

func (k PeerObservationKind) String() string {
	switch k {
	case ObservedLogConflict:
		return "log-conflict"
	case ObservedElectionDisruption:
		return "election-disruption"
	case ObservedForgedSender:
		return "forged-sender"
	}
	return "unknown"
}

// PeerObservation is one RPC from another member that a correct member
// does not send.
type PeerObservation struct {
	Kind PeerObservationKind
	// From is the sender: the member named by the verified certificate
	// of the connection the RPC came on (the stream layer refuses a
	// header that names another; see the inspector's doc).
	From string
	// Forged sender: the server ID the request's header named, and the
	// NetworkTransport's rpc type byte (0 AppendEntries, 1 RequestVote,
	// 2 InstallSnapshot, 3 TimeoutNow, 4 RequestPreVote).
	Claimed string
	RPCType uint8
	// Term is the RPC's term; CurrentTerm is this node's when the RPC
	// arrived.
	Term, CurrentTerm uint64
	// Log conflict: the entry's index, the term this node holds there,
	// the term the RPC carries there and this node's commit index.
	Index, LocalTerm, EntryTerm, CommitIndex uint64
	// Election disruption: the leader this node had (itself when it led)
	// and how long before the vote it last heard from that leader (0 when
	// it led).
	Leader       string
	SinceContact time.Duration
}

// maxConflictChecks bounds the log lookups one AppendEntries costs: at
// most this many of its entries at or below the commit index are compared
// with the local log.
const maxConflictChecks = 64

// raftView is what the inspector reads of Raft. *raft.Raft implements it.
type raftView interface {
	CurrentTerm() uint64
	CommitIndex() uint64
	LastIndex() uint64
	State() raft.RaftState
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	LastContact() time.Time
	ReloadableConfig() raft.ReloadableConfig
}

// inspector forwards the RPCs of a transport's consumer to Raft after
// looking at them. Its methods are safe for concurrent use.
type inspector struct {
	in     <-chan raft.RPC
	out    chan raft.RPC
	inner  raft.Transport
	self   string
	logs   raft.LogStore
	report func(PeerObservation)
	clock  func() time.Time

	view atomic.Pointer[raftView] // nil until attach: RPCs pass unlooked-at

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	closeErr error
}

// newInspector starts forwarding t's RPCs. Raft must be given the
// transport returned by transport(); close stops the goroutine and closes
// t. Once attached, the inspector hands report every observation (report
// may be nil only for an inspector that is never attached).
func newInspector(t raft.Transport, self string, logs raft.LogStore, report func(PeerObservation), clock func() time.Time) *inspector {
	in := &inspector{
		in:     t.Consumer(),
		out:    make(chan raft.RPC), // unbuffered, like the transports' own
		inner:  t,
		self:   self,
		logs:   logs,
		report: report,
		clock:  clock,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go in.run()
	return in
}

// attach makes the inspector read v; until then it forwards without
// looking.
func (in *inspector) attach(v raftView) { in.view.Store(&v) }

// run forwards every RPC in arrival order until close.
func (in *inspector) run() {
	defer close(in.done)
	for {
		select {
		case <-in.stop:
			return
		case rpc := <-in.in:
			in.inspect(rpc)
			select {
			case in.out <- rpc:
			case <-in.stop:
				// Raft is gone: answer the sender rather than leave it
				// waiting for its timeout. The transports' response
				// channels hold one answer; never block on one.
				select {
				case rpc.RespChan <- raft.RPCResponse{Response: emptyResponse(rpc.Command), Error: raft.ErrTransportShutdown}:
				default:
				}
				return
			}
		}
	}
}

// emptyResponse is a zero response of the type that answers cmd: a
// transport may read the response's type before it looks at the error
// (hashicorp/raft's in-memory pipeline does).
func emptyResponse(cmd any) any {
	switch cmd.(type) {
	case *raft.AppendEntriesRequest:
		return &raft.AppendEntriesResponse{}
	case *raft.RequestVoteRequest:
		return &raft.RequestVoteResponse{}
	case *raft.RequestPreVoteRequest:
		return &raft.RequestPreVoteResponse{}
	case *raft.InstallSnapshotRequest:
		return &raft.InstallSnapshotResponse{}
	case *raft.TimeoutNowRequest:
		return &raft.TimeoutNowResponse{}
	}
	return nil
}

// close closes the wrapped transport (so no RPC arrives any more) and
// stops the goroutine. It is idempotent.
func (in *inspector) close() error {
	in.stopOnce.Do(func() {
		in.closeErr = closeTransport(in.inner)
		close(in.stop)
		<-in.done
	})
	return in.closeErr
}

// inspect reports what rpc shows. It never modifies rpc.
func (in *inspector) inspect(rpc raft.RPC) {
	vp := in.view.Load()
	if vp == nil {
		return
	}
	v := *vp
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		for _, o := range logConflicts(req, v, in.logs, in.self) {
			in.report(o)
		}
	case *raft.RequestVoteRequest:
		if o, ok := electionDisruption(req, v, in.self, in.clock()); ok {
			in.report(o)
		}
	}
}

// logConflicts returns the entries of req at or below this node's commit
// index whose term differs from the one this node holds there (at most
// maxConflictChecks entries are compared). An RPC of a term below this
// node's is one Raft refuses, and says nothing: an old leader may still
// hold entries it never committed.
func logConflicts(req *raft.AppendEntriesRequest, v raftView, logs raft.LogStore, self string) []PeerObservation {
	if len(req.Entries) == 0 || len(req.ID) == 0 || string(req.ID) == self {
		return nil
	}
	cur := v.CurrentTerm()
	if req.Term < cur {
		return nil
	}
	commit := v.CommitIndex()
	limit := min(commit, v.LastIndex())
	if req.Entries[0] == nil || req.Entries[0].Index > limit {
		return nil // the usual case: only new entries
	}
	var out []PeerObservation
	checked := 0
	for _, ent := range req.Entries {
		if ent == nil || ent.Index > limit || checked >= maxConflictChecks {
			break
		}
		checked++
		var local raft.Log
		if err := logs.GetLog(ent.Index, &local); err != nil {
			continue // compacted into a snapshot, or not held
		}
		if local.Term != ent.Term {
			out = append(out, PeerObservation{Kind: ObservedLogConflict, From: string(req.ID), Term: req.Term, CurrentTerm: cur,
				Index: ent.Index, LocalTerm: local.Term, EntryTerm: ent.Term, CommitIndex: commit})
		}
	}
	return out
}

// electionDisruption reports a real vote request of a higher term from
// another member while this node leads or heard from its leader within
// the election timeout.
func electionDisruption(req *raft.RequestVoteRequest, v raftView, self string, now time.Time) (PeerObservation, bool) {
	from := string(req.ID)
	if from == "" || from == self || req.LeadershipTransfer {
		return PeerObservation{}, false
	}
	cur := v.CurrentTerm()
	if req.Term <= cur {
		return PeerObservation{}, false
	}
	o := PeerObservation{Kind: ObservedElectionDisruption, From: from, Term: req.Term, CurrentTerm: cur}
	switch v.State() {
	case raft.Leader:
		o.Leader = self
		return o, true
	case raft.Follower:
		_, leader := v.LeaderWithID()
		last := v.LastContact()
		if leader == "" || string(leader) == from || last.IsZero() {
			return PeerObservation{}, false
		}
		since := now.Sub(last)
		if since < 0 || since >= v.ReloadableConfig().ElectionTimeout {
			return PeerObservation{}, false
		}
		o.Leader, o.SinceContact = string(leader), since
		return o, true
	}
	return PeerObservation{}, false
}

// inspectingTransport is the transport Raft gets: the wrapped one with
// Consumer replaced and Close stopping the inspector.
type inspectingTransport struct {
	raft.Transport
	in *inspector
}

func (t *inspectingTransport) Consumer() <-chan raft.RPC { return t.in.out }

// Close stops the inspector and closes the wrapped transport; Raft's
// shutdown calls it.
func (t *inspectingTransport) Close() error { return t.in.close() }

// transport returns the transport Raft is to use: it offers the pre-vote
// RPC exactly when the wrapped transport does, and always Close.
func (in *inspector) transport() raft.Transport {
	return keepPreVote(&inspectingTransport{Transport: in.inner, in: in}, in.inner)
}
