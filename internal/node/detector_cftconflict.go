package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// Log conflicts (the seed table's "conflicting log entries from one node,
// > 3 per hour → escalate"), counted per accused member over the last hour:
//
//	cft: Raft RPC inspector (consensus/raft inspect.go, Config.OnPeerRPC)
//	  AppendEntries rewriting an entry at or below this node's commit index
//	    ──> one conflict per (leader, index)
//	  real RequestVote of a higher term while this node has a live leader
//	    ──> one disruptive election per (candidate, term)
//	bft: engine Config.OnConflict (consensus/hotstuff/engine conflict.go)
//	  signed proposal of a view after the committed block that forks off
//	  below it ──> one conflict per (proposer, view)
//	conflicts in the last hour > LogConflicts threshold (3), or disruptive
//	elections in the last hour > disruptive_elections_per_hour (10)
//	  ──> signed accusation (log-conflicts, value = the count), at most one
//	      per member and kind per conflictAccuseEvery
//
// A Raft request whose header names another sender than the certificate
// of the connection it came on never reaches Raft or the inspector (the
// stream layer closes the connection, consensus/raft rpccheck.go); the
// layer reports it as ObservedForgedSender of the certificate's member,
// which is accused of a signature failure (its request fails the
// authentication of its own channel; value = the forged requests since
// the last accusation, at most one per member per sigAccuseEvery). The
// member the header named is never blamed.
//
// Election disruption maps to log conflicts: a member that deposes live
// leaders by term inflation breaks the log's progress, the table's action
// for it (escalate) is the right one — HotStuff's pacemaker does not let
// one replica move the others' views — and its level caps it below
// quarantine, which only proofs and signature failures reach.

// Log-conflict tuning.
const (
	// conflictWindow is the time conflicts are counted over (the table's
	// "per hour").
	conflictWindow = time.Hour
	// conflictAccuseEvery: at most one accusation per member and kind in
	// this time; later events count into the next.
	conflictAccuseEvery = 10 * time.Second
	// maxConflictEvents bounds the events remembered per kind.
	maxConflictEvents = 4096
)

// conflictKey is one counted event: the accused and the index, term or
// view it is counted once for.
type conflictKey struct {
	who evidence.NodeID
	n   uint64
}

// conflictCounter counts distinct events per accused member over the last
// conflictWindow. It is pure (the caller hands it times) and used by the
// detector's run goroutine only.
type conflictCounter struct {
	seen    map[conflictKey]time.Time // when each event was counted
	accused map[evidence.NodeID]accuseLimit
}

func newConflictCounter() *conflictCounter {
	return &conflictCounter{seen: map[conflictKey]time.Time{}, accused: map[evidence.NodeID]accuseLimit{}}
}

// add counts event (who, n) at now unless it was counted within the
// window, and returns who's events in the window.
func (c *conflictCounter) add(who evidence.NodeID, n uint64, now time.Time) int {
	k := conflictKey{who, n}
	if at, ok := c.seen[k]; ok && now.Sub(at) < conflictWindow {
		return c.count(who, now)
	}
	if len(c.seen) >= maxConflictEvents {
		c.prune(now)
		if len(c.seen) >= maxConflictEvents {
			return c.count(who, now) // full of fresh events: not counted
		}
	}
	c.seen[k] = now
	return c.count(who, now)
}

// count returns who's events counted within the window before now.
func (c *conflictCounter) count(who evidence.NodeID, now time.Time) int {
	n := 0
	for k, at := range c.seen {
		if k.who == who && now.Sub(at) < conflictWindow {
			n++
		}
	}
	return n
}

// prune forgets the events older than the window.
func (c *conflictCounter) prune(now time.Time) {
	for k, at := range c.seen {
		if now.Sub(at) >= conflictWindow {
			delete(c.seen, k)
		}
	}
}

// conflictWatch is the detector's log-conflict state.
type conflictWatch struct {
	raft    *conflictCounter // (leader, index)
	disrupt *conflictCounter // (candidate, term)
	bft     *conflictCounter // (proposer, view)
	// forged counts the requests each member sent under another's server
	// ID since its last accusation.
	forged map[evidence.NodeID]*countState
	// disruptLimit is disruptive_elections_per_hour (reloadable).
	disruptLimit atomic.Int64
}

func newConflictWatch(disruptLimit int) *conflictWatch {
	w := &conflictWatch{raft: newConflictCounter(), disrupt: newConflictCounter(), bft: newConflictCounter(), forged: map[evidence.NodeID]*countState{}}
	w.disruptLimit.Store(int64(disruptLimit))
	return w
}

// setDisruptLimit sets disruptive_elections_per_hour; safe on a nil
// detector.
func (d *detector) setDisruptLimit(n int) {
	if d == nil {
		return
	}
	d.conflicts.disruptLimit.Store(int64(n))
}

// The observed kinds of log conflicts: what the Raft RPC inspector saw,
// and a hotstuff proposal forking off below the committed block.
type (
	peerRPC        raftengine.PeerObservation
	forkedProposal hsengine.ConflictObservation
)

func (o peerRPC) observe(ctx context.Context, d *detector, now time.Time) {
	d.observePeerRPC(ctx, raftengine.PeerObservation(o), now)
}

func (o forkedProposal) observe(ctx context.Context, d *detector, now time.Time) {
	d.observeConflict(ctx, hsengine.ConflictObservation(o), now)
}

// onPeerRPC is the Raft engine's Config.OnPeerRPC: it runs on the RPC
// inspector's goroutine and must not block.
func (d *detector) onPeerRPC(o raftengine.PeerObservation) {
	d.enqueueObservation(observation{at: d.clock(), other: peerRPC(o)})
}

// onConflict is the HotStuff engine's Config.OnConflict: it runs on the
// engine's loop and must not block.
func (d *detector) onConflict(o hsengine.ConflictObservation) {
	d.enqueueObservation(observation{at: d.clock(), other: forkedProposal(o)})
}

// observePeerRPC counts what the Raft RPC inspector and stream layer saw
// and accuses the sender (the connection's certificate's member) when its
// count is above the bound.
func (d *detector) observePeerRPC(ctx context.Context, o raftengine.PeerObservation, now time.Time) {
	who := evidence.NodeID(o.From)
	if !d.accusable(who) {
		return
	}
	switch o.Kind {
	case raftengine.ObservedLogConflict:
		n := d.conflicts.raft.add(who, o.Index, now)
		d.accuseConflicts(ctx, d.conflicts.raft, who, n, d.scoreConfig().LogConflicts.Threshold, now, func() string {
			return fmt.Sprintf("%d committed raft entries rewritten by this leader's AppendEntries in the last hour; latest: index %d of term %d sent as term %d (RPC term %d, commit index %d)",
				n, o.Index, o.LocalTerm, o.EntryTerm, o.Term, o.CommitIndex)
		})
	case raftengine.ObservedElectionDisruption:
		n := d.conflicts.disrupt.add(who, o.Term, now)
		d.accuseConflicts(ctx, d.conflicts.disrupt, who, n, d.conflicts.disruptLimit.Load(), now, func() string {
			return fmt.Sprintf("%d raft elections started by this member in the last hour while this node had a live leader (no pre-vote quorum could have agreed there was none); latest: term %d over %d, leader %s heard %s before",
				n, o.Term, o.CurrentTerm, o.Leader, o.SinceContact.Round(time.Millisecond))
		})
	case raftengine.ObservedForgedSender:
		d.accuseCount(ctx, countIn(d.conflicts.forged, who), who, 1, sigAccuseEvery, evidence.MetricSignatureFailure, func(n int64) string {
			return fmt.Sprintf("%d raft requests on this member's mutual-TLS connection named another sender; latest: %q in a request of rpc type %d",
				n, o.Claimed, o.RPCType)
		}, now)
	}
}

// observeConflict counts a proposal that forked off below the committed
// block and accuses its proposer when its count in the last hour is above
// the bound.
func (d *detector) observeConflict(ctx context.Context, o hsengine.ConflictObservation, now time.Time) {
	who := evidence.NodeID(o.Proposer)
	if !d.accusable(who) {
		return
	}
	n := d.conflicts.bft.add(who, uint64(o.View), now)
	d.accuseConflicts(ctx, d.conflicts.bft, who, n, d.scoreConfig().LogConflicts.Threshold, now, func() string {
		return fmt.Sprintf("%d hotstuff proposals by this member in the last hour forked off below the committed block; latest: view %d height %d, committed view %d height %d",
			n, o.View, o.Height, o.CommittedView, o.CommittedHeight)
	})
}

// accuseConflicts signs a log-conflicts accusation of who with value n
// when n is above bound and who was not accused for this kind within
// conflictAccuseEvery.
func (d *detector) accuseConflicts(ctx context.Context, c *conflictCounter, who evidence.NodeID, n int, bound int64, now time.Time, detail func() string) {
	if int64(n) <= bound || !c.accused[who].allows(now, conflictAccuseEvery) {
		return
	}
	if d.accuse(ctx, who, evidence.MetricLogConflicts, int64(n), detail(), now) {
		c.accused[who] = accuseLimit{now}
	}
}
