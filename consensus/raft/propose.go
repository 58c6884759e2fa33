package raftengine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// Propose orders env through Raft and returns the smr.Result of applying it
// on this node (the leader). Concurrent proposals are batched: the
// envelopes queued while the previous entry was being handed to Raft go
// into one batch entry (smr.EntryBatch), so the leader signs one
// attestation and Raft stores one log entry for all of them. See
// consensus.Engine for the error contract:
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
	if err := e.leaderOnly(); err != nil {
		return smr.Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return smr.Result{}, fmt.Errorf("raft engine: propose: %w: %w", consensus.ErrUnavailable, err)
	}
	p := &proposal{env: env, deadline: time.Now().Add(e.enqueueTimeout(ctx)), done: make(chan proposalResult, 1)}
	select {
	case e.propCh <- p:
	case <-ctx.Done():
		return smr.Result{}, fmt.Errorf("raft engine: propose: %w: %w", consensus.ErrUnavailable, ctx.Err())
	case <-e.stopCh:
		return smr.Result{}, consensus.ErrStopped
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(proposalQueued, proposalAbandoned) {
			return smr.Result{}, fmt.Errorf("raft engine: propose: %w: %w", consensus.ErrUnavailable, ctx.Err())
		}
		return smr.Result{}, fmt.Errorf("%w: %w: %w", consensus.ErrOutcomeUnknown, errWaitAborted, ctx.Err())
	case <-e.stopCh:
		if p.state.CompareAndSwap(proposalQueued, proposalAbandoned) {
			return smr.Result{}, consensus.ErrStopped
		}
		r := <-p.done // taken: Raft's shutdown resolves its entry
		return r.res, r.err
	}
}

// Batching bounds: a batch entry holds at most this many envelopes and
// about this many bytes of them.
const (
	maxBatchEnvelopes = 512
	maxBatchBytes     = 1 << 20
)

// Proposal states: the proposer takes a queued proposal, or its caller
// abandons it (ctx ended) before that.
const (
	proposalQueued int32 = iota
	proposalTaken
	proposalAbandoned
)

// proposal is one Propose call waiting for the proposer.
type proposal struct {
	env      *smr.Envelope
	deadline time.Time // for handing the entry to Raft
	state    atomic.Int32
	done     chan proposalResult // capacity 1
}

type proposalResult struct {
	res smr.Result
	err error
}

// maxInflightEntries bounds the batch entries handed to Raft and not yet
// applied. While that many are on their way, the proposer keeps gathering
// the proposals that arrive into the next batch instead of handing Raft
// one small entry after another: the leader writes and fsyncs the entries
// it has received together, and with more, smaller entries queued behind
// each fsync a write waits as long but the log carries fewer envelopes per
// fsync. Raft still pipelines the entries in flight.
const maxInflightEntries = 2

// propose runs until Stop: it takes the queued proposals, as many as are
// waiting (within the batching bounds) once fewer than maxInflightEntries
// entries are in flight, and hands them to Raft as one entry.
func (e *Engine) propose() {
	defer e.wg.Done()
	var batch []*proposal
	for {
		select {
		case p := <-e.propCh:
			batch = append(batch[:0], p)
		case <-e.stopCh:
			e.failQueued()
			return
		}
		size := len(batch[0].env.Command)
		// Wait for a free slot, gathering what arrives meanwhile.
	slot:
		for {
			in := e.propCh
			if len(batch) >= maxBatchEnvelopes || size >= maxBatchBytes {
				in = nil // full: the rest waits for the next batch
			}
			select {
			case e.inflight <- struct{}{}:
				break slot
			case p := <-in:
				batch = append(batch, p)
				size += len(p.env.Command)
			case <-e.stopCh:
				for _, p := range claim(batch) {
					p.done <- proposalResult{err: consensus.ErrStopped}
				}
				e.failQueued()
				return
			}
		}
	fill:
		for len(batch) < maxBatchEnvelopes && size < maxBatchBytes {
			select {
			case p := <-e.propCh:
				batch = append(batch, p)
				size += len(p.env.Command)
			default:
				break fill
			}
		}
		e.proposeBatch(batch)
		clear(batch)
	}
}

// release frees the in-flight slot of an entry that was applied, failed or
// never handed to Raft.
func (e *Engine) release() { <-e.inflight }

// failQueued answers the proposals still queued at Stop.
func (e *Engine) failQueued() {
	for {
		select {
		case p := <-e.propCh:
			p.done <- proposalResult{err: consensus.ErrStopped}
		default:
			return
		}
	}
}

// claim takes the proposals of batch that are still wanted (queued, not
// given up by their caller) and returns them in a new slice: each is owed
// exactly one answer on its done channel.
func claim(batch []*proposal) []*proposal {
	ps := batch[:0:0]
	for _, p := range batch {
		if p.state.CompareAndSwap(proposalQueued, proposalTaken) {
			ps = append(ps, p)
		}
	}
	return ps
}

// proposeBatch hands the proposals of batch that are still wanted to Raft
// as one entry, and answers each once it is applied.
func (e *Engine) proposeBatch(batch []*proposal) {
	ps := claim(batch)
	if len(ps) == 0 {
		e.release()
		return
	}
	fail := func(err error) {
		e.release()
		for _, p := range ps {
			p.done <- proposalResult{err: err}
		}
	}
	if err := e.leaderOnly(); err != nil {
		fail(err)
		return
	}
	t := e.nextTime()
	var ent smr.Entry
	if len(ps) == 1 {
		ent = smr.NewCommandEntry(t, *ps[0].env)
	} else {
		envs := make([]smr.Envelope, len(ps))
		for i, p := range ps {
			envs[i] = *p.env
		}
		ent = smr.NewBatchEntry(t, envs)
	}
	data, err := ent.MarshalBinary()
	if err != nil {
		fail(fmt.Errorf("raft engine: propose: encode entry: %w", err))
		return
	}
	ext, err := e.attest(data)
	if err != nil {
		fail(fmt.Errorf("raft engine: propose: %w", err))
		return
	}
	timeout := max(time.Until(ps[0].deadline), time.Millisecond)
	f := e.raft.ApplyLog(raft.Log{Data: data, Extensions: ext}, timeout)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		res, err := e.results(f, len(ps))
		e.release()
		for i, p := range ps {
			if err != nil {
				p.done <- proposalResult{err: err}
			} else {
				p.done <- proposalResult{res: res[i]}
			}
		}
	}()
}

// results waits for an entry handed to Raft and returns the n Results of
// its application, or the error of the entry.
func (e *Engine) results(f raft.ApplyFuture, n int) ([]smr.Result, error) {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			// The entry was handed to Raft: it may have been appended and
			// replicated, and a successor may commit it.
			return nil, fmt.Errorf("%w: %w", consensus.ErrOutcomeUnknown, err)
		}
		return nil, e.mapErr(fmt.Errorf("raft engine: propose: %w", err))
	}
	var res []smr.Result
	switch r := f.Response().(type) {
	case []smr.Result:
		res = r
	case smr.Result:
		res = []smr.Result{r}
	default:
		return nil, fmt.Errorf("raft engine: propose: state machine returned %T, want smr.Result", f.Response())
	}
	if len(res) != n {
		return nil, fmt.Errorf("raft engine: propose: state machine returned %d results for an entry of %d envelopes", len(res), n)
	}
	return res, nil
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
	res, err := e.results(f, 1)
	if err != nil {
		return smr.Result{}, err
	}
	return res[0], nil
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
