package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// Bounds on bodies the client reads into memory.
const (
	maxResponseBytes = 64 << 20
	maxErrorBytes    = 1 << 20
)

// call describes one logical request, which may take several attempts.
type call struct {
	op     string // names the call in errors, e.g. "query tool"
	method string
	path   string // path and query, starting with "/"
	body   []byte
	ctype  string // Content-Type of body; default application/json

	admin bool // sign with the admin headers (fresh time per attempt)
	// read: the call changes nothing, so every failure is retryable and
	// the final error wraps ErrUnavailable, never ErrOutcomeUnknown.
	read bool
	// retrySent: a write that is safe to send again after an attempt that
	// may have reached a node (a signed envelope: exactly-once by seq).
	retrySent bool
	// priorSent (with retrySent): the same request may have reached a node
	// in an earlier call, so an answer that cannot tell whether it was
	// executed ends the call with ErrOutcomeUnknown even on the first
	// attempt (see settlesEarlierAttempts).
	priorSent bool
	// endpoint, when set, pins the call to one node with a single attempt.
	endpoint string
	// stream: the attempt timeout covers only the wait for the response
	// headers, and a failure while handling a 2xx body is final.
	stream bool
	// batch: a POST /v1/submit that may travel in a Config.Batcher batch.
	batch bool
	// propose: the propose flag of a bft write (in path as its query
	// parameter, and in the batch item); nil for none.
	propose *bool
	// handle consumes a 2xx response; nil means discard the body.
	handle func(resp *http.Response, endpoint string) error
	// onError sees every definitive *APIError before it is returned.
	onError func(*APIError)

	// delivered is set by do: some attempt of this call may have reached a
	// node that acted on it without a definitive answer coming back.
	delivered bool
}

// outcome is the verdict on one attempt.
type outcome struct {
	err        error
	done       bool // a definitive answer: return err (nil on success)
	sent       bool // the request may have reached a node that acted on it
	final      bool // not done, but must not be retried (e.g. 500 on a write)
	retryAfter time.Duration
	leaderHint string
	// electing: a node said it has no reachable leader (no_leader, or
	// outcome_unknown when the leader went away mid-request) without
	// naming another: the cluster is probably electing one.
	electing bool
}

// endpoints holds the node list, the preferred node and what the client
// learned about which node ID serves which endpoint.
type endpoints struct {
	urls      []string
	preferred atomic.Int64 // index of the last node that answered definitively

	mu     sync.Mutex
	nodeID map[string]string // endpoint -> node ID, learned from /v1/status
}

func (e *endpoints) learn(endpoint, nodeID string) {
	if nodeID == "" {
		return
	}
	e.mu.Lock()
	e.nodeID[endpoint] = nodeID
	e.mu.Unlock()
}

// lookup returns the index of the endpoint known to serve nodeID.
func (e *endpoints) lookup(nodeID string) (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, u := range e.urls {
		if e.nodeID[u] == nodeID {
			return i, true
		}
	}
	return 0, false
}

// unmapped lists the endpoints whose node ID is not known yet.
func (e *endpoints) unmapped() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, u := range e.urls {
		if e.nodeID[u] == "" {
			out = append(out, u)
		}
	}
	return out
}

// do runs c with retries across endpoints. It returns nil or a definitive
// error from a node (*APIError, or a decoding error), or a *RetryError
// wrapping ErrOutcomeUnknown or ErrUnavailable when no attempt gave a
// definitive answer. A rejection of a resent write that does not settle the
// earlier attempts (settlesEarlierAttempts) is not definitive: it ends the
// call with ErrOutcomeUnknown, carrying the rejection as RetryError.Last.
// do records in c.delivered whether an attempt may have reached a node.
func (cl *Client) do(ctx context.Context, c *call) error {
	n := len(cl.eps.urls)
	i := int(cl.eps.preferred.Load()) % n
	maxAttempts := cl.cfg.Retry.MaxAttempts
	if c.endpoint != "" {
		maxAttempts = 1
	}
	var (
		sent     bool
		last     error
		attempts int
		hinted   = map[string]bool{}
		// found: this attempt went to a node that had just reported
		// itself leader.
		found bool
	)
	for {
		ep := cl.eps.urls[i]
		if c.endpoint != "" {
			ep = c.endpoint
		}
		attempts++
		o := cl.attempt(ctx, ep, c)
		if o.done {
			if c.endpoint == "" && (o.err == nil || errors.As(o.err, new(*APIError))) {
				cl.eps.preferred.Store(int64(i))
				if o.err == nil && o.leaderHint != "" {
					// A follower forwarded the write: send the next ones
					// to the leader directly.
					if j, ok := cl.resolveNode(ctx, o.leaderHint); ok {
						cl.eps.preferred.Store(int64(j))
					}
				}
			}
			c.delivered = sent
			var ae *APIError
			if errors.As(o.err, &ae) {
				if c.onError != nil {
					c.onError(ae)
				}
				if c.retrySent && (sent || c.priorSent) && !settlesEarlierAttempts(ae.Code) {
					return &RetryError{Op: c.op, Attempts: attempts, Err: ErrOutcomeUnknown, Last: ae}
				}
			}
			return o.err
		}
		last = o.err
		sent = sent || o.sent
		if o.final || (o.sent && !c.read && !c.retrySent) {
			break
		}
		if attempts >= maxAttempts || ctx.Err() != nil {
			break
		}
		next, wait := (i+1)%n, true
		if h := o.leaderHint; h != "" && !hinted[h] {
			hinted[h] = true
			if j, ok := cl.resolveNode(ctx, h); ok && j != i {
				next, wait = j, false
			}
		}
		cl.cfg.Logger.Debug("retrying request", "op", c.op, "endpoint", ep, "attempt", attempts, "error", o.err)
		wasFound := found
		found = false
		if wait && o.electing && c.endpoint == "" && !wasFound {
			// Instead of waiting out the whole delay, watch for the new
			// leader and go to it as soon as it is there. (Not again
			// right after such a node failed too: a leader that cannot
			// commit may go on reporting itself for a while, and this
			// would retry it without pause.)
			j, ok := cl.awaitLeader(ctx, cl.backoff(attempts, o.retryAfter))
			if ctx.Err() != nil {
				break
			}
			if ok {
				next, found = j, true
			}
		} else if wait {
			if err := sleepCtx(ctx, cl.backoff(attempts, o.retryAfter)); err != nil {
				break
			}
		}
		i = next
	}
	if err := ctx.Err(); err != nil && !errors.Is(last, err) {
		last = fmt.Errorf("%w (last attempt: %v)", err, last)
	}
	c.delivered = sent
	sentinel := ErrUnavailable
	if sent && !c.read {
		sentinel = ErrOutcomeUnknown
	}
	return &RetryError{Op: c.op, Attempts: attempts, Err: sentinel, Last: last}
}

// settlesEarlierAttempts reports whether a rejection of a resent envelope
// also settles the attempts before it, which may have reached a node. It
// does when the code depends only on the envelope's bytes (every attempt
// got it) or when the state machine consults the seq table before giving
// it (an executed seq would have been answered with its stored result).
// Other answers say nothing about an earlier attempt that may have
// executed: seq_too_old (the seq fell out of the result window),
// unknown_client (retained results are answered even to a revoked client,
// but the invitation is checked before the window, so it also stands for a
// seq that fell out of the window), not_initialized (a node that has not
// caught up), codes this client does not know, and error bodies that are
// not Tandem's (a proxy answered).
func settlesEarlierAttempts(code smr.Code) bool {
	switch code {
	case smr.CodeMalformed, smr.CodeUnknownCommand, smr.CodeBadSignature, smr.CodeTooLarge,
		smr.CodePermissionDenied, smr.CodeSeqConflict, smr.CodeSeqTooFar,
		smr.CodeNotFound, smr.CodeAlreadyExists, smr.CodeLastAdmin:
		return true
	default:
		return false
	}
}

// nothingProposed reports whether a 503 with code says that the node
// proposed nothing: it knows no leader, or it has not been initialized.
// Other 503s (outcome_unknown, or a proxy's) may follow a proposal.
func nothingProposed(code smr.Code) bool {
	return code == wire.CodeNoLeader || code == smr.CodeNotInitialized
}

// attempt sends c once to ep and classifies what happened.
func (cl *Client) attempt(ctx context.Context, ep string, c *call) outcome {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(cl.cfg.RequestTimeout, func() {
		timedOut.Store(true)
		cancel()
	})
	defer timer.Stop()

	// A request whose first header byte was handed to the connection may
	// have reached the server; one that failed before (dial, TLS
	// handshake) cannot have. Connection errors are classified by this.
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { wrote.Store(true) },
		WroteHeaders:     func() { wrote.Store(true) },
		WroteRequest:     func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	}
	var body io.Reader = http.NoBody
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(actx, trace), c.method, ep+c.path, body)
	if err != nil {
		return outcome{done: true, err: fmt.Errorf("%s: build request: %w", c.op, err)}
	}
	req.Header.Set("Accept", "application/json")
	if c.body != nil {
		ct := c.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.admin {
		cl.signAdmin(req, c.body)
	}

	var resp *http.Response
	if b := cl.cfg.Batcher; b != nil && c.batch {
		resp, err = b.submit(actx, ep, c, &wrote)
		if errors.Is(err, errBatchUnsupported) {
			resp, err = cl.http.Do(req)
		}
	} else {
		resp, err = cl.http.Do(req)
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the method and URL, which the message below gives
		}
		if timedOut.Load() && ctx.Err() == nil {
			err = fmt.Errorf("%s %s%s: no answer within %s: %w", c.method, ep, c.path, cl.cfg.RequestTimeout, err)
		} else {
			err = fmt.Errorf("%s %s%s: %w", c.method, ep, c.path, err)
		}
		return outcome{err: err, sent: wrote.Load()}
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if c.stream {
			timer.Stop()
		}
		var herr error
		if c.handle != nil {
			herr = c.handle(resp, ep)
		} else {
			_, herr = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		}
		if herr == nil {
			return outcome{done: true, leaderHint: resp.Header.Get(wire.HeaderLeader)}
		}
		herr = fmt.Errorf("%s: %s answered %d: %w", c.op, ep, resp.StatusCode, herr)
		var de *decodeError
		if c.stream || errors.As(herr, &de) {
			return outcome{done: true, err: herr}
		}
		// The body broke off: the node acted but we missed its answer.
		return outcome{err: herr, sent: true}
	}

	return errorOutcome(resp, ep, c)
}

// decodeError marks a 2xx body that arrived in full but does not decode:
// retrying would not help.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "decode response: " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// decodeJSON returns a handler that reads a JSON 2xx body into out.
func decodeJSON(out any) func(*http.Response, string) error {
	return func(resp *http.Response, _ string) error {
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
		if err != nil {
			return fmt.Errorf("read response: %w", err)
		}
		if len(raw) > maxResponseBytes {
			return &decodeError{fmt.Errorf("response exceeds %d bytes", maxResponseBytes)}
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return &decodeError{err}
		}
		return nil
	}
}

// signAdmin sets the admin authentication headers on req (docs/api.md).
// The caller has checked that the client has a key.
func (cl *Client) signAdmin(req *http.Request, body []byte) {
	now := cl.cfg.Now().Unix()
	msg := smr.AdminSignBytes(req.Method, req.URL.RequestURI(), now, body)
	sig := ed25519.Sign(cl.cfg.Key, msg)
	req.Header.Set(wire.HeaderKey, smr.FormatKey(cl.pub))
	req.Header.Set(wire.HeaderTime, strconv.FormatInt(now, 10))
	req.Header.Set(wire.HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
}

// resolveNode returns the index of the endpoint that serves nodeID, asking
// the nodes whose ID is not known yet (in parallel, one attempt each).
func (cl *Client) resolveNode(ctx context.Context, nodeID string) (int, bool) {
	if i, ok := cl.eps.lookup(nodeID); ok {
		return i, true
	}
	var wg sync.WaitGroup
	for _, ep := range cl.eps.unmapped() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = cl.Status(ctx, ep) // records the node ID on success
		}()
	}
	wg.Wait()
	return cl.eps.lookup(nodeID)
}

// errorOutcome classifies an error response of ep to c.
func errorOutcome(resp *http.Response, ep string, c *call) outcome {
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	ae := &APIError{Status: resp.StatusCode, Endpoint: ep}
	var eb wire.ErrorBody
	if rerr == nil && json.Unmarshal(raw, &eb) == nil && eb.Code != "" {
		ae.Code, ae.Message, ae.LeaderID, ae.Result, ae.Reply = eb.Code, eb.Message, eb.LeaderID, eb.Result, eb.Reply
	} else {
		ae.Message = string(bytes.TrimSpace(raw))
		if rerr != nil {
			ae.Message = fmt.Sprintf("reading the error body: %v", rerr)
		}
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"))
		if eb.RetryAfterMillis > 0 {
			retryAfter = time.Duration(eb.RetryAfterMillis) * time.Millisecond
		}
		return outcome{
			err:        ae,
			sent:       !nothingProposed(ae.Code),
			retryAfter: retryAfter,
			leaderHint: ae.LeaderID,
			electing:   ae.LeaderID == "" && (ae.Code == wire.CodeNoLeader || ae.Code == wire.CodeOutcomeUnknown),
		}
	case resp.StatusCode == http.StatusInternalServerError:
		if c.read {
			return outcome{done: true, err: ae}
		}
		// A bug on the server after it accepted a write: it may or may not
		// have been applied.
		return outcome{err: ae, sent: true, final: true}
	case resp.StatusCode >= 500:
		// Gateways and proxies (502, 504, …): the request may have been
		// passed on.
		return outcome{err: ae, sent: true, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
	default:
		return outcome{done: true, err: ae}
	}
}

// leaderPollInterval is how often awaitLeader asks the nodes for their
// status.
const leaderPollInterval = 20 * time.Millisecond

// awaitLeader asks every endpoint for its status every leaderPollInterval,
// for at most d, and returns the index of the first endpoint whose node
// reports itself the leader. It reports false when d passed (or ctx ended)
// first. Status requests are local reads on each node, so polling them
// while the cluster elects a leader does not slow the election down; and
// a write sent to the new leader as soon as it reports itself commits as
// soon as the cluster can, where waiting out a Retry-After of whole
// seconds would not.
func (cl *Client) awaitLeader(ctx context.Context, d time.Duration) (int, bool) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if i, ok := cl.findSelfLeader(ctx); ok {
			return i, true
		}
		if err := sleepCtx(ctx, leaderPollInterval); err != nil {
			return 0, false
		}
	}
}

// findSelfLeader asks every endpoint for its status at once and returns
// the index of the first to answer that it is the leader, without waiting
// for the others (their requests are cancelled).
func (cl *Client) findSelfLeader(ctx context.Context) (int, bool) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	answers := make(chan int, len(cl.eps.urls)) // an index, or -1: not the leader
	for i, ep := range cl.eps.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := cl.Status(ctx, ep)
			if err == nil && st.Role == "leader" && (st.LeaderID == "" || st.LeaderID == st.NodeID) {
				answers <- i
				return
			}
			answers <- -1
		}()
	}
	for range cl.eps.urls {
		if i := <-answers; i >= 0 {
			return i, true
		}
	}
	return 0, false
}

// backoff returns the delay before retry number n (1-based).
func (cl *Client) backoff(n int, retryAfter time.Duration) time.Duration {
	maxB := cl.cfg.Retry.MaxBackoff
	d := cl.cfg.Retry.InitialBackoff
	for k := 1; k < n && d < maxB; k++ {
		d *= 2
	}
	d = min(d, maxB)
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	return max(d, min(retryAfter, maxB))
}

// parseRetryAfter reads a Retry-After header given in seconds.
func parseRetryAfter(v string) time.Duration {
	s, err := strconv.Atoi(v)
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// sleepCtx waits for d or until ctx ends, returning ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
