package engine

import (
	"crypto/ed25519"
	"errors"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// What the engine reports to the detector (Config.OnSignatureFailure,
// Config.OnVote). Both are observations over authenticated channels, not
// proofs: the detector turns them into signed accusations, which count only
// with f+1 accusers. Nothing here changes what the core accepts.

// VoteObservation is one vote as seen by its collector.
type VoteObservation struct {
	// From is the voter (the sender of the authenticated connection).
	From types.NodeID
	// View is the view of the block voted for.
	View types.View
	// Latency is the time from when this replica first held the view's
	// proposal to the vote's arrival; for a missing vote, how long the
	// replica waited (VoteWait or more).
	Latency time.Duration
	// Missing: no valid vote of From arrived within VoteWait.
	Missing bool
}

// Vote observation tuning.
const (
	// VoteWait is how long a collector waits, after it held a view's
	// proposal, before it reports the members whose vote did not arrive.
	// It is above the seed table's 500 ms vote latency bound, so a vote
	// reported missing counts as a slow one.
	VoteWait = time.Second
	// maxObservedViews bounds the views whose votes are being watched;
	// views beyond it are not observed.
	maxObservedViews = 4096
	// sweepTicks is how many ticks pass between sweeps for missing votes.
	sweepTicks = 10
)

// observedView is a view this replica collects the votes of.
type observedView struct {
	since time.Time // when the proposal was held (or the first vote came)
	votes map[types.NodeID]bool
}

// observer is the loop-owned state of the vote observation.
type observer struct {
	views map[types.View]*observedView
	wait  proposalWait // proposalwait.go
}

// noteProposal records when this replica first held the proposal of view v,
// if it collects v's votes.
func (e *Engine) noteProposalSeen(v types.View) {
	if e.cfg.OnVote == nil || e.core.Leader(v+1) != e.cfg.ID {
		return
	}
	if _, ok := e.obs.views[v]; ok || len(e.obs.views) >= maxObservedViews {
		return
	}
	e.obs.views[v] = &observedView{since: e.cfg.Clock(), votes: map[types.NodeID]bool{}}
}

// noteVote reports a vote the core took without error, when it comes
// straight from its voter to this replica as the view's collector.
func (e *Engine) noteVote(from types.NodeID, v *types.Vote) {
	if e.cfg.OnVote == nil || v.Voter != from || from == e.cfg.ID || e.core.Leader(v.View+1) != e.cfg.ID {
		return
	}
	now := e.cfg.Clock()
	ov, ok := e.obs.views[v.View]
	if !ok {
		if len(e.obs.views) >= maxObservedViews {
			return
		}
		// The vote came before the proposal: no latency to report, but
		// the view is watched for the others' votes.
		e.obs.views[v.View] = &observedView{since: now, votes: map[types.NodeID]bool{from: true}}
		return
	}
	if ov.votes[from] {
		return
	}
	ov.votes[from] = true
	e.cfg.OnVote(VoteObservation{From: from, View: v.View, Latency: max(now.Sub(ov.since), 0)})
}

// sweepVotes reports, for every watched view whose wait is over, each other
// member whose vote did not arrive, and forgets the view. A view whose
// votes came from no one is forgotten without a report: this replica may
// not have been its collector after all (a view change), and it says
// nothing about any single member.
func (e *Engine) sweepVotes() {
	if e.cfg.OnVote == nil || len(e.obs.views) == 0 {
		return
	}
	now := e.cfg.Clock()
	for view, ov := range e.obs.views {
		waited := now.Sub(ov.since)
		if waited < VoteWait {
			continue
		}
		delete(e.obs.views, view)
		if len(ov.votes) == 0 {
			continue
		}
		for id := range e.addrs {
			if id != e.cfg.ID && !ov.votes[id] {
				e.cfg.OnVote(VoteObservation{From: id, View: view, Latency: waited, Missing: true})
			}
		}
	}
}

// noteRejected reports a message the core rejected for a bad signature
// when its own signature (not one of a certificate it carries) fails and it
// names its sender as signer. A signature valid in the previous or the
// next epoch is a replica between epochs, not a forgery: not reported.
func (e *Engine) noteRejected(from types.NodeID, m types.Message, err error) {
	if e.cfg.OnSignatureFailure == nil || !errors.Is(err, types.ErrBadSignature) || from == e.cfg.ID {
		return
	}
	key := ed25519.PublicKey(e.committee.PublicKey(from))
	if len(key) != ed25519.PublicKeySize {
		return
	}
	var bytesIn func(epoch uint64) []byte
	var sig []byte
	switch m := m.(type) {
	case *types.Vote:
		if m.Voter != from {
			return
		}
		bytesIn = func(ep uint64) []byte { return types.VoteSignBytes(ep, m.View, m.Block) }
		sig = m.Sig
	case *types.Proposal:
		if m.Block == nil || m.Block.Proposer != from {
			return
		}
		h := m.Block.Hash()
		bytesIn = func(ep uint64) []byte { return types.ProposalSignBytes(ep, m.Block.View, h) }
		sig = m.Block.Sig
	case *types.Timeout:
		if m.Sender != from || m.HighQC.View >= m.View {
			return
		}
		bytesIn = func(ep uint64) []byte { return types.TimeoutSignBytes(ep, m.View, m.HighQC.View) }
		sig = m.Sig
	default:
		return
	}
	epoch := e.committee.Epoch()
	if ed25519.Verify(key, bytesIn(epoch), sig) {
		return // the failure was in a certificate the message carries
	}
	for _, ep := range []uint64{epoch - 1, epoch + 1} {
		if ep != 0 && ed25519.Verify(key, bytesIn(ep), sig) {
			return
		}
	}
	e.stats.signatureFailures.Add(1)
	e.cfg.OnSignatureFailure(from, m.MsgType())
}
