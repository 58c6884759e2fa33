// Package pacemaker counts view timeouts in ticks.
//
// A view lasts Duration() ticks from the moment the replica enters it. When
// the time is up, Tick reports Timeout once (the core then signs and
// broadcasts a timeout); after that it reports Resend every ResendInterval
// ticks until the view changes (the core re-broadcasts, which is how timeouts
// survive message loss).
//
// Backoff: views entered through a timeout certificate (no QC since the last
// progress) count as consecutive failures k. Duration is ViewTimeout·2^k,
// capped at ViewTimeout·2^MaxRetries: Δ, 2Δ, 4Δ, … A view entered through a
// QC resets k to 0. Once k reaches MaxRetries the pacemaker raises Alert:
// the cluster has changed view MaxRetries times in a row without progress
// and an operator should look. The alert clears with the next QC.
//
// The pacemaker has no clock of its own: the core calls Tick at a fixed
// rate. It is deterministic and not safe for concurrent use.
package pacemaker

import (
	"fmt"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Config sets the timeouts, in ticks.
type Config struct {
	// ViewTimeout is Δ: how many ticks a replica waits in a view for
	// progress (a QC for the view) before timing out
	// (view_change_timeout / tick).
	ViewTimeout int
	// ResendInterval is how many ticks a replica that timed out waits
	// before re-sending its timeout while the view does not change
	// (vote_timeout / tick). Must be below ViewTimeout.
	ResendInterval int
	// MaxRetries caps the backoff exponent and is the number of consecutive
	// timed-out views that raises Alert (max_view_change_retries).
	MaxRetries int
}

// DefaultConfig returns Δ = 10 ticks, resend every 3 ticks, 4 retries
// (with a 100 ms tick: 1 s, 300 ms, backoff up to 16 s).
func DefaultConfig() Config { return Config{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 4} }

// Validate checks the combination.
func (c Config) Validate() error {
	if c.ViewTimeout < 2 {
		return fmt.Errorf("pacemaker: view timeout is %d ticks, must be at least 2", c.ViewTimeout)
	}
	if c.ResendInterval < 1 || c.ResendInterval >= c.ViewTimeout {
		return fmt.Errorf("pacemaker: resend interval (vote timeout) is %d ticks, must be in [1, view timeout %d)", c.ResendInterval, c.ViewTimeout)
	}
	if c.MaxRetries < 1 || c.MaxRetries > 20 {
		return fmt.Errorf("pacemaker: max view change retries is %d, must be in [1, 20]", c.MaxRetries)
	}
	return nil
}

// Duration returns the view duration after k consecutive timed-out views.
func (c Config) Duration(k int) int {
	return c.ViewTimeout << min(max(k, 0), c.MaxRetries)
}

// Event is what Tick reports.
type Event uint8

// Tick events.
const (
	None    Event = iota // nothing to do
	Timeout              // the view's time is up: time out now
	Resend               // still stuck after timing out: re-send the timeout
)

// Pacemaker tracks the current view's timer.
type Pacemaker struct {
	cfg         Config
	view        types.View
	elapsed     int
	consecutive int
	timedOut    bool
	sinceResend int
}

// New returns a pacemaker in view v. cfg must be valid.
func New(cfg Config, v types.View) *Pacemaker { return &Pacemaker{cfg: cfg, view: v} }

// View returns the current view.
func (p *Pacemaker) View() types.View { return p.view }

// Enter moves to view v (ignored unless v is above the current view).
// byQC says whether v was entered through a QC for v−1 (progress: the
// backoff resets) or through a TC (one more consecutive failure).
func (p *Pacemaker) Enter(v types.View, byQC bool) bool {
	if v <= p.view {
		return false
	}
	p.view = v
	p.elapsed = 0
	p.timedOut = false
	p.sinceResend = 0
	if byQC {
		p.consecutive = 0
	} else {
		p.consecutive++
	}
	return true
}

// Progress records a QC formed for a view at or above the current view − 1
// without a view change having been counted yet (resets the backoff).
func (p *Pacemaker) Progress() { p.consecutive = 0 }

// Tick advances the timer by one tick.
func (p *Pacemaker) Tick() Event {
	if p.timedOut {
		p.sinceResend++
		if p.sinceResend >= p.cfg.ResendInterval {
			p.sinceResend = 0
			return Resend
		}
		return None
	}
	p.elapsed++
	if p.elapsed >= p.Duration() {
		p.timedOut = true
		p.sinceResend = 0
		return Timeout
	}
	return None
}

// TimeoutNow marks the view as timed out immediately (forced view change,
// quarantined leader, or f+1 peers timed out). It returns false if the view
// had already timed out.
func (p *Pacemaker) TimeoutNow() bool {
	if p.timedOut {
		return false
	}
	p.timedOut = true
	p.sinceResend = 0
	return true
}

// TimedOut reports whether the current view has timed out.
func (p *Pacemaker) TimedOut() bool { return p.timedOut }

// Duration returns the current view's length in ticks.
func (p *Pacemaker) Duration() int { return p.cfg.Duration(p.consecutive) }

// Elapsed returns the ticks spent in the current view (stops counting once
// the view timed out).
func (p *Pacemaker) Elapsed() int { return p.elapsed }

// Consecutive returns the number of consecutive views entered by timeout.
func (p *Pacemaker) Consecutive() int { return p.consecutive }

// Alert reports whether MaxRetries consecutive views timed out.
func (p *Pacemaker) Alert() bool { return p.consecutive >= p.cfg.MaxRetries }

// FromDurations maps the configuration keys view_change_timeout,
// vote_timeout and max_view_change_retries to tick counts for a shell that
// calls Tick every tick. Durations are rounded up to whole ticks.
func FromDurations(tick, viewChange, vote time.Duration, maxRetries int) (Config, error) {
	if tick <= 0 {
		return Config{}, fmt.Errorf("pacemaker: tick is %v, must be positive", tick)
	}
	ticks := func(d time.Duration) int { return int((d + tick - 1) / tick) }
	c := Config{ViewTimeout: ticks(viewChange), ResendInterval: ticks(vote), MaxRetries: maxRetries}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w (view_change_timeout %v, vote_timeout %v, tick %v)", err, viewChange, vote, tick)
	}
	return c, nil
}
