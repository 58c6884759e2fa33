package raftengine

import (
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/smr"
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
	// bytes and entries count the entries applied since the last
	// snapshot or restore (their data and extensions); onApplied, when
	// set, gets bytes after each batch (size.go).
	bytes, entries atomic.Uint64
	onApplied      func(bytes uint64)
}

var _ raft.BatchingFSM = (*fsm)(nil)

// Preparer is a StateMachine that splits Apply in two: Prepare, the checks
// that depend on an entry's bytes alone, and ApplyPrepared, the execution.
// The engine prepares the entries of a committed batch on several cores,
// then applies them in log order. *smr.StateMachine implements it.
type Preparer interface {
	Prepare(data []byte) *smr.Prepared
	ApplyPrepared(index uint64, p *smr.Prepared) []smr.Result
}

// Apply applies one entry (hashicorp/raft calls ApplyBatch instead).
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// prepared is an entry after the checks that need its bytes alone.
type prepared struct {
	sm      *smr.Prepared
	verdict verdict
}

// ApplyBatch applies a batch of committed entries. First, on up to
// GOMAXPROCS goroutines, it runs every command entry's stateless checks:
// its leader attestation's signature (when member keys are known) and the
// state machine's Prepare (decoding, client signatures). Then, in log
// order, it completes the attestation checks and applies each entry. An
// entry's response is its []smr.Result from a Preparer (one per envelope
// of a batch entry), else its smr.Result; nil for Raft's own entry types.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	pre := make([]prepared, len(logs))
	pr, _ := f.sm.(Preparer)
	f.prepare(logs, pre, pr)
	var size uint64
	for _, l := range logs {
		size += uint64(len(l.Data) + len(l.Extensions))
	}
	f.entries.Add(uint64(len(logs)))
	bytes := f.bytes.Add(size)
	if f.onApplied != nil {
		defer f.onApplied(bytes)
	}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if f.checker != nil {
			c := f.checker.finish(l, pre[i].verdict)
			if f.onCheck != nil {
				f.onCheck(c)
			}
		}
		if pr != nil {
			out[i] = pr.ApplyPrepared(f.base+l.Index, pre[i].sm)
		} else {
			out[i] = f.sm.Apply(f.base+l.Index, l.Data)
		}
	}
	return out
}

// prepare fills pre for the command entries of logs, in parallel when
// there are several.
func (f *fsm) prepare(logs []*raft.Log, pre []prepared, pr Preparer) {
	one := func(i int) {
		l := logs[i]
		if l.Type != raft.LogCommand {
			return
		}
		var valid func() bool
		if pr != nil {
			pre[i].sm = pr.Prepare(l.Data)
			valid = pre[i].sm.ClientPayloadValid
		}
		if f.checker != nil {
			pre[i].verdict = f.checker.verify(l, valid)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(logs))
	if workers <= 1 {
		for i := range logs {
			one(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < len(logs); i = int(next.Add(1)) - 1 {
				one(i)
			}
		}()
	}
	wg.Wait()
}

// Snapshot captures the state machine's bytes; Persist writes them later,
// concurrently with Apply, which is safe because the bytes are a copy.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("state machine snapshot: %w", err)
	}
	// Raft calls Snapshot and ApplyBatch on one goroutine: the count
	// covers exactly the entries this snapshot holds.
	f.bytes.Store(0)
	f.entries.Store(0)
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
	f.bytes.Store(0)
	f.entries.Store(0)
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

// Compile-time check: the state machine prepares.
var _ Preparer = (*smr.StateMachine)(nil)
