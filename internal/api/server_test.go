package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// envelopeJSON returns the JSON of a correctly signed envelope.
func envelopeJSON(t *testing.T) []byte {
	t.Helper()
	return signedEnvelope(t, 3)
}

// padTo pads a JSON document with trailing spaces to exactly n bytes.
func padTo(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	if len(b) > n {
		t.Fatalf("document is %d bytes, longer than %d", len(b), n)
	}
	return append(bytes.Clone(b), bytes.Repeat([]byte(" "), n-len(b))...)
}

// errorBody decodes an error response and checks its common shape: JSON,
// a code, a non-empty message and Retry-After on 503.
func errorBody(t *testing.T, resp *http.Response, body []byte) api.ErrorBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json (body %s)", ct, body)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if eb.Code == "" || strings.TrimSpace(eb.Message) == "" {
		t.Errorf("error body %s lacks a code or a message", body)
	}
	wantHeader := resp.StatusCode == http.StatusServiceUnavailable && eb.RetryAfterMillis == 0
	if got := resp.Header.Get("Retry-After"); wantHeader != (got != "") {
		t.Errorf("status %d, retry_after_ms %d, with Retry-After %q: want Retry-After exactly on 503 without retry_after_ms", resp.StatusCode, eb.RetryAfterMillis, got)
	}
	if eb.RetryAfterMillis != 0 && resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("retry_after_ms on status %d", resp.StatusCode)
	}
	return eb
}

// serve runs req through h and returns the response and its body.
func serve(h http.Handler, req *http.Request) (*http.Response, []byte) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// expectError checks that the response is an error with status and code.
func expectError(t *testing.T, resp *http.Response, body []byte, status int, code smr.Code) api.ErrorBody {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	eb := errorBody(t, resp, body)
	if eb.Code != code {
		t.Errorf("code = %q, want %q (body %s)", eb.Code, code, body)
	}
	return eb
}

// untouchable is a request body that fails the test when read.
type untouchable struct{ t *testing.T }

func (u untouchable) Read([]byte) (int, error) {
	u.t.Error("the request body was read although Content-Length exceeds the limit")
	return 0, io.EOF
}

func TestContentLengthOverLimitRefusedBeforeReading(t *testing.T) {
	b := &fakeBackend{}
	s, _ := newServer(t, b)
	for _, path := range []string{"/v1/submit", "/v1/admin/transfer-leader", "/v1/admin/members"} {
		req := httptest.NewRequest(http.MethodPost, path, untouchable{t})
		req.ContentLength = testLimit + 1
		resp, body := serve(s, req)
		eb := expectError(t, resp, body, http.StatusRequestEntityTooLarge, smr.CodeTooLarge)
		if !strings.Contains(eb.Message, fmt.Sprint(testLimit)) {
			t.Errorf("%s: message %q does not name the limit %d", path, eb.Message, testLimit)
		}
	}
	if c := b.called(); len(c) != 0 {
		t.Fatalf("backend was called for oversized requests: %v", c)
	}
}

func TestBodyLimitsOverHTTP(t *testing.T) {
	b := &fakeBackend{}
	s, _ := newServer(t, b)
	// seen reports how each request's body was framed.
	type framing struct {
		length int64
		te     []string
	}
	seen := make(chan framing, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- framing{r.ContentLength, r.TransferEncoding}
		s.ServeHTTP(w, r)
	}))
	defer srv.Close()
	env := envelopeJSON(t)

	post := func(t *testing.T, body []byte, chunked bool) (*http.Response, []byte) {
		t.Helper()
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			// A reader of unknown length makes the client send a chunked
			// body without Content-Length.
			r = io.MultiReader(bytes.NewReader(body))
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/submit", r)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if got := <-seen; chunked != (got.length == -1 && slices.Equal(got.te, []string{"chunked"})) {
			t.Fatalf("server saw Content-Length %d, Transfer-Encoding %v; chunked=%v", got.length, got.te, chunked)
		}
		return resp, out
	}

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			before := len(b.called())
			resp, body := post(t, padTo(t, env, testLimit+1), chunked)
			expectError(t, resp, body, http.StatusRequestEntityTooLarge, smr.CodeTooLarge)
			if c := b.called(); len(c) != before {
				t.Fatalf("backend was called for a body over the limit: %v", c[before:])
			}

			resp, body = post(t, padTo(t, env, testLimit), chunked)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("body of exactly the limit: status %d, want 200 (body %s)", resp.StatusCode, body)
			}
			if c := b.called(); len(c) != before+1 || c[before] != "Submit" {
				t.Fatalf("backend calls after an at-limit body: %v, want one Submit", c[before:])
			}
		})
	}
}

// docStatuses is the error table of docs/api.md.
var docStatuses = map[smr.Code]int{
	smr.CodeMalformed:        400,
	smr.CodeUnknownCommand:   400,
	smr.CodeSeqTooFar:        400,
	smr.CodeBadSignature:     401,
	smr.CodeUnknownClient:    403,
	smr.CodePermissionDenied: 403,
	smr.CodeLastAdmin:        403,
	smr.CodeNotFound:         404,
	api.CodeMethodNotAllowed: 405,
	smr.CodeAlreadyExists:    409,
	smr.CodeSeqConflict:      409,
	smr.CodeSeqTooOld:        409,
	smr.CodeTooLarge:         413,
	api.CodeNoLeader:         503,
	api.CodeOutcomeUnknown:   503,
	api.CodeInternal:         500,
}

func TestStatusForMatchesDocs(t *testing.T) {
	for code, want := range docStatuses {
		if got := api.StatusFor(code); got != want {
			t.Errorf("StatusFor(%q) = %d, want %d", code, got, want)
		}
	}
	if got := api.StatusFor(smr.CodeOK); got != http.StatusOK {
		t.Errorf("StatusFor(ok) = %d, want 200", got)
	}
	if got := api.StatusFor("no_such_code"); got != http.StatusInternalServerError {
		t.Errorf("StatusFor(unknown code) = %d, want 500", got)
	}
}

func TestErrorsThroughTheHandler(t *testing.T) {
	type errorCase struct {
		name     string
		err      error
		code     smr.Code
		leaderID string
	}
	cases := []errorCase{
		{"outcome unknown", fmt.Errorf("propose: %w", consensus.ErrOutcomeUnknown), api.CodeOutcomeUnknown, ""},
		{"not leader", fmt.Errorf("wrapped: %w", &consensus.NotLeaderError{LeaderID: "node-2", LeaderAddr: "127.0.0.1:2"}), api.CodeNoLeader, "node-2"},
		{"unavailable", fmt.Errorf("%w: no leader elected yet", api.ErrUnavailable), api.CodeNoLeader, ""},
		{"stopped", consensus.ErrStopped, api.CodeNoLeader, ""},
		{"epoch switching", fmt.Errorf("%w: epoch 1 ended", api.ErrEpochSwitching), api.CodeNoLeader, ""},
		{"plain error", errors.New("disk on fire"), api.CodeInternal, ""},
		{"too big", &http.MaxBytesError{Limit: 10}, smr.CodeTooLarge, ""},
	}
	for code := range docStatuses {
		cases = append(cases, errorCase{string(code), fmt.Errorf("context: %w", smr.Errorf(code, "problem with %s", code)), code, ""})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &fakeBackend{submit: func(*smr.Envelope) (smr.Result, error) { return smr.Result{}, c.err }}
			s, _ := newServer(t, b)
			resp, body := serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(envelopeJSON(t))))
			eb := expectError(t, resp, body, docStatuses[c.code], c.code)
			if eb.LeaderID != c.leaderID {
				t.Errorf("leader_id = %q, want %q", eb.LeaderID, c.leaderID)
			}
			if eb.Result != nil {
				t.Errorf("an error without a result carries result %+v", eb.Result)
			}
			if want := errors.Is(c.err, api.ErrEpochSwitching); want != (eb.RetryAfterMillis > 0) {
				t.Errorf("retry_after_ms = %d for %v", eb.RetryAfterMillis, c.err)
			}
		})
	}
}

func TestSubmitStrictDecoding(t *testing.T) {
	env := envelopeJSON(t)
	cases := map[string][]byte{
		"unknown field":          append(bytes.TrimSuffix(env, []byte("}")), []byte(`,"extra":1}`)...),
		"trailing value":         append(bytes.Clone(env), []byte(` {}`)...),
		"trailing garbage":       append(bytes.Clone(env), []byte(` x`)...),
		"trailing brace":         append(bytes.Clone(env), '}'),
		"trailing bracket":       append(bytes.Clone(env), ']'),
		"not JSON":               []byte(`client=abc`),
		"truncated":              env[:len(env)/2],
		"empty body":             nil,
		"array":                  []byte(`[1,2]`),
		"wrong type":             []byte(`{"seq":"seven"}`),
		"client not base64":      []byte(`{"client":"%%%","seq":1,"command":"","sig":""}`),
		"two envelopes":          append(bytes.Clone(env), env...),
		"null then trailing }":   []byte(`null}`),
		"object then trailing ]": []byte(`{}]`),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			b := &fakeBackend{}
			s, _ := newServer(t, b)
			resp, out := serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(body)))
			expectError(t, resp, out, http.StatusBadRequest, smr.CodeMalformed)
			if c := b.called(); len(c) != 0 {
				t.Errorf("backend called with a malformed envelope: %v", c)
			}
		})
	}
}

func TestSubmitSuccessAndRejectedResult(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		b := &fakeBackend{}
		s, _ := newServer(t, b)
		env := envelopeJSON(t)
		resp, body := serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(env)))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
		}
		var got struct {
			Result *smr.Result `json:"result"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil || got.Result == nil {
			t.Fatalf("body %s is not {\"result\": …}: %v", body, err)
		}
		if got.Result.Index != 42 || got.Result.Seq != 3 || string(got.Result.Value) != `{"ok":true}` {
			t.Fatalf("result = %+v", *got.Result)
		}
		var want smr.Envelope
		if err := json.Unmarshal(env, &want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.submitEnv.Client, want.Client) || b.submitEnv.Seq != want.Seq ||
			!bytes.Equal(b.submitEnv.Command, want.Command) || !bytes.Equal(b.submitEnv.Sig, want.Sig) {
			t.Fatalf("backend got %+v, want %+v", b.submitEnv, want)
		}
	})
	for _, code := range []smr.Code{smr.CodePermissionDenied, smr.CodeNotFound, smr.CodeAlreadyExists, smr.CodeLastAdmin} {
		t.Run(string(code), func(t *testing.T) {
			res := smr.Result{Index: 12, Seq: 3, Code: code, Message: "rejected at apply: " + string(code)}
			b := &fakeBackend{submit: func(*smr.Envelope) (smr.Result, error) { return res, nil }}
			s, _ := newServer(t, b)
			resp, body := serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(envelopeJSON(t))))
			eb := expectError(t, resp, body, docStatuses[code], code)
			if eb.Message != res.Message {
				t.Errorf("message = %q, want %q", eb.Message, res.Message)
			}
			if eb.Result == nil || eb.Result.Index != 12 || eb.Result.Seq != 3 || eb.Result.Code != code {
				t.Errorf("result = %+v, want the backend's result attached", eb.Result)
			}
		})
	}
}

func TestQuery(t *testing.T) {
	b := &fakeBackend{}
	s, _ := newServer(t, b)

	for _, target := range []string{"/v1/query", "/v1/query?key=x", "/v1/query?kind=&stale=true"} {
		resp, body := serve(s, httptest.NewRequest(http.MethodGet, target, nil))
		eb := expectError(t, resp, body, http.StatusBadRequest, smr.CodeMalformed)
		if !strings.Contains(eb.Message, "kind") {
			t.Errorf("%s: message %q does not name kind", target, eb.Message)
		}
	}
	for _, target := range []string{"/v1/query?kind=tools&stale=maybe", "/v1/query?kind=tools&stale=2"} {
		resp, body := serve(s, httptest.NewRequest(http.MethodGet, target, nil))
		eb := expectError(t, resp, body, http.StatusBadRequest, smr.CodeMalformed)
		if !strings.Contains(eb.Message, "stale") {
			t.Errorf("%s: message %q does not name stale", target, eb.Message)
		}
	}
	if c := b.called(); len(c) != 0 {
		t.Fatalf("backend called for bad queries: %v", c)
	}

	for target, wantStale := range map[string]bool{
		"/v1/query?kind=tool&key=search":             false,
		"/v1/query?kind=tool&key=search&stale=true":  true,
		"/v1/query?kind=tool&key=search&stale=1":     true,
		"/v1/query?kind=tool&key=search&stale=false": false,
	} {
		resp, body := serve(s, httptest.NewRequest(http.MethodGet, target, nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", target, resp.StatusCode, body)
		}
		var qr api.QueryResponse
		if err := json.Unmarshal(body, &qr); err != nil {
			t.Fatal(err)
		}
		if qr.Index != 7 || string(qr.Value) != `{"kind":"tool"}` {
			t.Errorf("%s: response %s", target, body)
		}
		b.mu.Lock()
		q, stale := b.queryGot, b.queryStale
		b.mu.Unlock()
		if q != (smr.Query{Kind: smr.QueryTool, Key: "search"}) || stale != wantStale {
			t.Errorf("%s: backend got %+v stale=%v, want stale=%v", target, q, stale, wantStale)
		}
	}

	// A query error from the backend keeps its code.
	b.query = func(q smr.Query, _ bool) (json.RawMessage, uint64, error) {
		return nil, 0, smr.Errorf(smr.CodeNotFound, "tool %q does not exist", q.Key)
	}
	resp, body := serve(s, httptest.NewRequest(http.MethodGet, "/v1/query?kind=tool&key=nope", nil))
	expectError(t, resp, body, http.StatusNotFound, smr.CodeNotFound)
}

func TestMethodNotAllowedAndUnknownPath(t *testing.T) {
	b := &fakeBackend{}
	s, _ := newServer(t, b)
	cases := []struct {
		method, path string
		allow        []string
	}{
		{http.MethodGet, "/v1/submit", []string{"POST"}},
		{http.MethodPut, "/v1/submit", []string{"POST"}},
		{http.MethodPost, "/v1/query", []string{"GET"}},
		{http.MethodDelete, "/v1/status", []string{"GET"}},
		{http.MethodPut, "/v1/admin/snapshot", []string{"GET", "POST"}},
		{http.MethodGet, "/v1/admin/members", []string{"POST"}},
		{http.MethodGet, "/v1/admin/members/node-2", []string{"DELETE"}},
	}
	for _, c := range cases {
		resp, body := serve(s, httptest.NewRequest(c.method, c.path, nil))
		expectError(t, resp, body, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
		got := strings.Split(resp.Header.Get("Allow"), ", ")
		slices.Sort(got)
		if !slices.Equal(got, c.allow) {
			t.Errorf("%s %s: Allow = %q, want %v", c.method, c.path, resp.Header.Get("Allow"), c.allow)
		}
	}
	// Allow is stable from one request to the next.
	first := ""
	for range 100 {
		resp, _ := serve(s, httptest.NewRequest(http.MethodPut, "/v1/admin/snapshot", nil))
		if first == "" {
			first = resp.Header.Get("Allow")
		} else if got := resp.Header.Get("Allow"); got != first {
			t.Fatalf("Allow changes between requests: %q then %q", first, got)
		}
	}

	for _, path := range []string{"/", "/v1", "/v2/submit", "/v1/submit/extra", "/v1/nothing"} {
		resp, body := serve(s, httptest.NewRequest(http.MethodGet, path, nil))
		eb := expectError(t, resp, body, http.StatusNotFound, smr.CodeNotFound)
		if !strings.Contains(eb.Message, path) {
			t.Errorf("%s: message %q does not name the path", path, eb.Message)
		}
	}
	if c := b.called(); len(c) != 0 {
		t.Fatalf("backend called: %v", c)
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	b := &fakeBackend{}
	s, _ := newServer(t, b)

	resp, body := serve(s, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}

	resp, body = serve(s, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz when ready: %d %q", resp.StatusCode, body)
	}
	b.ready = func() error { return errors.New("no leader known") }
	resp, body = serve(s, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "no leader known") {
		t.Fatalf("/readyz when not ready: %d %q, want 503 naming the reason", resp.StatusCode, body)
	}

	// Some requests, then the counters.
	serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(envelopeJSON(t))))
	serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", strings.NewReader("{")))
	serve(s, httptest.NewRequest(http.MethodGet, "/v1/query?kind=tools", nil))
	serve(s, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	serve(s, httptest.NewRequest(http.MethodGet, "/nope", nil))

	resp, body = serve(s, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`tandem_requests_total{code="ok",endpoint="/v1/submit"} 1`,
		`tandem_requests_total{code="malformed",endpoint="/v1/submit"} 1`,
		`tandem_requests_total{code="ok",endpoint="/v1/query"} 1`,
		`tandem_requests_total{code="ok",endpoint="/v1/status"} 1`,
		`tandem_requests_total{code="not_found",endpoint="unknown"} 1`,
		`tandem_request_duration_seconds_count{endpoint="/v1/submit"}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStatusAndMembers(t *testing.T) {
	b := &fakeBackend{}
	s, _ := newServer(t, b)
	resp, body := serve(s, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/status: %d %s", resp.StatusCode, body)
	}
	if st["node_id"] != "node-1" || st["state_hash"] != "ab" || st["role"] != "leader" {
		t.Errorf("/v1/status body %s", body)
	}
	resp, body = serve(s, httptest.NewRequest(http.MethodGet, "/v1/members", nil))
	var mr api.MembersResponse
	if err := json.Unmarshal(body, &mr); err != nil || resp.StatusCode != 200 || len(mr.Members) != 1 || !mr.Members[0].Leader {
		t.Fatalf("/v1/members: %d %s", resp.StatusCode, body)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := api.New(api.Config{}); err == nil {
		t.Error("New without Backend and Registry succeeded")
	}
	b := &fakeBackend{}
	_, reg := newServer(t, b)
	if _, err := api.New(api.Config{Backend: b, Registry: reg, MaxRequestBytes: 1}); err == nil {
		t.Error("New registering the metrics twice on one registry succeeded")
	}
	if _, err := api.New(api.Config{Backend: b, Registry: reg}); err == nil || !strings.Contains(err.Error(), "MaxRequestBytes") {
		t.Errorf("New with MaxRequestBytes 0: %v, want an error naming MaxRequestBytes", err)
	}
}

// TestSubmitNamesTheLeaderItForwardedTo: a backend that forwarded the
// write notes the leader, and the answer carries it in Tandem-Leader; a
// write served locally carries none.
func TestSubmitNamesTheLeaderItForwardedTo(t *testing.T) {
	for _, forwarded := range []bool{true, false} {
		b := &fakeBackend{submit: func(*smr.Envelope) (smr.Result, error) { return smr.Result{Index: 7, Seq: 1}, nil }}
		b.submitCtx = func(ctx context.Context) {
			if forwarded {
				api.NoteForwardedTo(ctx, "node-2")
			}
		}
		s, _ := newServer(t, b)
		resp, body := serve(s, httptest.NewRequest(http.MethodPost, "/v1/submit", bytes.NewReader(envelopeJSON(t))))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		want := ""
		if forwarded {
			want = "node-2"
		}
		if got := resp.Header.Get(wire.HeaderLeader); got != want {
			t.Errorf("forwarded=%v: Tandem-Leader %q, want %q", forwarded, got, want)
		}
	}
}
