package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Transfer body:
//
//	"TCKT" || version (1) || certificate length (uint32 BE) || certificate ||
//	snapshot length (uint64 BE) || snapshot
const (
	transferMagic  = "TCKT"
	transferHeader = len(transferMagic) + 1 + 4
	// maxCertLen bounds an encoded certificate: a form, a statement with
	// MaxMembers IDs of MaxIDLen bytes and MaxMembers signatures.
	maxCertLen = len(certMagic) + 1 + 1 + 1 + 8 + 8 + 32 + 1 + 255 + 2 + MaxMembers*(1+MaxIDLen) + 2 + MaxMembers*(1+MaxIDLen+64)
)

// Defaults of FetchConfig.
const (
	DefaultFetchTimeout  = 30 * time.Second
	DefaultFetchMaxBytes = 1 << 30
)

// NewHandler serves the store's latest stable checkpoint for state
// transfer. GET ?min_index=N answers 200 with the transfer body (see the
// package comment) when the latest checkpoint's index is at least N (0 when
// absent), 404 when there is none, 400 for a bad min_index, 405 for other
// methods, and 500 when the store fails or the body would exceed maxBytes
// (no limit when maxBytes ≤ 0). The node mounts it on its mutual-TLS peer
// port; authentication is the listener's business.
func NewHandler(s *Store, maxBytes int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "checkpoint transfer: method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var min uint64
		if v := r.URL.Query().Get("min_index"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				http.Error(w, fmt.Sprintf("checkpoint transfer: min_index %q is not a non-negative integer", v), http.StatusBadRequest)
				return
			}
			min = n
		}
		cert, snap, err := s.Latest()
		switch {
		case errors.Is(err, ErrNone):
			http.Error(w, "checkpoint transfer: no stable checkpoint stored", http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "checkpoint transfer: the checkpoint store failed", http.StatusInternalServerError)
			return
		case cert.Statement.Index < min:
			http.Error(w, fmt.Sprintf("checkpoint transfer: latest stable checkpoint is at index %d, below min_index %d", cert.Statement.Index, min), http.StatusNotFound)
			return
		}
		body, err := encodeTransfer(cert, snap)
		if err != nil {
			http.Error(w, "checkpoint transfer: encoding failed", http.StatusInternalServerError)
			return
		}
		if maxBytes > 0 && int64(len(body)) > maxBytes {
			http.Error(w, fmt.Sprintf("checkpoint transfer: checkpoint is %d bytes, above the %d-byte limit", len(body), maxBytes), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("X-Tandem-Checkpoint-Index", strconv.FormatUint(cert.Statement.Index, 10))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// encodeTransfer builds the transfer body.
func encodeTransfer(cert *Certificate, snap []byte) ([]byte, error) {
	cb, err := cert.MarshalBinary()
	if err != nil {
		return nil, err
	}
	w := writer{b: make([]byte, 0, transferHeader+len(cb)+8+len(snap))}
	w.raw([]byte(transferMagic))
	w.u8(codecVersion)
	w.u32(uint32(len(cb)))
	w.raw(cb)
	w.u64(uint64(len(snap)))
	w.raw(snap)
	return w.b, nil
}

// readTransfer reads a transfer body of at most maxBytes from r. It
// allocates no more than the bytes actually received plus the bounded
// certificate, whatever the length fields claim. Errors wrap ErrMalformed
// or errTooLarge, or are r's read errors.
func readTransfer(r io.Reader, maxBytes int64) (*Certificate, []byte, error) {
	var hdr [transferHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, fmt.Errorf("reading header: %w", eofMalformed(err))
	}
	hr := reader{b: hdr[:]}
	if err := hr.header(transferMagic, codecVersion); err != nil {
		return nil, nil, err
	}
	certLen := int64(hr.u32("certificate length"))
	if certLen > int64(maxCertLen) {
		return nil, nil, fmt.Errorf("%w: certificate length %d exceeds the limit of %d", ErrMalformed, certLen, maxCertLen)
	}
	if used := int64(transferHeader) + certLen + 8; used > maxBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes before the snapshot, above the %d-byte limit", errTooLarge, used, maxBytes)
	}
	cb := make([]byte, certLen+8)
	if _, err := io.ReadFull(r, cb); err != nil {
		return nil, nil, fmt.Errorf("reading certificate: %w", eofMalformed(err))
	}
	var cert Certificate
	if err := cert.UnmarshalBinary(cb[:certLen]); err != nil {
		return nil, nil, err
	}
	snapLen := binary.BigEndian.Uint64(cb[certLen:])
	if room := uint64(maxBytes - int64(transferHeader) - certLen - 8); snapLen > room {
		return nil, nil, fmt.Errorf("%w: snapshot of %d bytes, only %d allowed", errTooLarge, snapLen, room)
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, int64(snapLen)))
	if err != nil {
		return nil, nil, fmt.Errorf("reading snapshot: %w", err)
	}
	if uint64(n) != snapLen {
		return nil, nil, fmt.Errorf("%w: snapshot truncated: %d of %d bytes", ErrMalformed, n, snapLen)
	}
	var one [1]byte
	if m, err := io.ReadFull(r, one[:]); m != 0 || !errors.Is(err, io.EOF) {
		if m != 0 {
			return nil, nil, fmt.Errorf("%w: trailing bytes after the snapshot", ErrMalformed)
		}
		return nil, nil, fmt.Errorf("reading after the snapshot: %w", err)
	}
	return &cert, buf.Bytes(), nil
}

var errTooLarge = errors.New("checkpoint transfer too large")

func eofMalformed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: body ends early", ErrMalformed)
	}
	return err
}

// Peer is a member serving state transfer.
type Peer struct {
	ID  string
	URL string // base, like https://host:port/internal/checkpoint
}

// FetchConfig configures Fetch.
type FetchConfig struct {
	Peers       []Peer                   // tried in order
	Client      *http.Client             // the node's mutual-TLS client; http.DefaultClient when nil
	Committee   *Committee               // the committee that signs the wanted certificate
	Quarantined []string                 // members whose signatures do not count (Certificate.Verify)
	Info        SnapshotInfo             // checks a snapshot; the node passes smr.SnapshotInfo
	MinIndex    uint64                   // the lowest acceptable index
	Timeout     time.Duration            // per peer, for the whole request; DefaultFetchTimeout when 0
	MaxBytes    int64                    // largest accepted body; DefaultFetchMaxBytes when 0
	Want        func(*Certificate) error // optional extra check (e.g. the wanted Kind/Epoch)
	// Certified, when set, is a certificate the caller holds for the
	// wanted statement; Fetch verifies it first. A peer whose own
	// certificate for that same statement does not verify here (it
	// counted a member this node has quarantined since) still serves the
	// state, which is then checked against Certified and returned with it.
	Certified *Certificate
}

// Reasons a peer is rejected; Rejection.Reason is one of these.
const (
	ReasonUnreachable = "unreachable"
	ReasonTimeout     = "timed out"
	ReasonNotFound    = "has no checkpoint at or above min_index"
	ReasonStatus      = "unexpected HTTP status"
	ReasonMalformed   = "malformed response"
	ReasonTooLarge    = "response above MaxBytes"
	ReasonForged      = "certificate does not verify against the committee"
	ReasonStale       = "certificate below min_index"
	ReasonUnwanted    = "certificate refused by the caller's check"
	ReasonBadSnapshot = "snapshot fails its checks"
	ReasonMismatch    = "snapshot does not match the certificate"
)

// Rejection records a peer whose answer Fetch did not use: one that served
// a forged certificate or a tampered snapshot, or failed.
type Rejection struct {
	Peer   string
	Reason string
	Err    error
}

func (r Rejection) Error() string {
	return fmt.Sprintf("peer %s: %s: %v", r.Peer, r.Reason, r.Err)
}

// ErrNoTransfer is wrapped by Fetch's error when no peer served a
// checkpoint that verifies.
var ErrNoTransfer = errors.New("checkpoint transfer: no peer served a verified checkpoint")

// Fetch asks the peers in order for their latest stable checkpoint with
// index ≥ MinIndex and returns the first one where:
//   - the body is well formed and at most MaxBytes;
//   - the certificate, of either form, verifies against Committee with
//     Quarantined (Certificate.Verify), or certifies the same statement as
//     Certified, which Fetch verified first, and is replaced by it;
//   - its index is at least MinIndex, and Want (if set) accepts it;
//   - Info accepts the snapshot and reports the statement's index and state
//     hash.
//
// Each peer gets at most Timeout. Every peer skipped is reported as a
// Rejection. Fetch never returns a certificate or snapshot that failed a
// check: on failure both are nil and the error wraps ErrNoTransfer, or is
// the context's error when ctx ended.
func Fetch(ctx context.Context, cfg FetchConfig) (*Certificate, []byte, []Rejection, error) {
	switch {
	case cfg.Committee == nil:
		return nil, nil, nil, errors.New("checkpoint transfer: no committee")
	case cfg.Info == nil:
		return nil, nil, nil, errors.New("checkpoint transfer: no SnapshotInfo function")
	case len(cfg.Peers) == 0:
		return nil, nil, nil, fmt.Errorf("%w: no peers", ErrNoTransfer)
	case cfg.Timeout < 0 || cfg.MaxBytes < 0:
		return nil, nil, nil, fmt.Errorf("checkpoint transfer: negative Timeout (%s) or MaxBytes (%d)", cfg.Timeout, cfg.MaxBytes)
	}
	if cfg.Certified != nil {
		if err := cfg.Certified.Verify(cfg.Committee, cfg.Quarantined); err != nil {
			return nil, nil, nil, fmt.Errorf("checkpoint transfer: the caller's certificate: %w", err)
		}
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultFetchTimeout
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultFetchMaxBytes
	}
	var rejected []Rejection
	for _, p := range cfg.Peers {
		if err := ctx.Err(); err != nil {
			return nil, nil, rejected, fmt.Errorf("checkpoint transfer: %w", err)
		}
		cert, snap, reason, err := fetchOne(ctx, cfg, p)
		if err == nil {
			return cert, snap, rejected, nil
		}
		if ctx.Err() != nil {
			rejected = append(rejected, Rejection{Peer: p.ID, Reason: ReasonUnreachable, Err: err})
			return nil, nil, rejected, fmt.Errorf("checkpoint transfer: %w", ctx.Err())
		}
		rejected = append(rejected, Rejection{Peer: p.ID, Reason: reason, Err: err})
	}
	return nil, nil, rejected, fmt.Errorf("%w (%d peers tried)", ErrNoTransfer, len(cfg.Peers))
}

// fetchOne asks one peer and checks its answer.
func fetchOne(ctx context.Context, cfg FetchConfig, p Peer) (*Certificate, []byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	timedOut := func(reason string, err error) (*Certificate, []byte, string, error) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, nil, ReasonTimeout, fmt.Errorf("no complete answer within %s: %w", cfg.Timeout, err)
		}
		return nil, nil, reason, err
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return nil, nil, ReasonUnreachable, fmt.Errorf("bad URL %q: %w", p.URL, err)
	}
	q := u.Query()
	q.Set("min_index", strconv.FormatUint(cfg.MinIndex, 10))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, ReasonUnreachable, fmt.Errorf("building request: %w", err)
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return timedOut(ReasonUnreachable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, nil, ReasonNotFound, fmt.Errorf("HTTP %d: %s", resp.StatusCode, errorText(resp.Body))
	case resp.StatusCode != http.StatusOK:
		return nil, nil, ReasonStatus, fmt.Errorf("HTTP %d: %s", resp.StatusCode, errorText(resp.Body))
	}
	if resp.ContentLength > cfg.MaxBytes {
		return nil, nil, ReasonTooLarge, fmt.Errorf("%w: Content-Length %d, limit %d", errTooLarge, resp.ContentLength, cfg.MaxBytes)
	}
	cert, snap, err := readTransfer(resp.Body, cfg.MaxBytes)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, nil, ReasonTooLarge, err
	case errors.Is(err, ErrMalformed):
		return nil, nil, ReasonMalformed, err
	case err != nil:
		return timedOut(ReasonUnreachable, err)
	}
	if err := cert.Verify(cfg.Committee, cfg.Quarantined); err != nil {
		if cfg.Certified == nil || !cfg.Certified.Statement.Equal(cert.Statement) {
			return nil, nil, ReasonForged, err
		}
		cert = cfg.Certified.clone()
	}
	if cert.Statement.Index < cfg.MinIndex {
		return nil, nil, ReasonStale, fmt.Errorf("certificate is at index %d, below min_index %d", cert.Statement.Index, cfg.MinIndex)
	}
	if cfg.Want != nil {
		if err := cfg.Want(cert); err != nil {
			return nil, nil, ReasonUnwanted, err
		}
	}
	if err := matchSnapshot(cfg.Info, cert.Statement, snap); err != nil {
		if errors.Is(err, ErrMismatch) {
			return nil, nil, ReasonMismatch, err
		}
		return nil, nil, ReasonBadSnapshot, err
	}
	return cert, snap, "", nil
}

// errorText returns the start of an error body, for a rejection.
func errorText(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 256))
	return string(bytes.TrimSpace(b))
}
