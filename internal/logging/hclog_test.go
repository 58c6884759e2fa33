package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestHCLogForwardsToSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := NewHCLog(logger, "raft")

	h.Debug("hidden", "k", 1)
	h.Info("entering follower state", "follower", "node-1", "leader-id", "")
	h.Named("net").Warn("failed to dial", "error", "refused")
	h.With("peer", "node-2").Error("replication stopped")

	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("debug record passed an info-level logger:\n%s", out)
	}
	for _, want := range []string{
		`level=INFO msg="entering follower state" component=raft follower=node-1`,
		`level=WARN msg="failed to dial" component=raft.net error=refused`,
		`level=ERROR msg="replication stopped" component=raft peer=node-2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if h.IsDebug() || !h.IsInfo() {
		t.Errorf("IsDebug=%v IsInfo=%v, want false, true for an info-level slog logger", h.IsDebug(), h.IsInfo())
	}
}

func TestHCLogTraceLevel(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: LevelTrace}))
	h := NewHCLog(logger, "")
	if !h.IsTrace() {
		t.Fatal("IsTrace is false for a trace-level slog logger")
	}
	h.Trace("tick")
	if !strings.Contains(buf.String(), `level=DEBUG-4 msg=tick`) {
		t.Errorf("trace record missing: %q", buf.String())
	}
}
