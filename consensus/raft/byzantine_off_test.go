//go:build !byzantine

package raftengine

import (
	"testing"

	"github.com/hashicorp/raft"
)

// TestDefaultBuildHasNoByzantineTransport: without the byzantine build tag
// Raft gets the engine's transport unchanged, whatever the environment.
func TestDefaultBuildHasNoByzantineTransport(t *testing.T) {
	t.Setenv("TANDEM_BYZANTINE", "equivocate")
	_, tr := raft.NewInmemTransport("")
	e := &Engine{}
	if got := e.misbehaveTransport(tr); got != raft.Transport(tr) {
		t.Fatalf("misbehaveTransport returned %T, want the transport itself", got)
	}
}

// TestCorrectBuildProposesEverySwitch: a correct build never drops an
// epoch switch.
func TestCorrectBuildProposesEverySwitch(t *testing.T) {
	if (&Engine{}).dropsEpochSwitch() {
		t.Fatal("a correct build drops epoch switches")
	}
}
