package client

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of Config. DefaultConfig returns them.
const (
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxAttempts    = 10
	DefaultInitialBackoff = 50 * time.Millisecond
	DefaultMaxBackoff     = 2 * time.Second
	DefaultHedgeDelay     = 250 * time.Millisecond
)

// Config configures a Client. Build it with DefaultConfig and set at least
// Endpoints (and Key for writes and admin requests).
type Config struct {
	// Endpoints are the API base URLs of the cluster's nodes, such as
	// "https://127.0.0.1:7001". Any node serves any request; the client tries
	// them in turn. At least one is required. A URL has no path, query or
	// fragment; its scheme is http or https.
	Endpoints []string

	// Committee, when set, makes the client speak the BFT protocol of a
	// consensus_mode bft cluster (docs/api.md, "Signed replies"): every
	// write and read goes to the members (see HedgeDelay), and an answer is
	// accepted only when f+1 members (f = (n-1)/3 for n members) sent
	// matching replies signed with the node keys listed here (n-f at one
	// index for FastRead). Endpoints may then be empty (it defaults to the
	// members' endpoints, used by status and admin requests); when given,
	// each must be a member's endpoint.
	Committee []CommitteeMember

	// HedgeDelay (with a Committee) is the least time a request first
	// waits for just the replicas it needs — f+1 (n-f for FastRead), from
	// the one asked to propose on — before it asks the others too. The
	// wait grows with the cluster's recent latency (three times the average
	// of calls the first replicas decided, at most 2 s), so that a loaded
	// cluster is not asked twice for every request. It asks them at once
	// when one of the first answers badly. 0 means DefaultHedgeDelay;
	// negative asks every member at once.
	HedgeDelay time.Duration

	// Batcher, when set, carries the client's signed writes to the nodes
	// in batches shared with every other Client that uses it (see
	// Batcher). Reads and admin requests go singly.
	Batcher *Batcher
	// Timings, when set, records how long the client's bft writes waited
	// for the first signed reply and then for the rest of the f+1
	// matching ones; Clients may share one (a load generator does).
	Timings *Timings

	// Key is the client's Ed25519 private key. It signs every write envelope
	// and every admin request. Reads do not need it, so it may be nil for a
	// read-only client; writes then fail with ErrNoKey.
	Key ed25519.PrivateKey

	// TLS configures HTTPS: the cluster CA that verifies the servers and,
	// when the cluster requires mutual TLS, the client certificate. It is
	// required when an endpoint is https and HTTPClient is nil. It is not
	// used when HTTPClient is set.
	TLS *tls.Config

	// RequestTimeout bounds one attempt (one HTTP request to one endpoint).
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration

	// Retry controls how failed attempts are retried.
	Retry RetryConfig

	// StartSeq, when non-zero, is the seq of the client's first write and the
	// client does not ask the cluster for its highest executed seq. Leave it
	// zero unless the caller tracks seqs itself; a seq at or below one the
	// cluster has executed is refused (seq_conflict or seq_too_old).
	StartSeq uint64

	// HTTPClient, when set, carries every request (its Timeout should be
	// zero: RequestTimeout bounds attempts). When nil the client builds its
	// own transport from TLS.
	HTTPClient *http.Client

	// Logger receives debug logs about retries. Default: discard.
	Logger *slog.Logger

	// Now is the clock used for admin request times. Default time.Now.
	Now func() time.Time
}

// RetryConfig is the retry policy shared by writes, reads and admin
// requests. The delay before retry n (n = 1, 2, …) is drawn uniformly from
// [d/2, d] with d = min(MaxBackoff, InitialBackoff·2^(n-1)), raised to the
// server's Retry-After (itself capped at MaxBackoff). Following a fresh
// leader hint to another node does not wait. After a 503 no_leader (or
// outcome_unknown) that names no leader, the cluster is probably electing
// one: during that delay the client asks every endpoint for its status
// every 20 ms and retries at once at the first node that reports itself
// leader, so a write lands as soon as the election ends rather than after
// a whole-second Retry-After. When that node fails the same way, the next
// retry waits the delay in full.
type RetryConfig struct {
	// MaxAttempts bounds the attempts of one call, the first included.
	// Default DefaultMaxAttempts. The call's context may end it earlier.
	MaxAttempts int
	// InitialBackoff is the delay bound before the first retry. Default
	// DefaultInitialBackoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay between attempts. Default DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// DefaultConfig returns a Config with every default filled in and no
// endpoints or key.
func DefaultConfig() Config {
	return Config{
		RequestTimeout: DefaultRequestTimeout,
		Retry: RetryConfig{
			MaxAttempts:    DefaultMaxAttempts,
			InitialBackoff: DefaultInitialBackoff,
			MaxBackoff:     DefaultMaxBackoff,
		},
	}
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HedgeDelay == 0 {
		c.HedgeDelay = DefaultHedgeDelay
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = d.Retry.MaxAttempts
	}
	if c.Retry.InitialBackoff == 0 {
		c.Retry.InitialBackoff = d.Retry.InitialBackoff
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = d.Retry.MaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first problem of c, naming the field and the value.
// Zero durations and counts are allowed (they mean the default).
func (c Config) Validate() error {
	if err := validateCommittee(c.Committee); err != nil {
		return err
	}
	if len(c.Committee) > 0 {
		members := make(map[string]bool, len(c.Committee))
		for _, m := range c.Committee {
			u, _ := ParseEndpoint(m.Endpoint)
			members[u] = true
			if strings.HasPrefix(u, "https://") && c.TLS == nil && c.HTTPClient == nil {
				return fmt.Errorf("client config: committee member %s has an https endpoint but TLS is nil; give the cluster CA", m.ID)
			}
		}
		for i, e := range c.Endpoints {
			if u, err := ParseEndpoint(e); err == nil && !members[u] {
				return fmt.Errorf("client config: Endpoints[%d]: %q is not the endpoint of a committee member", i, e)
			}
		}
		if len(c.Endpoints) == 0 {
			c.Endpoints = make([]string, len(c.Committee))
			for i, m := range c.Committee {
				c.Endpoints[i] = m.Endpoint
			}
		}
	}
	if len(c.Endpoints) == 0 {
		return errors.New("client config: Endpoints is empty; give at least one API URL such as https://127.0.0.1:7001")
	}
	needTLS := false
	seen := make(map[string]bool, len(c.Endpoints))
	for i, e := range c.Endpoints {
		u, err := ParseEndpoint(e)
		if err != nil {
			return fmt.Errorf("client config: Endpoints[%d]: %w", i, err)
		}
		if seen[u] {
			return fmt.Errorf("client config: Endpoints[%d]: %q is listed twice", i, e)
		}
		seen[u] = true
		if strings.HasPrefix(u, "https://") {
			needTLS = true
		}
	}
	if c.Key != nil && len(c.Key) != ed25519.PrivateKeySize {
		return fmt.Errorf("client config: Key has %d bytes, want %d (an ed25519.PrivateKey)", len(c.Key), ed25519.PrivateKeySize)
	}
	if needTLS && c.TLS == nil && c.HTTPClient == nil {
		return errors.New("client config: an endpoint is https but TLS is nil; give the cluster CA (and a client certificate when the cluster requires mTLS)")
	}
	if c.RequestTimeout < 0 {
		return fmt.Errorf("client config: RequestTimeout is %s, want > 0 (0 means %s)", c.RequestTimeout, DefaultRequestTimeout)
	}
	if c.Retry.MaxAttempts < 0 {
		return fmt.Errorf("client config: Retry.MaxAttempts is %d, want >= 1 (0 means %d)", c.Retry.MaxAttempts, DefaultMaxAttempts)
	}
	if c.Retry.InitialBackoff < 0 || c.Retry.MaxBackoff < 0 {
		return fmt.Errorf("client config: Retry backoffs must not be negative (InitialBackoff %s, MaxBackoff %s)", c.Retry.InitialBackoff, c.Retry.MaxBackoff)
	}
	if c.Retry.InitialBackoff > 0 && c.Retry.MaxBackoff > 0 && c.Retry.InitialBackoff > c.Retry.MaxBackoff {
		return fmt.Errorf("client config: Retry.InitialBackoff (%s) is larger than Retry.MaxBackoff (%s)", c.Retry.InitialBackoff, c.Retry.MaxBackoff)
	}
	return nil
}

// ParseEndpoint checks an API endpoint and returns its canonical form
// (scheme://host:port, no trailing slash). A bare "host:port" is taken as
// https. The port is required.
func ParseEndpoint(s string) (string, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return "", errors.New("endpoint is empty; want a URL such as https://127.0.0.1:7001")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("endpoint %q is not a URL: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("endpoint %q: scheme %q is not http or https", s, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("endpoint %q has no host; want scheme://host:port", s)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("endpoint %q has no port; want scheme://host:port", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("endpoint %q: want only scheme://host:port (no user, path, query or fragment)", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// validateCommittee checks Config.Committee: unique IDs, endpoints and
// keys, every key an Ed25519 public key.
func validateCommittee(ms []CommitteeMember) error {
	ids, eps, keys := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, m := range ms {
		if m.ID == "" {
			return fmt.Errorf("client config: Committee[%d]: the node ID is empty", i)
		}
		if ids[m.ID] {
			return fmt.Errorf("client config: Committee[%d]: node %s is listed twice", i, m.ID)
		}
		ids[m.ID] = true
		u, err := ParseEndpoint(m.Endpoint)
		if err != nil {
			return fmt.Errorf("client config: Committee[%d] (%s): %w", i, m.ID, err)
		}
		if eps[u] {
			return fmt.Errorf("client config: Committee[%d] (%s): endpoint %s is listed twice", i, m.ID, u)
		}
		eps[u] = true
		if len(m.PublicKey) != ed25519.PublicKeySize {
			return fmt.Errorf("client config: Committee[%d] (%s): public key has %d bytes, want %d", i, m.ID, len(m.PublicKey), ed25519.PublicKeySize)
		}
		if keys[string(m.PublicKey)] {
			return fmt.Errorf("client config: Committee[%d] (%s): public key is listed for another member too", i, m.ID)
		}
		keys[string(m.PublicKey)] = true
	}
	return nil
}
