package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
)

// Timeouts are the engine settings an operator may change while it runs
// (view_change_timeout, vote_timeout, max_view_change_retries and
// checkpoint_interval). They are local to this replica: they decide when it
// gives up on a view and how often it snapshots, never whether a message is
// valid, so the replicas of a committee may run different values for a
// while.
type Timeouts struct {
	// ViewChangeTimeout is Δ, the base view timeout.
	ViewChangeTimeout time.Duration
	// VoteTimeout is how often a replica that timed out re-sends its
	// timeout (0: ViewChangeTimeout/3).
	VoteTimeout time.Duration
	// MaxViewChangeRetries caps the backoff exponent and raises the alert
	// (at most 20).
	MaxViewChangeRetries int
	// SnapshotInterval is how many log entries pass between local state
	// machine snapshots (0 keeps the current value).
	SnapshotInterval uint64
}

// Timeouts returns the settings in effect. It asks the loop, and fails
// with an error wrapping consensus.ErrUnavailable when ctx ends first.
func (e *Engine) Timeouts(ctx context.Context) (Timeouts, error) {
	var t Timeouts
	err := e.inLoop(ctx, "read timeouts", func() {
		t = Timeouts{
			ViewChangeTimeout:    e.cfg.ViewChangeTimeout,
			VoteTimeout:          e.cfg.VoteTimeout,
			MaxViewChangeRetries: e.cfg.MaxViewChangeRetries,
			SnapshotInterval:     e.cfg.SnapshotInterval,
		}
	})
	return t, err
}

// SetTimeouts changes the view timeouts and the snapshot interval of the
// running engine. The pacemaker takes the new values at once: the current
// view keeps the time it has spent, so a shorter view timeout that has
// already passed times the view out on the next tick. The idle-propose
// delay is lowered to half the view timeout when it would not fit below it.
// Invalid values are refused and change nothing.
func (e *Engine) SetTimeouts(ctx context.Context, t Timeouts) error {
	if t.VoteTimeout == 0 {
		t.VoteTimeout = t.ViewChangeTimeout / 3
	}
	if t.ViewChangeTimeout <= 0 || t.VoteTimeout < 0 {
		return fmt.Errorf("hotstuff engine: view change timeout %s and vote timeout %s must be positive", t.ViewChangeTimeout, t.VoteTimeout)
	}
	if t.MaxViewChangeRetries < 1 {
		return fmt.Errorf("hotstuff engine: max view change retries is %d, must be >= 1", t.MaxViewChangeRetries)
	}
	t.MaxViewChangeRetries = min(t.MaxViewChangeRetries, 20)
	// Tick never changes after New.
	pm, err := pacemaker.FromDurations(e.cfg.Tick, t.ViewChangeTimeout, t.VoteTimeout, t.MaxViewChangeRetries)
	if err != nil {
		return fmt.Errorf("hotstuff engine: %w", err)
	}
	var serr error
	err = e.inLoop(ctx, "set timeouts", func() {
		idle := min(e.cfg.IdlePropose, t.ViewChangeTimeout/2)
		if serr = e.core.SetPacemaker(pm, int(idle/e.cfg.Tick)); serr != nil {
			serr = fmt.Errorf("hotstuff engine: %w", serr)
			return
		}
		e.cfg.ViewChangeTimeout = t.ViewChangeTimeout
		e.cfg.VoteTimeout = t.VoteTimeout
		e.cfg.MaxViewChangeRetries = t.MaxViewChangeRetries
		e.cfg.IdlePropose = idle
		if t.SnapshotInterval > 0 {
			e.cfg.SnapshotInterval = t.SnapshotInterval
		}
		e.publishStatus()
		e.log.Info("timeouts changed", "view_change_timeout", t.ViewChangeTimeout, "vote_timeout", t.VoteTimeout,
			"max_view_change_retries", t.MaxViewChangeRetries, "snapshot_interval", e.cfg.SnapshotInterval,
			"view_ticks", pm.ViewTimeout, "resend_ticks", pm.ResendInterval)
	})
	if err != nil {
		return err
	}
	return serr
}

// inLoop runs fn on the loop and waits for it.
func (e *Engine) inLoop(ctx context.Context, op string, fn func()) error {
	if e.stopped.Load() {
		return consensus.ErrStopped
	}
	done := make(chan struct{})
	wrapped := func() {
		defer close(done)
		fn()
	}
	select {
	case e.ctrlCh <- wrapped:
	case <-ctx.Done():
		return fmt.Errorf("hotstuff engine: %s: %w: %w", op, consensus.ErrUnavailable, ctx.Err())
	case <-e.loopDone:
		return consensus.ErrStopped
	}
	select {
	case <-done:
		return nil
	case <-e.loopDone:
		return consensus.ErrStopped
	}
}
