package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// Heartbeat latency (the seed table's "heartbeat latency p99 > 500 ms →
// warning"), measured per leader:
//
//	cft: every hbPollEvery, while this node follows one leader in one term,
//	     the time since it last heard from the leader (Raft's LastContact)
//	     ──> samples of the last hbWindow (at least hbMinSamples)
//	bft: engine Config.OnProposalWait: per view led by another member, how
//	     long this replica waited for the view's proposal (a view that ended
//	     by a TC without it counts with the time waited)
//	     ──> samples of the last latencyWindow (at least latencyMinSamples)
//	nearest-rank p99 > HeartbeatLatencyP99 threshold
//	     ──> signed accusation (heartbeat-latency-p99) against the leader,
//	         at most one per leader per latencyAccuseEvery
//
// The accusation counts with f+1 distinct accusers and, whatever its
// value, never causes more than a warning.

// Heartbeat tuning (cft).
const (
	// hbPollEvery is how often a follower samples the time since the
	// leader's last contact.
	hbPollEvery = 50 * time.Millisecond
	// hbStallAfter: a poll that comes this much after the previous one
	// means this node itself stalled (paused, starved): the sample says
	// nothing about the leader and is dropped, and so are those of the
	// next hbStallGrace, while Raft catches up with what it received.
	hbStallAfter = 4 * hbPollEvery
	hbStallGrace = time.Second
	// hbWindow, hbMaxSamples, hbMinSamples: the p99 is taken over the
	// samples of the last hbWindow (at most hbMaxSamples), and at least
	// hbMinSamples (5 s of following one leader) are needed.
	hbWindow     = time.Minute
	hbMaxSamples = int(hbWindow / hbPollEvery)
	hbMinSamples = 100
)

// heartbeatPoller is the cft heartbeat analyzer's state: the samples of
// the current leader and term. It is pure (the caller hands it times) and
// used by one goroutine.
type heartbeatPoller struct {
	self evidence.NodeID

	leader string
	term   uint64
	last   time.Time // the previous poll
	quiet  time.Time // no samples before this (after a stall)
	win    latWindow
	// accused is when each leader was last accused (kept across leader
	// changes: the rate limit is per leader).
	accused map[string]accuseLimit
}

func newHeartbeatPoller(self evidence.NodeID) *heartbeatPoller {
	return &heartbeatPoller{self: self, accused: map[string]accuseLimit{}}
}

// heartbeatVerdict asks for an accusation of leader.
type heartbeatVerdict struct {
	leader  string
	term    uint64
	p99     time.Duration
	samples int
}

// poll takes one sample of c, what this node knows of its leader, at now
// and reports whether the leader's p99 is above threshold and asks for an
// accusation. The caller calls accusedAt once it accused.
func (p *heartbeatPoller) poll(now time.Time, c raftengine.Contact, threshold time.Duration) (heartbeatVerdict, bool) {
	prev := p.last
	p.last = now
	if !c.Follower || c.LeaderID == "" || c.LeaderID == string(p.self) || c.LastContact.IsZero() {
		p.leader, p.term, p.win = "", 0, nil
		return heartbeatVerdict{}, false
	}
	if c.LeaderID != p.leader || c.Term != p.term {
		// A new leader (or term), or the first contact since the start:
		// its samples start now.
		p.leader, p.term, p.win = c.LeaderID, c.Term, nil
		return heartbeatVerdict{}, false
	}
	if now.Sub(prev) > hbStallAfter {
		p.quiet = now.Add(hbStallGrace)
		return heartbeatVerdict{}, false
	}
	if now.Before(p.quiet) {
		return heartbeatVerdict{}, false
	}
	p.win.add(now, latencySample{at: now, latency: max(now.Sub(c.LastContact), 0)}, hbWindow, hbMaxSamples)
	if len(p.win) < hbMinSamples || !p.accused[c.LeaderID].allows(now, latencyAccuseEvery) {
		return heartbeatVerdict{}, false
	}
	p99, _ := latencyP99(p.win)
	if p99 <= threshold {
		return heartbeatVerdict{}, false
	}
	return heartbeatVerdict{leader: c.LeaderID, term: c.Term, p99: p99, samples: len(p.win)}, true
}

// accusedAt records that leader was accused at now.
func (p *heartbeatPoller) accusedAt(leader string, now time.Time) {
	p.accused[leader] = accuseLimit{now}
}

// latWindow is a member's latency samples, oldest first.
type latWindow []latencySample

// add appends smp and drops the samples older than window or beyond the
// last maxN.
func (w *latWindow) add(now time.Time, smp latencySample, window time.Duration, maxN int) {
	s := append(*w, smp)
	cut := 0
	for cut < len(s) && (now.Sub(s[cut].at) > window || len(s)-cut > maxN) {
		cut++
	}
	*w = slices.Delete(s, 0, cut)
}

// cftTick runs the periodic cft analyzers on one reading of the Raft
// engine: the heartbeat sample and the watched forwards.
func (d *detector) cftTick(ctx context.Context) {
	q, ok := d.currentEngine().(cftQuarantine)
	if !ok || q.e == nil {
		d.pollHeartbeat(ctx, raftengine.Contact{})
		return
	}
	rc := q.e.Contact()
	d.pollHeartbeat(ctx, rc)
	d.sweepForwards(ctx, rc)
}

// pollHeartbeat takes one heartbeat sample on a Raft follower and accuses
// the leader when its p99 is above the bound of the scoring table in
// effect.
func (d *detector) pollHeartbeat(ctx context.Context, rc raftengine.Contact) {
	if d.hb == nil {
		return
	}
	now := d.clock()
	if rc.LeaderID != "" && !d.accusable(evidence.NodeID(rc.LeaderID)) {
		rc = raftengine.Contact{} // not a member this node accuses: no samples
	}
	v, ok := d.hb.poll(now, rc, time.Duration(d.scoreConfig().HeartbeatLatencyP99.Threshold))
	if !ok {
		return
	}
	detail := fmt.Sprintf("p99 %s of the time since the raft leader's last contact, sampled every %s over the last %d samples (term %d)",
		v.p99.Round(time.Millisecond), hbPollEvery, v.samples, v.term)
	if d.accuse(ctx, evidence.NodeID(v.leader), evidence.MetricHeartbeatLatencyP99, int64(v.p99), detail, now) {
		d.hb.accusedAt(v.leader, now)
	}
}

// onProposalWait is the engine's Config.OnProposalWait: it runs on the
// engine's loop and must not block.
func (d *detector) onProposalWait(w hsengine.ProposalWaitObservation) {
	d.enqueueObservation(observation{at: d.clock(), other: proposalWait(w)})
}

// proposalWait is an observed kind: how long this replica waited for a
// view's proposal.
type proposalWait hsengine.ProposalWaitObservation

func (o proposalWait) observe(ctx context.Context, d *detector, now time.Time) {
	d.observeProposalWait(ctx, hsengine.ProposalWaitObservation(o), now)
}

// observeProposalWait records how long this replica waited for a leader's
// proposal and accuses the leader when the p99 of its recent waits is
// above the table's bound while another leader's is within it, at most
// once per latencyAccuseEvery. A leader proposes once it holds a quorum
// of votes for the previous block, so its proposal waits for the votes of
// others: when a member withholds its votes, every correct vote is needed
// and each leader waits for the slowest one; when this replica or the
// whole machine stalls, every leader looks late too. Only a leader slower
// than its peers is accused.
func (d *detector) observeProposalWait(ctx context.Context, w hsengine.ProposalWaitObservation, now time.Time) {
	d.observeLatency(ctx, d.obs.wait, evidence.NodeID(w.Leader), latencySample{at: now, latency: w.Wait, missing: w.TimedOut}, now,
		evidence.MetricHeartbeatLatencyP99, func(c score.Config) int64 { return c.HeartbeatLatencyP99.Threshold }, true, func(p99 time.Duration, n, timedOut int) string {
			return fmt.Sprintf("p99 %s of this replica's wait for the leader's hotstuff proposals over the %d views it led in the last %s; %d ended by a TC without one",
				p99.Round(time.Millisecond), n, latencyWindow, timedOut)
		})
}
