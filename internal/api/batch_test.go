package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// batchBackend answers by the envelope's seq: 3 succeeds, 4 is rejected at
// apply, 5 fails with no leader, 6 succeeds through a forward to node-2.
func batchBackend() *fakeBackend {
	b := &fakeBackend{submit: func(env *smr.Envelope) (smr.Result, error) {
		switch env.Seq {
		case 4:
			return smr.Result{Index: 9, Seq: 4, Code: smr.CodePermissionDenied, Message: "denied"}, nil
		case 5:
			return smr.Result{}, fmt.Errorf("%w: no leader elected", api.ErrUnavailable)
		}
		return smr.Result{Index: 40 + env.Seq, Seq: env.Seq, Value: json.RawMessage(`{"ok":true}`)}, nil
	}}
	return b
}

func signedEnvelope(t *testing.T, seq uint64) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	env, err := smr.Sign(priv, seq, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSubmitBatchAnswersEachItemAsAlone: every item of a batch gets what
// POST /v1/submit would have answered for its envelope alone (status,
// headers and body), whether it succeeds, is rejected at apply, finds no
// leader, is malformed or too large; the others are unaffected.
func TestSubmitBatchAnswersEachItemAsAlone(t *testing.T) {
	items := [][]byte{
		signedEnvelope(t, 3),
		signedEnvelope(t, 4),
		signedEnvelope(t, 5),
		[]byte(`{"client":"zz"}`),
		[]byte(`"` + strings.Repeat("x", testLimit) + `"`),
	}
	b := batchBackend()
	s, _ := newServer(t, b)
	var req wire.SubmitBatchRequest
	for _, it := range items {
		req.Items = append(req.Items, wire.SubmitBatchItem{Envelope: it})
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, out := serve(s, httptest.NewRequest(http.MethodPost, wire.PathSubmitBatch, bytes.NewReader(body)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("batch answered %d: %s", resp.StatusCode, out)
	}
	var got wire.SubmitBatchResponse
	if err := json.Unmarshal(out, &got); err != nil || len(got.Items) != len(items) {
		t.Fatalf("answer %s: %v", out, err)
	}
	for i, it := range items[:4] {
		alone, aloneBody := serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(it)))
		a := got.Items[i]
		if a.Status != alone.StatusCode || !bytes.Equal(a.Body, bytes.TrimSpace(aloneBody)) || a.RetryAfter != alone.Header.Get("Retry-After") {
			t.Errorf("item %d: batch answered %d %s (Retry-After %q), alone %d %s (Retry-After %q)",
				i, a.Status, a.Body, a.RetryAfter, alone.StatusCode, bytes.TrimSpace(aloneBody), alone.Header.Get("Retry-After"))
		}
	}
	if a := got.Items[4]; a.Status != http.StatusRequestEntityTooLarge || !bytes.Contains(a.Body, []byte(`"too_large"`)) {
		t.Errorf("oversized item: %d %s", a.Status, a.Body)
	}
	if got.Items[0].Status != http.StatusOK || got.Items[2].Status != http.StatusServiceUnavailable {
		t.Errorf("statuses %d and %d, want 200 and 503", got.Items[0].Status, got.Items[2].Status)
	}
}

// TestSubmitBatchNamesTheLeader: an item the backend forwarded carries the
// leader it went to, like Tandem-Leader on a single submit.
func TestSubmitBatchNamesTheLeader(t *testing.T) {
	b := batchBackend()
	b.submitCtx = func(ctx context.Context) { api.NoteForwardedTo(ctx, "node-2") }
	s, _ := newServer(t, b)
	body, _ := json.Marshal(wire.SubmitBatchRequest{Items: []wire.SubmitBatchItem{{Envelope: signedEnvelope(t, 3)}}})
	_, out := serve(s, httptest.NewRequest(http.MethodPost, wire.PathSubmitBatch, bytes.NewReader(body)))
	var got wire.SubmitBatchResponse
	if err := json.Unmarshal(out, &got); err != nil || len(got.Items) != 1 || got.Items[0].Leader != "node-2" {
		t.Fatalf("answer %s (%v), want the item to name node-2", out, err)
	}
}

// TestSubmitBatchRefusesBadBatches: a batch that is not JSON, has no items,
// has too many or an unknown field is refused whole, and no envelope
// reaches the backend.
func TestSubmitBatchRefusesBadBatches(t *testing.T) {
	many := wire.SubmitBatchRequest{}
	for range wire.MaxBatchItems + 1 {
		many.Items = append(many.Items, wire.SubmitBatchItem{Envelope: json.RawMessage(`{}`)})
	}
	manyBody, _ := json.Marshal(many)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		code   smr.Code
	}{
		{"not json", []byte(`{"items":`), http.StatusBadRequest, smr.CodeMalformed},
		{"no items", []byte(`{"items":[]}`), http.StatusBadRequest, smr.CodeMalformed},
		{"unknown field", []byte(`{"items":[{"envelope":{}}],"extra":1}`), http.StatusBadRequest, smr.CodeMalformed},
		{"too many", manyBody, http.StatusRequestEntityTooLarge, smr.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := batchBackend()
			s, _ := newServer(t, b)
			resp, out := serve(s, httptest.NewRequest(http.MethodPost, wire.PathSubmitBatch, bytes.NewReader(tc.body)))
			expectError(t, resp, out, tc.status, tc.code)
			if c := b.called(); len(c) != 0 {
				t.Errorf("backend called: %v", c)
			}
		})
	}
}
