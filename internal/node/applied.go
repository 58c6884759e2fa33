package node

import (
	"context"
	"sync"

	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/smr"
)

// appliedFSM wraps the state machine so that readers can wait for an index
// to be applied locally (a follower serving a linearizable read waits for
// the read index the leader confirmed).
type appliedFSM struct {
	*smr.StateMachine

	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every Apply/Restore

	w watchers // envelopes a bft write waits for (bftreply.go)

	// applyMu is held while an entry is applied or a state restored, so
	// that the unswitched gate (handoff.go) closes at exactly the index
	// applied last: no entry is half applied when it reads it.
	// Only auto mode has a gate, so only there is it taken.
	applyMu sync.Mutex

	// gate is auto mode's selector (epoch.go), nil in the other modes:
	// once the entry that ends the epoch is applied, the engine of that
	// epoch applies nothing more. Set before any engine starts.
	gate *selector

	// tamper is the test-only corrupt-state behaviour of the byzantine
	// build (state_byzantine_on.go); nil in a correct build. Set before
	// any engine starts.
	tamper func(index uint64, p *smr.Prepared) *smr.Prepared

	// ckpt sees every applied index on the apply goroutine and captures
	// the periodic checkpoints (checkpoint.go); nil when they are off.
	// Set before any engine starts.
	ckpt *checkpointer
}

func newAppliedFSM(sm *smr.StateMachine) *appliedFSM {
	return &appliedFSM{StateMachine: sm, changed: make(chan struct{})}
}

// Apply is called by the engine's apply goroutine (the HotStuff engine;
// the Raft engine calls ApplyPrepared). It returns the last Result of a
// batch entry, as smr.StateMachine.Apply does.
func (f *appliedFSM) Apply(index uint64, data []byte) smr.Result {
	res := f.ApplyPrepared(index, f.Prepare(data))
	return res[len(res)-1]
}

// ApplyPrepared is Apply for an entry the engine prepared, with one Result
// per envelope of a batch entry. It must be defined here: the embedded
// state machine's would skip the epoch gate and the watchers.
func (f *appliedFSM) ApplyPrepared(index uint64, p *smr.Prepared) []smr.Result {
	f.lockApply()
	defer f.unlockApply()
	data := p.Data()
	if f.gate != nil {
		if r, ended := f.gate.refuse(index); ended {
			res := make([]smr.Result, p.Results())
			for i := range res {
				res[i] = r
			}
			return res
		}
	}
	if f.tamper != nil {
		p = f.tamper(index, p)
	}
	res := f.StateMachine.ApplyPrepared(index, p)
	if len(res) == 1 && res[0].Code == smr.CodeOK && isEpochSwitch(data) {
		res[0] = f.gate.observe(index, data, res[0])
	}
	if f.ckpt != nil {
		f.ckpt.captured(index, f.StateMachine)
	}
	f.notify(p.Envelopes(), res)
	f.broadcast()
	return res
}

// lockApply takes applyMu when there is a gate (auto mode); without a
// gate nothing needs it. unlockApply releases it.
func (f *appliedFSM) lockApply() {
	if f.gate != nil {
		f.applyMu.Lock()
	}
}

func (f *appliedFSM) unlockApply() {
	if f.gate != nil {
		f.applyMu.Unlock()
	}
}

// Restore is called by the engine when it installs a snapshot.
func (f *appliedFSM) Restore(b []byte) error {
	f.lockApply()
	err := f.StateMachine.Restore(b)
	f.unlockApply()
	if err == nil && f.ckpt != nil {
		f.ckpt.restored(f.AppliedIndex())
	}
	f.broadcast()
	return err
}

func (f *appliedFSM) broadcast() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// waitApplied returns once AppliedIndex() >= index or ctx ends.
func (f *appliedFSM) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if f.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// The Raft engine must see appliedFSM's ApplyPrepared, not the embedded
// state machine's.
var _ raftengine.Preparer = (*appliedFSM)(nil)
