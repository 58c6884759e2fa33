package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/smr"
)

// bftBackend is a fakeBackend that signs replies like a node in bft mode.
type bftBackend struct {
	*fakeBackend
	key     ed25519.PrivateKey
	propose []bool
	rejectW bool
}

func (b *bftBackend) ReplyKey() (string, ed25519.PrivateKey, bool) { return "n1", b.key, true }

func (b *bftBackend) SubmitBFT(_ context.Context, env *smr.Envelope, propose bool) (smr.Result, error) {
	b.propose = append(b.propose, propose)
	if b.rejectW {
		return smr.Result{Index: 9, Seq: env.Seq, Code: smr.CodePermissionDenied, Message: "no"}, nil
	}
	return smr.Result{Index: 42, Seq: env.Seq, Value: json.RawMessage(`{"ok": "<yes>"}`)}, nil
}

func TestBFTRepliesAreSigned(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	b := &bftBackend{fakeBackend: &fakeBackend{}, key: key}
	s, _ := newServer(t, b.fakeBackend)
	s2 := mustServer(t, b)

	resp, body := serve(s2, httptest.NewRequest(http.MethodPost, "/v1/submit?propose=false", bytes.NewReader(envelopeJSON(t))))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var sr wire.SubmitResponse
	if err := json.Unmarshal(body, &sr); err != nil || sr.Reply == nil {
		t.Fatalf("no signed reply in %s (%v)", body, err)
	}
	if err := sr.Reply.Verify(pub); err != nil || sr.Reply.NodeID != "n1" || sr.Reply.Index != 42 {
		t.Fatalf("reply %+v: %v", sr.Reply, err)
	}
	if len(b.propose) != 1 || b.propose[0] {
		t.Fatalf("propose flags %v, want [false]", b.propose)
	}
	if resp, body := serve(s2, httptest.NewRequest(http.MethodPost, "/v1/submit?propose=maybe", bytes.NewReader(envelopeJSON(t)))); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad propose flag: %d %s", resp.StatusCode, body)
	}

	// A rejection at apply time carries a signed reply too.
	b.rejectW = true
	resp, body = serve(s2, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(envelopeJSON(t))))
	var eb wire.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Reply == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("rejection %d %s (%v)", resp.StatusCode, body, err)
	}
	if err := eb.Reply.Verify(pub); err != nil || eb.Reply.Code != smr.CodePermissionDenied {
		t.Fatalf("rejection reply %+v: %v", eb.Reply, err)
	}

	// Reads: fast and ordered, the nonce echoed.
	for _, fast := range []bool{false, true} {
		path := "/v1/query?kind=tool&key=t&nonce=abc"
		if fast {
			path += "&fast=true"
		}
		resp, body := serve(s2, httptest.NewRequest(http.MethodGet, path, nil))
		var qr wire.QueryResponse
		if err := json.Unmarshal(body, &qr); err != nil || qr.Reply == nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("query %s: %d %s (%v)", path, resp.StatusCode, body, err)
		}
		want := wire.ReadOrdered
		if fast {
			want = wire.ReadFast
		}
		r := qr.Reply
		if err := r.Verify(pub); err != nil || r.Nonce != "abc" || r.Mode != want || r.Kind != smr.QueryTool || r.Key != "t" || r.Index != qr.Index {
			t.Fatalf("query reply %+v: %v", r, err)
		}
		if b.queryStale != fast {
			t.Fatalf("fast=%v reached the backend as stale=%v", fast, b.queryStale)
		}
	}
	long := make([]byte, 200)
	for i := range long {
		long[i] = 'a'
	}
	if resp, _ := serve(s2, httptest.NewRequest(http.MethodGet, "/v1/query?kind=tool&nonce="+string(long), nil)); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("long nonce: %d", resp.StatusCode)
	}

	// A cft backend signs nothing.
	resp, body = serve(s, httptest.NewRequest(http.MethodGet, "/v1/query?kind=tool&key=t", nil))
	if bytes.Contains(body, []byte(`"reply"`)) || resp.StatusCode != http.StatusOK {
		t.Fatalf("cft query answered %d %s", resp.StatusCode, body)
	}
}

func mustServer(t *testing.T, b api.Backend) *api.Server {
	t.Helper()
	s, err := api.New(api.Config{Backend: b, Logger: testlog.New(t, slog.LevelWarn), Registry: prometheus.NewRegistry(), MaxRequestBytes: testLimit})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
