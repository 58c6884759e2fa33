//go:build byzantine

package raftengine

import (
	"crypto/ed25519"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
)

// TestEquivocatorKeepsPreVote: the equivocating wrapper offers Raft the
// pre-vote RPC exactly when the wrapped transport does, so the Byzantine
// node campaigns the way the correct ones do.
func TestEquivocatorKeepsPreVote(t *testing.T) {
	saved := byzEquivocate
	byzEquivocate = true
	defer func() { byzEquivocate = saved }()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{logger: slog.New(slog.DiscardHandler)}
	e.cfg.Signer = priv

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
