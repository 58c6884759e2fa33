package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// pollStep is one heartbeat poll of a scripted run: the poll comes gap
// after the previous one and sees c (lastContact given as its age).
type pollStep struct {
	gap    time.Duration
	role   string
	leader string
	term   uint64
	age    time.Duration // time since the leader's last contact; <0: none yet
}

// runPolls runs steps through a poller and returns when each verdict came
// (relative to the start) and for which leader; every verdict is taken as
// an accusation.
func runPolls(steps []pollStep) (at []time.Duration, leaders []string) {
	p := newHeartbeatPoller("n1")
	t0 := time.Unix(1_000_000, 0)
	now := t0
	for _, s := range steps {
		now = now.Add(s.gap)
		c := raftengine.Contact{Follower: s.role == "follower", LeaderID: s.leader, Term: s.term}
		if s.age >= 0 {
			c.LastContact = now.Add(-s.age)
		}
		if v, ok := p.poll(now, c, 500*time.Millisecond); ok {
			p.accusedAt(v.leader, now)
			at = append(at, now.Sub(t0))
			leaders = append(leaders, v.leader)
		}
	}
	return at, leaders
}

// follow returns n polls every hbPollEvery of a follower of leader in
// term, the leader's contacts coming every contactEvery.
func follow(n int, leader string, term uint64, contactEvery time.Duration) []pollStep {
	steps := make([]pollStep, n)
	for i := range steps {
		elapsed := time.Duration(i) * hbPollEvery
		steps[i] = pollStep{gap: hbPollEvery, role: "follower", leader: leader, term: term, age: elapsed % contactEvery}
	}
	return steps
}

// withStalls makes this node stall for stall every `every` polls: the
// poll after a stall comes late, and the leader's contact looks as old as
// the stall for the following polls too (Raft catching up).
func withStalls(steps []pollStep, every int, stall time.Duration) []pollStep {
	for i := every; i < len(steps); i += every {
		steps[i].gap += stall
		for j := i; j < min(i+5, len(steps)); j++ {
			steps[j].age += stall
		}
	}
	return steps
}

func TestHeartbeatPoller(t *testing.T) {
	perMinute := int(time.Minute / hbPollEvery)
	var leaderChanges []pollStep
	for i := range 20 { // a new leader every 3 s, each one slow
		leaderChanges = append(leaderChanges, follow(60, []string{"n2", "n3"}[i%2], uint64(i+1), 800*time.Millisecond)...)
	}
	var notFollowing []pollStep
	for i, role := range []string{"leader", "candidate", "follower", "follower"} {
		for range perMinute / 4 {
			s := pollStep{gap: hbPollEvery, role: role, leader: "n2", term: 1, age: 900 * time.Millisecond}
			switch i {
			case 0:
				s.leader = "n1" // this node leads
			case 1:
				s.leader = "" // an election
			case 2:
				s.leader = "" // no leader known yet (start)
			case 3:
				s.age = -1 // a leader, but no contact yet
			}
			notFollowing = append(notFollowing, s)
		}
	}
	cases := []struct {
		name    string
		steps   []pollStep
		want    []time.Duration // verdict times
		leaders []string
	}{
		{name: "healthy leader", steps: follow(2*perMinute, "n2", 1, 100*time.Millisecond)},
		{name: "contacts every 400 ms: p99 below the bound", steps: follow(2*perMinute, "n2", 1, 400*time.Millisecond)},
		{
			// Contacts every 800 ms: 5 of every 16 samples above 500 ms.
			// The first verdict needs hbMinSamples samples (the first poll
			// only starts the leader's samples), then one per
			// latencyAccuseEvery.
			name:    "slow leader, rate limited",
			steps:   follow(30*int(time.Second/hbPollEvery), "n2", 1, 800*time.Millisecond),
			want:    []time.Duration{time.Duration(hbMinSamples+1) * hbPollEvery, time.Duration(hbMinSamples+1)*hbPollEvery + latencyAccuseEvery, time.Duration(hbMinSamples+1)*hbPollEvery + 2*latencyAccuseEvery},
			leaders: []string{"n2", "n2", "n2"},
		},
		{name: "slow leaders that change every 3 s", steps: leaderChanges},
		{name: "this node stalls", steps: withStalls(follow(2*perMinute, "n2", 1, 100*time.Millisecond), 40, 2*time.Second)},
		{name: "not following a leader", steps: notFollowing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, leaders := runPolls(tc.steps)
			if !slices.Equal(at, tc.want) || !slices.Equal(leaders, tc.leaders) {
				t.Fatalf("verdicts at %v for %v, want at %v for %v", at, leaders, tc.want, tc.leaders)
			}
		})
	}
}

// TestHeartbeatPollerStallDropsSamples: without the stall check the same
// run would accuse, so the check is what keeps it quiet.
func TestHeartbeatPollerStallDropsSamples(t *testing.T) {
	steps := withStalls(follow(2*int(time.Minute/hbPollEvery), "n2", 1, 100*time.Millisecond), 40, 2*time.Second)
	// The same contact ages with the poller on time: the leader looks slow.
	onTime := slices.Clone(steps)
	for i := range onTime {
		onTime[i].gap = hbPollEvery
	}
	if at, _ := runPolls(onTime); len(at) == 0 {
		t.Fatal("the ages of the stalled run, polled on time, accuse no one: the stall case proves nothing")
	}
	if at, _ := runPolls(steps); len(at) != 0 {
		t.Fatalf("this node's own stalls accused the leader at %v", at)
	}
}

// TestHeartbeatPollerLeaderChangeKeepsRateLimit: a leader accused, then
// replaced and back again within latencyAccuseEvery, is not accused again
// before the limit; its samples start afresh in the new term.
func TestHeartbeatPollerLeaderChangeKeepsRateLimit(t *testing.T) {
	slow := 800 * time.Millisecond
	steps := follow(hbMinSamples+1, "n2", 1, slow)                  // accused at the end
	steps = append(steps, follow(20, "n3", 2, slow)...)             // 1 s of another leader
	steps = append(steps, follow(hbMinSamples+1, "n2", 3, slow)...) // back: 5 s, limit not over
	steps = append(steps, follow(hbMinSamples, "n2", 3, slow)...)   // later: limit over
	at, leaders := runPolls(steps)
	if len(at) != 2 || !slices.Equal(leaders, []string{"n2", "n2"}) || at[1]-at[0] < latencyAccuseEvery {
		t.Fatalf("verdicts at %v for %v, want two of n2 at least %s apart", at, leaders, latencyAccuseEvery)
	}
}

// TestProposalWaitAccusesLeader: waits for n4's proposals above the
// bound, while n3's are within it, make n1 sign one heartbeat-latency
// accusation per latencyAccuseEvery; n3's prompt proposals, a single
// sample, self and non-members make none.
func TestProposalWaitAccusesLeader(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	t0 := f.clock
	obs := func(at time.Time, leader string, wait time.Duration, timedOut bool) {
		d.observe(ctx, observation{at: at, other: proposalWait{Leader: types.NodeID(leader), View: 1, Wait: wait, TimedOut: timedOut}})
	}
	for i := range latencyMinSamples - 1 {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		obs(at, "n4", 700*time.Millisecond, i%2 == 0)
		obs(at, "n3", 20*time.Millisecond, false)
		obs(at, "n1", 2*time.Second, true)
		obs(at, "nobody", 2*time.Second, true)
	}
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); len(got) != 0 {
		t.Fatalf("accusations before %d samples: %v", latencyMinSamples, got)
	}
	at := t0.Add(2 * time.Second)
	obs(at, "n3", 20*time.Millisecond, false)
	obs(at, "n4", 700*time.Millisecond, false)
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want n1>n4", got)
	}
	obs(at.Add(latencyAccuseEvery-time.Millisecond), "n4", 700*time.Millisecond, false)
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); len(got) != 1 {
		t.Fatalf("accusations within the rate limit: %v", got)
	}
	obs(at.Add(latencyAccuseEvery), "n4", 700*time.Millisecond, false)
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); len(got) != 2 {
		t.Fatalf("accusations after the rate limit: %v, want two", got)
	}
	for _, e := range d.evidenceList() {
		if e.Accusation.Value != int64(700*time.Millisecond) {
			t.Fatalf("accusation value %d, want the p99 %d", e.Accusation.Value, int64(700*time.Millisecond))
		}
	}
	// One accuser: a warning at most, never a quarantine.
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("quarantined %v", d.manager.IDs())
	}
}

// TestProposalWaitEveryLeaderLate: when every leader's proposals are late
// (a member withholding its votes, or this replica stalled) no leader is
// accused; once one leader's waits are back within the bound, the one that
// stays late is.
func TestProposalWaitEveryLeaderLate(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	t0 := f.clock
	obs := func(at time.Time, leader string, wait time.Duration) {
		d.observe(ctx, observation{at: at, other: proposalWait{Leader: types.NodeID(leader), View: 1, Wait: wait}})
	}
	at := t0
	for i := range 2 * latencyMinSamples {
		at = t0.Add(time.Duration(i) * 100 * time.Millisecond)
		obs(at, "n2", 700*time.Millisecond)
		obs(at, "n3", 650*time.Millisecond)
		obs(at, "n4", 800*time.Millisecond)
	}
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); len(got) != 0 {
		t.Fatalf("accusations while every leader was late: %v", got)
	}
	// n2 and n3 recover: their late waits leave the window.
	later := at.Add(latencyWindow)
	f.clock = later
	for i := range latencyMinSamples {
		at = later.Add(time.Duration(i) * 100 * time.Millisecond)
		obs(at, "n2", 20*time.Millisecond)
		obs(at, "n3", 20*time.Millisecond)
		obs(at, "n4", 800*time.Millisecond)
	}
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want n1>n4", got)
	}
}

// TestHeartbeatThresholdFollowsTheTable: the cft poller judges the p99
// against the scoring table in effect, so a new table applies to the next
// poll: a leader whose contacts come every 800 ms is within a 1 s bound
// and accused once the bound is back at 500 ms.
func TestHeartbeatThresholdFollowsTheTable(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	d.hb = newHeartbeatPoller(d.self)
	ctx := context.Background()
	setThreshold := func(th time.Duration) {
		t.Helper()
		c := score.Default()
		c.HeartbeatLatencyP99.Threshold = int64(th)
		if err := d.setScore(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	t0 := f.clock
	poll := func(n int) {
		for range n {
			f.clock = f.clock.Add(hbPollEvery)
			age := f.clock.Sub(t0) % (800 * time.Millisecond)
			d.pollHeartbeat(ctx, raftengine.Contact{Follower: true, LeaderID: "n2", Term: 1, LastContact: f.clock.Add(-age)})
		}
	}
	setThreshold(time.Second)
	poll(3 * hbMinSamples)
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); len(got) != 0 {
		t.Fatalf("accusations %v under a 1 s bound", got)
	}
	setThreshold(500 * time.Millisecond)
	poll(1)
	if got := accusationsBy(d, evidence.MetricHeartbeatLatencyP99); !slices.Equal(got, []string{"n1>n2"}) {
		t.Fatalf("accusations %v under a 500 ms bound, want n1>n2", got)
	}
}
