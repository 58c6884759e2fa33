//go:build byzantine

package raftengine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/tandem-consensus/tandem/smr"
)

// signingEngine is an engine with a signing key and no Raft, enough for
// misbehaveTransport.
func signingEngine(t *testing.T) *Engine {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{logger: slog.New(slog.DiscardHandler)}
	e.cfg.Signer = priv
	return e
}

// TestEquivocatorKeepsPreVote: the equivocating wrapper offers Raft the
// pre-vote RPC exactly when the wrapped transport does, so the Byzantine
// node campaigns the way the correct ones do.
func TestEquivocatorKeepsPreVote(t *testing.T) {
	saved := byzEquivocate
	byzEquivocate = true
	defer func() { byzEquivocate = saved }()
	e := signingEngine(t)
	_, inmem := raft.NewInmemTransport("")
	got := e.misbehaveTransport(inmem)
	if _, ok := got.(raft.WithPreVote); !ok {
		t.Fatalf("misbehaveTransport(%T) = %T, which hides the pre-vote RPC", inmem, got)
	}
	if _, ok := got.(raft.WithClose); !ok {
		t.Fatalf("%T hides Close", got)
	}

	var noPreVote struct{ raft.Transport }
	noPreVote.Transport = inmem
	if _, ok := e.misbehaveTransport(noPreVote).(raft.WithPreVote); ok {
		t.Fatal("the wrapper offers pre-votes its transport cannot send")
	}
}

// TestDisruptorHidesPreVote: disrupt-elections hides the pre-vote RPC
// (this node's Raft then campaigns with real votes), whatever else wraps
// the transport, and keeps Close.
func TestDisruptorHidesPreVote(t *testing.T) {
	savedEq, savedDis := byzEquivocate, byzDisrupt
	defer func() { byzEquivocate, byzDisrupt = savedEq, savedDis }()
	e := signingEngine(t)
	_, inmem := raft.NewInmemTransport("")
	for _, eq := range []bool{false, true} {
		byzEquivocate, byzDisrupt = eq, true
		got := e.misbehaveTransport(inmem)
		if _, ok := got.(raft.WithPreVote); ok {
			t.Fatalf("equivocate=%v: %T still offers the pre-vote RPC", eq, got)
		}
		if _, ok := got.(raft.WithClose); !ok {
			t.Fatalf("equivocate=%v: %T hides Close", eq, got)
		}
	}
}

// TestDisruptedElectionsAreReported: a follower that asks for real votes
// of ever higher terms while the leader is alive is reported by the RPC
// inspector of every other member, with a new term each time, and writes
// still commit.
func TestDisruptedElectionsAreReported(t *testing.T) {
	var mu sync.Mutex
	terms := map[string]map[uint64]bool{} // observer -> disruptive terms of the disruptor
	var disruptor string
	c := newClusterFull(t, 3, fastRaft(), false, nil, func(node string, o PeerObservation) {
		mu.Lock()
		defer mu.Unlock()
		if o.Kind == ObservedElectionDisruption && o.From == disruptor {
			if terms[node] == nil {
				terms[node] = map[uint64]bool{}
			}
			terms[node][o.Term] = true
		}
	})
	c.bootstrap()
	leader := c.leader()
	c.propose(2)
	var x *testNode
	for _, n := range c.nodes {
		if n != leader {
			x = n
			break
		}
	}
	mu.Lock()
	disruptor = x.id
	mu.Unlock()
	x.e.startDisrupting()
	waitFor(t, "three disruptive elections reported by both other members", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(terms) != 2 {
			return false
		}
		for _, ts := range terms {
			if len(ts) < 3 {
				return false
			}
		}
		return true
	})
	c.propose(3)
	c.converged(c.leader())
}

// TestBlockSwitchAppendsNothing: with block-switch the leader's
// ProposeEpochSwitch returns once its context ends, without touching Raft
// (the engine here has none: reaching it would panic).
func TestBlockSwitchAppendsNothing(t *testing.T) {
	saved := byzBlock
	byzBlock = true
	defer func() { byzBlock = saved }()
	e := &Engine{logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.ProposeEpochSwitch(ctx, &smr.EpochSwitch{Epoch: 2, Mode: smr.ModeBFT, Reason: "test"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ProposeEpochSwitch with block-switch: %v, want context.Canceled", err)
	}
}
