package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tandem-consensus/tandem/config"
)

// reloadPollInterval is how often serve looks at the config file. Polling
// the file's contents (rather than watching inode events) also sees an
// editor's save that writes a new file and renames it over the old one.
const reloadPollInterval = time.Second

// reloadTarget is what the config reloader applies a configuration to.
// *node.Node implements it.
type reloadTarget interface {
	Reload(cfg config.Config) (applied, ignored []string, err error)
}

// configReloader re-reads the configuration (file, then environment, then
// the flags serve was started with) when the file's contents change or the
// process receives SIGHUP, and hands a valid result to the node. An
// invalid one is logged, naming each key and value at fault, and the
// running values stay.
type configReloader struct {
	path   string
	flags  *pflag.FlagSet
	target reloadTarget
	level  *slog.LevelVar
	log    *slog.Logger
	every  time.Duration
	sum    [sha256.Size]byte // of the file contents last read
	hup    chan os.Signal
}

// newConfigReloader returns a reloader for the configuration serve started
// with; path may be empty (no file: only SIGHUP re-reads the environment).
// It starts listening for SIGHUP at once, so that a signal sent before run
// starts is not fatal to the process.
func newConfigReloader(path string, flags *pflag.FlagSet, target reloadTarget, level *slog.LevelVar, log *slog.Logger) *configReloader {
	r := &configReloader{path: path, flags: flags, target: target, level: level, log: log, every: reloadPollInterval, hup: make(chan os.Signal, 1)}
	if path != "" {
		if b, err := os.ReadFile(path); err == nil {
			r.sum = sha256.Sum256(b)
		}
	}
	signal.Notify(r.hup, syscall.SIGHUP)
	return r
}

// run watches until ctx ends.
func (r *configReloader) run(ctx context.Context) {
	defer signal.Stop(r.hup)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.hup:
			r.log.Info("SIGHUP: reloading the configuration", "file", r.path)
			r.fileChanged() // remember the contents read now
			r.reload()
		case <-t.C:
			if r.fileChanged() {
				r.log.Info("config file changed: reloading the configuration", "file", r.path)
				r.reload()
			}
		}
	}
}

// fileChanged reports whether the file's contents differ from the last
// read. A file that cannot be read (for a moment during an editor's save)
// counts as unchanged: the next poll looks again.
func (r *configReloader) fileChanged() bool {
	if r.path == "" {
		return false
	}
	f, err := os.Open(r.path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if bytes.Equal(sum[:], r.sum[:]) {
		return false
	}
	r.sum = sum
	return true
}

// reload reads, validates and applies the configuration once.
func (r *configReloader) reload() {
	cfg, _, err := loadConfig(r.path, r.flags)
	var cp *configProblemsError
	switch {
	case errors.As(err, &cp):
		for _, p := range cp.problems {
			val, _ := cfg.Format(p.Key)
			attrs := []any{"key", p.Key, "value", val, "problem", p.Msg}
			if o := cp.origins[p.Key]; o != "" {
				attrs = append(attrs, "from", o)
			}
			r.log.Error("configuration change rejected: the running values stay", attrs...)
		}
		return
	case err != nil:
		r.log.Error("configuration change rejected: the running values stay", "err", err)
		return
	}
	if _, _, err := r.target.Reload(cfg); err != nil {
		attrs := []any{"err", err}
		for _, p := range config.Problems(err) {
			attrs = append(attrs, "key", p.Key)
		}
		r.log.Error("configuration change rejected: the running values stay", attrs...)
		return
	}
	if lvl, err := parseLevel(cfg.Log.Level); err == nil && r.level != nil && lvl != r.level.Level() {
		r.level.Set(lvl)
		r.log.Info("log level changed", "level", cfg.Log.Level)
	}
}

// newLeveledLogger returns a slog logger writing to w at level ("debug",
// "info", "warn", "error") in format ("text" or "json"), as given by the
// log.* configuration keys. The level is in the returned LevelVar, so that
// a reload can change it.
func newLeveledLogger(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, nil, fmt.Errorf("log.level: %w", err)
	}
	v := new(slog.LevelVar)
	v.Set(lvl)
	opts := &slog.HandlerOptions{Level: v}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), v, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), v, nil
	default:
		return nil, nil, fmt.Errorf("log.format: %q is not one of text, json", format)
	}
}
