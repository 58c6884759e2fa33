package node

import (
	"context"
	"sync"

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

	// gate is auto mode's selector (epoch.go), nil in the other modes:
	// once the entry that ends the epoch is applied, the engine of that
	// epoch applies nothing more. Set before any engine starts.
	gate *selector
}

func newAppliedFSM(sm *smr.StateMachine) *appliedFSM {
	return &appliedFSM{StateMachine: sm, changed: make(chan struct{})}
}

// Apply is called by the engine's apply goroutine.
func (f *appliedFSM) Apply(index uint64, data []byte) smr.Result {
	if f.gate != nil {
		if r, ended := f.gate.refuse(index); ended {
			return r
		}
	}
	r := f.StateMachine.Apply(index, data)
	if r.Code == smr.CodeOK && isEpochSwitch(data) {
		r = f.gate.observe(index, data, r)
	}
	f.notify(data, r)
	f.broadcast()
	return r
}

// Restore is called by the engine when it installs a snapshot.
func (f *appliedFSM) Restore(b []byte) error {
	err := f.StateMachine.Restore(b)
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
