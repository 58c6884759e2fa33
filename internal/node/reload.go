package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/config"
	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
)

// reloadTimeout bounds how long Reload waits for the engine's loop.
const reloadTimeout = 10 * time.Second

// reloadState is the configuration the node runs with after the reloads so
// far. Node.cfg stays the start-up configuration, which the node's parts
// read without locks; the reloadable values in effect live here.
type reloadState struct {
	mu   sync.Mutex // serialises Reload
	live *config.Config
}

// Effective returns the configuration in effect: the start-up
// configuration with the reloadable keys of the last successful Reload.
func (n *Node) Effective() config.Config {
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	return n.effectiveLocked()
}

func (n *Node) effectiveLocked() config.Config {
	if n.reload.live == nil {
		return n.cfg
	}
	return *n.reload.live
}

// Tunables returns the reloadable keys and their values in effect,
// formatted as in the config file, for /v1/status.
func (n *Node) Tunables() map[string]string {
	c := n.Effective()
	out := map[string]string{}
	for _, k := range config.ReloadableKeys() {
		if v, ok := c.Format(k); ok {
			out[k] = v
		}
	}
	return out
}

// Reload applies a changed configuration to the running node. cfg must
// validate on its own; a change to a key that needs a restart is logged by
// key name and ignored (ignored lists those keys), and the reloadable keys
// (config.Reloadable) that changed are applied to the running parts: the
// detector's thresholds, the HotStuff engine's timeouts and snapshot
// interval, and Raft's timeouts and snapshot settings. applied lists them.
// log.level is applied by whoever owns the logger; Reload records it.
//
// When cfg does not validate, or a running part refuses its new values,
// Reload returns an error and the node keeps the values it had: the parts
// already changed are set back.
func (n *Node) Reload(cfg config.Config) (applied, ignored []string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("configuration not applied: %w", err)
	}
	n.reload.mu.Lock()
	defer n.reload.mu.Unlock()
	running := n.effectiveLocked()
	applied, ignored = config.SplitReload(running, cfg)
	for _, k := range ignored {
		oldV, _ := running.Format(k)
		newV, _ := cfg.Format(k)
		n.log.Warn("configuration change requires a restart; it is ignored until then", "key", k, "running", oldV, "file", newV)
	}
	if len(applied) == 0 {
		return nil, ignored, nil
	}
	next := config.WithReloaded(running, cfg)
	if err := next.Validate(); err != nil {
		// A reloadable value that does not fit a value fixed until the
		// restart (e.g. checkpoint_interval above the running log_retention).
		return nil, ignored, fmt.Errorf("configuration not applied: with the values that need a restart kept: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	var undo []func()
	fail := func(err error) ([]string, []string, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, ignored, fmt.Errorf("configuration not applied: %w", err)
	}
	changed := func(keys ...string) bool {
		return slices.ContainsFunc(applied, func(k string) bool { return slices.Contains(keys, k) })
	}
	// The running engine takes the new values; in auto mode the next
	// epoch's engine is built from them (Effective).
	if r := n.raftEng(); !n.bftMode() && r != nil && changed("raft.heartbeat_timeout", "raft.election_timeout", "raft.snapshot_interval", "raft.snapshot_threshold", "raft.trailing_logs") {
		if err := r.Reload(next.Raft); err != nil {
			return fail(err)
		}
		undo = append(undo, func() {
			if err := r.Reload(running.Raft); err != nil {
				n.log.Error("raft settings could not be set back after a failed reload", "err", err)
			}
		})
	}
	if b := n.bftEng(); n.bftMode() && changed("view_change_timeout", "vote_timeout", "max_view_change_retries", "checkpoint_interval") {
		if err := b.SetTimeouts(ctx, engineTimeouts(next)); err != nil {
			return fail(err)
		}
		undo = append(undo, func() {
			if err := b.SetTimeouts(ctx, engineTimeouts(running)); err != nil {
				n.log.Error("hotstuff timeouts could not be set back after a failed reload", "err", err)
			}
		})
	}
	if changed("log_size_limit") {
		n.setLogLimits(next)
		undo = append(undo, func() { n.setLogLimits(running) })
	}
	if n.det != nil && changed("anomaly_threshold", "quarantine_threshold") {
		if err := n.det.setScore(ctx, scoreConfig(next)); err != nil {
			return fail(err)
		}
	}
	if changed("disruptive_elections_per_hour") {
		n.det.setDisruptLimit(next.DisruptiveElectionsPerHour)
	}
	n.reload.live = &next
	vals := make([]any, 0, 2*len(applied))
	for _, k := range applied {
		v, _ := next.Format(k)
		vals = append(vals, k, v)
	}
	n.log.Info("configuration reloaded", vals...)
	return applied, ignored, nil
}

func engineTimeouts(c config.Config) hsengine.Timeouts {
	return hsengine.Timeouts{
		ViewChangeTimeout:    c.ViewChangeTimeout,
		VoteTimeout:          c.VoteTimeout,
		MaxViewChangeRetries: c.MaxViewChangeRetries,
		SnapshotInterval:     c.CheckpointInterval,
	}
}
