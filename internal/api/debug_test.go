package api_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/testlog"
)

// TestEnableDebug: the Go profiles are served under /debug/pprof/ only
// when EnableDebug is set.
func TestEnableDebug(t *testing.T) {
	for _, on := range []bool{false, true} {
		s, err := api.New(api.Config{
			Backend:         &fakeBackend{},
			Logger:          testlog.New(t, slog.LevelWarn),
			Registry:        prometheus.NewRegistry(),
			MaxRequestBytes: testLimit,
			EnableDebug:     on,
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, body := serve(s, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		served := resp.StatusCode == http.StatusOK && strings.Contains(string(body), "goroutine")
		if served != on {
			t.Errorf("EnableDebug %v: GET /debug/pprof/ = %d, profiles served %v", on, resp.StatusCode, served)
		}
	}
}
