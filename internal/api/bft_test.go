package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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
	mu      sync.Mutex
	propose []bool
	rejectW bool
}

func (b *bftBackend) ReplyKey() (string, ed25519.PrivateKey, bool) { return "n1", b.key, true }

func (b *bftBackend) SubmitBFT(_ context.Context, env *smr.Envelope, propose bool) (smr.Result, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
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

// TestBFTBatchRepliesAreSignedOnce: the replies of a batch carry one
// signature over their tree's root and each verifies with its proof; the
// propose flag of each item reaches the backend.
func TestBFTBatchRepliesAreSignedOnce(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	b := &bftBackend{fakeBackend: &fakeBackend{}, key: key}
	s := mustServer(t, b)
	no := false
	req := wire.SubmitBatchRequest{Items: []wire.SubmitBatchItem{
		{Envelope: signedEnvelope(t, 1)}, {Envelope: signedEnvelope(t, 2), Propose: &no}, {Envelope: signedEnvelope(t, 3)},
	}}
	body, _ := json.Marshal(req)
	resp, out := serve(s, httptest.NewRequest(http.MethodPost, wire.PathSubmitBatch, bytes.NewReader(body)))
	var got wire.SubmitBatchResponse
	if err := json.Unmarshal(out, &got); err != nil || resp.StatusCode != http.StatusOK || len(got.Items) != 3 {
		t.Fatalf("batch answered %d %s (%v)", resp.StatusCode, out, err)
	}
	sigs := map[string]bool{}
	for i, a := range got.Items {
		var sr wire.SubmitResponse
		if err := json.Unmarshal(a.Body, &sr); err != nil || a.Status != http.StatusOK || sr.Reply == nil {
			t.Fatalf("item %d: %d %s (%v)", i, a.Status, a.Body, err)
		}
		if err := sr.Reply.Verify(pub); err != nil || sr.Reply.Batch == nil || sr.Reply.Batch.Leaves != 3 || sr.Reply.Seq != uint64(i+1) {
			t.Fatalf("item %d reply %+v: %v", i, sr.Reply, err)
		}
		sigs[sr.Reply.Signature] = true
	}
	if len(sigs) != 1 {
		t.Fatalf("%d signatures for one batch, want 1", len(sigs))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	falses := 0
	for _, p := range b.propose {
		if !p {
			falses++
		}
	}
	if len(b.propose) != 3 || falses != 1 {
		t.Fatalf("propose flags %v, want three with one false", b.propose)
	}
}

// leavingBackend is a bftBackend that leaves bft mode after its reply key
// was read once.
type leavingBackend struct {
	*bftBackend
	reads atomic.Int32
}

func (b *leavingBackend) ReplyKey() (string, ed25519.PrivateKey, bool) {
	if b.reads.Add(1) > 1 {
		return "", nil, false
	}
	return b.bftBackend.ReplyKey()
}

// TestBFTBatchSignedWithTheKeyItStartedWith: a batch reads the reply key
// once, so a node that leaves bft mode while the batch runs still answers
// every item of it in bft mode, with signed replies.
func TestBFTBatchSignedWithTheKeyItStartedWith(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	b := &leavingBackend{bftBackend: &bftBackend{fakeBackend: &fakeBackend{}, key: key}}
	s := mustServer(t, b)
	req := wire.SubmitBatchRequest{Items: []wire.SubmitBatchItem{{Envelope: signedEnvelope(t, 1)}, {Envelope: signedEnvelope(t, 2)}}}
	body, _ := json.Marshal(req)
	resp, out := serve(s, httptest.NewRequest(http.MethodPost, wire.PathSubmitBatch, bytes.NewReader(body)))
	var got wire.SubmitBatchResponse
	if err := json.Unmarshal(out, &got); err != nil || resp.StatusCode != http.StatusOK || len(got.Items) != 2 {
		t.Fatalf("batch answered %d %s (%v)", resp.StatusCode, out, err)
	}
	for i, a := range got.Items {
		var sr wire.SubmitResponse
		if err := json.Unmarshal(a.Body, &sr); err != nil || a.Status != http.StatusOK || sr.Reply == nil {
			t.Fatalf("item %d: %d %s (%v)", i, a.Status, a.Body, err)
		}
		if err := sr.Reply.Verify(pub); err != nil {
			t.Fatalf("item %d reply %+v: %v", i, sr.Reply, err)
		}
	}
	if n := b.reads.Load(); n != 1 {
		t.Fatalf("reply key read %d times for one batch, want 1", n)
	}
}
