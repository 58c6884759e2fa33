package safety

import (
	"errors"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// TestThreeChainRule checks the chained-HotStuff voting rule (paper §4.3,
// "safeNode": the proposal extends the locked block, or its justify QC is
// newer than the lock) and its lock update. The block tree:
//
//	g ─ a(1) ─ b(2) ─ c(3) ─ d(4) ─ e(5)
//	     │      └─ z(8)
//	     └─ x(6)
//	g ─ y(7)
//
// Each block's justify certifies its parent. Unless a case says otherwise
// the replica voted for d (last voted view 4) and is locked on QC(b).
func TestThreeChainRule(t *testing.T) {
	fx := newFixture(t)
	fx.add("a", "g", 1)
	fx.add("b", "a", 2)
	fx.add("c", "b", 3)
	fx.add("d", "c", 4)
	fx.add("e", "d", 5)
	fx.add("x", "a", 6)
	fx.add("y", "g", 7)
	fx.add("z", "b", 8)
	base := SafetyData{Epoch: 1, LastVotedView: 4, LockedQC: fx.qcFor("b")}
	cases := []struct {
		name     string
		block    string
		data     func(d SafetyData) SafetyData
		ok       bool
		wantLock string
	}{
		{name: "extends the lock with a newer justify; lock moves to QC(c)", block: "e", ok: true, wantLock: "c"},
		{name: "justify certifies the locked block; lock stays", block: "z", ok: true, wantLock: "b"},
		{name: "fork below the lock is refused", block: "x"},
		{name: "fork from genesis is refused", block: "y"},
		{name: "view not above last voted", block: "e", data: func(d SafetyData) SafetyData { d.LastVotedView = 5; return d }},
		{name: "view equal to last voted", block: "d"},
		{name: "genesis lock accepts a fork from genesis", block: "y", ok: true, wantLock: "g",
			data: func(d SafetyData) SafetyData { d.LockedQC = fx.qcFor("g"); d.LastVotedView = 0; return d }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			if tc.data != nil {
				d = tc.data(d)
			}
			got, err := ThreeChain{}.Check(d, fx.cand(tc.block, nil))
			if !tc.ok {
				var ns *NotSafeToVoteError
				if !errors.As(err, &ns) {
					t.Fatalf("err = %v, want *NotSafeToVoteError", err)
				}
				if ns.View != fx.blocks[tc.block].View || ns.LockedQCView != d.LockedQC.View || ns.LastVoted != d.LastVotedView {
					t.Fatalf("error carries wrong numbers: %+v", ns)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if got.LockedQC.Block != fx.qcFor(tc.wantLock).Block {
				t.Fatalf("lock on view %d, want QC(%s)", got.LockedQC.View, tc.wantLock)
			}
		})
	}
}

// TestTwoChainRule checks the two-chain voting rule (Jolteon §4: vote if
// the proposal follows its QC directly, or follows a TC for the previous
// view and extends a QC at least as high as the TC's highest). Tree:
//
//	g ─ a(1) ─ b(2) ─ c(3)
//	     │      └─ q(4)
//	     └─ p(5)
func TestTwoChainRule(t *testing.T) {
	fx := newFixture(t)
	fx.add("a", "g", 1)
	fx.add("b", "a", 2)
	fx.add("c", "b", 3)
	fx.add("q", "b", 4)
	fx.add("p", "a", 5)
	base := SafetyData{Epoch: 1, LastVotedView: 2, LockedQC: fx.qcFor("a")}
	cases := []struct {
		name string
		blk  string
		tc   *types.TC
		last types.View
		ok   bool
	}{
		{name: "direct successor of its QC", blk: "c", ok: true},
		{name: "gap without a TC", blk: "q"},
		{name: "gap with TC(3) whose high QC is QC(b)", blk: "q", tc: fx.tc(3, "b", "a"), ok: true},
		{name: "TC(4) reports QC(b); proposal extends only QC(a)", blk: "p", tc: fx.tc(4, "a", "b")},
		{name: "TC(4) reports only QC(a)", blk: "p", tc: fx.tc(4, "a"), ok: true},
		{name: "TC for another view does not count", blk: "q", tc: fx.tc(2, "a")},
		{name: "view already voted", blk: "c", last: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := base
			if tc.last != 0 {
				d.LastVotedView = tc.last
			}
			got, err := TwoChain{}.Check(d, fx.cand(tc.blk, tc.tc))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				var ns *NotSafeToVoteError
				if !errors.As(err, &ns) {
					t.Fatalf("err %T is not *NotSafeToVoteError", err)
				}
				return
			}
			if j := fx.blocks[tc.blk].Justify; got.LockedQC.View != max(j.View, base.LockedQC.View) {
				t.Fatalf("lock view %d, want the justify QC's view %d", got.LockedQC.View, j.View)
			}
		})
	}
}
