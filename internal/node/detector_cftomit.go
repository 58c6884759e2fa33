package node

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync"

	"github.com/tandem-consensus/tandem/consensus"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

// Selective omission in cft mode (the seed table's "selective omission →
// escalate"):
//
//	Submit on a follower ──> forward to the Raft leader (forward.go)
//	  request fully written ──> watch: leader L, term T, from = max(applied, last) index
//	  answered (result or error), or the request not written ──> not watched / forgotten
//	every hbPollEvery (cft goroutine), per watched forward:
//	  this node no longer follows L in T ──> forgotten (a leader change says nothing)
//	  Raft's applied index ≥ from + bound ──> the write is still proposable here
//	    (Precheck: neither applied nor rejected) ──> one omission of L
//	omissions of L ──> signed accusation (selective-omission), at most one per
//	  leader per omitAccuseEvery (value: the omissions since the last)
//
// The bound is 2 × raft.max_append_entries (128 by default) log entries
// past the last entry this node held when the write reached L. A correct
// leader puts a write it takes into its next batch entry or the one after
// (consensus/raft propose.go), and appends no entry it had not queued
// before: entries committed beyond that many are entries L ordered after
// it. Only a write that L never proposed and never answered stays
// proposable while the log moves on that far. A leader change, a write
// the leader rejected (it answers), and a forward that did not reach the
// leader (not fully written) never count. What remains: a follower whose
// own log lags L's by more than the bound when the write arrives (a
// follower far behind), which may count a correct leader; one accuser
// counts for nothing without f+1.

// maxWatchedForwards bounds the forwards watched at once; more are not
// watched.
const maxWatchedForwards = 4096

// forwardWatch is one forwarded write being watched.
type forwardWatch struct {
	leader string
	term   uint64
	// from is Raft's last index when the write was sent, or its applied
	// index if above: the two are read apart, and installing a snapshot
	// moves the applied index first.
	from uint64
	env  *smr.Envelope
}

// fwdVerdict is what one check of a watched forward decides.
type fwdVerdict int

const (
	fwdWait    fwdVerdict = iota // keep watching
	fwdDrop                      // forget it: not L's omission
	fwdOmitted                   // L committed bound entries past it
)

// check decides w against what this node knows of its leader now.
func (w *forwardWatch) check(c raftengine.Contact, bound uint64) fwdVerdict {
	switch {
	case !c.Follower || c.LeaderID != w.leader || c.Term != w.term:
		return fwdDrop
	case c.AppliedIndex < w.from+bound:
		return fwdWait
	default:
		return fwdOmitted
	}
}

// forwardWatcher holds the forwards in flight. add and remove are called
// by Submit's goroutines, sweep by the cft goroutine.
type forwardWatcher struct {
	bound uint64
	// pending reports whether env is still proposable on this node
	// (neither applied nor rejected by the state machine).
	pending func(env *smr.Envelope) bool

	mu   sync.Mutex
	next uint64
	live map[uint64]*forwardWatch

	omit map[evidence.NodeID]*countState // cft goroutine only
}

func newForwardWatcher(bound uint64, pending func(*smr.Envelope) bool) *forwardWatcher {
	return &forwardWatcher{bound: bound, pending: pending, live: map[uint64]*forwardWatch{}, omit: map[evidence.NodeID]*countState{}}
}

// add watches w; it returns 0 when too many are watched.
func (fw *forwardWatcher) add(w *forwardWatch) uint64 {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if len(fw.live) >= maxWatchedForwards {
		return 0
	}
	fw.next++
	fw.live[fw.next] = w
	return fw.next
}

// remove forgets the forward id (answered, failed or abandoned).
func (fw *forwardWatcher) remove(id uint64) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	delete(fw.live, id)
}

// sweep checks every watched forward against c, forgets the decided ones
// and returns those omitted that are still proposable here.
func (fw *forwardWatcher) sweep(c raftengine.Contact) []*forwardWatch {
	var due []*forwardWatch
	fw.mu.Lock()
	for id, w := range fw.live {
		switch w.check(c, fw.bound) {
		case fwdDrop:
			delete(fw.live, id)
		case fwdOmitted:
			delete(fw.live, id)
			due = append(due, w)
		}
	}
	fw.mu.Unlock()
	out := due[:0]
	for _, w := range due {
		if fw.pending(w.env) {
			out = append(out, w)
		}
	}
	return out
}

// watchedForward is one Submit's forward: started when the request is
// fully written, ended when the forward returns (in either order).
type watchedForward struct {
	mu      sync.Mutex
	id      uint64
	started bool
	ended   bool
}

func (c *watchedForward) start(fw *forwardWatcher, re *raftengine.Engine, leader string, env *smr.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.ended {
		return
	}
	c.started = true
	rc := re.Contact()
	if !rc.Follower || rc.LeaderID != leader {
		return
	}
	c.id = fw.add(&forwardWatch{leader: leader, term: rc.Term, from: max(rc.AppliedIndex, rc.LastIndex), env: env})
}

func (c *watchedForward) end(fw *forwardWatcher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if c.id != 0 {
		fw.remove(c.id)
	}
}

// forwardWatched forwards env to the Raft leader like forwardPropose and,
// with a cft detector, watches it for omission while it is in flight.
func (n *Node) forwardWatched(ctx context.Context, nl *consensus.NotLeaderError, env *smr.Envelope) (smr.Result, error) {
	var fw *forwardWatcher
	if n.det != nil {
		fw = n.det.fwd
	}
	re, ok := n.eng().(*raftengine.Engine)
	if fw == nil || !ok {
		return n.forwardPropose(ctx, nl, env)
	}
	call := &watchedForward{}
	defer call.end(fw)
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			call.start(fw, re, nl.LeaderID, env)
		}
	}}
	return n.forwardPropose(httptrace.WithClientTrace(ctx, trace), nl, env)
}

// sweepForwards counts the forwarded writes the leader left out and
// accuses it, at most once per omitAccuseEvery (the value is the writes
// counted since the last accusation). It runs on the cft goroutine.
func (d *detector) sweepForwards(ctx context.Context, c raftengine.Contact) {
	if d.fwd == nil {
		return
	}
	due := d.fwd.sweep(c)
	if len(due) == 0 {
		return
	}
	id := evidence.NodeID(due[0].leader) // every due forward names the current leader
	if !d.accusable(id) {
		return
	}
	d.accuseCount(ctx, countIn(d.fwd.omit, id), id, int64(len(due)), omitAccuseEvery, evidence.MetricSelectiveOmission, func(n int64) string {
		return fmt.Sprintf("%d client writes this node forwarded to the raft leader (term %d) were neither answered nor applied while the leader committed at least %d further entries",
			n, c.Term, d.fwd.bound)
	}, d.clock())
}

// omitBound is the number of entries past a forwarded write's arrival
// after which an unanswered write counts as omitted: 2 ×
// raft.max_append_entries.
func omitBound(maxAppendEntries int) (uint64, error) {
	if maxAppendEntries <= 0 {
		return 0, errors.New("raft.max_append_entries must be positive to bound selective omission")
	}
	return 2 * uint64(maxAppendEntries), nil
}
