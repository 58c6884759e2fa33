package api_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// adminRequest builds a request signed as docs/api.md describes. The
// signed method, URI, time and body are those of the request unless
// overridden by the mutate functions of the caller.
type adminRequest struct {
	method, target string
	body           []byte
	unix           int64

	signMethod, signTarget string
	signBody               []byte
	signUnix               int64
}

func (a adminRequest) build(t *testing.T, priv ed25519.PrivateKey) *http.Request {
	t.Helper()
	sm, st, sb, su := a.method, a.target, a.body, a.unix
	if a.signMethod != "" {
		sm = a.signMethod
	}
	if a.signTarget != "" {
		st = a.signTarget
	}
	if a.signBody != nil {
		sb = a.signBody
	}
	if a.signUnix != 0 {
		su = a.signUnix
	}
	req := httptest.NewRequest(a.method, a.target, bytes.NewReader(a.body))
	sig := ed25519.Sign(priv, smr.AdminSignBytes(sm, st, su, sb))
	req.Header.Set(api.HeaderKey, smr.FormatKey(priv.Public().(ed25519.PublicKey)))
	req.Header.Set(api.HeaderTime, strconv.FormatInt(a.unix, 10))
	req.Header.Set(api.HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
	return req
}

func newAdminKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// adminOps are the backend calls made by admin handlers.
var adminOps = []string{"TransferLeader", "SnapshotSave", "SnapshotRestore", "AddMember", "RemoveMember"}

func reachedHandler(b *fakeBackend) bool {
	return slices.ContainsFunc(b.called(), func(c string) bool { return slices.Contains(adminOps, c) })
}

func TestAdminSignedRequestsPass(t *testing.T) {
	priv := newAdminKey(t)
	now := testNow.Unix()
	var authorized []ed25519.PublicKey
	var perms []smr.Permission
	b := &fakeBackend{snapshot: []byte("SNAPSHOT-BYTES")}
	b.authorize = func(k ed25519.PublicKey, p smr.Permission) error {
		authorized, perms = append(authorized, k), append(perms, p)
		return nil
	}
	var transferredTo []string
	b.transfer = func(id string) error { transferredTo = append(transferredTo, id); return nil }
	s, _ := newServer(t, b)

	// Transfer with and without a target, and with a time inside the skew.
	for _, c := range []struct {
		body []byte
		unix int64
		want string
	}{
		{[]byte(`{"id":"node-2"}`), now, "node-2"},
		{nil, now - 4*60, ""},
		{[]byte(`{}`), now + 4*60, ""},
	} {
		req := adminRequest{method: http.MethodPost, target: "/v1/admin/transfer-leader", body: c.body, unix: c.unix}.build(t, priv)
		resp, body := serve(s, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("transfer-leader %s: %d %s", c.body, resp.StatusCode, body)
		}
		if got := transferredTo[len(transferredTo)-1]; got != c.want {
			t.Errorf("transfer-leader %s: backend got id %q, want %q", c.body, got, c.want)
		}
	}
	for i, k := range authorized {
		if !k.Equal(priv.Public()) || perms[i] != smr.PermAdmin {
			t.Fatalf("Authorize called with %x %q, want the request key and admin", k, perms[i])
		}
	}

	// Snapshot download.
	resp, body := serve(s, adminRequest{method: http.MethodGet, target: "/v1/admin/snapshot", unix: now}.build(t, priv))
	if resp.StatusCode != http.StatusOK || string(body) != "SNAPSHOT-BYTES" ||
		resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("Tandem-Snapshot-Index") != "9" {
		t.Fatalf("snapshot save: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// Snapshot upload.
	resp, body = serve(s, adminRequest{method: http.MethodPost, target: "/v1/admin/snapshot", body: []byte("RESTORE-ME"), unix: now}.build(t, priv))
	if resp.StatusCode != http.StatusOK || string(b.restored) != "RESTORE-ME" {
		t.Fatalf("snapshot restore: %d %s, backend got %q", resp.StatusCode, body, b.restored)
	}
	// A signed query string is part of the URI.
	resp, body = serve(s, adminRequest{method: http.MethodGet, target: "/v1/admin/snapshot?format=raw", unix: now}.build(t, priv))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("snapshot save with a query: %d %s", resp.StatusCode, body)
	}
	// Members.
	resp, body = serve(s, adminRequest{method: http.MethodPost, target: "/v1/admin/members", body: []byte(`{"id":"node-5","address":"10.0.0.5:7002"}`), unix: now}.build(t, priv))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("add member: %d %s", resp.StatusCode, body)
	}
	resp, body = serve(s, adminRequest{method: http.MethodDelete, target: "/v1/admin/members/node-5", unix: now}.build(t, priv))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("remove member: %d %s", resp.StatusCode, body)
	}
	for _, op := range adminOps {
		if !slices.Contains(b.called(), op) {
			t.Errorf("backend %s was never called", op)
		}
	}
}

func TestAdminAuthenticationFailures(t *testing.T) {
	priv := newAdminKey(t)
	other := newAdminKey(t)
	now := testNow.Unix()
	base := adminRequest{method: http.MethodPost, target: "/v1/admin/transfer-leader", body: []byte(`{"id":"node-2"}`), unix: now}
	good := func() *http.Request { return base.build(t, priv) }

	cases := []struct {
		name string
		req  func() *http.Request
		code smr.Code
		auth func(ed25519.PublicKey, smr.Permission) error
	}{
		{"no headers", func() *http.Request {
			return httptest.NewRequest(http.MethodPost, base.target, bytes.NewReader(base.body))
		}, smr.CodeBadSignature, nil},
		{"no key", func() *http.Request { r := good(); r.Header.Del(api.HeaderKey); return r }, smr.CodeBadSignature, nil},
		{"no time", func() *http.Request { r := good(); r.Header.Del(api.HeaderTime); return r }, smr.CodeBadSignature, nil},
		{"no signature", func() *http.Request { r := good(); r.Header.Del(api.HeaderSignature); return r }, smr.CodeBadSignature, nil},
		{"key in padded std base64", func() *http.Request {
			r := good()
			r.Header.Set(api.HeaderKey, base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)))
			return r
		}, smr.CodeBadSignature, nil},
		{"key too short", func() *http.Request {
			r := good()
			r.Header.Set(api.HeaderKey, hex.EncodeToString(make([]byte, 31)))
			return r
		}, smr.CodeBadSignature, nil},
		{"time not a number", func() *http.Request { r := good(); r.Header.Set(api.HeaderTime, "yesterday"); return r }, smr.CodeBadSignature, nil},
		{"time 6 minutes ago", func() *http.Request {
			a := base
			a.unix = now - 6*60
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"time 6 minutes ahead", func() *http.Request {
			a := base
			a.unix = now + 6*60
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"time far in the future", func() *http.Request {
			// Far enough that the difference overflows time.Duration.
			a := base
			a.unix = now + 1<<40
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"time far in the past", func() *http.Request {
			a := base
			a.unix = now - 1<<40
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"signature not base64url", func() *http.Request { r := good(); r.Header.Set(api.HeaderSignature, "***"); return r }, smr.CodeBadSignature, nil},
		{"signature over another path", func() *http.Request {
			a := base
			a.signTarget = "/v1/admin/members"
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"signature without the query", func() *http.Request {
			a := base
			a.target, a.signTarget = base.target+"?force=1", base.target
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"signature over another body", func() *http.Request {
			a := base
			a.signBody = []byte(`{"id":"node-3"}`)
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"signature over another method", func() *http.Request {
			a := base
			a.signMethod = http.MethodGet
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"signature over another time", func() *http.Request {
			a := base
			a.signUnix = now - 1
			return a.build(t, priv)
		}, smr.CodeBadSignature, nil},
		{"signature by another key", func() *http.Request {
			r := good()
			r.Header.Set(api.HeaderKey, smr.FormatKey(other.Public().(ed25519.PublicKey)))
			return r
		}, smr.CodeBadSignature, nil},
		{"key without admin", good, smr.CodePermissionDenied, func(k ed25519.PublicKey, p smr.Permission) error {
			return smr.Errorf(smr.CodePermissionDenied, "client %x lacks permission %s", k[:4], p)
		}},
		{"key never invited", good, smr.CodeUnknownClient, func(k ed25519.PublicKey, _ smr.Permission) error {
			return smr.Errorf(smr.CodeUnknownClient, "client %x is not invited", k[:4])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &fakeBackend{authorize: c.auth}
			s, _ := newServer(t, b)
			resp, body := serve(s, c.req())
			expectError(t, resp, body, docStatuses[c.code], c.code)
			if reachedHandler(b) {
				t.Fatalf("an unauthenticated request reached the handler: %v", b.called())
			}
			// Authorize runs before the body is read (so that only admins
			// can make the node buffer a body); the signature is checked
			// after. Either way the handler is never reached.
		})
	}

	// The same requests pass once nothing is wrong with them.
	b := &fakeBackend{}
	s, _ := newServer(t, b)
	if resp, body := serve(s, good()); resp.StatusCode != http.StatusOK {
		t.Fatalf("control request: %d %s", resp.StatusCode, body)
	}
}

func TestAdminClockSkewConfigurable(t *testing.T) {
	b := &fakeBackend{}
	now := time.Unix(1_700_000_000, 0)
	s, err := api.New(api.Config{Backend: b, Registry: newRegistry(), MaxRequestBytes: testLimit, AdminClockSkew: 10 * time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	priv := newAdminKey(t)
	for _, c := range []struct {
		offset int64
		ok     bool
	}{{0, true}, {-10, true}, {10, true}, {-11, false}, {11, false}} {
		req := adminRequest{method: http.MethodGet, target: "/v1/admin/snapshot", unix: now.Unix() + c.offset}.build(t, priv)
		b.snapshot = []byte("x")
		resp, body := serve(s, req)
		if (resp.StatusCode == http.StatusOK) != c.ok {
			t.Errorf("offset %ds: status %d %s, want ok=%v", c.offset, resp.StatusCode, body, c.ok)
		}
		if !c.ok && !strings.Contains(string(body), api.HeaderTime) {
			t.Errorf("offset %ds: message %s does not name %s", c.offset, body, api.HeaderTime)
		}
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	n   int
	src io.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.src.Read(p)
	c.n += n
	return n, err
}

// TestAdminBodyNotReadBeforeAuthorization: a caller whose key is not an
// admin cannot make the node buffer an admin body (a snapshot upload may be
// up to MaxSnapshotBytes): it is refused before a byte of the body is read.
func TestAdminBodyNotReadBeforeAuthorization(t *testing.T) {
	priv := newAdminKey(t)
	b := &fakeBackend{authorize: func(ed25519.PublicKey, smr.Permission) error {
		return smr.Errorf(smr.CodePermissionDenied, "not an admin")
	}}
	s, _ := newServer(t, b)
	req := adminRequest{method: http.MethodPost, target: "/v1/admin/snapshot", body: []byte("x"), unix: testNow.Unix()}.build(t, priv)
	body := &countingReader{src: bytes.NewReader(make([]byte, 1<<20))}
	req.Body = io.NopCloser(body)
	req.ContentLength = -1
	resp, raw := serve(s, req)
	expectError(t, resp, raw, http.StatusForbidden, smr.CodePermissionDenied)
	if body.n != 0 {
		t.Fatalf("%d body bytes were read before authorization", body.n)
	}
}
