package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/smr"
)

// forwardingNode is a Node with only what forwarding uses: a plain HTTP
// client in place of the peer port's (the classification does not depend on
// the transport underneath).
func forwardingNode(t *testing.T) *Node {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &Node{log: testlog.New(t, slog.LevelWarn), rpc: &http.Client{Transport: tr}}
}

func testEnvelope(t *testing.T) *smr.Envelope {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	env, err := smr.Sign(priv, 1, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// leaderAt returns the NotLeaderError a follower would get for a leader
// serving at srv.
func leaderAt(srv *httptest.Server) *consensus.NotLeaderError {
	return &consensus.NotLeaderError{LeaderID: "node-9", LeaderAddr: strings.TrimPrefix(srv.URL, "http://")}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// hangUpAfterReading is a leader that reads the whole forwarded request and
// then drops the connection without answering: it may have proposed it.
func hangUpAfterReading(t *testing.T, got *atomic.Int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("leader reading the body: %v", err)
		}
		got.Store(int64(len(b)))
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}
}

func TestForwardProposeLeaderDiesAfterTheRequestIsWritten(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(hangUpAfterReading(t, &got))
	defer srv.Close()
	n := forwardingNode(t)
	env := testEnvelope(t)
	want, _ := env.MarshalBinary()

	_, err := n.forwardPropose(context.Background(), leaderAt(srv), env)
	if !errors.Is(err, consensus.ErrOutcomeUnknown) {
		t.Fatalf("leader hung up after reading the request: %v, want ErrOutcomeUnknown", err)
	}
	if errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("outcome-unknown error also claims nothing was proposed: %v", err)
	}
	if got.Load() != int64(len(want)) {
		t.Fatalf("leader read %d bytes, the envelope is %d", got.Load(), len(want))
	}
	if b := api.ErrorBodyFor(err); b.Code != api.CodeOutcomeUnknown {
		t.Fatalf("API code %q, want outcome_unknown", b.Code)
	}

	// The read index is safe to retry: the same failure is "unavailable".
	_, err = n.forwardReadIndex(context.Background(), leaderAt(srv))
	if !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("read index with a leader that hangs up: %v, want ErrUnavailable", err)
	}
}

func TestForwardProposeLeaderSilentUntilDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	n := forwardingNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := n.forwardPropose(ctx, leaderAt(srv), testEnvelope(t))
	if !errors.Is(err, consensus.ErrOutcomeUnknown) {
		t.Fatalf("no answer before the deadline: %v, want ErrOutcomeUnknown", err)
	}
}

func TestForwardProposeDialFails(t *testing.T) {
	n := forwardingNode(t)
	nl := &consensus.NotLeaderError{LeaderID: "node-9", LeaderAddr: closedAddr(t)}
	_, err := n.forwardPropose(context.Background(), nl, testEnvelope(t))
	if !errors.Is(err, api.ErrUnavailable) || errors.Is(err, consensus.ErrOutcomeUnknown) {
		t.Fatalf("dial failure: %v, want ErrUnavailable only", err)
	}
	if b := api.ErrorBodyFor(err); b.Code != api.CodeNoLeader {
		t.Fatalf("API code %q, want no_leader", b.Code)
	}
	if _, err := n.forwardReadIndex(context.Background(), nl); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("read index dial failure: %v, want ErrUnavailable", err)
	}
}

// TestForwardProposeLeaderAnswers: what the leader answers is passed on
// with its meaning intact.
func TestForwardProposeLeaderAnswers(t *testing.T) {
	okResult := smr.Result{Index: 17, Seq: 1, Value: json.RawMessage(`{"set":true}`)}
	cases := []struct {
		name   string
		status int
		body   string
		check  func(t *testing.T, res smr.Result, err error)
	}{
		{"result", 200, mustJSON(t, okResult), func(t *testing.T, res smr.Result, err error) {
			if err != nil || res.Index != 17 || string(res.Value) != `{"set":true}` {
				t.Fatalf("got %+v %v, want the leader's result", res, err)
			}
		}},
		{"rejected result", 200, mustJSON(t, smr.Result{Index: 18, Seq: 1, Code: smr.CodePermissionDenied, Message: "no"}), func(t *testing.T, res smr.Result, err error) {
			if err != nil || res.Code != smr.CodePermissionDenied || res.Index != 18 {
				t.Fatalf("got %+v %v, want the rejected result", res, err)
			}
		}},
		{"state machine code", 409, mustJSON(t, api.ErrorBody{Code: smr.CodeSeqConflict, Message: "seq 1 was used"}), func(t *testing.T, _ smr.Result, err error) {
			if codeOf(err) != smr.CodeSeqConflict || errors.Is(err, consensus.ErrOutcomeUnknown) {
				t.Fatalf("got %v, want *smr.Error seq_conflict", err)
			}
		}},
		{"leader lost leadership before proposing", 503, mustJSON(t, api.ErrorBody{Code: api.CodeNoLeader, Message: "not the leader"}), func(t *testing.T, _ smr.Result, err error) {
			if !errors.Is(err, api.ErrUnavailable) || errors.Is(err, consensus.ErrOutcomeUnknown) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
		}},
		{"leader lost leadership after proposing", 503, mustJSON(t, api.ErrorBody{Code: api.CodeOutcomeUnknown, Message: "leadership lost"}), func(t *testing.T, _ smr.Result, err error) {
			if !errors.Is(err, consensus.ErrOutcomeUnknown) || errors.Is(err, api.ErrUnavailable) {
				t.Fatalf("got %v, want ErrOutcomeUnknown", err)
			}
		}},
		{"leader bug", 500, mustJSON(t, api.ErrorBody{Code: api.CodeInternal, Message: "boom"}), func(t *testing.T, _ smr.Result, err error) {
			if !errors.Is(err, consensus.ErrOutcomeUnknown) {
				t.Fatalf("got %v, want ErrOutcomeUnknown (the leader may have proposed)", err)
			}
		}},
		{"not JSON", 502, "bad gateway", func(t *testing.T, _ smr.Result, err error) {
			if !errors.Is(err, consensus.ErrOutcomeUnknown) {
				t.Fatalf("got %v, want ErrOutcomeUnknown", err)
			}
		}},
		{"truncated result", 200, `{"index":`, func(t *testing.T, _ smr.Result, err error) {
			if !errors.Is(err, consensus.ErrOutcomeUnknown) {
				t.Fatalf("got %v, want ErrOutcomeUnknown", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != pathPropose {
					t.Errorf("leader got %s %s, want POST %s", r.Method, r.URL.Path, pathPropose)
				}
				b, _ := io.ReadAll(r.Body)
				var env smr.Envelope
				if err := env.UnmarshalBinary(b); err != nil {
					t.Errorf("forwarded body does not decode: %v", err)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			}))
			defer srv.Close()
			res, err := forwardingNode(t).forwardPropose(context.Background(), leaderAt(srv), testEnvelope(t))
			c.check(t, res, err)
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
