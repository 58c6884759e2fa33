package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// Signed replies in bft mode (docs/api.md, "Signed replies"): a client
// that trusts no single replica sends each write to every member of the
// committee and accepts the outcome once f+1 members sent matching replies
// signed with their node keys. Every replica that receives the write
// therefore answers, and only after its own state machine applied the
// envelope; the API layer signs the Result.
//
// The HotStuff engine stamps each proposed entry with the proposing
// replica's clock, so copies of one envelope proposed on several replicas
// are different bytes. The core keys its queue by envelope
// (core.Config.CommandKey) and drops a copy while another is queued or
// uncommitted, but a copy that arrives after another committed is ordered
// again (the state machine then answers it from its result window). To keep
// one copy in the log the client asks one replica to propose and the
// others to watch for the envelope (propose=false); a watching replica
// proposes it itself when it has not been applied after proposeFallback, so
// a faulty or slow primary costs latency, never liveness.

var _ api.BFTBackend = (*Node)(nil)

// ReplyKey implements api.BFTBackend: in bft mode the node signs replies
// with its node key.
func (n *Node) ReplyKey() (string, ed25519.PrivateKey, bool) {
	if !n.bftMode() || n.signKey == nil {
		return "", nil, false
	}
	return n.cfg.NodeID, n.signKey, true
}

// proposeFallback is how long a replica asked only to watch a write waits
// for another replica's copy to be applied before proposing it itself.
func (n *Node) proposeFallback() time.Duration {
	d := min(n.cfg.ViewChangeTimeout/4, 500*time.Millisecond)
	return max(d, 50*time.Millisecond)
}

// SubmitBFT implements api.BFTBackend. It answers with the Result of the
// first log entry carrying env that this replica applies (whichever
// replica proposed it), or with the stored result when env had executed
// before. In cft mode it is Submit.
func (n *Node) SubmitBFT(ctx context.Context, env *smr.Envelope, propose bool) (smr.Result, error) {
	if !n.bftMode() {
		return n.Submit(ctx, env)
	}
	if env == nil {
		return smr.Result{}, smr.Errorf(smr.CodeMalformed, "no envelope")
	}
	// Watch before the precheck so that an entry applied in between is
	// not missed.
	w := n.fsm.watch(env)
	defer n.fsm.unwatch(w)
	cached, err := n.precheck(ctx, env)
	if err != nil {
		return smr.Result{}, err
	}
	if cached != nil {
		return *cached, nil
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		res smr.Result
		err error
	}
	var proposed chan outcome
	start := func() {
		proposed = make(chan outcome, 1)
		go func() {
			res, err := n.proposeLocal(pctx, env)
			proposed <- outcome{res, err}
		}()
	}
	var fallback <-chan time.Time
	if propose {
		start()
	} else {
		t := time.NewTimer(n.proposeFallback())
		defer t.Stop()
		fallback = t.C
	}
	for {
		select {
		case res := <-w.ch:
			return res, nil
		case o := <-proposed:
			if o.err == nil {
				return o.res, nil
			}
			// The entry may still be applied through another replica's
			// copy; the watch answers that case first when it can.
			select {
			case res := <-w.ch:
				return res, nil
			default:
			}
			return smr.Result{}, o.err
		case <-fallback:
			fallback = nil
			start()
		case <-ctx.Done():
			if proposed == nil {
				return smr.Result{}, fmt.Errorf("%w: the write was not applied here before the request ended: %w", api.ErrUnavailable, ctx.Err())
			}
			return smr.Result{}, fmt.Errorf("%w: %w", consensus.ErrOutcomeUnknown, ctx.Err())
		}
	}
}

// envWatch waits for the first applied log entry that carries one
// envelope.
type envWatch struct {
	key watchKey
	env *smr.Envelope
	ch  chan smr.Result // capacity 1; receives at most one Result
}

type watchKey struct {
	client string
	seq    uint64
}

// watchers is the envelope watch list of appliedFSM.
type watchers struct {
	n  atomic.Int64 // number of registered watches, read without the lock
	mu sync.Mutex
	m  map[watchKey][]*envWatch
}

// watch registers a watch for env.
func (f *appliedFSM) watch(env *smr.Envelope) *envWatch {
	w := &envWatch{key: watchKey{string(env.Client), env.Seq}, env: env, ch: make(chan smr.Result, 1)}
	f.w.mu.Lock()
	if f.w.m == nil {
		f.w.m = make(map[watchKey][]*envWatch)
	}
	f.w.m[w.key] = append(f.w.m[w.key], w)
	f.w.n.Add(1)
	f.w.mu.Unlock()
	return w
}

// unwatch removes w (a no-op when it already fired).
func (f *appliedFSM) unwatch(w *envWatch) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	ws := f.w.m[w.key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			f.w.n.Add(-1)
			break
		}
	}
	if len(ws) == 0 {
		delete(f.w.m, w.key)
	} else {
		f.w.m[w.key] = ws
	}
}

// notify hands each envelope's Result to its watches (results[i] is
// envs[i]'s).
func (f *appliedFSM) notify(envs []*smr.Envelope, results []smr.Result) {
	if f.w.n.Load() == 0 {
		return
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	for i, e := range envs {
		key := watchKey{string(e.Client), e.Seq}
		ws := f.w.m[key]
		kept := ws[:0]
		for _, w := range ws {
			if sameEnvelope(w.env, e) {
				w.ch <- results[i]
				f.w.n.Add(-1)
				continue
			}
			kept = append(kept, w)
		}
		clear(ws[len(kept):])
		if len(kept) == 0 {
			delete(f.w.m, key)
		} else {
			f.w.m[key] = kept
		}
	}
}

// sameEnvelope compares every byte of two envelopes: a copy with another
// signature (a faulty replica could propose one) is a different entry.
func sameEnvelope(a, b *smr.Envelope) bool {
	return a.Seq == b.Seq && bytes.Equal(a.Client, b.Client) && bytes.Equal(a.Command, b.Command) && bytes.Equal(a.Sig, b.Sig)
}
