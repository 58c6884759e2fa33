package raftengine

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// Propose orders env through Raft and returns the smr.Result of applying it
// on this node (the leader). See consensus.Engine for the error contract:
//
//   - *consensus.NotLeaderError: this node is not the leader (or is
//     transferring leadership); nothing was appended.
//   - ErrNotEnqueued: the leader could not queue the entry within the apply
//     timeout (or ctx's deadline); nothing was appended.
//   - consensus.ErrOutcomeUnknown: the entry was handed to Raft but
//     leadership was lost, a snapshot restore aborted it, or ctx ended
//     before it was applied; it may or may not be applied.
//   - consensus.ErrStopped: the engine was stopped before the call.
func (e *Engine) Propose(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	if env == nil {
		return smr.Result{}, errors.New("raft engine: propose: envelope is nil")
	}
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewCommandEntry(t, *env) })
}

// ProposeGenesis orders the genesis entry that initializes the replicated
// state machine (the first one applied wins; later ones are refused by the
// state machine with already_initialized). Errors as for Propose.
func (e *Engine) ProposeGenesis(ctx context.Context, g smr.Genesis) (smr.Result, error) {
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewGenesisEntry(t, g) })
}

// ProposeRestore orders a restore entry: every replica checks the admin's
// signature and permission and replaces its state with the snapshot at the
// same log index. Errors as for Propose.
func (e *Engine) ProposeRestore(ctx context.Context, r *smr.Restore) (smr.Result, error) {
	if r == nil {
		return smr.Result{}, errors.New("raft engine: propose restore: restore is nil")
	}
	return e.proposeEntry(ctx, func(t int64) smr.Entry { return smr.NewRestoreEntry(t, *r) })
}

// proposeEntry stamps the entry built by mk with the leader's time, signs
// it (attest.go), hands it to Raft and waits for its Result.
func (e *Engine) proposeEntry(ctx context.Context, mk func(t int64) smr.Entry) (smr.Result, error) {
	if err := e.leaderOnly(); err != nil {
		return smr.Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return smr.Result{}, fmt.Errorf("raft engine: propose: %w: %w", consensus.ErrUnavailable, err)
	}
	ent := mk(e.nextTime())
	data, err := ent.MarshalBinary()
	if err != nil {
		return smr.Result{}, fmt.Errorf("raft engine: propose: encode entry: %w", err)
	}
	ext, err := e.attest(data)
	if err != nil {
		return smr.Result{}, fmt.Errorf("raft engine: propose: %w", err)
	}
	f := e.raft.ApplyLog(raft.Log{Data: data, Extensions: ext}, e.enqueueTimeout(ctx))
	if err := e.wait(ctx, f); err != nil {
		if errors.Is(err, errWaitAborted) || errors.Is(err, raft.ErrRaftShutdown) {
			// The future was handed to Raft: the entry may have been
			// appended and replicated, and a successor may commit it.
			return smr.Result{}, fmt.Errorf("%w: %w", consensus.ErrOutcomeUnknown, err)
		}
		return smr.Result{}, e.mapErr(fmt.Errorf("raft engine: propose: %w", err))
	}
	res, ok := f.Response().(smr.Result)
	if !ok {
		return smr.Result{}, fmt.Errorf("raft engine: propose: state machine returned %T, want smr.Result", f.Response())
	}
	return res, nil
}

// nextTime returns the clock's time in Unix nanoseconds, raised to the
// previous proposal's time if the clock went backwards, so that entries
// proposed by this node never go back in time.
func (e *Engine) nextTime() int64 {
	t := e.cfg.Clock().UnixNano()
	e.timeMu.Lock()
	defer e.timeMu.Unlock()
	if t < e.lastTime {
		t = e.lastTime
	}
	e.lastTime = t
	return t
}

// barrierGroup is one Raft barrier shared by the callers that joined it.
type barrierGroup struct {
	done    chan struct{}
	err     error // set before done is closed
	waiters int   // callers that joined; guarded by Engine.barrierMu
}

// ReadBarrier returns once this node's state machine reflects every write
// committed before the call, having confirmed leadership with a quorum:
// it waits for a Raft barrier entry (never a lease). Callers arriving while
// a barrier is in flight share the next one, started after the current one
// completes, because the in-flight barrier may predate their call.
// Followers get a *consensus.NotLeaderError. If ctx ends first, the error
// wraps ctx.Err().
func (e *Engine) ReadBarrier(ctx context.Context) error {
	if err := e.leaderOnly(); err != nil {
		return err
	}
	g := e.joinBarrier()
	if g == nil {
		return consensus.ErrStopped
	}
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("raft engine: read barrier: %w: %w", consensus.ErrUnavailable, ctx.Err())
	}
}

// joinBarrier returns the barrier group the caller must wait for: a new
// barrier started now if none is in flight, otherwise the group that will
// start when the in-flight one completes. It returns nil after Stop.
func (e *Engine) joinBarrier() *barrierGroup {
	e.barrierMu.Lock()
	defer e.barrierMu.Unlock()
	if e.barrierStopped {
		return nil
	}
	if e.barrierCur == nil {
		e.barrierCur = &barrierGroup{done: make(chan struct{}), waiters: 1}
		e.startBarrierLocked(e.barrierCur)
		return e.barrierCur
	}
	if e.barrierNext == nil {
		e.barrierNext = &barrierGroup{done: make(chan struct{})}
	}
	e.barrierNext.waiters++
	return e.barrierNext
}

// startBarrierLocked runs g's barrier in a goroutine; when it completes, the
// waiting group (if any) starts. barrierMu must be held.
func (e *Engine) startBarrierLocked(g *barrierGroup) {
	e.barriers.Add(1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		var err error
		if e.raft.State() != raft.Leader {
			err = e.notLeader()
		} else if ferr := e.raft.Barrier(e.cfg.Raft.ApplyTimeout).Error(); ferr != nil {
			err = e.mapErr(fmt.Errorf("raft engine: read barrier: %w", ferr))
			if errors.Is(err, consensus.ErrOutcomeUnknown) {
				// A read has no outcome to be unsure of: the barrier
				// failed, so the read is simply not served.
				err = fmt.Errorf("%w: %w", consensus.ErrUnavailable, ferr)
			}
		}
		e.barrierMu.Lock()
		defer e.barrierMu.Unlock()
		g.err = err
		close(g.done)
		e.barrierCur, e.barrierNext = e.barrierNext, nil
		if e.barrierCur != nil {
			e.startBarrierLocked(e.barrierCur)
		}
	}()
}
