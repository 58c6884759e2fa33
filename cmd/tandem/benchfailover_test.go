package main

import (
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
	} {
		o := ok
		c.mod(&o)
		err := o.validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.want)
		}
	}
}

func TestLoadLogGap(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	l := &loadLog{}
	for _, ms := range []int{0, 10, 20, 30, 300, 310, 320} {
		l.add(at(ms), nil)
	}
	// Killed at 35: nothing completes from 30 to 300.
	if got := l.gap(at(35), at(330)); got != 270*time.Millisecond {
		t.Fatalf("gap %s, want 270ms", got)
	}
	// Nothing completed after the kill yet: the gap is still open.
	l2 := &loadLog{}
	l2.add(at(0), nil)
	if got := l2.gap(at(5), at(500)); got != 500*time.Millisecond {
		t.Fatalf("open gap %s, want 500ms", got)
	}
}
