package quarantine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

// AlertKind says what happened.
type AlertKind uint8

// Alert kinds.
const (
	AlertQuarantined AlertKind = 1 // a node was quarantined
	AlertEvidence    AlertKind = 2 // further evidence against a quarantined node
	AlertLifted      AlertKind = 3 // an operator lifted a quarantine
)

func (k AlertKind) String() string {
	switch k {
	case AlertQuarantined:
		return "quarantined"
	case AlertEvidence:
		return "evidence"
	case AlertLifted:
		return "lifted"
	default:
		return fmt.Sprintf("alert(%d)", uint8(k))
	}
}

// Alert describes a change of the quarantine list, after it is durable.
type Alert struct {
	Kind     AlertKind
	Node     NodeID
	Reason   string
	Operator string // AlertLifted only
	At       time.Time
	Evidence []evidence.ID
}

// Alerter receives alerts: a log line, a metric, a webhook — implemented by
// the caller. Manager calls Alert synchronously, after the change is
// durable and without holding its lock (so Alert may call the Manager), in
// the order of the changes. Alert must not block for long: a webhook
// should queue and send on its own goroutine.
type Alerter interface {
	Alert(Alert)
}

// AlertFunc adapts a function to Alerter.
type AlertFunc func(Alert)

// Alert calls f(a).
func (f AlertFunc) Alert(a Alert) { f(a) }

// SlogAlerter logs every alert with l: quarantines and lifts at warn level,
// further evidence at info.
type SlogAlerter struct{ Logger *slog.Logger }

// Alert logs a.
func (s SlogAlerter) Alert(a Alert) {
	lvl := slog.LevelWarn
	if a.Kind == AlertEvidence {
		lvl = slog.LevelInfo
	}
	ids := make([]string, len(a.Evidence))
	for i, id := range a.Evidence {
		ids[i] = id.Short()
	}
	s.Logger.LogAttrs(context.Background(), lvl, "quarantine "+a.Kind.String(),
		slog.String("node", string(a.Node)), slog.String("reason", a.Reason),
		slog.String("operator", a.Operator), slog.Time("at", a.At), slog.Any("evidence", ids))
}
