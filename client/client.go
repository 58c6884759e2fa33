package client

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

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

	mu   sync.Mutex
	next uint64 // guarded by mu: the next seq to use; 0 = ask the cluster first
	// syncSem admits one caller at a time to ask the cluster for the
	// highest seq; a channel so that waiting callers can give up.
	syncSem chan struct{}
}

// New validates cfg, fills in its defaults and returns a Client. It does
// not contact the cluster.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	urls := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		urls[i], _ = ParseEndpoint(e) // validated above
	}
	cfg.Endpoints = urls
	c := &Client{
		cfg:     cfg,
		eps:     &endpoints{urls: urls, nodeID: map[string]string{}},
		syncSem: make(chan struct{}, 1),
		next:    cfg.StartSeq,
	}
	if cfg.Key != nil {
		c.pub = cfg.Key.Public().(ed25519.PublicKey)
	}
	if cfg.HTTPClient != nil {
		c.http = cfg.HTTPClient
	} else {
		var tlsCfg = cfg.TLS
		if tlsCfg != nil {
			tlsCfg = tlsCfg.Clone()
		}
		c.own = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: cfg.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tlsCfg,
			TLSHandshakeTimeout:   cfg.RequestTimeout,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
		c.http = &http.Client{Transport: c.own}
	}
	return c, nil
}

// Close releases the idle connections of the client's own transport. The
// client must not be used afterwards.
func (c *Client) Close() error {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// PublicKey returns the client's public key, or nil without a key.
func (c *Client) PublicKey() ed25519.PublicKey { return c.pub }

// ID returns the client's public key in the form ACLs use (unpadded
// base64url), or "" without a key.
func (c *Client) ID() string {
	if c.pub == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(c.pub)
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
//     the leader: a *RetryError wrapping ErrOutcomeUnknown (the write may or
//     may not be applied; Resubmit its Envelope to find out);
//   - no attempt can have been proposed: a *RetryError wrapping
//     ErrUnavailable (nothing was applied).
//
// Concurrent calls get distinct seqs and may be in flight together. Before
// the first write the client asks the cluster (linearizably) for its highest
// executed seq and continues after it, unless Config.StartSeq is set. After
// a seq_conflict, seq_too_old or seq_too_far rejection it asks again before
// the next write. A seq_conflict or seq_too_old rejection of Submit's own
// seq is retried once with a fresh seq: such a seq can never execute, so
// the command cannot run twice. (A seq_too_far seq could become valid
// later, so that rejection is returned.)
func (c *Client) Submit(ctx context.Context, cmd smr.Command) (smr.Result, error) {
	if c.cfg.Key == nil {
		return smr.Result{}, fmt.Errorf("submit %s: %w", cmd.Op, ErrNoKey)
	}
	for first := true; ; first = false {
		seq, err := c.nextSeq(ctx)
		if err != nil {
			return smr.Result{}, fmt.Errorf("submit %s: %w", cmd.Op, err)
		}
		res, err := c.SubmitAt(ctx, seq, cmd)
		// The counter was behind the cluster (another process used the
		// key). A seq that is taken or too old can never execute, so the
		// command is signed once more with a seq after the cluster's.
		if code := ErrorCode(err); first && (code == smr.CodeSeqConflict || code == smr.CodeSeqTooOld) {
			continue
		}
		return res, err
	}
}

// SubmitAt is Submit with an explicit seq, for callers that retry a write
// whose outcome was unknown in a new process: the same key, seq and command
// give the same envelope, which the cluster executes at most once. The
// client's own seq counter moves past seq.
func (c *Client) SubmitAt(ctx context.Context, seq uint64, cmd smr.Command) (smr.Result, error) {
	if c.cfg.Key == nil {
		return smr.Result{}, fmt.Errorf("submit %s: %w", cmd.Op, ErrNoKey)
	}
	if seq == 0 {
		return smr.Result{}, fmt.Errorf("submit %s: seq 0 is not valid; seqs start at 1", cmd.Op)
	}
	env, err := smr.Sign(c.cfg.Key, seq, cmd)
	if err != nil {
		return smr.Result{}, fmt.Errorf("submit %s: sign seq %d: %w", cmd.Op, seq, err)
	}
	c.observeSeq(seq)
	return c.resubmit(ctx, env, string(cmd.Op))
}

// Resubmit sends an already signed envelope (typically RetryError.Envelope
// of an earlier Submit) with the same retry rules and outcomes as Submit.
func (c *Client) Resubmit(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	if env == nil {
		return smr.Result{}, errors.New("resubmit: envelope is nil")
	}
	return c.resubmit(ctx, env, "")
}

func (c *Client) resubmit(ctx context.Context, env *smr.Envelope, op string) (smr.Result, error) {
	body, err := json.Marshal(env)
	if err != nil {
		return smr.Result{}, fmt.Errorf("encode envelope seq %d: %w", env.Seq, err)
	}
	name := fmt.Sprintf("submit seq %d", env.Seq)
	if op != "" {
		name = fmt.Sprintf("submit %s seq %d", op, env.Seq)
	}
	var resp struct {
		Result smr.Result `json:"result"`
	}
	err = c.do(ctx, &call{
		op:        name,
		method:    http.MethodPost,
		path:      "/v1/submit",
		body:      body,
		retrySent: true,
		handle:    decodeJSON(&resp),
		onError: func(ae *APIError) {
			switch ae.Code {
			case smr.CodeSeqConflict, smr.CodeSeqTooOld, smr.CodeSeqTooFar:
				c.resyncSeq()
			}
		},
	})
	if err != nil {
		var re *RetryError
		if errors.As(err, &re) {
			re.Envelope = env
		}
		return smr.Result{}, err
	}
	if resp.Result.Code != smr.CodeOK {
		// Defensive: a rejection is sent with an error status, but never
		// report a rejected result as success.
		r := resp.Result
		return smr.Result{}, &APIError{Status: http.StatusOK, Code: r.Code, Message: r.Message, Result: &r}
	}
	return resp.Result, nil
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
				c.next = st.HighestSeq + 1
			}
			c.mu.Unlock()
		}
		<-c.syncSem
	}
}

// observeSeq moves the counter past seq when it is in use.
func (c *Client) observeSeq(seq uint64) {
	c.mu.Lock()
	if c.next != 0 && c.next <= seq {
		c.next = seq + 1
	}
	c.mu.Unlock()
}

// resyncSeq makes the next write ask the cluster for the highest seq.
func (c *Client) resyncSeq() {
	c.mu.Lock()
	c.next = 0
	c.mu.Unlock()
}
