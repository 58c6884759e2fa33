package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// waitStep is one event of a scripted proposal-wait run, at ms
// milliseconds after the start.
type waitStep struct {
	ms   int
	kind string // "vote" (own vote for view-1 sent), "proposal", "qc", "tc" (entered view)
	view types.View
}

func TestProposalWait(t *testing.T) {
	cases := []struct {
		name  string
		steps []waitStep
		want  []string // "view:wait" or "view:timeout wait"
	}{
		{
			name:  "vote then proposal",
			steps: []waitStep{{0, "vote", 5}, {700, "proposal", 5}},
			want:  []string{"5:700ms"},
		},
		{
			// Entering v by the QC inside v's proposal: the wait started
			// at the vote, and the later view-change event starts nothing.
			name:  "proposal carries the QC",
			steps: []waitStep{{0, "vote", 5}, {30, "proposal", 5}, {30, "qc", 5}, {2000, "proposal", 6}},
			want:  []string{"5:30ms"},
		},
		{
			name:  "view ends by TC without a proposal",
			steps: []waitStep{{0, "tc", 5}, {1500, "tc", 6}},
			want:  []string{"5:timeout 1.5s"},
		},
		{
			// The TC comes inside the next view's proposal, which the loop
			// handles before the view change: view 5 still timed out.
			name:  "TC inside the next proposal",
			steps: []waitStep{{0, "vote", 5}, {1200, "proposal", 6}, {1200, "tc", 6}},
			want:  []string{"5:timeout 1.2s"},
		},
		{
			name:  "view ends by TC after its proposal came",
			steps: []waitStep{{0, "tc", 5}, {100, "proposal", 5}, {1100, "tc", 6}, {1400, "proposal", 6}},
			want:  []string{"5:100ms", "6:300ms"},
		},
		{
			// Entered by a QC without the proposal (fetched later): the
			// view is not waited for any more, nothing is reported.
			name:  "QC without the proposal",
			steps: []waitStep{{0, "vote", 5}, {900, "qc", 6}, {950, "proposal", 5}},
		},
		{
			name:  "the earlier of vote and entry",
			steps: []waitStep{{0, "vote", 7}, {400, "tc", 7}, {600, "proposal", 7}},
			want:  []string{"7:600ms"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w proposalWait
			t0 := time.Unix(1000, 0)
			var got []string
			for _, s := range tc.steps {
				at := t0.Add(time.Duration(s.ms) * time.Millisecond)
				switch s.kind {
				case "vote":
					w.start(s.view, at)
				case "proposal":
					if d, ok := w.proposal(s.view, at); ok {
						got = append(got, fmt.Sprintf("%d:%s", s.view, d))
					}
				case "qc", "tc":
					if d, ok := w.entered(s.view, s.kind == "tc", at); ok {
						got = append(got, fmt.Sprintf("%d:timeout %s", s.view-1, d))
					}
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("reported %v, want %v", got, tc.want)
			}
		})
	}
}

// TestProposalWaitBounded: waits that never end do not pile up.
func TestProposalWaitBounded(t *testing.T) {
	var w proposalWait
	t0 := time.Unix(1000, 0)
	for v := range types.View(10 * maxWaitViews) {
		w.start(v+1, t0)
	}
	if len(w.starts) > maxWaitViews {
		t.Fatalf("%d waits kept, bound %d", len(w.starts), maxWaitViews)
	}
	if _, ok := w.entered(20*maxWaitViews, true, t0); ok || len(w.starts) != 1 {
		t.Fatalf("after entering a far view: %d waits kept, want only the new view's", len(w.starts))
	}
}

// countWaits returns the observations of leader's views: proposals that
// came and views that timed out.
func countWaits(obs []ProposalWaitObservation, leader types.NodeID) (came, timedOut int) {
	for _, o := range obs {
		switch {
		case o.Leader != leader:
		case o.TimedOut:
			timedOut++
		default:
			came++
		}
	}
	return came, timedOut
}

// TestProposalWaitObservations: replicas report the waits for the other
// leaders' proposals, never their own, and the views of a stopped leader
// as timed out.
func TestProposalWaitObservations(t *testing.T) {
	recs := newObservations[ProposalWaitObservation]()
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.Rotation = RotationRoundRobin
		cfg.OnProposalWait = recs.hook(cfg.ID)
	})
	c.mustWrite(c.nodes[0], "a", "1")
	n4 := c.byID("node-4")
	sum := func(leader types.NodeID) (came, timedOut int) {
		for _, nd := range c.nodes[:3] {
			a, b := countWaits(recs.of(nd.id), leader)
			came, timedOut = came+a, timedOut+b
		}
		return came, timedOut
	}
	waitFor(t, 20*time.Second, "waits for node-4's proposals observed", func() (bool, string) {
		came, _ := sum(n4.id)
		return came > 0, fmt.Sprintf("%d", came)
	})
	c.stop(n4)
	waitFor(t, 30*time.Second, "node-4's views reported timed out", func() (bool, string) {
		_, timedOut := sum(n4.id)
		return timedOut >= 2, fmt.Sprintf("%d", timedOut)
	})
	for _, nd := range c.nodes[:3] {
		if came, timedOut := countWaits(recs.of(nd.id), nd.id); came+timedOut != 0 {
			t.Fatalf("%s reported %d waits for its own proposals", nd.id, came+timedOut)
		}
	}
	for _, nd := range c.nodes[:3] {
		for _, o := range recs.of(nd.id) {
			if o.TimedOut && o.Wait <= 0 {
				t.Fatalf("%s: view %d of %s timed out after %s", nd.id, o.View, o.Leader, o.Wait)
			}
		}
	}
}

// TestProposeAllowance: the proposal wait is counted less what a correct
// leader may hold a block back: the idle delay when empty, the batch delay
// (capped at half the view timeout) while the block has room, nothing when
// it is full.
func TestProposeAllowance(t *testing.T) {
	c := Config{IdlePropose: 200 * time.Millisecond, MaxBatch: 4, MaxBatchDelay: 30 * time.Millisecond, ViewChangeTimeout: time.Second}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, 200 * time.Millisecond}, {1, 30 * time.Millisecond}, {3, 30 * time.Millisecond}, {4, 0}} {
		if got := c.proposeAllowance(tc.n); got != tc.want {
			t.Errorf("%d commands: allowance %s, want %s", tc.n, got, tc.want)
		}
	}
	c.MaxBatchDelay = 2 * time.Second
	if got := c.proposeAllowance(1); got != 500*time.Millisecond {
		t.Errorf("batch delay above half the view timeout: allowance %s, want 500ms", got)
	}
}
