package engine

import (
	"errors"
	"testing"

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
