package main

import (
	"strings"
	"testing"
	"time"
)

func switchDefaults() *benchSwitchOptions {
	return &benchSwitchOptions{local: 4, rounds: 5, clients: 4, escalation: true, viewTimeout: time.Second,
		settle: 2 * time.Second, poll: 10 * time.Millisecond, roundTimeout: time.Minute}
}

func TestBenchSwitchValidation(t *testing.T) {
	if err := switchDefaults().validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		mut  func(*benchSwitchOptions)
		want string
	}{
		{func(o *benchSwitchOptions) { o.local = 3 }, "at least 4"},
		{func(o *benchSwitchOptions) { o.local = 10 }, "--local"},
		{func(o *benchSwitchOptions) { o.basePort = 80 }, "--base-port"},
		{func(o *benchSwitchOptions) { o.rounds = 0 }, "--rounds"},
		{func(o *benchSwitchOptions) { o.clients = 0 }, "--clients"},
		{func(o *benchSwitchOptions) { o.viewTimeout = 10 * time.Millisecond }, "--view-timeout"},
		{func(o *benchSwitchOptions) { o.raftElection = -time.Second }, "must not be negative"},
		{func(o *benchSwitchOptions) { o.poll = 0 }, "must be positive"},
	} {
		o := switchDefaults()
		c.mut(o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", o, err, c.want)
		}
	}
}

func TestBenchSwitchConfig(t *testing.T) {
	o := switchDefaults()
	o.viewTimeout, o.raftHeartbeat = 300*time.Millisecond, 400*time.Millisecond
	extra := o.extraConfig()
	if extra["view_change_timeout"] != "300ms" || extra["vote_timeout"] != "100ms" {
		t.Fatalf("timeouts: %v", extra)
	}
	raft, _ := extra["raft"].(map[string]any)
	if raft["heartbeat_timeout"] != "400ms" || raft["leader_lease_timeout"] != "200ms" || raft["election_timeout"] != nil {
		t.Fatalf("raft: %v", raft)
	}
	if _, ok := switchDefaults().extraConfig()["raft"]; ok {
		t.Fatal("default Raft timeouts written into the config")
	}
}

// The write gap counts from the last write before the switch to the next
// one, and the interval still open at the end.
func TestSwitchLoadGapAndFirstCommit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l := &ackLog{}
	for _, a := range []struct {
		ms    int
		index uint64
	}{{-50, 10}, {20, 11}, {900, 15}, {950, 16}} {
		l.add(at(a.ms), a.index, nil)
	}
	if g := l.gap(t0, at(1000)); g != 880*time.Millisecond {
		t.Fatalf("gap %s, want 880ms", g)
	}
	if g := l.gap(t0, at(2000)); g != 1050*time.Millisecond {
		t.Fatalf("gap with the open interval %s, want 1050ms", g)
	}
	if a, ok := l.firstAbove(t0, 12); !ok || !a.Equal(at(900)) {
		t.Fatalf("first commit past index 12: %v %v", a, ok)
	}
	if _, ok := l.firstAbove(t0, 16); ok {
		t.Fatal("a commit past index 16 found")
	}
}
