package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestBenchFailoverValidate(t *testing.T) {
	ok := benchFailoverOptions{local: 4, mode: "bft", rounds: 1, clients: 1, viewTimeout: time.Second, settle: time.Second, poll: time.Millisecond, roundTimeout: time.Minute}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		mod  func(*benchFailoverOptions)
		want string
	}{
		{"mode", func(o *benchFailoverOptions) { o.mode = "raft" }, "--mode"},
		{"bft too small", func(o *benchFailoverOptions) { o.local = 3 }, "--local"},
		{"cft too small", func(o *benchFailoverOptions) { o.mode, o.local = "cft", 2 }, "--local"},
		{"rounds", func(o *benchFailoverOptions) { o.rounds = 0 }, "--rounds"},
		{"clients", func(o *benchFailoverOptions) { o.clients = 0 }, "--clients"},
		{"view timeout", func(o *benchFailoverOptions) { o.viewTimeout = 10 * time.Millisecond }, "--view-timeout"},
		{"raft", func(o *benchFailoverOptions) { o.raftElection = -time.Second }, "--raft-election"},
		{"poll", func(o *benchFailoverOptions) { o.poll = 0 }, "--poll"},
		{"raft flag in bft", func(o *benchFailoverOptions) { o.raftLease = 100 * time.Millisecond }, "--mode cft only"},
		{"negative lease", func(o *benchFailoverOptions) { o.mode, o.local, o.raftLease = "cft", 3, -time.Millisecond }, "--raft-lease"},
		{"lease too low", func(o *benchFailoverOptions) { o.mode, o.local, o.raftLease = "cft", 3, time.Millisecond }, "--raft-lease: 1ms is below"},
		{"lease over heartbeat", func(o *benchFailoverOptions) {
			o.mode, o.local, o.raftHeartbeat, o.raftElection, o.raftLease = "cft", 3, 150*time.Millisecond, 150*time.Millisecond, 200*time.Millisecond
		}, "--raft-lease: the leader lease (200ms) must not exceed the heartbeat timeout (150ms"},
		{"lease over default heartbeat", func(o *benchFailoverOptions) { o.mode, o.local, o.raftLease = "cft", 3, 2*time.Second }, "(1s, --raft-heartbeat)"},
		{"election below heartbeat", func(o *benchFailoverOptions) {
			o.mode, o.local, o.raftHeartbeat, o.raftElection = "cft", 3, 300*time.Millisecond, 150*time.Millisecond
		}, "--raft-election"},
		{"election below default heartbeat", func(o *benchFailoverOptions) { o.mode, o.local, o.raftElection = "cft", 3, 150*time.Millisecond }, "--raft-election"},
	} {
		o := ok
		c.mod(&o)
		err := o.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.want)
		}
	}
}

func TestBenchFailoverRaftConfig(t *testing.T) {
	base := benchFailoverOptions{local: 3, mode: "cft", rounds: 1, clients: 1, viewTimeout: time.Second, settle: time.Second, poll: time.Millisecond, roundTimeout: time.Minute}
	for _, c := range []struct {
		name                    string
		heartbeat, elect, lease time.Duration
		want                    map[string]any // the raft section; nil: none
	}{
		{"defaults", 0, 0, 0, nil},
		{"tuned", 150 * time.Millisecond, 150 * time.Millisecond, 100 * time.Millisecond,
			map[string]any{"heartbeat_timeout": "150ms", "election_timeout": "150ms", "leader_lease_timeout": "100ms"}},
		{"heartbeat only: lease follows it down", 200 * time.Millisecond, 300 * time.Millisecond, 0,
			map[string]any{"heartbeat_timeout": "200ms", "election_timeout": "300ms", "leader_lease_timeout": "200ms"}},
		{"lease only", 0, 0, 100 * time.Millisecond, map[string]any{"leader_lease_timeout": "100ms"}},
	} {
		o := base
		o.raftHeartbeat, o.raftElection, o.raftLease = c.heartbeat, c.elect, c.lease
		if err := o.validate(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		raft, ok := o.extraConfig()["raft"]
		if c.want == nil {
			if ok {
				t.Errorf("%s: raft section %v, want none", c.name, raft)
			}
			continue
		}
		if fmt.Sprint(raft) != fmt.Sprint(c.want) {
			t.Errorf("%s: raft section %v, want %v", c.name, raft, c.want)
		}
	}
}

func TestAckLogGap(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	l := &ackLog{}
	for _, ms := range []int{0, 10, 20, 30, 300, 310, 320} {
		l.add(at(ms), 0, nil)
	}
	// Killed at 35: nothing completes from 30 to 300.
	if got := l.gap(at(35), at(330)); got != 270*time.Millisecond {
		t.Fatalf("gap %s, want 270ms", got)
	}
	// Nothing completed after the kill yet: the gap is still open.
	l2 := &ackLog{}
	l2.add(at(0), 0, nil)
	if got := l2.gap(at(5), at(500)); got != 500*time.Millisecond {
		t.Fatalf("open gap %s, want 500ms", got)
	}
}

func TestFailoverPhaseStatus(t *testing.T) {
	start := time.Unix(1000, 0)
	var log strings.Builder
	p := &failoverPhase{rounds: 4, start: start, log: &log}
	if got := p.status(start); got != "" {
		t.Fatalf("status before the first round %q, want none", got)
	}
	p.set(3, "killed node2, waiting for a commit")
	p.done()
	p.done()
	want := "[==========          ] round 3/4: killed node2, waiting for a commit  12.5s"
	if got := p.status(start.Add(12500 * time.Millisecond)); got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
	if !strings.Contains(log.String(), `round=3 msg="killed node2, waiting for a commit"`) || !strings.HasPrefix(log.String(), "[bench] time=") {
		t.Fatalf("node log line %q", log.String())
	}
	p.done()
	p.done()
	if got, want := p.status(start.Add(20*time.Second)), "[====================] 4/4 rounds done  20.0s"; got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
}
