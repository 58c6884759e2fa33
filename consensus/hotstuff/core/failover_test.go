package core_test

import (
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// TestLoneForcedViewChangeMovesNobody: one replica forcing a view change
// (its timeout reaches everyone) leaves every replica, itself included, in
// the view; a second one (f+1 = 2 of 4) makes the others join and a TC
// moves everyone to the next view. No tick passes: only the forced
// timeouts act.
func TestLoneForcedViewChangeMovesNobody(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	c.cores["n2"].ForceViewChange()
	c.collect("n2")
	c.deliver(100000)
	for _, id := range c.ids {
		st := c.cores[id].Status()
		if st.View != 1 {
			t.Fatalf("%s in view %d after one replica forced a view change, want 1", id, st.View)
		}
		if st.TimedOut != (id == "n2") {
			t.Fatalf("%s: timed out %v after only n2 forced a view change", id, st.TimedOut)
		}
	}
	c.cores["n3"].ForceViewChange()
	c.collect("n3")
	c.deliver(100000)
	for _, id := range c.ids {
		if v := c.cores[id].View(); v != 2 {
			t.Fatalf("%s in view %d after f+1 replicas forced a view change, want 2", id, v)
		}
	}
}

// TestCrashedLeaderCostsOneViewTimeout: after a member crashes, the first
// view it was needed in (as the collector of the votes) costs one view
// timeout; from then on the others suspect it, broadcast the votes it would
// have collected and time its own views out at once, so later views it
// leads cost no timeout. Once it is back, its first message clears the
// suspicion and it leads blocks that commit again.
func TestCrashedLeaderCostsOneViewTimeout(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	const timeout = 10 // cluster pacemaker ViewTimeout, in ticks
	c.propose("a")
	for range 3 {
		c.tick()
	}
	if got := c.commands("n0"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("before the crash n0 committed %q", got)
	}
	c.down["n1"] = true
	start := c.cores["n0"].View()
	c.propose("b")
	ticks := 0
	for ; ticks < 10*timeout && !slices.Contains(c.commands("n0"), "b"); ticks++ {
		c.tick()
	}
	// One timeout for the view whose votes n1 was to collect, a tick of
	// slack for where in its tick the crash fell.
	if ticks > timeout+1 {
		t.Fatalf("the first command after the crash committed after %d ticks, want at most %d (one view timeout)", ticks, timeout+1)
	}
	for _, id := range []types.NodeID{"n0", "n2", "n3"} {
		if st := c.cores[id].Status(); !slices.Equal(st.Suspects, []types.NodeID{"n1"}) {
			t.Fatalf("%s suspects %v, want [n1]", id, st.Suspects)
		}
	}
	// Many more views, several of them n1's (round-robin): none waits for
	// a timer.
	mid := c.cores["n0"].View()
	for i := range 3 * timeout {
		c.propose("c" + string(rune('a'+i)))
		c.tick()
	}
	end := c.cores["n0"].View()
	if end < mid+types.View(3*timeout) {
		t.Fatalf("views %d..%d in %d ticks: n1's views still wait", mid, end, 3*timeout)
	}
	led := 0
	for v := mid; v < end; v++ {
		if c.cores["n0"].Leader(v) == "n1" {
			led++
		}
	}
	if led == 0 {
		t.Fatalf("no view in %d..%d was n1's; the test does not exercise a suspected leader", mid, end)
	}
	t.Logf("crash at view %d: %d ticks to the next commit; views %d..%d (%d led by n1) in %d ticks", start, ticks, mid, end, led, 3*timeout)

	// n1 comes back: its messages clear the suspicion and its blocks
	// commit again.
	c.restart("n1", core.ThreeChain)
	for range 5 * timeout {
		c.propose("late")
		c.tick()
	}
	for _, id := range []types.NodeID{"n0", "n2", "n3"} {
		if st := c.cores[id].Status(); len(st.Suspects) != 0 {
			t.Fatalf("%s still suspects %v after n1 came back", id, st.Suspects)
		}
	}
	n := len(c.committed["n0"])
	for range 4 * timeout {
		c.tick()
	}
	byN1 := false
	for _, b := range c.committed["n0"][n:] {
		byN1 = byN1 || b.Proposer == "n1"
	}
	if !byN1 {
		t.Fatal("no block proposed by n1 committed after it came back")
	}
}
