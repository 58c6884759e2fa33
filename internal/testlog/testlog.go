// Package testlog gives tests a slog.Logger that writes through t.Log.
//
// Libraries such as hashicorp/raft and memberlist may log from their own
// goroutines for a moment after they were shut down, and t.Log after a test
// has completed panics; lines that arrive after the test's cleanups have run
// are dropped.
package testlog

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// New returns a logger at level (TANDEM_TEST_LOG, when set, overrides it:
// debug, info, warn or error).
func New(t testing.TB, level slog.Level) *slog.Logger {
	if v := os.Getenv("TANDEM_TEST_LOG"); v != "" {
		_ = level.UnmarshalText([]byte(v))
	}
	w := &writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type writer struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
