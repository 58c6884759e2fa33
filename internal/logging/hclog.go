// Package logging adapts the loggers of third-party libraries to log/slog.
//
// hashicorp/raft and its helpers log through go-hclog. NewHCLog returns an
// hclog.Logger that writes nothing itself (its output is io.Discard) and
// forwards every record, through a registered hclog.SinkAdapter, to a
// slog.Logger. (memberlist takes a *log.Logger: use slog.NewLogLogger.)
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level that hclog's Trace maps to.
const LevelTrace = slog.LevelDebug - 4

// NewHCLog returns an hclog.Logger named name whose records go to logger.
// Levels map Trace→LevelTrace, Debug→Debug, Info→Info, Warn→Warn,
// Error→Error; the hclog name becomes the "component" attribute and the
// key/value pairs become slog attributes. Records below the level enabled on
// logger's handler (checked once, now) are dropped before formatting.
func NewHCLog(logger *slog.Logger, name string) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{
		Name:   name,
		Output: io.Discard,
		Level:  minLevel(logger),
	})
	l.RegisterSink(sink{logger})
	return l
}

// sink forwards hclog records to slog.
type sink struct{ l *slog.Logger }

func (s sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	lvl := slogLevel(level)
	if !s.l.Enabled(context.Background(), lvl) {
		return
	}
	attrs := make([]any, 0, len(args)+2)
	if name != "" {
		attrs = append(attrs, "component", name)
	}
	for _, a := range args {
		// hclog.Fmt values are deferred Sprintf calls; render them.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				a = fmt.Sprintf(format, f[1:]...)
			}
		}
		attrs = append(attrs, a)
	}
	s.l.Log(context.Background(), lvl, msg, attrs...)
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// minLevel returns the lowest hclog level whose records logger would keep,
// so that hclog's IsTrace/IsDebug guards match the slog configuration.
func minLevel(logger *slog.Logger) hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if logger.Enabled(context.Background(), slogLevel(l)) {
			return l
		}
	}
	return hclog.Error
}
