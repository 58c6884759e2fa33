package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// TestDeferredSafety: Save writes nothing until flush; flush writes the
// latest data once; a failed flush keeps the data for the next one.
func TestDeferredSafety(t *testing.T) {
	mem := safety.NewMemStore()
	s := &deferredSafety{file: mem}
	if s.dirty() {
		t.Fatal("a fresh store is dirty")
	}
	for v := range 3 {
		if err := s.Save(safety.SafetyData{Epoch: 1, LastVotedView: types.View(5 + v)}); err != nil {
			t.Fatal(err)
		}
	}
	if mem.Saves() != 0 || !s.dirty() {
		t.Fatalf("Save wrote through (%d saves) or is not pending", mem.Saves())
	}
	disk := errors.New("disk full")
	mem.FailSaves(disk)
	if err := s.flush(); !errors.Is(err, disk) || !s.dirty() {
		t.Fatalf("failed flush: %v, dirty %v", err, s.dirty())
	}
	mem.FailSaves(nil)
	if err := s.flush(); err != nil || s.dirty() {
		t.Fatalf("flush: %v, dirty %v", err, s.dirty())
	}
	if err := s.flush(); err != nil || mem.Saves() != 1 {
		t.Fatalf("second flush: %v, %d saves, want 1", err, mem.Saves())
	}
	d, err := s.Load()
	if err != nil || d.LastVotedView != 7 {
		t.Fatalf("loaded %+v, %v; want the last saved view 7", d, err)
	}
}

// TestGenesisBindsTheCommitRule: members configured with different commit
// rules derive different genesis blocks (so they never accept each other's
// certificates), while the default 3-chain keeps the genesis it always had.
func TestGenesisBindsTheCommitRule(t *testing.T) {
	ms := []Member{{ID: "n1", PublicKey: make([]byte, 32)}, {ID: "n2", PublicKey: make([]byte, 32)}}
	three := genesisState(1, ms, nil, core.ThreeChain)
	two := genesisState(1, ms, nil, core.TwoChain)
	if bytes.Equal(three, two) {
		t.Fatal("the 2-chain and 3-chain genesis states are equal")
	}
	if !bytes.Equal(genesisState(1, ms, nil, core.TwoChain), two) {
		t.Fatal("the genesis state is not deterministic")
	}
	// The 3-chain state is the hash of the committee alone, as before.
	h := sha256.New()
	h.Write([]byte("tandem/hotstuff/genesis/v1\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, 1))
	for _, m := range ms {
		h.Write([]byte{byte(len(m.ID))})
		h.Write([]byte(m.ID))
		h.Write(m.PublicKey)
	}
	if !bytes.Equal(h.Sum(nil), three) {
		t.Fatal("the default commit rule changed the genesis state")
	}
}
