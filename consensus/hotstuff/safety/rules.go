package safety

import (
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Candidate is a block a replica is asked to vote for.
type Candidate struct {
	// Block is the proposed block.
	Block *types.Block
	// Hash is Block.Hash(); Rules computes it when zero.
	Hash types.Hash
	// Certified is the block Block.Justify certifies (Block's parent). The
	// 3-chain lock is read from its justify QC.
	Certified *types.Block
	// TC is the timeout certificate for Block.View−1 that came with the
	// proposal, or nil.
	TC *types.TC
}

// NotSafeToVoteError is returned when a vote would break the voting rule.
// It carries the numbers the decision was made on.
type NotSafeToVoteError struct {
	View         types.View // the proposal's view
	LastVoted    types.View // SafetyData.LastVotedView
	JustifyView  types.View // the proposal's justify QC view
	LockedQCView types.View // SafetyData.LockedQC.View
	TCView       types.View // the TC's view, 0 without a TC
	TCHighQCView types.View // the TC's high QC view, 0 without a TC
	Reason       string
}

func (e *NotSafeToVoteError) Error() string {
	return fmt.Sprintf("not safe to vote in view %d (last voted %d, justify %d, locked %d, tc %d/high QC %d): %s",
		e.View, e.LastVoted, e.JustifyView, e.LockedQCView, e.TCView, e.TCHighQCView, e.Reason)
}

// NotSafeToTimeoutError is returned when a timeout is asked for a view
// below the last voted view.
type NotSafeToTimeoutError struct {
	View      types.View
	LastVoted types.View
}

func (e *NotSafeToTimeoutError) Error() string {
	return fmt.Sprintf("not safe to time out view %d: already voted or timed out in view %d", e.View, e.LastVoted)
}

// EquivocationError is returned when a replica is asked to sign a second,
// different proposal for a view (or a proposal for an older view).
type EquivocationError struct {
	View       types.View // requested proposal view
	SignedView types.View // view of the last signed proposal
	Signed     types.Hash // block already signed
	Requested  types.Hash // block asked for
}

func (e *EquivocationError) Error() string {
	return fmt.Sprintf("refusing to sign block %s for view %d: already signed block %s for view %d",
		e.Requested, e.View, e.Signed, e.SignedView)
}

// ErrWrongEpoch is returned by New when the stored data belongs to another
// epoch.
var ErrWrongEpoch = errors.New("safety data belongs to another epoch")

// ErrInvalidCandidate is wrapped when a candidate block is malformed (its
// justify QC does not certify its parent, Certified is not that parent, or
// the TC is for another view).
var ErrInvalidCandidate = errors.New("invalid vote candidate")

// VoteRule is the voting rule of one HotStuff variant: given the persisted
// data d, may this replica vote for c, and what data must be persisted with
// the vote (the new lock)? It returns a *NotSafeToVoteError when it may not.
// Check must not modify d's slices; it returns an updated copy.
//
// Rules has already verified c's certificates and checked its structure.
// The generic part (repeat the same vote in the same view, set
// LastVotedView and LastVote, raise HighQC, sign, persist) is done by Rules.
type VoteRule interface {
	Check(d SafetyData, c Candidate) (SafetyData, error)
}

// CheckView returns a *NotSafeToVoteError unless c's view is above the last
// voted view: one vote per view, views only go up. Every sound VoteRule
// calls it first.
func CheckView(d SafetyData, c Candidate) error {
	if c.Block.View <= d.LastVotedView {
		return notSafe(d, c, "view is not above the last voted view")
	}
	return nil
}

func notSafe(d SafetyData, c Candidate, reason string) *NotSafeToVoteError {
	e := &NotSafeToVoteError{
		View:         c.Block.View,
		LastVoted:    d.LastVotedView,
		JustifyView:  c.Block.Justify.View,
		LockedQCView: d.LockedQC.View,
		Reason:       reason,
	}
	if c.TC != nil {
		e.TCView, e.TCHighQCView = c.TC.View, c.TC.HighQC.View
	}
	return e
}

// ThreeChain is the voting rule of chained HotStuff (the paper's
// event-driven form), stated with views:
//
//  1. the proposal's view is above the last voted view;
//  2. the proposal extends the locked block, or its justify QC is newer
//     than the locked QC (justify.View > locked.View).
//
// Because views strictly increase along a chain and a proposal's parent is
// the block its justify certifies, "extends the locked block" is exactly
// "justify certifies the locked block, or justify.View > locked.View and the
// locked block is an ancestor"; so rule 2 reduces to
//
//	justify.Block == locked.Block  ||  justify.View > locked.View
//
// which needs no block tree.
//
// Lock update (after the checks): with b” the block certified by the
// proposal's justify, lock on b”.Justify (the QC of b”s parent) if it is
// newer than the current lock. In the paper's words: b' := b”.justify.node;
// if b'.height > b_lock.height then b_lock := b'.
type ThreeChain struct{}

// Check implements VoteRule.
func (ThreeChain) Check(d SafetyData, c Candidate) (SafetyData, error) {
	if err := CheckView(d, c); err != nil {
		return d, err
	}
	j := c.Block.Justify
	if !(j.Block == d.LockedQC.Block || j.View > d.LockedQC.View) {
		return d, notSafe(d, c, "proposal neither extends the locked block nor justifies with a newer QC")
	}
	if lock := c.Certified.Justify; lock.View > d.LockedQC.View {
		d.LockedQC = lock
	}
	return d, nil
}

// TwoChain is the voting rule of two-chain HotStuff (as in Jolteon /
// DiemBFT v4 / HotStuff-2):
//
//  1. the proposal's view is above the last voted view;
//  2. either the proposal directly follows its justify QC
//     (justify.View + 1 == view), or it comes with a TC for view−1 and its
//     justify QC is at least as new as the highest QC in that TC
//     (justify.View >= tc.HighQC.View).
//
// The lock is the highest QC voted on top of (LockedQC = max(LockedQC,
// justify)), and Rules never signs a timeout with a QC below HighQC. This
// is what makes the 2-chain commit rule safe: if b is committed (QC for b
// and for its child b' in view b.View+1), the f+1 correct voters of b' hold
// a QC of view ≥ b.View; every later TC contains one of them, so every later
// proposal justified by a TC extends b.
type TwoChain struct{}

// Check implements VoteRule.
func (TwoChain) Check(d SafetyData, c Candidate) (SafetyData, error) {
	if err := CheckView(d, c); err != nil {
		return d, err
	}
	b := c.Block
	direct := b.Justify.View+1 == b.View
	viaTC := c.TC != nil && c.TC.View+1 == b.View && b.Justify.View >= c.TC.HighQC.View
	if !direct && !viaTC {
		return d, notSafe(d, c, "proposal neither follows its justify QC directly nor extends the highest QC of a TC for the previous view")
	}
	if b.Justify.View > d.LockedQC.View {
		d.LockedQC = b.Justify
	}
	return d, nil
}

var (
	_ VoteRule = ThreeChain{}
	_ VoteRule = TwoChain{}
)
