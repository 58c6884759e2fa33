package api_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/smr"
)

// fakeDetector adds the detector's admin calls to fakeBackend.
type fakeDetector struct {
	*fakeBackend
	lifted   []string
	operator string
	format   string
}

func (f *fakeDetector) QuarantineList(context.Context) (api.QuarantineView, error) {
	return api.QuarantineView{Node: "n1", Quarantined: []api.QuarantineEntry{{Node: "n4", Reason: "proof"}}}, nil
}

func (f *fakeDetector) QuarantineLift(_ context.Context, node, operator string) (api.LiftEntry, error) {
	if node != "n4" {
		return api.LiftEntry{}, smr.Errorf(smr.CodeNotFound, "%s is not quarantined", node)
	}
	f.lifted, f.operator = append(f.lifted, node), operator
	return api.LiftEntry{QuarantineEntry: api.QuarantineEntry{Node: node}, Operator: operator}, nil
}

func (f *fakeDetector) EvidenceList(context.Context) (api.EvidenceListView, error) {
	return api.EvidenceListView{Node: "n1", Evidence: []api.EvidenceSummary{{ID: strings.Repeat("ab", 32), Kind: "double-vote"}}}, nil
}

func (f *fakeDetector) EvidenceGet(_ context.Context, id string) (json.RawMessage, error) {
	return json.RawMessage(`{"id":"` + id + `"}`), nil
}

func (f *fakeDetector) EvidenceExport(_ context.Context, format string) (any, error) {
	f.format = format
	return map[string]string{"format": format}, nil
}

func TestDetectorAdminEndpoints(t *testing.T) {
	priv := newAdminKey(t)
	now := testNow.Unix()
	fd := &fakeDetector{fakeBackend: &fakeBackend{}}
	s, err := api.New(api.Config{Backend: fd, Logger: testlog.New(t, slog.LevelWarn), Registry: prometheus.NewRegistry(),
		MaxRequestBytes: testLimit, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	get := func(target string) (int, string) {
		resp, body := serve(s, adminRequest{method: http.MethodGet, target: target, unix: now}.build(t, priv))
		return resp.StatusCode, string(body)
	}
	if code, body := get("/v1/admin/quarantine"); code != http.StatusOK || !strings.Contains(body, `"n4"`) {
		t.Fatalf("quarantine list: %d %s", code, body)
	}
	if code, body := get("/v1/admin/evidence"); code != http.StatusOK || !strings.Contains(body, "double-vote") {
		t.Fatalf("evidence list: %d %s", code, body)
	}
	id := strings.Repeat("cd", 32)
	if code, body := get("/v1/admin/evidence/" + id); code != http.StatusOK || !strings.Contains(body, id) {
		t.Fatalf("evidence show: %d %s", code, body)
	}
	if code, body := get("/v1/admin/evidence/export?format=git"); code != http.StatusOK || fd.format != "git" {
		t.Fatalf("evidence export: %d %s (backend got %q)", code, body, fd.format)
	}
	if code, body := get("/v1/admin/evidence/export?format=xml"); code != http.StatusBadRequest || !strings.Contains(body, "not json or git") {
		t.Fatalf("export format xml: %d %s", code, body)
	}

	lift := func(body string) (int, string) {
		resp, b := serve(s, adminRequest{method: http.MethodPost, target: "/v1/admin/quarantine/lift", body: []byte(body), unix: now}.build(t, priv))
		return resp.StatusCode, string(b)
	}
	if code, body := lift(`{"node":"n4"}`); code != http.StatusOK || len(fd.lifted) != 1 || !strings.HasPrefix(fd.operator, "admin ") {
		t.Fatalf("lift: %d %s (lifted %v by %q)", code, body, fd.lifted, fd.operator)
	}
	for _, bad := range []string{`{}`, `{"node":"n4","x":1}`, `nope`} {
		if code, body := lift(bad); code != http.StatusBadRequest {
			t.Fatalf("lift %s: %d %s", bad, code, body)
		}
	}
	if code, _ := lift(`{"node":"n2"}`); code != http.StatusNotFound {
		t.Fatalf("lift of a node that is not quarantined: %d", code)
	}
	if len(fd.lifted) != 1 {
		t.Fatalf("bad lifts reached the backend: %v", fd.lifted)
	}

	// Unsigned requests never reach the detector.
	resp, _ := serve(s, adminRequest{method: http.MethodGet, target: "/v1/admin/quarantine", unix: now - 3600}.build(t, priv))
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("a stale admin signature was accepted")
	}
}

func TestDetectorEndpointsWithoutDetector(t *testing.T) {
	priv := newAdminKey(t)
	s, _ := newServer(t, &fakeBackend{})
	resp, body := serve(s, adminRequest{method: http.MethodGet, target: "/v1/admin/quarantine", unix: testNow.Unix()}.build(t, priv))
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "no detector") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
