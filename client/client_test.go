package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNode is an httptest server that speaks enough of docs/api.md to test
// the client: it records every envelope and query it receives.
type fakeNode struct {
	t      *testing.T
	nodeID string
	srv    *httptest.Server

	mu       sync.Mutex
	envs     []smr.Envelope
	queries  []string // raw query strings of /v1/query
	highest  uint64   // answered to kind=client
	statuses int
	// submit answers POST /v1/submit; nil answers 200 with a result.
	submit func(w http.ResponseWriter, r *http.Request, env smr.Envelope)
	// other answers every other path; nil is 404.
	other func(w http.ResponseWriter, r *http.Request, body []byte)
	// role, when set, gives the role /v1/status reports on its n-th
	// request (1-based); nil is always follower.
	role func(n int) string
}

func newFakeNode(t *testing.T, nodeID string) *fakeNode {
	t.Helper()
	f := &fakeNode{t: t, nodeID: nodeID}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNode) url() string { return f.srv.URL }

func (f *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	switch {
	case r.URL.Path == "/v1/submit" && r.Method == http.MethodPost:
		var env smr.Envelope
		if err := json.Unmarshal(body, &env); err != nil {
			writeErr(w, 400, "malformed", err.Error(), "")
			return
		}
		f.mu.Lock()
		f.envs = append(f.envs, env)
		h := f.submit
		f.mu.Unlock()
		if h != nil {
			h(w, r, env)
			return
		}
		writeResult(w, smr.Result{Index: 100 + env.Seq, Seq: env.Seq})
	case r.URL.Path == "/v1/query" && r.URL.Query().Get("kind") == "client" && f.other == nil:
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.RawQuery)
		hi := f.highest
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"index": 5, "value": smr.ClientInfo{Client: r.URL.Query().Get("key"), Known: true, HighestSeq: hi}})
	case r.URL.Path == "/v1/status" && f.other == nil:
		f.mu.Lock()
		f.statuses++
		role := "follower"
		if f.role != nil {
			role = f.role(f.statuses)
		}
		f.mu.Unlock()
		st := NodeStatus{NodeID: f.nodeID, Role: role, Term: 3}
		if role == "leader" {
			st.LeaderID = f.nodeID
		}
		writeJSON(w, 200, st)
	default:
		if f.other != nil {
			f.other(w, r, body)
			return
		}
		writeErr(w, 404, "not_found", "no such endpoint", "")
	}
}

func (f *fakeNode) envelopes() []smr.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]smr.Envelope(nil), f.envs...)
}

func (f *fakeNode) queryCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queries)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeResult(w http.ResponseWriter, r smr.Result) {
	writeJSON(w, 200, map[string]any{"result": r})
}

func writeErr(w http.ResponseWriter, status int, code, msg, leader string) {
	if status == 503 {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, wire.ErrorBody{Code: smr.Code(code), Message: msg, LeaderID: leader})
}

// dropConn closes the connection without answering: the request was
// received, the answer is lost.
func dropConn(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

// refusedEndpoint returns an http URL on which nothing listens.
func refusedEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func testKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte(t.Name()))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newTestClient(t *testing.T, endpoints []string, mod func(*Config)) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = endpoints
	cfg.Key = testKey(t)
	cfg.RequestTimeout = 2 * time.Second
	cfg.Retry = RetryConfig{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var setCmd = smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"}

func sameEnvelope(t *testing.T, a, b smr.Envelope) {
	t.Helper()
	if a.Seq != b.Seq || !bytes.Equal(a.Sig, b.Sig) || !bytes.Equal(a.Command, b.Command) || !bytes.Equal(a.Client, b.Client) {
		t.Fatalf("retry sent a different envelope: seq %d sig %x… vs seq %d sig %x…", a.Seq, a.Sig[:8], b.Seq, b.Sig[:8])
	}
	if err := a.Verify(); err != nil {
		t.Fatalf("envelope does not verify: %v", err)
	}
}

func TestSubmitRetriesSameEnvelopeAfter503(t *testing.T) {
	for _, code := range []string{"no_leader", "outcome_unknown"} {
		t.Run(code, func(t *testing.T) {
			a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
			a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
				writeErr(w, 503, code, "try elsewhere", "")
			}
			c := newTestClient(t, []string{a.url(), b.url()}, func(cfg *Config) { cfg.StartSeq = 7 })
			res, err := c.Submit(ctxT(t), setCmd)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if res.Seq != 7 || res.Index != 107 {
				t.Fatalf("result = %+v, want seq 7 index 107", res)
			}
			ea, eb := a.envelopes(), b.envelopes()
			if len(ea) != 1 || len(eb) != 1 {
				t.Fatalf("node a got %d envelopes, node b %d; want 1 each", len(ea), len(eb))
			}
			sameEnvelope(t, ea[0], eb[0])
		})
	}
}

func TestSubmitRetriesSameEnvelopeAfterDroppedConnection(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) { dropConn(w) }
	b.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
		// The first attempt was executed: the retry finds the stored result.
		writeResult(w, smr.Result{Index: 55, Seq: env.Seq, Duplicate: true})
	}
	c := newTestClient(t, []string{a.url(), b.url()}, func(cfg *Config) { cfg.StartSeq = 3 })
	res, err := c.Submit(ctxT(t), setCmd)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if !res.Duplicate || res.Index != 55 {
		t.Fatalf("result = %+v, want the duplicate answer at index 55", res)
	}
	ea, eb := a.envelopes(), b.envelopes()
	if len(ea) != 1 || len(eb) != 1 {
		t.Fatalf("node a got %d envelopes, node b %d; want 1 each", len(ea), len(eb))
	}
	sameEnvelope(t, ea[0], eb[0])
}

func TestSubmitOutcomeUnknownWhenAnswersAreLost(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) { dropConn(w) }
	b.submit = a.submit
	c := newTestClient(t, []string{a.url(), b.url()}, func(cfg *Config) { cfg.StartSeq = 1 })
	_, err := c.Submit(ctxT(t), setCmd)
	if !IsOutcomeUnknown(err) || IsUnavailable(err) {
		t.Fatalf("err = %v; want ErrOutcomeUnknown only", err)
	}
	var re *RetryError
	if !errors.As(err, &re) || re.Envelope == nil || re.Envelope.Seq != 1 || re.Attempts != 4 {
		t.Fatalf("err = %#v; want a *RetryError with the seq-1 envelope after 4 attempts", err)
	}
	for _, e := range append(a.envelopes(), b.envelopes()...) {
		sameEnvelope(t, *re.Envelope, e)
	}

	// Resubmitting the same envelope once a node answers resolves it.
	b.mu.Lock()
	b.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
		writeResult(w, smr.Result{Index: 9, Seq: env.Seq, Duplicate: true})
	}
	b.mu.Unlock()
	res, err := c.Resubmit(ctxT(t), re.Envelope)
	if err != nil || !res.Duplicate {
		t.Fatalf("Resubmit = %+v, %v; want the duplicate result", res, err)
	}
}

func TestSubmitTimeoutIsOutcomeUnknown(t *testing.T) {
	a := newFakeNode(t, "n1")
	a.submit = func(_ http.ResponseWriter, r *http.Request, _ smr.Envelope) { <-r.Context().Done() }
	// Without StartSeq the client first asks n1 for its highest seq, so the
	// submit reuses that connection: the attempt timeout then cannot expire
	// in a slow dial, before the request was written.
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) {
		cfg.RequestTimeout = 200 * time.Millisecond
		cfg.Retry.MaxAttempts = 2
	})
	_, err := c.Submit(ctxT(t), setCmd)
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v; want ErrOutcomeUnknown", err)
	}
	if !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Fatalf("err = %v; want it to name the attempt timeout", err)
	}
}

func TestSubmitUnavailable(t *testing.T) {
	noLeader := func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 503, "no_leader", "no leader known", "")
	}
	t.Run("dials refused", func(t *testing.T) {
		c := newTestClient(t, []string{refusedEndpoint(t), refusedEndpoint(t)}, func(cfg *Config) { cfg.StartSeq = 1 })
		_, err := c.Submit(ctxT(t), setCmd)
		if !IsUnavailable(err) || IsOutcomeUnknown(err) {
			t.Fatalf("err = %v; want ErrUnavailable only", err)
		}
	})
	t.Run("no leader and refused", func(t *testing.T) {
		a := newFakeNode(t, "n1")
		a.submit = noLeader
		c := newTestClient(t, []string{a.url(), refusedEndpoint(t)}, func(cfg *Config) { cfg.StartSeq = 1 })
		_, err := c.Submit(ctxT(t), setCmd)
		if !IsUnavailable(err) || IsOutcomeUnknown(err) {
			t.Fatalf("err = %v; want ErrUnavailable only", err)
		}
		var ae *APIError
		if !errors.As(err, &ae) && !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v; want the last attempt's error inside", err)
		}
	})
	t.Run("not initialized", func(t *testing.T) {
		a := newFakeNode(t, "n1")
		a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
			writeErr(w, 503, string(smr.CodeNotInitialized), "no genesis applied yet", "")
		}
		c := newTestClient(t, []string{a.url(), refusedEndpoint(t)}, func(cfg *Config) { cfg.StartSeq = 1 })
		_, err := c.Submit(ctxT(t), setCmd)
		if !IsUnavailable(err) || IsOutcomeUnknown(err) {
			t.Fatalf("err = %v; want ErrUnavailable only", err)
		}
	})
	t.Run("one maybe-received attempt makes it unknown", func(t *testing.T) {
		a := newFakeNode(t, "n1")
		a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
			writeErr(w, 503, "outcome_unknown", "leadership lost", "")
		}
		c := newTestClient(t, []string{refusedEndpoint(t), a.url()}, func(cfg *Config) { cfg.StartSeq = 1 })
		_, err := c.Submit(ctxT(t), setCmd)
		if !IsOutcomeUnknown(err) || IsUnavailable(err) {
			t.Fatalf("err = %v; want ErrOutcomeUnknown only", err)
		}
	})
}

func TestSubmitContextEndsRetries(t *testing.T) {
	c := newTestClient(t, []string{refusedEndpoint(t)}, func(cfg *Config) {
		cfg.StartSeq = 1
		cfg.Retry = RetryConfig{MaxAttempts: 1000, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Submit(ctx, setCmd)
	if !IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want ErrUnavailable wrapping the deadline", err)
	}
}

func TestSubmitFollowsLeaderHint(t *testing.T) {
	n1, n2, n3 := newFakeNode(t, "n1"), newFakeNode(t, "n2"), newFakeNode(t, "n3")
	n1.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 503, "no_leader", "cannot reach the leader", "n3")
	}
	c := newTestClient(t, []string{n1.url(), n2.url(), n3.url()}, func(cfg *Config) {
		cfg.StartSeq = 1
		// A long backoff shows the hint is followed without waiting.
		cfg.Retry = RetryConfig{MaxAttempts: 3, InitialBackoff: time.Minute, MaxBackoff: time.Minute}
	})
	if _, err := c.Submit(ctxT(t), setCmd); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if got := len(n2.envelopes()); got != 0 {
		t.Fatalf("n2 got %d envelopes; the hint named n3", got)
	}
	if got := len(n3.envelopes()); got != 1 {
		t.Fatalf("n3 got %d envelopes, want 1", got)
	}
	// The next write goes to the node that answered, without a detour.
	if _, err := c.Submit(ctxT(t), setCmd); err != nil {
		t.Fatalf("second Submit: %v", err)
	}
	if a, b := len(n1.envelopes()), len(n3.envelopes()); a != 1 || b != 2 {
		t.Fatalf("after two writes n1 got %d and n3 %d envelopes; want 1 and 2", a, b)
	}
}

func TestSubmitGoesToTheNewLeaderDuringAnElection(t *testing.T) {
	for _, code := range []string{"no_leader", "outcome_unknown"} {
		t.Run(code, func(t *testing.T) {
			// n1 cannot reach the old leader and names none; n3 reports
			// itself leader from its third status request on.
			n1, n2, n3 := newFakeNode(t, "n1"), newFakeNode(t, "n2"), newFakeNode(t, "n3")
			n1.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
				writeErr(w, 503, code, "forward to the leader: connection refused", "")
			}
			n3.role = func(n int) string {
				if n >= 3 {
					return "leader"
				}
				return "follower"
			}
			c := newTestClient(t, []string{n1.url(), n2.url(), n3.url()}, func(cfg *Config) {
				cfg.StartSeq = 1
				// A backoff longer than the test's context shows that the
				// write goes to the new leader without waiting it out.
				cfg.Retry = RetryConfig{MaxAttempts: 3, InitialBackoff: time.Hour, MaxBackoff: time.Hour}
			})
			if _, err := c.Submit(ctxT(t), setCmd); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if got := len(n2.envelopes()); got != 0 {
				t.Fatalf("n2 got %d envelopes; n3 reported itself leader", got)
			}
			if got := len(n3.envelopes()); got != 1 {
				t.Fatalf("n3 got %d envelopes, want 1", got)
			}
			n3.mu.Lock()
			polls := n3.statuses
			n3.mu.Unlock()
			if polls < 3 {
				t.Fatalf("n3 was asked for its status %d times; it reported leader only on the third", polls)
			}
		})
	}
}

func TestSubmitBacksOffWhenTheReportedLeaderFailsToo(t *testing.T) {
	// n2 reports itself leader but cannot commit: after its own
	// no_leader the client waits the backoff instead of asking again.
	n1, n2 := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	noLeader := func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 503, "no_leader", "leadership lost", "")
	}
	n1.submit, n2.submit = noLeader, noLeader
	n2.role = func(int) string { return "leader" }
	c := newTestClient(t, []string{n1.url(), n2.url()}, func(cfg *Config) {
		cfg.StartSeq = 1
		cfg.Retry = RetryConfig{MaxAttempts: 6, InitialBackoff: time.Hour, MaxBackoff: time.Hour}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Submit(ctx, setCmd)
	var re *RetryError
	if !errors.As(err, &re) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want a *RetryError ended by the context while backing off", err)
	}
	if re.Attempts != 2 || len(n2.envelopes()) != 1 {
		t.Fatalf("%d attempts, %d to n2; want 2, the second to n2 and then the backoff", re.Attempts, len(n2.envelopes()))
	}
}

func TestSubmitWaitsOutTheBackoffWhenNoLeaderAppears(t *testing.T) {
	n1, n2 := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	noLeader := func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 503, "no_leader", "no leader known", "")
	}
	n1.submit, n2.submit = noLeader, noLeader
	c := newTestClient(t, []string{n1.url(), n2.url()}, func(cfg *Config) {
		cfg.StartSeq = 1
		cfg.Retry = RetryConfig{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	})
	_, err := c.Submit(ctxT(t), setCmd)
	if !IsUnavailable(err) || IsOutcomeUnknown(err) {
		t.Fatalf("err = %v; want ErrUnavailable only", err)
	}
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != 3 {
		t.Fatalf("err = %v; want a *RetryError after 3 attempts", err)
	}
	n1.mu.Lock()
	polls := n1.statuses
	n1.mu.Unlock()
	if polls == 0 {
		t.Fatal("no node was asked for its status while no leader was known")
	}
}

func TestConcurrentSubmitsGetDistinctSeqs(t *testing.T) {
	a := newFakeNode(t, "n1")
	a.highest = 10
	c := newTestClient(t, []string{a.url()}, nil)
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Submit(ctxT(t), setCmd); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Submit: %v", err)
	}
	seen := map[uint64]bool{}
	for _, e := range a.envelopes() {
		if seen[e.Seq] {
			t.Fatalf("seq %d used twice", e.Seq)
		}
		seen[e.Seq] = true
	}
	for s := uint64(11); s <= 10+n; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing; seqs used: %v", s, seen)
		}
	}
	if q := a.queryCount(); q != 1 {
		t.Fatalf("client asked for its highest seq %d times, want once", q)
	}
}

func TestSeqContinuesFromCluster(t *testing.T) {
	a := newFakeNode(t, "n1")
	a.highest = 41
	c := newTestClient(t, []string{a.url()}, nil)
	for want := uint64(42); want <= 43; want++ {
		res, err := c.Submit(ctxT(t), setCmd)
		if err != nil || res.Seq != want {
			t.Fatalf("Submit = %+v, %v; want seq %d", res, err, want)
		}
	}
	a.mu.Lock()
	q := a.queries[0]
	a.mu.Unlock()
	wantKey := smr.FormatKey(c.PublicKey())
	if q != "key="+wantKey+"&kind=client" {
		t.Fatalf("client query = %q; want a linearizable kind=client query for key %s", q, wantKey)
	}
}

func TestSeqResyncAfterSeqError(t *testing.T) {
	a := newFakeNode(t, "n1")
	a.highest = 5
	first := true
	a.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
		if first {
			first = false
			writeErr(w, 400, "seq_too_far", "seq jumps too far", "")
			return
		}
		writeResult(w, smr.Result{Index: 1, Seq: env.Seq})
	}
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) { cfg.StartSeq = 1000 })
	_, err := c.Submit(ctxT(t), setCmd)
	if ErrorCode(err) != smr.CodeSeqTooFar {
		t.Fatalf("err = %v; want seq_too_far", err)
	}
	res, err := c.Submit(ctxT(t), setCmd)
	if err != nil || res.Seq != 6 {
		t.Fatalf("Submit after resync = %+v, %v; want seq 6", res, err)
	}
}

func TestSubmitResignsAfterSeqConflict(t *testing.T) {
	a := newFakeNode(t, "n1")
	a.highest = 20 // another process with the same key got ahead
	a.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
		if env.Seq <= 20 {
			writeErr(w, 409, "seq_conflict", "seq already used with another command", "")
			return
		}
		writeResult(w, smr.Result{Index: 1, Seq: env.Seq})
	}
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) { cfg.StartSeq = 3 })
	res, err := c.Submit(ctxT(t), setCmd)
	if err != nil || res.Seq != 21 {
		t.Fatalf("Submit = %+v, %v; want success with seq 21", res, err)
	}
	if q := a.queryCount(); q != 1 {
		t.Fatalf("asked the cluster %d times for the highest seq, want 1", q)
	}
	// SubmitAt with an explicit seq is not re-signed.
	if _, err := c.SubmitAt(ctxT(t), 5, setCmd); ErrorCode(err) != smr.CodeSeqConflict {
		t.Fatalf("SubmitAt(5) err = %v; want seq_conflict", err)
	}
}

func TestSubmitDefinitiveRejection(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	a.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
		writeJSON(w, 403, wire.ErrorBody{Code: smr.CodeLastAdmin, Message: "would leave no admin",
			Result: &smr.Result{Index: 12, Seq: env.Seq, Code: smr.CodeLastAdmin, Message: "would leave no admin"}})
	}
	c := newTestClient(t, []string{a.url(), b.url()}, func(cfg *Config) { cfg.StartSeq = 1 })
	_, err := c.Submit(ctxT(t), setCmd)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Code != smr.CodeLastAdmin || ae.Result == nil || ae.Result.Index != 12 {
		t.Fatalf("err = %#v; want a 403 last_admin *APIError with the result", err)
	}
	if IsOutcomeUnknown(err) || IsUnavailable(err) {
		t.Fatalf("a definitive rejection was classified as %v", err)
	}
	if len(b.envelopes()) != 0 {
		t.Fatal("a definitive rejection was retried on another node")
	}
}

func TestSubmitServerErrorIsOutcomeUnknown(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 500, "internal", "encoding the result failed", "")
	}
	c := newTestClient(t, []string{a.url(), b.url()}, func(cfg *Config) { cfg.StartSeq = 1 })
	_, err := c.Submit(ctxT(t), setCmd)
	var ae *APIError
	if !IsOutcomeUnknown(err) || !errors.As(err, &ae) || ae.Code != wire.CodeInternal {
		t.Fatalf("err = %v; want ErrOutcomeUnknown carrying the 500", err)
	}
}

func TestSubmitWithoutKey(t *testing.T) {
	a := newFakeNode(t, "n1")
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) { cfg.Key = nil })
	if _, err := c.Submit(ctxT(t), setCmd); !errors.Is(err, ErrNoKey) {
		t.Fatalf("err = %v; want ErrNoKey", err)
	}
	if err := c.TransferLeader(ctxT(t), ""); !errors.Is(err, ErrNoKey) {
		t.Fatalf("admin err = %v; want ErrNoKey", err)
	}
}

func TestTypedWritesEncodeCommands(t *testing.T) {
	a := newFakeNode(t, "n1")
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) { cfg.StartSeq = 1 })
	ctx := ctxT(t)
	calls := []struct {
		run  func() (smr.Result, error)
		want smr.Command
	}{
		{func() (smr.Result, error) {
			return c.RegisterSession(ctx, "s1", map[string]string{"a": "b"}, 1500*time.Millisecond)
		}, smr.Command{Op: smr.OpRegisterSession, SessionID: "s1", Metadata: map[string]string{"a": "b"}, TTLMillis: 1500}},
		{func() (smr.Result, error) { return c.RenewSession(ctx, "s1") }, smr.Command{Op: smr.OpRenewSession, SessionID: "s1"}},
		{func() (smr.Result, error) { return c.UnregisterSession(ctx, "s1") }, smr.Command{Op: smr.OpUnregisterSession, SessionID: "s1"}},
		{func() (smr.Result, error) { return c.RegisterTool(ctx, "t", json.RawMessage(`{"x":1}`)) },
			smr.Command{Op: smr.OpRegisterTool, ToolName: "t", Definition: json.RawMessage(`{"x":1}`)}},
		{func() (smr.Result, error) { return c.UnregisterTool(ctx, "t") }, smr.Command{Op: smr.OpUnregisterTool, ToolName: "t"}},
		{func() (smr.Result, error) { return c.Subscribe(ctx, "u://r", "s") },
			smr.Command{Op: smr.OpSubscribeResource, ResourceURI: "u://r", Subscriber: "s"}},
		{func() (smr.Result, error) { return c.Unsubscribe(ctx, "u://r", "s") },
			smr.Command{Op: smr.OpUnsubscribeResource, ResourceURI: "u://r", Subscriber: "s"}},
		{func() (smr.Result, error) { return c.UpdateACL(ctx, c.ID(), smr.PermToolWrite, smr.EffectDeny) },
			smr.Command{Op: smr.OpUpdateACL, Subject: c.ID(), Permission: smr.PermToolWrite, Effect: smr.EffectDeny}},
		{func() (smr.Result, error) { return c.SetConfig(ctx, "k", "v") }, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"}},
		{func() (smr.Result, error) { return c.DeleteConfig(ctx, "k") }, smr.Command{Op: smr.OpDeleteConfig, Key: "k"}},
	}
	for i, tc := range calls {
		if _, err := tc.run(); err != nil {
			t.Fatalf("call %d (%s): %v", i, tc.want.Op, err)
		}
		envs := a.envelopes()
		got, err := smr.DecodeCommand(envs[len(envs)-1].Command)
		if err != nil {
			t.Fatalf("call %d: decode command: %v", i, err)
		}
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(tc.want)
		if !bytes.Equal(gb, wb) {
			t.Fatalf("call %d: sent %s, want %s", i, gb, wb)
		}
	}
	if _, err := c.RegisterSession(ctx, "s", nil, -time.Second); err == nil {
		t.Fatal("a negative ttl was accepted")
	}
}

func TestQuery(t *testing.T) {
	var mu sync.Mutex
	var got []string
	fails := 1
	a := newFakeNode(t, "n1")
	a.other = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Path == "/v1/status" {
			// Asked while no leader is known.
			writeJSON(w, 200, NodeStatus{NodeID: "n1", Role: "candidate", Term: 3})
			return
		}
		mu.Lock()
		got = append(got, r.URL.RawQuery)
		fail := fails > 0
		fails--
		mu.Unlock()
		if fail {
			writeErr(w, 503, "no_leader", "electing", "")
			return
		}
		q := r.URL.Query()
		switch q.Get("kind") {
		case "tool":
			if q.Get("key") != "search" {
				writeErr(w, 404, "not_found", "tool is not registered", "")
				return
			}
			writeJSON(w, 200, map[string]any{"index": 33, "value": smr.ToolInfo{ToolName: "search", Definition: json.RawMessage(`{"a":1}`)}})
		case "configs":
			writeJSON(w, 200, map[string]any{"index": 34, "value": []smr.ConfigEntry{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}})
		default:
			writeErr(w, 400, "malformed", "unknown kind", "")
		}
	}
	c := newTestClient(t, []string{a.url()}, nil)
	ctx := ctxT(t)

	tool, idx, err := c.GetTool(ctx, "search")
	if err != nil || idx != 33 || tool.ToolName != "search" || string(tool.Definition) != `{"a":1}` {
		t.Fatalf("GetTool = %+v, %d, %v", tool, idx, err)
	}
	cfgs, idx, err := c.ListConfig(ctx, Stale())
	if err != nil || idx != 34 || len(cfgs) != 2 || cfgs[1].Value != "2" {
		t.Fatalf("ListConfig = %+v, %d, %v", cfgs, idx, err)
	}
	if _, _, err := c.GetTool(ctx, "nope"); ErrorCode(err) != smr.CodeNotFound {
		t.Fatalf("GetTool(nope) err = %v; want not_found", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"key=search&kind=tool", "key=search&kind=tool", "kind=configs&stale=true", "key=nope&kind=tool"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("queries sent = %q, want %q (the 503 retried)", got, want)
	}
}

func TestQueryUnavailable(t *testing.T) {
	c := newTestClient(t, []string{refusedEndpoint(t)}, nil)
	_, _, err := c.Query(ctxT(t), smr.Query{Kind: smr.QuerySessions})
	if !IsUnavailable(err) {
		t.Fatalf("err = %v; want ErrUnavailable", err)
	}
	// A read that may have reached a node is still just unavailable.
	a := newFakeNode(t, "n1")
	a.other = func(w http.ResponseWriter, _ *http.Request, _ []byte) { dropConn(w) }
	c = newTestClient(t, []string{a.url()}, nil)
	if _, _, err = c.Query(ctxT(t), smr.Query{Kind: smr.QuerySessions}); !IsUnavailable(err) || IsOutcomeUnknown(err) {
		t.Fatalf("err = %v; want ErrUnavailable only", err)
	}
}

// verifyAdmin checks the admin headers of r against docs/api.md, building
// the signed bytes independently of the client.
func verifyAdmin(t *testing.T, r *http.Request, body []byte, pub ed25519.PublicKey, now time.Time) error {
	key, err := hex.DecodeString(r.Header.Get("Tandem-Key"))
	if err != nil || !bytes.Equal(key, pub) {
		return fmt.Errorf("Tandem-Key %q is not the client key", r.Header.Get("Tandem-Key"))
	}
	ts := r.Header.Get("Tandem-Time")
	if ts != strconv.FormatInt(now.Unix(), 10) {
		return fmt.Errorf("Tandem-Time %q, want %d", ts, now.Unix())
	}
	sig, err := base64.RawURLEncoding.DecodeString(r.Header.Get("Tandem-Signature"))
	if err != nil {
		return fmt.Errorf("Tandem-Signature: %v", err)
	}
	sum := sha256.Sum256(body)
	msg := "tandem/admin/v1\x00" + r.Method + "\n" + r.URL.RequestURI() + "\n" + ts + "\n" + hex.EncodeToString(sum[:])
	if !ed25519.Verify(pub, []byte(msg), sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

func TestAdminRequestsAreSigned(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	key := testKey(t)
	pub := key.Public().(ed25519.PublicKey)
	var mu sync.Mutex
	var seen []string
	a := newFakeNode(t, "n1")
	a.other = func(w http.ResponseWriter, r *http.Request, body []byte) {
		if err := verifyAdmin(t, r, body, pub, now); err != nil {
			writeErr(w, 401, "bad_signature", err.Error(), "")
			return
		}
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+string(body))
		mu.Unlock()
		if r.Method == http.MethodGet && r.URL.Path == "/v1/admin/snapshot" {
			w.Header().Set("Tandem-Snapshot-Index", "77")
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte("SNAPSHOT-BYTES"))
			return
		}
		writeJSON(w, 200, map[string]string{"status": "ok"})
	}
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) {
		cfg.Key = key
		cfg.Now = func() time.Time { return now }
	})
	ctx := ctxT(t)
	if err := c.TransferLeader(ctx, "n2"); err != nil {
		t.Fatalf("TransferLeader: %v", err)
	}
	if err := c.AddMember(ctx, "n5", "10.0.0.5:7002"); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if err := c.RemoveMember(ctx, "n5"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	var buf bytes.Buffer
	idx, err := c.SnapshotSave(ctx, &buf)
	if err != nil || idx != 77 || buf.String() != "SNAPSHOT-BYTES" {
		t.Fatalf("SnapshotSave = %d, %q, %v", idx, buf.String(), err)
	}
	if err := c.SnapshotRestore(ctx, strings.NewReader("SNAP")); err != nil {
		t.Fatalf("SnapshotRestore: %v", err)
	}
	var got map[string]string
	if err := c.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/evidence?x=1", nil, &got); err != nil || got["status"] != "ok" {
		t.Fatalf("AdminJSON GET = %v, %v", got, err)
	}
	if err := c.AdminJSON(ctx, a.url(), http.MethodPost, "/v1/admin/quarantine/lift", []byte(`{"node":"n3"}`), nil); err != nil {
		t.Fatalf("AdminJSON POST: %v", err)
	}
	want := []string{
		`POST /v1/admin/transfer-leader {"id":"n2"}`,
		`POST /v1/admin/members {"id":"n5","address":"10.0.0.5:7002"}`,
		`DELETE /v1/admin/members/n5 `,
		`GET /v1/admin/snapshot `,
		`POST /v1/admin/snapshot SNAP`,
		`GET /v1/admin/evidence `,
		`POST /v1/admin/quarantine/lift {"node":"n3"}`,
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("admin requests = %q\nwant %q", seen, want)
	}

	// A different key's signature is refused by the same check.
	other := newTestClient(t, []string{a.url()}, func(cfg *Config) {
		cfg.Key = ed25519.NewKeyFromSeed(make([]byte, 32))
		cfg.Now = func() time.Time { return now }
	})
	if err := other.TransferLeader(ctx, ""); ErrorCode(err) != smr.CodeBadSignature {
		t.Fatalf("other key: err = %v; want bad_signature", err)
	}
}

func TestAdminChangeNotResentAfterMaybeReceived(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	var bCalls atomic.Int32
	a.other = func(w http.ResponseWriter, _ *http.Request, _ []byte) { dropConn(w) }
	b.other = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		bCalls.Add(1)
		writeJSON(w, 200, map[string]string{"status": "ok"})
	}
	c := newTestClient(t, []string{a.url(), b.url()}, nil)
	err := c.AddMember(ctxT(t), "n5", "10.0.0.5:7002")
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v; want ErrOutcomeUnknown", err)
	}
	if n := bCalls.Load(); n != 0 {
		t.Fatalf("the membership change was resent to another node %d times", n)
	}

	// But a refused dial is retried elsewhere.
	c = newTestClient(t, []string{refusedEndpoint(t), b.url()}, nil)
	if err := c.AddMember(ctxT(t), "n5", "10.0.0.5:7002"); err != nil || bCalls.Load() != 1 {
		t.Fatalf("AddMember = %v with %d calls on n2; want success after the refused dial", err, bCalls.Load())
	}
}

func TestStatusAllAndMembers(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	b.other = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.URL.Path == "/v1/members" {
			writeJSON(w, 200, map[string]any{"members": []Member{{ID: "n1", Address: "a:1", Voter: true, Leader: true}, {ID: "n2", Address: "b:1", Voter: true}}})
			return
		}
		writeErr(w, 500, "internal", "status broke", "")
	}
	down := refusedEndpoint(t)
	c := newTestClient(t, []string{a.url(), b.url(), down}, nil)
	all := c.StatusAll(ctxT(t))
	if len(all) != 3 {
		t.Fatalf("StatusAll returned %d entries, want 3", len(all))
	}
	if all[0].Err != nil || all[0].Status.NodeID != "n1" || all[0].Status.Term != 3 {
		t.Fatalf("entry 0 = %+v", all[0])
	}
	if ErrorCode(all[1].Err) != wire.CodeInternal || all[1].Status != nil {
		t.Fatalf("entry 1 = %+v; want the 500", all[1])
	}
	if !IsUnavailable(all[2].Err) || all[2].Endpoint != down {
		t.Fatalf("entry 2 = %+v; want unavailable", all[2])
	}

	// Members: n1 has no /v1/members (404 is definitive), so pin to n2.
	c2 := newTestClient(t, []string{b.url()}, nil)
	ms, err := c2.Members(ctxT(t))
	if err != nil || len(ms) != 2 || !ms[0].Leader || ms[1].Address != "b:1" {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
}

func TestConfigValidate(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	cases := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error, "" = valid
	}{
		{"ok http", func(*Config) {}, ""},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "Endpoints is empty"},
		{"bad scheme", func(c *Config) { c.Endpoints = []string{"ftp://h:1"} }, `scheme "ftp"`},
		{"no port", func(c *Config) { c.Endpoints = []string{"http://h"} }, "no port"},
		{"path", func(c *Config) { c.Endpoints = []string{"http://h:1/v1"} }, "no user, path"},
		{"duplicate", func(c *Config) { c.Endpoints = []string{"http://h:1", "http://h:1/"} }, "listed twice"},
		{"https needs tls", func(c *Config) { c.Endpoints = []string{"h:1"} }, "TLS is nil"},
		{"short key", func(c *Config) { c.Key = key[:10] }, "Key has 10 bytes"},
		{"backoff order", func(c *Config) { c.Retry = RetryConfig{InitialBackoff: time.Second, MaxBackoff: time.Millisecond} }, "larger than"},
		{"negative attempts", func(c *Config) { c.Retry.MaxAttempts = -1 }, "MaxAttempts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Endpoints = []string{"http://127.0.0.1:7001"}
			cfg.Key = key
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	if got, err := ParseEndpoint(" 10.0.0.1:7001 "); err != nil || got != "https://10.0.0.1:7001" {
		t.Fatalf("ParseEndpoint(bare) = %q, %v", got, err)
	}
}

func TestBackoffBounds(t *testing.T) {
	c := &Client{cfg: Config{Retry: RetryConfig{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}}}
	for n := 1; n <= 10; n++ {
		ceil := min(80*time.Millisecond, 10*time.Millisecond<<(n-1))
		for range 50 {
			d := c.backoff(n, 0)
			if d < ceil/2 || d > ceil {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, ceil/2, ceil)
			}
		}
	}
	if d := c.backoff(1, time.Second); d != 80*time.Millisecond {
		t.Fatalf("Retry-After is capped at MaxBackoff: got %s", d)
	}
	if d := c.backoff(1, 50*time.Millisecond); d != 50*time.Millisecond {
		t.Fatalf("Retry-After raises the delay: got %s", d)
	}
}

// seqsSent lists the distinct seqs of the envelopes the nodes received.
func seqsSent(nodes ...*fakeNode) map[uint64]int {
	out := map[uint64]int{}
	for _, n := range nodes {
		for _, e := range n.envelopes() {
			out[e.Seq]++
		}
	}
	return out
}

// TestSubmitNeverResignsAfterPossibleDelivery reproduces a write whose first
// attempt executes but whose answer is lost: a later attempt's answer that
// cannot tell whether the first one executed must end the call as outcome
// unknown, and the command must not be signed under a second seq.
func TestSubmitNeverResignsAfterPossibleDelivery(t *testing.T) {
	cases := []struct {
		name   string
		answer func(w http.ResponseWriter)
		code   smr.Code
	}{
		{"seq_too_old", func(w http.ResponseWriter) {
			writeErr(w, 409, "seq_too_old", "seq 7 is older than the retained window", "")
		}, smr.CodeSeqTooOld},
		{"unknown_client", func(w http.ResponseWriter) {
			writeErr(w, 403, "unknown_client", "client is not invited", "")
		}, smr.CodeUnknownClient},
		{"proxy 4xx", func(w http.ResponseWriter) {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
		}, ""},
		{"code unknown to the client", func(w http.ResponseWriter) {
			writeErr(w, 409, "not_initialized", "this node has not joined a cluster", "")
		}, "not_initialized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
			var executed atomic.Int32
			// n1 executes the write, then the connection breaks before the
			// answer.
			a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
				executed.Add(1)
				dropConn(w)
			}
			b.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) { tc.answer(w) }
			a.highest = 6
			c := newTestClient(t, []string{a.url(), b.url()}, nil)
			_, err := c.Submit(ctxT(t), setCmd)
			if !IsOutcomeUnknown(err) || IsUnavailable(err) {
				t.Fatalf("err = %v; want ErrOutcomeUnknown only", err)
			}
			var re *RetryError
			if !errors.As(err, &re) || re.Envelope == nil || re.Envelope.Seq != 7 || re.Attempts != 2 {
				t.Fatalf("err = %#v; want a *RetryError for the seq-7 envelope after 2 attempts", err)
			}
			var ae *APIError
			if !errors.As(re.Last, &ae) || ae.Code != tc.code || ErrorCode(err) != tc.code {
				t.Fatalf("RetryError.Last = %v; want the %q answer", re.Last, tc.code)
			}
			if got := seqsSent(a, b); len(got) != 1 || got[7] != 2 {
				t.Fatalf("seqs sent = %v; want only seq 7, twice", got)
			}
			for _, e := range append(a.envelopes(), b.envelopes()...) {
				sameEnvelope(t, *re.Envelope, e)
			}
			if executed.Load() != 1 {
				t.Fatalf("n1 executed %d times", executed.Load())
			}
		})
	}
}

// A rejection that the state machine only gives after consulting the seq
// table settles the earlier attempts: it is reported as such, still without
// a second seq.
func TestSubmitSeqConflictAfterPossibleDeliveryIsReturned(t *testing.T) {
	a, b := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) { dropConn(w) }
	b.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 409, "seq_conflict", "seq 3 was already executed with a different command", "")
	}
	c := newTestClient(t, []string{a.url(), b.url()}, func(cfg *Config) { cfg.StartSeq = 3 })
	_, err := c.Submit(ctxT(t), setCmd)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != smr.CodeSeqConflict || IsOutcomeUnknown(err) {
		t.Fatalf("err = %v; want the seq_conflict rejection", err)
	}
	if got := seqsSent(a, b); len(got) != 1 || got[3] != 2 {
		t.Fatalf("seqs sent = %v; want only seq 3, twice", got)
	}
}

// Attempts that cannot have reached a node (a refused dial, no_leader) do
// not stop Submit from re-signing after seq_conflict or seq_too_old.
func TestSubmitResignsWhenNothingWasDelivered(t *testing.T) {
	for _, code := range []string{"seq_conflict", "seq_too_old"} {
		t.Run(code, func(t *testing.T) {
			a := newFakeNode(t, "n1")
			noLeaderOnce := true
			a.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
				if noLeaderOnce {
					noLeaderOnce = false
					writeErr(w, 503, "no_leader", "electing", "")
					return
				}
				if env.Seq <= 15 {
					writeErr(w, 409, code, "seq is taken", "")
					return
				}
				writeResult(w, smr.Result{Index: 40, Seq: env.Seq})
			}
			// Another process used seqs up to 12 with this key; this client
			// believes it is at 15, and seq 15 is gone.
			a.highest = 12
			// Attempts: refused, no_leader, refused, <code>; then seq 16:
			// refused, success.
			c := newTestClient(t, []string{refusedEndpoint(t), a.url()}, func(cfg *Config) { cfg.StartSeq = 15 })
			res, err := c.Submit(ctxT(t), setCmd)
			if err != nil || res.Seq != 16 {
				t.Fatalf("Submit = %+v, %v; want success under seq 16 (above the seq already handed out)", res, err)
			}
			if got := seqsSent(a); len(got) != 2 || got[15] != 2 || got[16] != 1 {
				t.Fatalf("seqs sent = %v; want 15 (no_leader, then %s) and 16", got, code)
			}
		})
	}
}

// SubmitAt and Resubmit send a seq that an earlier call may have executed,
// so seq_too_old is an unknown outcome even on their first attempt.
func TestExplicitSeqTooOldIsOutcomeUnknown(t *testing.T) {
	a := newFakeNode(t, "n1")
	a.submit = func(w http.ResponseWriter, _ *http.Request, _ smr.Envelope) {
		writeErr(w, 409, "seq_too_old", "seq 4 is older than the retained window", "")
	}
	c := newTestClient(t, []string{a.url()}, func(cfg *Config) { cfg.StartSeq = 90 })
	_, err := c.SubmitAt(ctxT(t), 4, setCmd)
	var re *RetryError
	if !IsOutcomeUnknown(err) || !errors.As(err, &re) || re.Envelope == nil || re.Envelope.Seq != 4 || ErrorCode(err) != smr.CodeSeqTooOld {
		t.Fatalf("SubmitAt err = %v; want ErrOutcomeUnknown carrying seq_too_old for seq 4", err)
	}
	if _, err := c.Resubmit(ctxT(t), re.Envelope); !IsOutcomeUnknown(err) || ErrorCode(err) != smr.CodeSeqTooOld {
		t.Fatalf("Resubmit err = %v; want ErrOutcomeUnknown carrying seq_too_old", err)
	}
	if got := seqsSent(a); len(got) != 1 || got[4] != 2 {
		t.Fatalf("seqs sent = %v; want seq 4 twice and nothing else", got)
	}
}

// TestRetryAfterMillis: a 503 carrying retry_after_ms (an epoch switch)
// asks for that delay, sooner than the Retry-After header's whole second,
// which it takes precedence over; without it the header counts.
func TestRetryAfterMillis(t *testing.T) {
	answer := func(header bool, ms int) *http.Response {
		rec := httptest.NewRecorder()
		if header {
			rec.Header().Set("Retry-After", "1")
		}
		writeJSON(rec, http.StatusServiceUnavailable, wire.ErrorBody{Code: wire.CodeNoLeader, Message: "an epoch switch is under way", RetryAfterMillis: ms})
		return rec.Result()
	}
	c := &call{op: "submit"}
	if o := errorOutcome(answer(true, 50), "http://n1", c); o.retryAfter != 50*time.Millisecond || !o.electing || o.sent {
		t.Fatalf("with retry_after_ms: %+v", o)
	}
	if o := errorOutcome(answer(false, 50), "http://n1", c); o.retryAfter != 50*time.Millisecond {
		t.Fatalf("retry_after_ms alone: %+v", o)
	}
	if o := errorOutcome(answer(true, 0), "http://n1", c); o.retryAfter != time.Second {
		t.Fatalf("Retry-After alone: %+v", o)
	}
}

// TestFollowsForwardingLeaderHint: a write a follower forwarded comes back
// with Tandem-Leader; the client sends its next writes to that leader.
func TestFollowsForwardingLeaderHint(t *testing.T) {
	follower, leader := newFakeNode(t, "n1"), newFakeNode(t, "n2")
	follower.submit = func(w http.ResponseWriter, _ *http.Request, env smr.Envelope) {
		w.Header().Set(wire.HeaderLeader, "n2")
		writeResult(w, smr.Result{Index: 100 + env.Seq, Seq: env.Seq})
	}
	c := newTestClient(t, []string{follower.url(), leader.url()}, nil)
	for range 3 {
		if _, err := c.SetConfig(ctxT(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	if f, l := len(follower.envelopes()), len(leader.envelopes()); f != 1 || l != 2 {
		t.Fatalf("writes: %d to the follower, %d to the leader; want 1 and 2", f, l)
	}
}
