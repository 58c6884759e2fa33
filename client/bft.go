package client

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// CommitteeMember is one member of a bft committee as the client knows it: its
// node ID, the API endpoint that serves it and its node public key (the
// key initial_members lists for it, smr.FormatKey).
type CommitteeMember struct {
	ID        string
	Endpoint  string
	PublicKey ed25519.PublicKey
}

// BFTStats counts what a BFT client saw that a correct committee never
// sends. Every such reply was ignored.
type BFTStats struct {
	// BadSignatures: signed replies whose signature did not verify
	// against the key configured for the replica that sent them.
	BadSignatures uint64
	// WrongSigner: signed replies naming another node than the replica
	// asked (a replica relaying another member's reply, or an unknown
	// node).
	WrongSigner uint64
	// Mismatched: validly signed replies that do not answer the request
	// sent (another client, seq, query or nonce), and 2xx answers
	// without a signed reply.
	Mismatched uint64
	// Conflicts: calls in which replicas sent validly signed replies that
	// disagree.
	Conflicts uint64
	// FastReadFallbacks: fast reads that did not gather n-f matching
	// replies at one index and were served as ordered reads.
	FastReadFallbacks uint64
}

// committee is the BFT state of a Client (nil in cft mode).
type committee struct {
	members []CommitteeMember // endpoints canonical
	f       int               // (n-1)/3 faulty replicas tolerated
	q       int               // n-f

	primary atomic.Int64 // the replica asked to propose writes
	// quickWrite and quickRead are moving averages (nanoseconds) of how
	// long calls took that the first replicas asked decided alone; the
	// hedge waits for a multiple of them (hedgeDelay).
	quickWrite, quickRead atomic.Int64

	badSig, wrongSigner, mismatched, conflicts, fastFallbacks atomic.Uint64
}

func newCommittee(rs []CommitteeMember) *committee {
	n := len(rs)
	f := (n - 1) / 3
	return &committee{members: rs, f: f, q: n - f}
}

// BFT reports whether the client speaks the BFT protocol (Config.Committee
// is set).
func (c *Client) BFT() bool { return c.bft != nil }

// BFTStats returns the counters of replies the client ignored, or zero
// values in cft mode.
func (c *Client) BFTStats() BFTStats {
	if c.bft == nil {
		return BFTStats{}
	}
	b := c.bft
	return BFTStats{
		BadSignatures:     b.badSig.Load(),
		WrongSigner:       b.wrongSigner.Load(),
		Mismatched:        b.mismatched.Load(),
		Conflicts:         b.conflicts.Load(),
		FastReadFallbacks: b.fastFallbacks.Load(),
	}
}

// ConflictError describes validly signed replies that disagree: at least
// one of their signers is faulty (or, for reads, the state changed between
// the replicas' answers).
type ConflictError struct {
	Op      string
	Groups  []ConflictGroup // one per distinct answer, largest first
	Needed  int             // matching replies the call needed
	Invalid int             // replies ignored (bad signature, wrong signer, mismatched)
}

// ConflictGroup is the set of replicas that sent one answer.
type ConflictGroup struct {
	Nodes   []string
	Summary string // the answer, abbreviated
}

func (e *ConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: no %d matching signed replies", e.Op, e.Needed)
	for _, g := range e.Groups {
		fmt.Fprintf(&b, "; %s answered %s", strings.Join(g.Nodes, ","), g.Summary)
	}
	if e.Invalid > 0 {
		fmt.Fprintf(&b, "; %d replies ignored as invalid", e.Invalid)
	}
	return b.String()
}

// bftAnswer is one replica's answer to one attempt.
type bftAnswer struct {
	i       int
	o       outcome
	key     string // match key of a valid signed reply; "" otherwise
	summary string // the signed answer, abbreviated, for ConflictError
	payload any    // *wire.SubmitReply or *wire.QueryReply
	invalid bool   // a 2xx answer that was ignored (counted)
}

// bftRequest sends one attempt to replica i (round counts from 1).
type bftRequest func(ctx context.Context, i, round int) bftAnswer

// bftResult is what gather decided.
type bftResult struct {
	quorum []bftAnswer // need matching signed answers
	apiErr *APIError   // need matching definitive error codes
	sent   bool        // some attempt may have reached a replica that acted on it
}

// gather sends req to every replica until need replicas sent matching
// signed replies or matching definitive error codes. Replicas without a
// definitive answer are asked again in later rounds (with backoff), at
// most maxRounds rounds. When every replica answered without a quorum, a
// read starts a new round with every replica (answers may change); a
// write asks again only the replicas that answered with an error code. It returns a *RetryError (wrapping ErrUnavailable, or
// ErrOutcomeUnknown when write and an attempt may have been delivered)
// when no quorum formed.
func (c *Client) gather(ctx context.Context, op string, need, maxRounds int, write bool, req bftRequest) (bftResult, error) {
	b := c.bft
	n := len(b.members)
	signed := make(map[int]bftAnswer) // valid signed answers by replica
	errs := make(map[int]*APIError)   // definitive error answers by replica
	invalid := make(map[int]bool)     // ignored 2xx answers
	var (
		sent      bool
		last      error
		conflict  bool
		round     int
		confErr   *ConflictError
		targets   = make([]int, n)
		answeredN = func() int { return len(signed) + len(errs) + len(invalid) }
		callStart = time.Now()
		firstAt   time.Time // the first valid signed answer
	)
	for i := range targets {
		targets[i] = i
	}
	for {
		round++
		// The attempts outlive ctx once the call is decided (see
		// drainLate); until then, ctx's end ends them.
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		unlink := context.AfterFunc(ctx, cancel)
		ch := make(chan bftAnswer, len(targets))
		ask := func(ids []int) {
			for _, i := range ids {
				go func() { ch <- req(rctx, i, round) }()
			}
		}
		// The first round asks only the replicas it needs, from the
		// primary on; the others wait for the hedge.
		launch, held := targets, []int(nil)
		var hedge <-chan time.Time
		started := time.Now()
		if round == 1 && c.cfg.HedgeDelay > 0 && need < len(targets) {
			launch, held = ringSplit(targets, int(b.primary.Load())%n, need)
			t := time.NewTimer(b.hedgeDelay(c.cfg.HedgeDelay, write))
			defer t.Stop()
			hedge = t.C
		}
		pending := len(launch)
		ask(launch)
		release := func() {
			ask(held)
			pending += len(held)
			held, hedge = nil, nil
		}
		var res *bftResult
		for pending > 0 {
			var a bftAnswer
			select {
			case <-hedge:
				release()
				continue
			case a = <-ch:
				pending--
			}
			switch {
			case a.key != "":
				signed[a.i] = a
				if firstAt.IsZero() {
					firstAt = time.Now()
				}
				if group := matching(signed, a.key); len(group) >= need {
					res = &bftResult{quorum: group}
					if write {
						c.cfg.Timings.noteWrite(firstAt.Sub(callStart), time.Since(firstAt))
					}
				} else if len(group) < len(signed) {
					release() // replies disagree: ask everyone
				}
			case a.invalid:
				invalid[a.i] = true
				release()
			case a.o.done:
				var ae *APIError
				if errors.As(a.o.err, &ae) {
					errs[a.i] = ae
					same := 0
					for _, e := range errs {
						if e.Code == ae.Code {
							same++
						}
					}
					if same >= need {
						res = &bftResult{apiErr: ae}
					} else {
						release()
					}
				} else {
					// A 2xx body that does not decode: ignore the replica.
					b.mismatched.Add(1)
					invalid[a.i] = true
					last = a.o.err
					release()
				}
			default:
				sent = sent || a.o.sent
				last = a.o.err
				release()
			}
			if res != nil {
				break
			}
		}
		unlink()
		if res != nil {
			if round == 1 && held != nil {
				// Decided by the first replicas asked, before the hedge.
				b.noteLatency(time.Since(started), write)
			}
			c.drainLate(op, ch, pending, res, cancel)
			res.sent = sent || len(signed) > 0
			return *res, nil
		}
		cancel()
		keys := map[string]bool{}
		for _, a := range signed {
			keys[a.key] = true
		}
		if len(keys) > 1 && !conflict {
			conflict = true
			b.conflicts.Add(1)
			c.cfg.Logger.Warn("replicas sent conflicting signed replies", "op", op)
		}
		if len(keys) > 1 || (len(signed) > 0 && answeredN() == n) {
			confErr = conflictError(op, need, b.members, signed, len(invalid))
		}
		if len(signed) > 0 {
			sent = true
		}
		if confErr != nil {
			last = confErr
		}
		targets = targets[:0]
		for i := range n {
			if _, ok := signed[i]; ok {
				continue
			}
			if _, ok := errs[i]; ok || invalid[i] {
				continue
			}
			targets = append(targets, i)
		}
		if len(targets) == 0 {
			// Everyone answered, without a quorum.
			if write {
				for i := range errs {
					targets = append(targets, i)
				}
				clear(errs)
			} else {
				clear(signed)
				clear(errs)
				clear(invalid)
				for i := range n {
					targets = append(targets, i)
				}
			}
			slices.Sort(targets)
		}
		if len(targets) == 0 || round >= maxRounds || ctx.Err() != nil {
			break
		}
		c.cfg.Logger.Debug("retrying request on replicas without an answer", "op", op, "round", round, "replicas", len(targets), "error", last)
		if err := sleepCtx(ctx, c.backoff(round, 0)); err != nil {
			break
		}
	}
	if err := ctx.Err(); err != nil && !errors.Is(last, err) {
		last = fmt.Errorf("%w (last attempt: %v)", err, last)
	}
	sentinel := ErrUnavailable
	if write && sent {
		sentinel = ErrOutcomeUnknown
	}
	return bftResult{sent: sent}, &RetryError{Op: op, Attempts: round, Err: sentinel, Last: last}
}

// Hedging adapts to the cluster's pace: a loaded cluster answers every
// call slowly, and asking more replicas then only adds load (and, over
// HTTP/1.1, a cancelled request costs its connection and a new TLS
// handshake). The hedge waits hedgeFactor times the recent latency of calls
// the first replicas decided, at least Config.HedgeDelay and at most
// maxHedgeDelay. Only those calls feed the average, so a dead replica,
// which makes every call wait for the hedge, cannot raise it.
const (
	hedgeFactor   = 3
	maxHedgeDelay = 2 * time.Second
	// quickWeight is the weight of one new sample in the average, as a
	// divisor (1/8).
	quickWeight = 8
)

// hedgeDelay is how long a call waits for its first replicas before it
// asks the others.
func (b *committee) hedgeDelay(base time.Duration, write bool) time.Duration {
	avg := time.Duration(b.quick(write).Load())
	return max(base, min(hedgeFactor*avg, maxHedgeDelay))
}

// noteLatency adds the latency of a call that the first replicas decided
// to the moving average.
func (b *committee) noteLatency(d time.Duration, write bool) {
	q := b.quick(write)
	for {
		old := q.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/quickWeight
		}
		if q.CompareAndSwap(old, next) {
			return
		}
	}
}

func (b *committee) quick(write bool) *atomic.Int64 {
	if write {
		return &b.quickWrite
	}
	return &b.quickRead
}

// drainLate takes the answers still due after a call was decided without
// cancelling their requests: a cancelled HTTP/1.1 request closes its
// connection, and the next request to that replica then pays a new TLS
// handshake. Each attempt is bounded by Config.RequestTimeout; Close ends
// them sooner. A late signed answer that disagrees with the decision is
// counted as a conflict like one that arrived in time.
func (c *Client) drainLate(op string, ch <-chan bftAnswer, pending int, res *bftResult, cancel context.CancelFunc) {
	if pending == 0 {
		cancel()
		return
	}
	decided := ""
	if len(res.quorum) > 0 {
		decided = res.quorum[0].key
	}
	c.late.Add(1)
	go func() {
		defer c.late.Done()
		defer cancel()
		for range pending {
			select {
			case a := <-ch:
				if a.key != "" && decided != "" && a.key != decided {
					c.bft.conflicts.Add(1)
					c.cfg.Logger.Warn("replicas sent conflicting signed replies", "op", op, "late", true)
				}
			case <-c.closing:
				return
			}
		}
	}()
}

// ringSplit splits targets into the k that follow start in ring order
// (start first, when it is a target) and the rest.
func ringSplit(targets []int, start, k int) (first, rest []int) {
	pos := func(x int) int { // x's place in the ring that starts at start
		if x < start {
			return x + math.MaxInt32
		}
		return x
	}
	ordered := slices.Clone(targets)
	slices.SortFunc(ordered, func(x, y int) int { return pos(x) - pos(y) })
	return ordered[:k], ordered[k:]
}

// matching returns the signed answers with match key key.
func matching(signed map[int]bftAnswer, key string) []bftAnswer {
	var out []bftAnswer
	for _, a := range signed {
		if a.key == key {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(x, y bftAnswer) int { return x.i - y.i })
	return out
}

func conflictError(op string, need int, members []CommitteeMember, signed map[int]bftAnswer, invalid int) *ConflictError {
	byKey := map[string]*ConflictGroup{}
	var order []string
	idx := slices.Sorted(maps.Keys(signed))
	for _, i := range idx {
		a := signed[i]
		g, ok := byKey[a.key]
		if !ok {
			g = &ConflictGroup{Summary: a.summary}
			byKey[a.key] = g
			order = append(order, a.key)
		}
		g.Nodes = append(g.Nodes, members[i].ID)
	}
	e := &ConflictError{Op: op, Needed: need, Invalid: invalid}
	for _, k := range order {
		e.Groups = append(e.Groups, *byKey[k])
	}
	slices.SortStableFunc(e.Groups, func(a, b ConflictGroup) int { return len(b.Nodes) - len(a.Nodes) })
	return e
}

// checkSigner verifies that a signed reply comes from replica r.
func (b *committee) checkSigner(r CommitteeMember, nodeID, sig string, verify func(ed25519.PublicKey) error) bool {
	if nodeID != r.ID {
		b.wrongSigner.Add(1)
		return false
	}
	if verify(r.PublicKey) != nil {
		b.badSig.Add(1)
		return false
	}
	return true
}

// sendBFT is send for a committee (body: env encoded; name: the call in
// errors): env goes to every replica at once and
// the outcome is the one f+1 replicas reported in matching signed
// replies. One replica (the primary) is asked to propose it, the others
// to wait for that copy, proposing it themselves after a fallback delay;
// from the second round on every replica asked proposes.
func (c *Client) sendBFT(ctx context.Context, env *smr.Envelope, body []byte, name string, priorSent bool) (smr.Result, bool, error) {
	b := c.bft
	n := len(b.members)
	primary := int(b.primary.Load()) % n
	client := smr.FormatKey(env.Client)
	var primaryAnswered atomic.Bool
	req := func(ctx context.Context, i, round int) bftAnswer {
		r := b.members[i]
		propose := round > 1 || i == primary
		var resp wire.SubmitResponse
		cl := &call{
			op:      name,
			method:  http.MethodPost,
			path:    "/v1/submit?" + wire.SubmitQueryPropose + "=" + strconv.FormatBool(propose),
			body:    body,
			batch:   true,
			propose: &propose,
			handle:  decodeJSON(&resp),
		}
		a := bftAnswer{i: i, o: c.attempt(ctx, r.Endpoint, cl)}
		var reply *wire.SubmitReply
		var ae *APIError
		switch {
		case a.o.done && a.o.err == nil:
			reply = resp.Reply
		case a.o.done && errors.As(a.o.err, &ae) && ae.Result != nil:
			reply = ae.Reply
		default:
			return a
		}
		if reply == nil {
			b.mismatched.Add(1)
			a.invalid = true
			return a
		}
		if !b.checkSigner(r, reply.NodeID, reply.Signature, reply.Verify) {
			a.invalid = true
			return a
		}
		if reply.Client != client || reply.Seq != env.Seq {
			b.mismatched.Add(1)
			a.invalid = true
			return a
		}
		if i == primary {
			primaryAnswered.Store(true)
		}
		a.key, a.payload = reply.MatchKey(), reply
		a.summary = fmt.Sprintf("index %d code %q", reply.Index, cmp.Or(string(reply.Code), "ok"))
		return a
	}
	res, err := c.gather(ctx, name, b.f+1, c.cfg.Retry.MaxAttempts, true, req)
	if !primaryAnswered.Load() {
		// Ask another replica to propose the next writes.
		b.primary.CompareAndSwap(int64(primary), int64((primary+1)%n))
	}
	if err != nil {
		var re *RetryError
		if errors.As(err, &re) {
			re.Envelope = env
		}
		return smr.Result{}, res.sent, err
	}
	if ae := res.apiErr; ae != nil {
		switch ae.Code {
		case smr.CodeSeqConflict, smr.CodeSeqTooOld, smr.CodeSeqTooFar:
			c.resyncSeq(ae.Code)
		}
		if (res.sent || priorSent) && !settlesEarlierAttempts(ae.Code) {
			return smr.Result{}, res.sent, &RetryError{Op: name, Attempts: 1, Err: ErrOutcomeUnknown, Last: ae, Envelope: env}
		}
		return smr.Result{}, res.sent, ae
	}
	first := res.quorum[0].payload.(*wire.SubmitReply)
	out := first.Result()
	out.Duplicate = true
	for _, a := range res.quorum {
		out.Duplicate = out.Duplicate && a.payload.(*wire.SubmitReply).Duplicate
	}
	if out.Code != smr.CodeOK {
		r := out
		return smr.Result{}, res.sent, &APIError{Status: wire.StatusFor(r.Code), Code: r.Code, Message: r.Message, Result: &r}
	}
	return out, res.sent, nil
}

// queryBFT reads through the committee. An ordered read needs f+1
// replicas answering the same value after their read barriers (each
// replica orders its own barrier, so their indexes differ; the index
// returned is the smallest of the matching replies: the value reflects
// the state at that index or later). A fast read needs n-f replicas
// answering the same value at the same index from their local state, and
// falls back to an ordered read when they do not. A stale read is a fast
// read that needs only f+1 matching replies and does not fall back.
func (c *Client) queryBFT(ctx context.Context, q smr.Query, o readOptions, op string) (json.RawMessage, uint64, error) {
	b := c.bft
	switch {
	case o.fast:
		v, idx, err := c.queryRound(ctx, q, wire.ReadFast, b.q, 1, op+" (fast)")
		if err == nil || !fallbackWorthy(err) {
			return v, idx, err
		}
		b.fastFallbacks.Add(1)
		c.cfg.Logger.Debug("fast read did not gather matching replies; reading through consensus", "op", op, "error", err)
		return c.queryRound(ctx, q, wire.ReadOrdered, b.f+1, c.cfg.Retry.MaxAttempts, op)
	case o.stale:
		return c.queryRound(ctx, q, wire.ReadFast, b.f+1, c.cfg.Retry.MaxAttempts, op)
	default:
		return c.queryRound(ctx, q, wire.ReadOrdered, b.f+1, c.cfg.Retry.MaxAttempts, op)
	}
}

// fallbackWorthy reports whether a fast read that failed with err is worth
// retrying as an ordered read: it did not end with a definitive error
// code or the caller's context.
func fallbackWorthy(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var re *RetryError
	return errors.As(err, &re)
}

// queryRound runs one BFT read in mode with rounds at most rounds.
func (c *Client) queryRound(ctx context.Context, q smr.Query, mode string, need, rounds int, op string) (json.RawMessage, uint64, error) {
	b := c.bft
	var nb [16]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	v := url.Values{}
	v.Set("kind", string(q.Kind))
	if q.Key != "" {
		v.Set("key", q.Key)
	}
	if mode == wire.ReadFast {
		v.Set("fast", "true")
	}
	v.Set("nonce", nonce)
	path := "/v1/query?" + v.Encode()
	withIndex := mode == wire.ReadFast
	req := func(ctx context.Context, i, _ int) bftAnswer {
		r := b.members[i]
		var resp wire.QueryResponse
		cl := &call{op: op, method: http.MethodGet, path: path, read: true, handle: decodeJSON(&resp)}
		a := bftAnswer{i: i, o: c.attempt(ctx, r.Endpoint, cl)}
		if !a.o.done || a.o.err != nil {
			return a
		}
		reply := resp.Reply
		if reply == nil {
			b.mismatched.Add(1)
			a.invalid = true
			return a
		}
		if !b.checkSigner(r, reply.NodeID, reply.Signature, reply.Verify) {
			a.invalid = true
			return a
		}
		if reply.Kind != q.Kind || reply.Key != q.Key || reply.Nonce != nonce || reply.Mode != mode {
			b.mismatched.Add(1)
			a.invalid = true
			return a
		}
		a.key, a.payload = reply.MatchKey(withIndex), reply
		a.summary = fmt.Sprintf("%.80s at index %d", reply.Value, reply.Index)
		return a
	}
	res, err := c.gather(ctx, op, need, min(rounds, c.cfg.Retry.MaxAttempts), false, req)
	if err != nil {
		return nil, 0, err
	}
	if res.apiErr != nil {
		return nil, 0, res.apiErr
	}
	first := res.quorum[0].payload.(*wire.QueryReply)
	idx := first.Index
	for _, a := range res.quorum {
		idx = min(idx, a.payload.(*wire.QueryReply).Index)
	}
	return first.Value, idx, nil
}
