package leaderrotation

import (
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

var four = []types.NodeID{"n0", "n1", "n2", "n3"}

// TestRoundRobinDeterministic: the order members are given in does not
// matter, quarantined members are skipped, and the schedule stays a
// rotation over the others.
func TestRoundRobinDeterministic(t *testing.T) {
	a := NewRoundRobin(four)
	b := NewRoundRobin([]types.NodeID{"n3", "n1", "n0", "n2", "n1"})
	for v := range types.View(50) {
		if a.Leader(v) != b.Leader(v) {
			t.Fatalf("view %d: %s vs %s", v, a.Leader(v), b.Leader(v))
		}
	}
	if got := a.Leader(6); got != "n2" {
		t.Fatalf("leader(6) = %s, want n2", got)
	}
	a.SetQuarantined([]types.NodeID{"n2"})
	seen := map[types.NodeID]int{}
	for v := range types.View(30) {
		seen[a.Leader(v)]++
	}
	if seen["n2"] != 0 || seen["n0"] != 10 || seen["n1"] != 10 || seen["n3"] != 10 {
		t.Fatalf("with n2 quarantined: %v", seen)
	}
	a.SetQuarantined(four)
	if a.Leader(1) != "n1" {
		t.Fatal("with everyone quarantined the rotation falls back to all members")
	}
}

func TestFixed(t *testing.T) {
	f := &Fixed{Schedule: map[types.View]types.NodeID{3: "n0"}, Fallback: NewRoundRobin(four)}
	if f.Leader(3) != "n0" || f.Leader(2) != "n2" {
		t.Fatal("fixed schedule not applied")
	}
}

// simulate runs views 1..views where every view led by a member in down
// fails and every other view commits a block, delivered to the rotation
// lag views later. It returns the leader of each view as asked at the time.
func simulate(r *Reputation, views int, down map[types.NodeID]bool, lag int) []types.NodeID {
	leaders := make([]types.NodeID, views+1)
	var pending []types.View
	for v := 1; v <= views; v++ {
		for len(pending) > 0 && int(pending[0])+lag <= v {
			r.CommittedView(pending[0])
			pending = pending[1:]
		}
		l := r.Leader(types.View(v))
		leaders[v] = l
		if !down[l] {
			pending = append(pending, types.View(v))
		}
	}
	return leaders
}

// TestReputationAvoidsFailedLeader: with n2 down, round-robin gives it a
// quarter of all views; the reputation rotation gives it only the views
// after its failure has slid out of the window.
func TestReputationAvoidsFailedLeader(t *testing.T) {
	cfg := ReputationConfig{Window: 20, Lag: 4}
	r := NewReputation(four, cfg)
	leaders := simulate(r, 400, map[types.NodeID]bool{"n2": true}, 3)
	n2 := 0
	for v := 100; v <= 400; v++ {
		if leaders[v] == "n2" {
			n2++
		}
	}
	// Each time its failure leaves the window it gets a view or two before
	// the new failure is judged (commits arrive a few views late).
	if n2 > 2*300/cfg.Window+2 {
		t.Fatalf("n2 (down) led %d of 300 views; round-robin would give 75", n2)
	}
	if n2 == 0 {
		t.Fatal("n2 never got another chance: a failed leader must come back after the window")
	}
}

// TestReputationIsRoundRobinWithoutFailures.
func TestReputationIsRoundRobinWithoutFailures(t *testing.T) {
	r := NewReputation(four, DefaultReputationConfig(4))
	rr := NewRoundRobin(four)
	leaders := simulate(r, 200, nil, 3)
	for v := 1; v <= 200; v++ {
		if leaders[v] != rr.Leader(types.View(v)) {
			t.Fatalf("view %d: %s, round-robin %s", v, leaders[v], rr.Leader(types.View(v)))
		}
	}
}

// TestReputationDeterministic: a replica that learned the committed chain
// as it went and a replica that learns it all at once (a restart replaying
// the chain) agree on every leader whose window was committed and is still
// remembered (the last 2·(Window+Lag) views below the highest commit).
func TestReputationDeterministic(t *testing.T) {
	cfg := ReputationConfig{Window: 12, Lag: 4}
	live := NewReputation(four, cfg)
	down := map[types.NodeID]bool{"n1": true, "n3": true}
	asked := simulate(live, 300, down, 3)
	replay := NewReputation([]types.NodeID{"n3", "n2", "n1", "n0"}, cfg)
	// The committed views are exactly those whose leader was up.
	for v := 1; v <= 300-3; v++ {
		if !down[asked[v]] {
			replay.CommittedView(types.View(v))
		}
	}
	for v := 300 - 2*(cfg.Window+cfg.Lag); v <= 300-4; v++ {
		if got := replay.Leader(types.View(v)); got != asked[v] {
			t.Fatalf("view %d: live replica chose %s, replaying replica %s", v, asked[v], got)
		}
	}
}

// TestReputationQuarantine: a quarantined member is never chosen, even when
// it has a perfect record.
func TestReputationQuarantine(t *testing.T) {
	r := NewReputation(four, DefaultReputationConfig(4))
	simulate(r, 50, nil, 3)
	r.SetQuarantined([]types.NodeID{"n1"})
	for v := types.View(51); v < 80; v++ {
		if r.Leader(v) == "n1" {
			t.Fatalf("view %d: quarantined n1 chosen", v)
		}
	}
	r.SetQuarantined(four)
	if r.Leader(81) == "" {
		t.Fatal("no leader when everyone is quarantined")
	}
	if err := (ReputationConfig{Window: 0, Lag: 1}).Validate(); err == nil {
		t.Fatal("window 0 accepted")
	}
}

// TestReputationAgreesAcrossCommitLag: two replicas that learn commits at
// different delays agree on every leader as long as the delay stays below
// Lag (the normal case: a 3-chain commits about 3 views after proposing).
func TestReputationAgreesAcrossCommitLag(t *testing.T) {
	cfg := ReputationConfig{Window: 10, Lag: 6}
	fast, slow := NewReputation(four, cfg), NewReputation(four, cfg)
	down := map[types.NodeID]bool{"n0": true}
	var committed []types.View
	for v := types.View(1); v <= 300; v++ {
		for _, c := range committed {
			if c+3 == v {
				fast.CommittedView(c)
			}
			if c+5 == v {
				slow.CommittedView(c)
			}
		}
		a, b := fast.Leader(v), slow.Leader(v)
		if a != b {
			t.Fatalf("view %d: %s vs %s", v, a, b)
		}
		if !down[a] {
			committed = append(committed, v)
		}
	}
}
