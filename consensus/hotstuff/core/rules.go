package core

import (
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// BlockSource looks blocks up by hash (the block tree).
type BlockSource interface {
	Get(h types.Hash) (*types.Block, bool)
}

// CommitRule decides what a newly seen QC commits: given qc (whose block is
// in blocks), it returns the hash of the highest block that becomes
// committed, or false. The core then commits that block and every
// uncommitted ancestor. A CommitRule must pair with the VoteRule it was
// proven with (see Variant).
type CommitRule interface {
	Commit(blocks BlockSource, qc types.QC) (types.Hash, bool)
}

// ThreeChainCommit is chained HotStuff's commit rule: on a QC for b”, if
// b” → b' → b is a chain of direct parents in consecutive views
// (b”.View = b'.View+1 = b.View+2), commit b.
//
// The consecutive-view condition is what "direct parent" means once views
// are used instead of the paper's dummy-filled heights, and it is needed:
// with a gap, a QC for a conflicting block in a view between b and b' could
// satisfy the lock of the replicas that locked on b and let them vote
// against b.
type ThreeChainCommit struct{}

// Commit implements CommitRule.
func (ThreeChainCommit) Commit(blocks BlockSource, qc types.QC) (types.Hash, bool) {
	b2, ok := blocks.Get(qc.Block)
	if !ok || b2.View == 0 {
		return types.Hash{}, false
	}
	b1, ok := blocks.Get(b2.Parent)
	if !ok || b1.View == 0 || b2.View != b1.View+1 {
		return types.Hash{}, false
	}
	b0, ok := blocks.Get(b1.Parent)
	if !ok || b1.View != b0.View+1 {
		return types.Hash{}, false
	}
	return b1.Parent, true
}

// TwoChainCommit is the two-chain commit rule (Jolteon, HotStuff-2): on a
// QC for b', if b' is a direct child of b in the next view
// (b'.View = b.View+1), commit b. It is safe only with safety.TwoChain.
type TwoChainCommit struct{}

// Commit implements CommitRule.
func (TwoChainCommit) Commit(blocks BlockSource, qc types.QC) (types.Hash, bool) {
	b1, ok := blocks.Get(qc.Block)
	if !ok || b1.View == 0 {
		return types.Hash{}, false
	}
	b0, ok := blocks.Get(b1.Parent)
	if !ok || b1.View != b0.View+1 {
		return types.Hash{}, false
	}
	return b1.Parent, true
}

var (
	_ CommitRule = ThreeChainCommit{}
	_ CommitRule = TwoChainCommit{}
)

// Variant names a matched pair of voting and commit rules.
type Variant uint8

// Variants.
const (
	// ThreeChain is chained HotStuff: safety.ThreeChain + ThreeChainCommit.
	ThreeChain Variant = iota
	// TwoChain is two-chain HotStuff: safety.TwoChain + TwoChainCommit.
	TwoChain
)

func (v Variant) String() string {
	switch v {
	case ThreeChain:
		return "chained-hotstuff"
	case TwoChain:
		return "two-chain-hotstuff"
	default:
		return fmt.Sprintf("variant(%d)", uint8(v))
	}
}

// ParseVariant maps "chained-hotstuff"/"3chain" and
// "two-chain-hotstuff"/"2chain" to a Variant.
func ParseVariant(s string) (Variant, error) {
	switch s {
	case "chained-hotstuff", "3chain", "three-chain", "":
		return ThreeChain, nil
	case "two-chain-hotstuff", "2chain", "two-chain":
		return TwoChain, nil
	default:
		return 0, fmt.Errorf("unknown HotStuff variant %q (want chained-hotstuff or two-chain-hotstuff)", s)
	}
}

// VoteRule returns the variant's voting rule.
func (v Variant) VoteRule() safety.VoteRule {
	if v == TwoChain {
		return safety.TwoChain{}
	}
	return safety.ThreeChain{}
}

// CommitRule returns the variant's commit rule.
func (v Variant) CommitRule() CommitRule {
	if v == TwoChain {
		return TwoChainCommit{}
	}
	return ThreeChainCommit{}
}
