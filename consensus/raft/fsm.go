package raftengine

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// fsm adapts a StateMachine to raft.FSM.
type fsm struct {
	sm       StateMachine
	maxBytes int64
	// checker and onCheck check command entries' leader attestations
	// (nil: not checked).
	checker *checker
	onCheck func(AttestationCheck)
	base    uint64 // Config.IndexBase
}

var _ raft.FSM = (*fsm)(nil)

// Apply checks a command entry's leader attestation (when member keys are
// known), then hands the entry to the state machine and returns its
// smr.Result, which becomes the ApplyFuture's response. Raft sends no other
// entry types to a non-batching FSM; any that arrive are ignored.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if f.checker != nil {
		c := f.checker.check(l)
		if f.onCheck != nil {
			f.onCheck(c)
		}
	}
	return f.sm.Apply(f.base+l.Index, l.Data)
}

// Snapshot captures the state machine's bytes; Persist writes them later,
// concurrently with Apply, which is safe because the bytes are a copy.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("state machine snapshot: %w", err)
	}
	return fsmSnapshot(b), nil
}

// Restore replaces the state with a snapshot of at most maxBytes.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := readLimited(rc, f.maxBytes)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := f.sm.Restore(b); err != nil {
		return fmt.Errorf("restore state machine: %w", err)
	}
	return nil
}

// readLimited reads all of r, failing if it holds more than max bytes.
func readLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("snapshot is larger than the limit of %d bytes", max)
	}
	return b, nil
}

// fsmSnapshot is a state machine snapshot held in memory.
type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot %s: %w", sink.ID(), err)
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}
