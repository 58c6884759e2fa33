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
)

// Config configures a Client. Build it with DefaultConfig and set at least
// Endpoints (and Key for writes and admin requests).
type Config struct {
	// Endpoints are the API base URLs of the cluster's nodes, such as
	// "https://127.0.0.1:7001". Any node serves any request; the client tries
	// them in turn. At least one is required. A URL has no path, query or
	// fragment; its scheme is http or https.
	Endpoints []string

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
// leader hint to another node does not wait.
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
