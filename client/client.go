package client

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// Client talks to a Tandem cluster. It is safe for concurrent use; Close
// releases its idle connections.
type Client struct {
	cfg  Config
	http *http.Client
	own  *http.Transport // the transport New built, closed by Close; nil when Config.HTTPClient is used
	pub  ed25519.PublicKey
	eps  *endpoints
	bft  *committee // set when Config.Committee is: the BFT protocol

	mu   sync.Mutex
	next uint64 // guarded by mu: the next seq to use; 0 = ask the cluster first
	// floor, guarded by mu, is the least seq the next sync may choose: it
	// stays above seqs this client already used that the cluster may not
	// have executed yet.
	floor uint64
	// syncSem admits one caller at a time to ask the cluster for the
	// highest seq; a channel so that waiting callers can give up.
	syncSem chan struct{}

	// late tracks the requests a decided BFT call left running
	// (drainLate); closing, closed by Close, ends them.
	late      sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
}

// New validates cfg, fills in its defaults and returns a Client. It does
// not contact the cluster.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var bft *committee
	if len(cfg.Committee) > 0 {
		ms := make([]CommitteeMember, len(cfg.Committee))
		for i, m := range cfg.Committee {
			ms[i] = m
			ms[i].Endpoint, _ = ParseEndpoint(m.Endpoint) // validated above
		}
		cfg.Committee = ms
		bft = newCommittee(ms)
		if len(cfg.Endpoints) == 0 {
			for _, m := range ms {
				cfg.Endpoints = append(cfg.Endpoints, m.Endpoint)
			}
		}
	}
	urls := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		urls[i], _ = ParseEndpoint(e) // validated above
	}
	cfg.Endpoints = urls
	c := &Client{
		cfg:     cfg,
		eps:     &endpoints{urls: urls, nodeID: map[string]string{}},
		syncSem: make(chan struct{}, 1),
		closing: make(chan struct{}),
		next:    cfg.StartSeq,
		bft:     bft,
	}
	if cfg.Key != nil {
		c.pub = cfg.Key.Public().(ed25519.PublicKey)
		if bft != nil {
			// Clients spread the proposing (and the precheck and HTTP
			// work that goes with it) over the committee: each starts at
			// the member its key points to.
			bft.primary.Store(int64(PrimaryIndex(c.pub, len(bft.members))))
		}
	}
	if cfg.HTTPClient != nil {
		c.http = cfg.HTTPClient
	} else {
		c.own = newTransport(cfg.TLS, cfg.RequestTimeout, 64)
		c.http = &http.Client{Transport: c.own}
	}
	return c, nil
}

// newTransport is the HTTP transport of a Client or Batcher that brings
// its own: tlsCfg (cloned) for the cluster, timeout for the dial and the
// TLS handshake, and up to idlePerHost idle connections kept per node.
func newTransport(tlsCfg *tls.Config, timeout time.Duration, idlePerHost int) *http.Transport {
	if tlsCfg != nil {
		tlsCfg = tlsCfg.Clone()
	}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: timeout,
		// HTTP/1.1: one request at a time per pooled connection, without
		// HTTP/2's framing and flow control on the nodes; measured
		// side by side it was no slower (docs/benchmarks.md).
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Close ends the requests still running for calls that were already
// decided and releases the idle connections of the client's own transport.
// The client must not be used afterwards.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	c.late.Wait()
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// PublicKey returns the client's public key, or nil without a key.
func (c *Client) PublicKey() ed25519.PublicKey { return c.pub }

// ID returns the client's public key in the form ACLs use (smr.FormatKey:
// lowercase hex), or "" without a key.
func (c *Client) ID() string {
	if c.pub == nil {
		return ""
	}
	return smr.FormatKey(c.pub)
}

// Endpoints returns the canonical endpoint URLs. The caller must not modify
// the slice.
func (c *Client) Endpoints() []string { return c.eps.urls }

// Submit signs cmd with the next seq and sends that one envelope until a
// node answers definitively; retries resend the same bytes, so the cluster
// executes it at most once.
//
// Outcomes:
//   - the Result of the executed command (Result.Duplicate is true when a
//     retry found it already executed): nil error;
//   - a definitive rejection: an *APIError (its Result is set when the
//     command was ordered and then rejected by the state machine);
//   - attempts ran out or ctx ended after an attempt that may have reached
//     the leader, or a later attempt got an answer that cannot tell whether
//     the earlier one executed (seq_too_old, unknown_client): a *RetryError
//     wrapping ErrOutcomeUnknown, with that answer as RetryError.Last (the
//     write may or may not be applied; Resubmit its Envelope to find out,
//     unless the seq fell out of the result window);
//   - no attempt can have been proposed: a *RetryError wrapping
//     ErrUnavailable (nothing was applied).
//
// Concurrent calls get distinct seqs and may be in flight together. Before
// the first write the client asks the cluster (linearizably) for its highest
// executed seq and continues after it, unless Config.StartSeq is set. After
// a seq_conflict, seq_too_old or seq_too_far rejection it asks again before
// the next write.
//
// Submit signs the command under a second seq at most once, and only when
// the first seq was answered seq_conflict or seq_too_old while no attempt
// of the call can have reached a node before that answer: that seq can
// then never execute and the command was never delivered under it, so it
// cannot run twice. Once an attempt may have been delivered, the call keeps
// its seq to the end. (A seq_too_far seq could become valid later, so that
// rejection is returned.)
func (c *Client) Submit(ctx context.Context, cmd smr.Command) (smr.Result, error) {
	if c.cfg.Key == nil {
		return smr.Result{}, fmt.Errorf("submit %s: %w", cmd.Op, ErrNoKey)
	}
	for resigned := false; ; resigned = true {
		seq, err := c.nextSeq(ctx)
		if err != nil {
			return smr.Result{}, fmt.Errorf("submit %s: %w", cmd.Op, err)
		}
		res, delivered, err := c.submitAt(ctx, seq, cmd, false)
		if !resigned && !delivered && seqUnusable(err) {
			// The counter was behind the cluster (another process used
			// the key) and nothing of this call can have executed.
			continue
		}
		return res, err
	}
}

// seqUnusable reports whether err is a definitive rejection saying that its
// seq can never execute (taken by another command, or below the result
// window). A *RetryError carrying such a rejection is not definitive.
func seqUnusable(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || errors.As(err, new(*RetryError)) {
		return false
	}
	return ae.Code == smr.CodeSeqConflict || ae.Code == smr.CodeSeqTooOld
}

// SubmitAt is Submit with an explicit seq, for callers that retry a write
// whose outcome was unknown in a new process: the same key, seq and command
// give the same envelope, which the cluster executes at most once. The
// client's own seq counter moves past seq. SubmitAt never signs under
// another seq.
//
// SubmitAt cannot know whether seq was sent before, so it treats it as
// possibly executed: an answer that cannot tell (seq_too_old: the seq fell
// out of the cluster's result window; unknown_client) ends the call with a
// *RetryError wrapping ErrOutcomeUnknown, with that answer as Last, even on
// the first attempt. After seq_too_old, resending cannot resolve the
// outcome; read the state the command would have changed instead.
func (c *Client) SubmitAt(ctx context.Context, seq uint64, cmd smr.Command) (smr.Result, error) {
	res, _, err := c.submitAt(ctx, seq, cmd, true)
	return res, err
}

// submitAt signs cmd with seq and sends it. priorSent says that the caller
// may have sent this envelope before (see call.priorSent). delivered
// reports whether an attempt of this call may have reached a node without
// a definitive answer.
func (c *Client) submitAt(ctx context.Context, seq uint64, cmd smr.Command, priorSent bool) (res smr.Result, delivered bool, err error) {
	if c.cfg.Key == nil {
		return smr.Result{}, false, fmt.Errorf("submit %s: %w", cmd.Op, ErrNoKey)
	}
	if seq == 0 {
		return smr.Result{}, false, fmt.Errorf("submit %s: seq 0 is not valid; seqs start at 1", cmd.Op)
	}
	env, err := smr.Sign(c.cfg.Key, seq, cmd)
	if err != nil {
		return smr.Result{}, false, fmt.Errorf("submit %s: sign seq %d: %w", cmd.Op, seq, err)
	}
	c.observeSeq(seq)
	return c.send(ctx, env, string(cmd.Op), priorSent)
}

// Resubmit sends an already signed envelope (typically RetryError.Envelope
// of an earlier Submit) with the same retry rules as Submit. Like SubmitAt
// it treats the envelope as possibly executed before, so seq_too_old and
// unknown_client end it with ErrOutcomeUnknown rather than a rejection.
func (c *Client) Resubmit(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	if env == nil {
		return smr.Result{}, errors.New("resubmit: envelope is nil")
	}
	res, _, err := c.send(ctx, env, "", true)
	return res, err
}

// send posts env with retries; see submitAt.
func (c *Client) send(ctx context.Context, env *smr.Envelope, op string, priorSent bool) (smr.Result, bool, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return smr.Result{}, false, fmt.Errorf("encode envelope seq %d: %w", env.Seq, err)
	}
	name := fmt.Sprintf("submit seq %d", env.Seq)
	if op != "" {
		name = fmt.Sprintf("submit %s seq %d", op, env.Seq)
	}
	if c.bft != nil {
		return c.sendBFT(ctx, env, body, name, priorSent)
	}
	var resp wire.SubmitResponse
	cl := &call{
		op:        name,
		method:    http.MethodPost,
		path:      "/v1/submit",
		body:      body,
		batch:     true,
		retrySent: true,
		priorSent: priorSent,
		handle:    decodeJSON(&resp),
		onError: func(ae *APIError) {
			switch ae.Code {
			case smr.CodeSeqConflict, smr.CodeSeqTooOld, smr.CodeSeqTooFar:
				c.resyncSeq(ae.Code)
			}
		},
	}
	err = c.do(ctx, cl)
	if err != nil {
		var re *RetryError
		if errors.As(err, &re) {
			re.Envelope = env
		}
		return smr.Result{}, cl.delivered, err
	}
	if resp.Result.Code != smr.CodeOK {
		// Defensive: a rejection is sent with an error status, but never
		// report a rejected result as success.
		r := resp.Result
		return smr.Result{}, cl.delivered, &APIError{Status: http.StatusOK, Code: r.Code, Message: r.Message, Result: &r}
	}
	return resp.Result, cl.delivered, nil
}

// nextSeq returns a seq no other call of this client uses, asking the
// cluster for the highest executed seq first when needed. Only one caller
// asks at a time; the others wait for its answer (or their ctx).
func (c *Client) nextSeq(ctx context.Context) (uint64, error) {
	for {
		c.mu.Lock()
		if c.next != 0 {
			s := c.next
			c.next++
			c.mu.Unlock()
			return s, nil
		}
		c.mu.Unlock()

		select {
		case c.syncSem <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		c.mu.Lock()
		synced := c.next != 0
		c.mu.Unlock()
		if !synced {
			st, _, err := c.GetClient(ctx, c.ID())
			if err != nil {
				<-c.syncSem
				return 0, fmt.Errorf("find the client's highest executed seq: %w", err)
			}
			c.mu.Lock()
			if c.next == 0 {
				c.next = max(st.HighestSeq+1, c.floor)
			}
			c.mu.Unlock()
		}
		<-c.syncSem
	}
}

// observeSeq moves the counter (or, while it is unknown, the floor) past
// seq.
func (c *Client) observeSeq(seq uint64) {
	c.mu.Lock()
	if c.next != 0 {
		c.next = max(c.next, seq+1)
	} else {
		c.floor = max(c.floor, seq+1)
	}
	c.mu.Unlock()
}

// resyncSeq makes the next write ask the cluster for the highest seq after
// a seq rejection with code. After seq_conflict and seq_too_old the counter
// was behind the cluster, and the seqs it handed out may still be in flight:
// the next seq stays above them. After seq_too_far the counter was ahead
// and restarts from the cluster's answer.
func (c *Client) resyncSeq(code smr.Code) {
	c.mu.Lock()
	if code == smr.CodeSeqTooFar {
		c.floor = 0
	} else {
		c.floor = max(c.floor, c.next)
	}
	c.next = 0
	c.mu.Unlock()
}

// PrimaryIndex is the index into Config.Committee of the member a bft
// client signing with pub first asks to propose its writes (its primary):
// the key's first two bytes, big endian, modulo the committee size n.
func PrimaryIndex(pub ed25519.PublicKey, n int) int {
	return int(binary.BigEndian.Uint16(pub) % uint16(n))
}
