package engine

import (
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
)

// deferredSafety is the safety.Store the engine's Rules write to. Save only
// keeps the data; processReady writes it to the safety file, in parallel
// with the block store's transaction, before any message of the Ready
// leaves (the order etcd raft keeps for HardState: persist, then send).
// Every vote, timeout and proposal Rules signs travels in a Ready, so none
// leaves before its safety data is durable, which is what the safety
// kernel requires; and a view costs one wait for both files instead of
// one after the other.
//
// A crash before flush loses only signatures that never left. A failed
// flush halts the engine (processReady's error) with the messages unsent.
// Save and flush run on the engine's loop only (flush perhaps in a
// goroutine the loop waits for), never concurrently.
type deferredSafety struct {
	file    safety.Store
	pending *safety.SafetyData
}

var _ safety.Store = (*deferredSafety)(nil)

func (s *deferredSafety) Load() (safety.SafetyData, error) { return s.file.Load() }

// Save keeps d for the next flush (Rules does not change it afterwards:
// safety.Store).
func (s *deferredSafety) Save(d safety.SafetyData) error {
	s.pending = &d
	return nil
}

// dirty reports whether data awaits a flush.
func (s *deferredSafety) dirty() bool { return s.pending != nil }

// flush makes the latest saved data durable.
func (s *deferredSafety) flush() error {
	if s.pending == nil {
		return nil
	}
	if err := s.file.Save(*s.pending); err != nil {
		return fmt.Errorf("persist safety data: %w", err)
	}
	s.pending = nil
	return nil
}
