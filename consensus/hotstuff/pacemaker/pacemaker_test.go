package pacemaker

import (
	"testing"
	"time"
)

// TestBackoffSchedule: view durations are Δ, 2Δ, 4Δ, … capped at
// Δ·2^MaxRetries, and Alert rises once MaxRetries consecutive views timed
// out (design invariant 11).
func TestBackoffSchedule(t *testing.T) {
	cfg := Config{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 3}
	p := New(cfg, 1)
	want := []struct {
		duration int
		alert    bool
	}{{10, false}, {20, false}, {40, false}, {80, true}, {80, true}, {80, true}}
	for k, w := range want {
		if p.Duration() != w.duration || p.Alert() != w.alert || p.Consecutive() != k {
			t.Fatalf("after %d timed-out views: duration %d alert %v, want %d %v", k, p.Duration(), p.Alert(), w.duration, w.alert)
		}
		// Run the view to its timeout, then enter the next through a TC.
		ticks := 0
		for p.Tick() != Timeout {
			ticks++
			if ticks > 1000 {
				t.Fatal("no timeout")
			}
		}
		if ticks+1 != w.duration {
			t.Fatalf("view %d timed out after %d ticks, want %d", p.View(), ticks+1, w.duration)
		}
		p.Enter(p.View()+1, false)
	}
	p.Enter(p.View()+1, true)
	if p.Duration() != 10 || p.Alert() || p.Consecutive() != 0 {
		t.Fatalf("a QC did not reset the backoff: duration %d alert %v", p.Duration(), p.Alert())
	}
}

// TestResendAfterTimeout: after the timeout fires once, Resend comes every
// ResendInterval ticks until the view changes.
func TestResendAfterTimeout(t *testing.T) {
	p := New(Config{ViewTimeout: 4, ResendInterval: 2, MaxRetries: 2}, 1)
	var got []Event
	for range 10 {
		got = append(got, p.Tick())
	}
	want := []Event{None, None, None, Timeout, None, Resend, None, Resend, None, Resend}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("tick %d: %v, want %v (all: %v)", i+1, got[i], want[i], got)
		}
	}
	if !p.Enter(2, true) || p.TimedOut() || p.Tick() != None {
		t.Fatal("entering a new view did not reset the timer")
	}
	if p.Enter(2, true) || p.Enter(1, true) {
		t.Fatal("entered a view that is not above the current one")
	}
}

func TestTimeoutNow(t *testing.T) {
	p := New(Config{ViewTimeout: 50, ResendInterval: 2, MaxRetries: 2}, 3)
	if !p.TimeoutNow() || p.TimeoutNow() {
		t.Fatal("TimeoutNow must report only the first call")
	}
	if ev := p.Tick(); ev != None {
		t.Fatalf("tick after forced timeout: %v", ev)
	}
	if ev := p.Tick(); ev != Resend {
		t.Fatalf("second tick after forced timeout: %v", ev)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{ViewTimeout: 1, ResendInterval: 1, MaxRetries: 1},
		{ViewTimeout: 10, ResendInterval: 10, MaxRetries: 1},
		{ViewTimeout: 10, ResendInterval: 0, MaxRetries: 1},
		{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 0},
		{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 21},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestFromDurations(t *testing.T) {
	c, err := FromDurations(100*time.Millisecond, time.Second, 250*time.Millisecond, 4)
	if err != nil {
		t.Fatal(err)
	}
	if c != (Config{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 4}) {
		t.Fatalf("%+v", c)
	}
	if _, err := FromDurations(time.Second, time.Second, time.Second, 4); err == nil {
		t.Fatal("vote timeout equal to view timeout accepted")
	}
	if _, err := FromDurations(0, time.Second, time.Second, 4); err == nil {
		t.Fatal("zero tick accepted")
	}
}

func TestSetConfigShortensTheCurrentView(t *testing.T) {
	p := New(Config{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 4}, 1)
	for range 5 {
		if ev := p.Tick(); ev != None {
			t.Fatalf("tick reported %v before the view timeout", ev)
		}
	}
	if err := p.SetConfig(Config{ViewTimeout: 1, ResendInterval: 1, MaxRetries: 4}); err == nil {
		t.Fatal("SetConfig accepted a view timeout of 1 tick")
	}
	if p.Config().ViewTimeout != 10 {
		t.Fatalf("a refused config changed the view timeout to %d", p.Config().ViewTimeout)
	}
	if err := p.SetConfig(Config{ViewTimeout: 4, ResendInterval: 2, MaxRetries: 2}); err != nil {
		t.Fatal(err)
	}
	if p.Duration() != 4 {
		t.Fatalf("Duration = %d after SetConfig, want 4", p.Duration())
	}
	if ev := p.Tick(); ev != Timeout {
		t.Fatalf("first tick after shortening a view already past the new timeout = %v, want Timeout", ev)
	}
	p.Enter(2, false)
	p.Enter(3, false)
	if !p.Alert() {
		t.Fatal("no alert after MaxRetries (2) consecutive timed-out views")
	}
}
