package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progressEvery is how often a progress line is redrawn at most.
const progressEvery = 250 * time.Millisecond

// progress keeps one status line up to date on a terminal: each draw
// returns to the start of the line with '\r' and overwrites what was there;
// finish ends the line with a newline. Draws closer together than every
// are skipped. It is driven by ticks (run, or tick directly), and reads the
// time only through now, so a test can drive it with a manual clock.
type progress struct {
	w      io.Writer
	now    func() time.Time
	every  time.Duration
	status func(now time.Time) string

	mu    sync.Mutex
	last  time.Time // when the line was last drawn
	width int       // characters of the line on screen
	drawn bool
	done  bool
}

// newProgress returns a progress line on w whose text status returns.
func newProgress(w io.Writer, now func() time.Time, status func(now time.Time) string) *progress {
	return &progress{w: w, now: now, every: progressEvery, status: status}
}

// tick redraws the line unless it was drawn less than every ago.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	now := p.now()
	if p.drawn && now.Sub(p.last) < p.every {
		return
	}
	p.drawLocked(now)
}

// finish draws the line a last time and ends it with a newline. Later
// ticks draw nothing. It writes nothing when nothing was ever drawn and
// the status is empty.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	p.drawLocked(p.now())
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) drawLocked(now time.Time) {
	line := p.status(now)
	if line == "" && !p.drawn {
		return
	}
	// Pad with spaces to cover the rest of a longer previous line.
	pad := max(0, p.width-len([]rune(line)))
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.width = len([]rune(line))
	p.last, p.drawn = now, true
}

// run redraws the line on every tick until the returned stop is called;
// stop finishes the line and returns once the goroutine run started has
// ended.
func (p *progress) run(ticks <-chan time.Time) (stop func()) {
	quit := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for {
			select {
			case <-ticks:
				p.tick()
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-ended
			p.finish()
		})
	}
}

// println writes s and a newline above the progress line: it clears the
// line, writes s, and draws the line again below it.
func (p *progress) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.drawn || p.done {
		fmt.Fprintln(p.w, s)
		return
	}
	fmt.Fprintf(p.w, "\r%s\r%s\n", strings.Repeat(" ", p.width), s)
	p.width = 0
	p.drawLocked(p.now())
}

// liveProgress is a progress line on a terminal, or nothing when the
// output is not one.
type liveProgress struct {
	w       io.Writer
	p       *progress // nil when off
	stopRun func()
}

// startProgress shows a progress line on w, redrawn every progressEvery,
// when w is a terminal. The caller must call stop, which finishes the line
// and returns once the goroutine drawing it has ended; stop may be called
// more than once. When w is not a terminal nothing is drawn and no
// goroutine is started.
func startProgress(w io.Writer, status func(now time.Time) string) *liveProgress {
	if !isTerminal(w) {
		return &liveProgress{w: w}
	}
	t := time.NewTicker(progressEvery)
	p := newProgress(w, time.Now, status)
	stopRun := p.run(t.C)
	return &liveProgress{w: w, p: p, stopRun: func() {
		t.Stop()
		stopRun()
	}}
}

// println writes a line of text, above the progress line when one is shown.
func (l *liveProgress) println(s string) {
	if l.p == nil {
		fmt.Fprintln(l.w, s)
		return
	}
	l.p.println(s)
}

// stop finishes the progress line.
func (l *liveProgress) stop() {
	if l.stopRun != nil {
		l.stopRun()
	}
}

// isTerminal reports whether w is a character device such as a terminal
// (not a file or a pipe).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// rateStatus returns a status for a run of total from start that counts
// what count returns (named by noun, e.g. "writes"): a bar, elapsed and
// total time, the count so far and its rate over the time since the
// previous status (over the whole run when that was less than half of
// progressEvery ago).
func rateStatus(start time.Time, total time.Duration, noun string, count func() int64) func(time.Time) string {
	var prevAt time.Time
	var prevN int64
	return func(now time.Time) string {
		n := count()
		elapsed := max(0, now.Sub(start))
		from, fromN := prevAt, prevN
		if from.IsZero() {
			from, fromN = start, 0
		}
		if now.Sub(from) < progressEvery/2 {
			// Too short a window for a rate (a last draw right after a
			// tick): the average of the whole run.
			from, fromN = start, 0
		} else {
			prevAt, prevN = now, n
		}
		rate := 0.0
		if d := now.Sub(from); d > 0 {
			rate = float64(n-fromN) / d.Seconds()
		}
		return fmt.Sprintf("%s %s / %s  %d %s  %.0f/s", bar(elapsed.Seconds(), total.Seconds()),
			fmtSeconds(min(elapsed, total)), fmtSeconds(total), n, noun, rate)
	}
}

// bar draws done of total as a 20-character bar in brackets.
func bar(done, total float64) string {
	const width = 20
	filled := width
	if total > 0 && done < total {
		filled = int(float64(width) * max(0, done) / total)
	}
	return "[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "]"
}

func fmtSeconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
