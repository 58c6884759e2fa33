package engine

import (
	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// What the engine reports about proposals that fork off this replica's
// committed chain (Config.OnConflict): the bft side of the seed table's
// "log conflicts > 3 per hour → escalate".
//
// A proposal of view v, signed by its proposer, whose block does not
// extend the committed block T (height h, view w) although v > w: its
// height is at most h, or it is h+1 and its parent is not T. Every QC of a
// view above w certifies a block that extends T (two QCs of one view would
// need a correct replica to vote twice, and the commit rule's lock makes
// a quorum refuse to vote off T in later views), and a correct leader of
// a view after w extends the highest QC it holds or finds in the view's
// TC, which is then one of those. So a correct proposer never sends such a
// block; a late copy of an honest proposal from before T committed has a
// view at most w and is not reported. The core drops such a proposal
// ("forks off below the committed block: can never commit"); nothing here
// changes what it accepts. Like the other observations it is not a proof
// (the detector would need T's certificate beside it): the detector signs
// a log-conflicts accusation, which counts with f+1 accusers.

// ConflictObservation is a proposal that forks off below this replica's
// committed block.
type ConflictObservation struct {
	// Proposer signed the block (its signature verified); View and Height
	// are the block's.
	Proposer types.NodeID
	View     types.View
	Height   uint64
	// CommittedHeight and CommittedView are this replica's committed
	// block's when the proposal arrived.
	CommittedHeight uint64
	CommittedView   types.View
}

// forksBelowCommitted reports whether b, of view above the committed
// block's, fails to extend it as far as heights tell: b is at most as
// high, or one higher with another parent.
func forksBelowCommitted(b *types.Block, st core.Status) bool {
	if b == nil || b.View <= st.CommittedView {
		return false
	}
	switch {
	case b.Height <= st.CommittedHeight:
		return true // committed blocks at these heights have lower views
	case b.Height == st.CommittedHeight+1:
		return b.Parent != st.CommittedHash
	}
	return false
}

// noteConflict reports a proposal the core took without error when it
// forks off below the committed block and carries its proposer's valid
// signature. It runs on the loop after the core stepped the proposal.
func (e *Engine) noteConflict(p *types.Proposal) {
	if e.cfg.OnConflict == nil || p == nil || p.Block == nil || p.Block.Proposer == e.cfg.ID {
		return
	}
	snap := e.status.Load()
	if snap == nil {
		return
	}
	b := p.Block
	if !forksBelowCommitted(b, snap.core) {
		return
	}
	if e.committee.VerifyBlockSig(b, b.Hash()) != nil {
		return
	}
	e.cfg.OnConflict(ConflictObservation{Proposer: b.Proposer, View: b.View, Height: b.Height,
		CommittedHeight: snap.core.CommittedHeight, CommittedView: snap.core.CommittedView})
}
