package engine

import (
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// What the engine reports about leaders' proposal delays
// (Config.OnProposalWait), the bft counterpart of a Raft follower's time
// since the leader's last heartbeat: how long this replica waited for each
// view's proposal from that view's leader. Like the other observations it
// proves nothing to a third party; the detector turns a high p99 into a
// signed accusation (heartbeat-latency-p99), which counts only with f+1
// accusers and never causes more than a warning.
//
// When the wait starts. In chained HotStuff a replica enters view v when it
// sees the QC of v−1, which reaches a replica that does not lead v inside
// v's proposal itself: entering v and receiving its proposal are one
// event. The replica's own part ends earlier, when it votes for v−1's
// block (the vote goes to v's leader, who forms the QC and proposes), so
// the wait for v starts at the earlier of that vote and entering v (by a
// TC, or by a QC that came without v's proposal). It ends when v's
// proposal from v's leader is accepted by the core. A view that ends by a
// TC without its proposal is reported with the time waited (at least the
// view timeout), TimedOut set. A leader with nothing to order may wait
// IdlePropose before it proposes an empty block, so an empty block's wait
// is counted less that allowance; likewise a block with room for more
// commands is counted less MaxBatchDelay, which its leader may have
// waited for them.

// ProposalWaitObservation is how long this replica waited for one view's
// proposal from the view's leader.
type ProposalWaitObservation struct {
	// Leader is the view's leader (never this replica).
	Leader types.NodeID
	// View is the view waited for.
	View types.View
	// Wait is the time from the start of the wait to the proposal (less
	// the idle allowance for an empty block), or, TimedOut, to the TC
	// that ended the view.
	Wait time.Duration
	// TimedOut: the view ended by a TC and its proposal never came.
	TimedOut bool
}

// maxWaitViews bounds the views whose proposal is being waited for.
const maxWaitViews = 64

// proposalWait is the loop-owned state of the proposal-wait observation:
// when each view's wait started. It is pure: the engine hands it times.
type proposalWait struct {
	starts map[types.View]time.Time
	// got is the highest view whose proposal arrived; no wait starts for
	// a view at or below it.
	got types.View
}

// start starts the wait for view v at at, unless it started already or
// v's proposal arrived.
func (w *proposalWait) start(v types.View, at time.Time) {
	if v <= w.got {
		return
	}
	if _, ok := w.starts[v]; ok || len(w.starts) >= maxWaitViews {
		return
	}
	if w.starts == nil {
		w.starts = map[types.View]time.Time{}
	}
	w.starts[v] = at
}

// proposal records that v's proposal arrived at at and returns how long
// it was waited for (ok false when no wait had started). The waits of
// views below v−1 are dropped; v−1's stays until this replica enters v
// (a proposal justified by a TC arrives before the loop sees the view
// change it causes).
func (w *proposalWait) proposal(v types.View, at time.Time) (time.Duration, bool) {
	w.got = max(w.got, v)
	since, ok := w.starts[v]
	delete(w.starts, v)
	if v > 0 {
		w.dropBelow(v - 1)
	}
	if !ok {
		return 0, false
	}
	return max(at.Sub(since), 0), true
}

// entered records that this replica entered view v at at (byTC: by a TC
// of v−1). When v−1 ended by that TC without its proposal, it returns how
// long v−1's proposal was waited for (ok true). The wait for v starts.
func (w *proposalWait) entered(v types.View, byTC bool, at time.Time) (time.Duration, bool) {
	var (
		waited time.Duration
		ok     bool
	)
	if since, had := w.starts[v-1]; had && byTC && v > 0 {
		waited, ok = max(at.Sub(since), 0), true
	}
	w.dropBelow(v)
	w.start(v, at)
	return waited, ok
}

// dropBelow forgets the waits of the views below v.
func (w *proposalWait) dropBelow(v types.View) {
	for u := range w.starts {
		if u < v {
			delete(w.starts, u)
		}
	}
}

// noteWaitVote starts the wait for the next view's proposal when this
// replica sends its own vote (to the next view's leader).
func (e *Engine) noteWaitVote(m core.Outbound) {
	v, ok := m.Msg.(*types.Vote)
	if e.cfg.OnProposalWait == nil || !ok || v.Voter != e.cfg.ID || e.core.Leader(v.View+1) == e.cfg.ID {
		return
	}
	e.obs.wait.start(v.View+1, e.cfg.Clock())
}

// noteWaitProposal reports the wait for a proposal the core accepted,
// when it came straight from its view's leader.
func (e *Engine) noteWaitProposal(from types.NodeID, p *types.Proposal) {
	if e.cfg.OnProposalWait == nil || p.Block == nil || from == e.cfg.ID || p.Block.Proposer != from || e.core.Leader(p.Block.View) != from {
		return
	}
	wait, ok := e.obs.wait.proposal(p.Block.View, e.cfg.Clock())
	if !ok {
		return
	}
	wait = max(wait-e.cfg.proposeAllowance(len(p.Block.Payload)), 0)
	e.cfg.OnProposalWait(ProposalWaitObservation{Leader: from, View: p.Block.View, Wait: wait})
}

// noteWaitView records that this replica entered view v (byTC: by a TC)
// and reports the previous view when it ended by that TC without its
// proposal.
func (e *Engine) noteWaitView(v types.View, byTC bool) {
	if e.cfg.OnProposalWait == nil {
		return
	}
	now := e.cfg.Clock()
	waited, timedOut := e.obs.wait.entered(v, byTC, now)
	if e.core.Leader(v) == e.cfg.ID {
		delete(e.obs.wait.starts, v) // this replica proposes v itself
	}
	if !timedOut {
		return
	}
	if leader := e.core.Leader(v - 1); leader != e.cfg.ID {
		e.cfg.OnProposalWait(ProposalWaitObservation{Leader: leader, View: v - 1, Wait: waited, TimedOut: true})
	}
}

// proposeAllowance is how long a correct leader may hold back a block of n
// commands on purpose: the idle delay for an empty block, the batch delay
// (at most half the view timeout, as the core waits) for one with room
// left, nothing for a full one.
func (c *Config) proposeAllowance(n int) time.Duration {
	switch {
	case n == 0:
		return c.IdlePropose
	case n < c.MaxBatch:
		return min(c.MaxBatchDelay, c.ViewChangeTimeout/2)
	}
	return 0
}
