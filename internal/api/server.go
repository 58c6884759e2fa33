// Package api serves Tandem's client HTTP API (docs/api.md): signed writes,
// linearizable and stale reads, cluster status, signed admin requests,
// health, readiness and Prometheus metrics.
//
// The package owns HTTP concerns only — body limits, decoding, error mapping,
// request authentication for admin endpoints and metrics. What a request
// does is the Backend's business (internal/node implements it).
package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// Backend is what the API needs from the node.
type Backend interface {
	// Submit prechecks, orders and applies env (forwarding to the leader when
	// needed) and returns its Result.
	Submit(ctx context.Context, env *smr.Envelope) (smr.Result, error)
	// Query reads the state machine, linearizably unless stale.
	Query(ctx context.Context, q smr.Query, stale bool) (value json.RawMessage, index uint64, err error)
	// Status reports this node.
	Status(ctx context.Context) NodeStatus
	// Members lists the voting configuration.
	Members(ctx context.Context) ([]consensus.Member, error)
	// Authorize checks that key holds perm in the local replica's ACL.
	Authorize(key ed25519.PublicKey, perm smr.Permission) error
	// Ready returns nil when the node can serve, or why not.
	Ready() error
	// Admin operations.
	TransferLeader(ctx context.Context, id string) error
	SnapshotSave(ctx context.Context, w io.Writer) (index uint64, err error)
	// SnapshotRestore orders a restore through the log (every replica
	// verifies the admin's signature in r) and returns its Result.
	SnapshotRestore(ctx context.Context, r *smr.Restore) (smr.Result, error)
	AddMember(ctx context.Context, m consensus.Member) error
	RemoveMember(ctx context.Context, id string) error
}

// NodeStatus is the body of GET /v1/status.
type NodeStatus struct {
	consensus.Status
	StateHash string `json:"state_hash"`
	Version   string `json:"version"`
	// Tunables are the settings this node can change at run time
	// (config.Reloadable) with the values in effect, keyed by config key.
	Tunables map[string]string `json:"tunables,omitempty"`
	// Epoch is set in consensus_mode auto.
	Epoch *EpochStatus `json:"epoch,omitempty"`
	// Checkpoint is the last stable checkpoint, when there is one.
	Checkpoint *CheckpointStatus `json:"checkpoint,omitempty"`
}

// CheckpointStatus is the last stable checkpoint of a node: the statement
// a quorum signed (DESIGN invariant 12), with the signers.
type CheckpointStatus struct {
	Epoch     uint64   `json:"epoch"`
	Index     uint64   `json:"index"`
	StateHash string   `json:"state_hash"` // hex, as NodeStatus.StateHash
	Signers   []string `json:"signers"`
	Form      string   `json:"form"`
}

// Config configures the server.
type Config struct {
	Backend Backend
	Logger  *slog.Logger
	// Registry receives the API's metrics and is served on /metrics.
	Registry *prometheus.Registry
	// MaxRequestBytes bounds every request body; checked before reading.
	MaxRequestBytes int64
	// MaxSnapshotBytes bounds a snapshot upload (default 64 MiB). A restore
	// travels through the replicated log as one entry, so keep it modest.
	MaxSnapshotBytes int64
	// AdminClockSkew is how far an admin request's time may be from ours
	// (default 5 minutes).
	AdminClockSkew time.Duration
	// Now is the clock for admin request checks (default time.Now).
	Now func() time.Time
	// EnableDebug mounts net/http/pprof under /debug/pprof/ (config key
	// enable_debug).
	EnableDebug bool
}

// Server is the HTTP handler of the API.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	paths    map[string]*methodRoutes
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New builds the handler and registers its metrics on cfg.Registry.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil || cfg.Registry == nil {
		return nil, errors.New("api: Backend and Registry are required")
	}
	if cfg.MaxRequestBytes <= 0 {
		return nil, fmt.Errorf("api: MaxRequestBytes must be positive, got %d", cfg.MaxRequestBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxSnapshotBytes <= 0 {
		cfg.MaxSnapshotBytes = 64 << 20
	}
	if cfg.AdminClockSkew <= 0 {
		cfg.AdminClockSkew = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:   cfg,
		mux:   http.NewServeMux(),
		paths: map[string]*methodRoutes{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_requests_total",
			Help: "API requests by endpoint and result code (ok or the error code).",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_request_duration_seconds",
			Help:    "API request latency by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"endpoint"}),
	}
	if err := cfg.Registry.Register(s.requests); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	if err := cfg.Registry.Register(s.duration); err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}

	s.route("/v1/submit", http.MethodPost, s.cfg.MaxRequestBytes, s.handleSubmit)
	s.route(wire.PathSubmitBatch, http.MethodPost, s.batchLimit(), s.handleSubmitBatch)
	s.route("/v1/query", http.MethodGet, 0, s.handleQuery)
	s.route("/v1/status", http.MethodGet, 0, s.handleStatus)
	s.route("/v1/members", http.MethodGet, 0, s.handleMembers)
	s.adminRoute("/v1/admin/transfer-leader", http.MethodPost, s.cfg.MaxRequestBytes, s.handleTransferLeader)
	s.adminRoute("/v1/admin/snapshot", http.MethodGet, 0, s.handleSnapshotSave)
	s.adminRoute("/v1/admin/snapshot", http.MethodPost, s.cfg.MaxSnapshotBytes, s.handleSnapshotRestore)
	s.adminRoute("/v1/admin/members", http.MethodPost, s.cfg.MaxRequestBytes, s.handleAddMember)
	s.adminRoute("/v1/admin/members/", http.MethodDelete, 0, s.handleRemoveMember)
	s.detectorRoutes()
	s.modeRoutes()
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.mux.HandleFunc("/readyz", s.handleReady)
	s.mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))
	if cfg.EnableDebug {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.count("unknown", writeError(w, smr.Errorf(smr.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)))
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handlerFunc handles a request and returns the code it answered with.
type handlerFunc func(w http.ResponseWriter, r *http.Request, body []byte) smr.Code

// methodRoutes collects the handlers of one path by method.
type methodRoutes struct {
	byMethod map[string]routeEntry
}

type routeEntry struct {
	limit int64
	pre   func(*http.Request) error // runs before the body is read; nil for none
	h     handlerFunc
}

// route registers h for method on path. A body, when the method has one, is
// read in full with limit enforced first from Content-Length and then while
// reading, so an oversized body is refused before it is buffered.
func (s *Server) route(path, method string, limit int64, h handlerFunc) {
	s.addRoute(path, method, routeEntry{limit: limit, h: h})
}

// adminRoute registers an admin endpoint: authenticated in two steps,
// before the body is read and after (the signature covers the body).
func (s *Server) adminRoute(path, method string, limit int64, h handlerFunc) {
	s.addRoute(path, method, routeEntry{limit: limit, pre: s.adminPreauth, h: s.admin(h)})
}

func (s *Server) addRoute(path, method string, entry routeEntry) {
	endpoint := strings.TrimSuffix(path, "/")
	existing, ok := s.paths[path]
	if !ok {
		existing = &methodRoutes{byMethod: map[string]routeEntry{}}
		s.paths[path] = existing
		s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			e, ok := existing.byMethod[r.Method]
			if !ok {
				allowed := make([]string, 0, len(existing.byMethod))
				for m := range existing.byMethod {
					allowed = append(allowed, m)
				}
				slices.Sort(allowed)
				w.Header().Set("Allow", strings.Join(allowed, ", "))
				s.count(endpoint, writeError(w, &smr.Error{Code: CodeMethodNotAllowed, Message: fmt.Sprintf("%s does not accept %s", r.URL.Path, r.Method)}))
				return
			}
			if e.limit > 0 && r.ContentLength > e.limit {
				s.count(endpoint, writeError(w, smr.Errorf(smr.CodeTooLarge, "request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, e.limit)))
				return
			}
			if e.pre != nil {
				if err := e.pre(r); err != nil {
					s.count(endpoint, writeError(w, err))
					return
				}
			}
			var body []byte
			if e.limit > 0 {
				b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.limit))
				if err != nil {
					var tooBig *http.MaxBytesError
					if errors.As(err, &tooBig) {
						s.count(endpoint, writeError(w, err))
					} else {
						s.count(endpoint, writeError(w, smr.Errorf(smr.CodeMalformed, "reading request body: %v", err)))
					}
					return
				}
				body = b
			}
			code := e.h(w, r, body)
			s.count(endpoint, code)
			s.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
		})
	}
	existing.byMethod[method] = entry
}

func (s *Server) count(endpoint string, code smr.Code) {
	label := string(code)
	if code == smr.CodeOK {
		label = "ok"
	}
	s.requests.WithLabelValues(endpoint, label).Inc()
}

// SubmitResponse is the body of a successful POST /v1/submit.
type SubmitResponse = wire.SubmitResponse

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	var env smr.Envelope
	if err := decodeEnvelope(body, &env); err != nil {
		return writeError(w, err)
	}
	rk := s.replyKey()
	propose := true
	if rk != nil {
		var err error
		if propose, err = parsePropose(r.URL.Query()); err != nil {
			return writeError(w, err)
		}
	}
	o := s.submitEnvelope(r.Context(), &env, propose, rk)
	if o.reply != nil {
		o.reply.Sign(rk.key)
	}
	return o.write(w)
}

// submitOutcome is what one submitted envelope came to: its result and,
// in bft mode, its reply (signed by the caller), or an error; leader is
// the node a cft write was forwarded to.
type submitOutcome struct {
	res    smr.Result
	reply  *wire.SubmitReply
	leader string
	err    error
}

// decodeEnvelope decodes a submitted envelope into env, or says why it
// cannot.
func decodeEnvelope(body []byte, env *smr.Envelope) error {
	if err := decodeStrict(body, env); err != nil {
		return smr.Errorf(smr.CodeMalformed, "envelope: %v", err)
	}
	return nil
}

// submitEnvelope submits a decoded envelope: in bft mode (rk, the
// signing identity, not nil) as a write this replica is asked to propose
// or not, otherwise through the backend's Submit.
func (s *Server) submitEnvelope(ctx context.Context, env *smr.Envelope, propose bool, rk *replier) submitOutcome {
	if rk != nil {
		res, reply, err := rk.submitBFT(ctx, env, propose)
		return submitOutcome{res: res, reply: reply, err: err}
	}
	ctx, note := withLeaderNote(ctx)
	res, err := s.cfg.Backend.Submit(ctx, env)
	o := submitOutcome{res: res, err: err}
	if err == nil {
		o.leader = note.get()
	}
	return o
}

// answer is what POST /v1/submit answers for the outcome: the status,
// the body (an ErrorBody or a SubmitResponse) and the code it counts as.
func (o submitOutcome) answer() (int, any, smr.Code) {
	switch {
	case o.err != nil:
		b := ErrorBodyFor(o.err)
		return StatusFor(b.Code), b, b.Code
	case o.res.Code != smr.CodeOK:
		res := o.res
		return StatusFor(res.Code), ErrorBody{Code: res.Code, Message: res.Message, Result: &res, Reply: o.reply}, res.Code
	}
	return http.StatusOK, SubmitResponse{Result: o.res, Reply: o.reply}, smr.CodeOK
}

// write answers with the outcome as POST /v1/submit does.
func (o submitOutcome) write(w http.ResponseWriter) smr.Code {
	if o.leader != "" {
		w.Header().Set(wire.HeaderLeader, o.leader)
	}
	status, body, code := o.answer()
	writeJSON(w, status, body)
	return code
}

// leaderNote is where a backend notes the leader it forwarded a write to
// (NoteForwardedTo), for the Tandem-Leader header of the answer.
type leaderNote struct {
	mu sync.Mutex
	id string
}

type leaderNoteKey struct{}

func withLeaderNote(ctx context.Context) (context.Context, *leaderNote) {
	n := &leaderNote{}
	return context.WithValue(ctx, leaderNoteKey{}, n), n
}

func (n *leaderNote) get() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.id
}

// NoteForwardedTo records, for the API's answer to the request of ctx,
// that the backend forwarded the write to the leader id. Without a note
// in ctx it does nothing.
func NoteForwardedTo(ctx context.Context, id string) {
	if n, ok := ctx.Value(leaderNoteKey{}).(*leaderNote); ok {
		n.mu.Lock()
		n.id = id
		n.mu.Unlock()
	}
}

// writeResult answers with an ordered entry's Result: 200 with it, or the
// status of its code with it as the error's result. reply is the signed
// reply of bft mode (nil otherwise).
func writeResult(w http.ResponseWriter, res smr.Result, reply *wire.SubmitReply) smr.Code {
	return submitOutcome{res: res, reply: reply}.write(w)
}

// QueryResponse is the body of a successful GET /v1/query.
type QueryResponse = wire.QueryResponse

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	q := r.URL.Query()
	stale := false
	if v := q.Get("stale"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return writeError(w, smr.Errorf(smr.CodeMalformed, "stale: %q is not a boolean", v))
		}
		stale = b
	}
	if v := q.Get("fast"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return writeError(w, smr.Errorf(smr.CodeMalformed, "fast: %q is not a boolean", v))
		}
		stale = stale || b
	}
	nonce := q.Get("nonce")
	if len(nonce) > MaxNonceBytes {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "nonce: %d bytes, at most %d allowed", len(nonce), MaxNonceBytes))
	}
	kind := q.Get("kind")
	if kind == "" {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "kind: required query parameter is missing"))
	}
	query := smr.Query{Kind: smr.QueryKind(kind), Key: q.Get("key")}
	val, idx, err := s.cfg.Backend.Query(r.Context(), query, stale)
	if err != nil {
		return writeError(w, err)
	}
	resp := QueryResponse{Index: idx, Value: val}
	if rk := s.replyKey(); rk != nil {
		resp.Reply = signQuery(rk.id, rk.key, query, nonce, stale, idx, val)
	}
	writeJSON(w, http.StatusOK, resp)
	return smr.CodeOK
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	writeJSON(w, http.StatusOK, s.cfg.Backend.Status(r.Context()))
	return smr.CodeOK
}

// MembersResponse is the body of GET /v1/members.
type MembersResponse = wire.MembersResponse

func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	ms, err := s.cfg.Backend.Members(r.Context())
	if err != nil {
		return writeError(w, err)
	}
	out := MembersResponse{Members: make([]wire.Member, len(ms))}
	for i, m := range ms {
		out.Members[i] = wire.Member{ID: m.ID, Address: m.Address, Voter: m.Voter, Leader: m.Leader}
	}
	writeJSON(w, http.StatusOK, out)
	return smr.CodeOK
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	if err := s.cfg.Backend.Ready(); err != nil {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ready\n")
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Decoder.More reports false for a following '}' or ']', so it cannot
	// detect every kind of trailing data; decoding once more must hit EOF.
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
