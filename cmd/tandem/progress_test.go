package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// manualClock is a clock that moves only when told to.
type manualClock struct{ t time.Time }

func (c *manualClock) now() time.Time          { return c.t }
func (c *manualClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgressRedrawsInPlaceAndFinishesWithNewline(t *testing.T) {
	clock := &manualClock{t: time.Unix(1000, 0)}
	start := clock.now()
	var n atomic.Int64
	var out bytes.Buffer
	p := newProgress(&out, clock.now, rateStatus(start, 10*time.Second, "writes", n.Load))

	clock.advance(time.Second)
	n.Store(100)
	p.tick()
	first := "\r[==                  ] 1.0s / 10.0s  100 writes  100/s"
	if got := out.String(); got != first {
		t.Fatalf("first draw %q, want %q", got, first)
	}

	// Ticks closer together than progressEvery draw nothing.
	clock.advance(progressEvery / 2)
	n.Store(150)
	p.tick()
	if got := out.String(); got != first {
		t.Fatalf("a draw %s after the previous one wrote %q", progressEvery/2, strings.TrimPrefix(got, first))
	}

	// The rate covers the time since the previous draw.
	clock.advance(time.Second - progressEvery/2)
	n.Store(400)
	p.tick()
	second := "\r[====                ] 2.0s / 10.0s  400 writes  300/s"
	if got := out.String(); got != first+second {
		t.Fatalf("second draw %q, want %q", strings.TrimPrefix(out.String(), first), second)
	}

	clock.advance(8 * time.Second)
	n.Store(1000)
	p.finish()
	last := "\r[====================] 10.0s / 10.0s  1000 writes  75/s\n"
	if got := strings.TrimPrefix(out.String(), first+second); got != last {
		t.Fatalf("finish wrote %q, want %q", got, last)
	}

	// Finished: later ticks and finishes write nothing.
	before := out.Len()
	clock.advance(time.Second)
	p.tick()
	p.finish()
	if out.Len() != before {
		t.Fatalf("wrote %q after finishing", out.String()[before:])
	}
}

func TestProgressPadsOverALongerLine(t *testing.T) {
	clock := &manualClock{t: time.Unix(0, 0)}
	lines := []string{"round 1/3 waiting", "round 2/3"}
	i := 0
	var out bytes.Buffer
	p := newProgress(&out, clock.now, func(time.Time) string { return lines[min(i, len(lines)-1)] })
	p.tick()
	i++
	clock.advance(progressEvery)
	p.tick()
	want := "\rround 1/3 waiting" + "\rround 2/3        "
	if got := out.String(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestProgressNothingDrawnWritesNoNewline(t *testing.T) {
	clock := &manualClock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	p := newProgress(&out, clock.now, func(time.Time) string { return "" })
	p.tick()
	p.finish()
	if out.Len() != 0 {
		t.Fatalf("an empty status wrote %q", out.String())
	}
}

func TestProgressRunDrawsTicksAndStopWaits(t *testing.T) {
	clock := &manualClock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	var draws int
	p := newProgress(&out, clock.now, func(time.Time) string {
		draws++
		return "round " + string(rune('0'+draws))
	})
	ticks := make(chan time.Time) // unbuffered: a send returns once run has taken the tick
	stop := p.run(ticks)
	ticks <- time.Time{}
	// The second tick is taken after the first draw finished (one
	// goroutine), and the clock has not moved: no draw.
	ticks <- time.Time{}
	stop()
	stop() // a second stop is harmless
	// One draw for the first tick, one by finish.
	want := "\rround 1\rround 2\n"
	if got := out.String(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	select {
	case ticks <- time.Time{}:
		t.Fatal("the goroutine of run still takes ticks after stop")
	default:
	}
}

func TestProgressPrintlnWritesAboveTheLine(t *testing.T) {
	clock := &manualClock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	round := 1
	p := newProgress(&out, clock.now, func(time.Time) string { return fmt.Sprintf("round %d/3", round) })
	p.println("before any draw")
	p.tick()
	round = 2
	p.println("round 1: done")
	p.finish()
	p.println("after")
	want := "before any draw\n" +
		"\rround 1/3" +
		"\r         \rround 1: done\n\rround 2/3" +
		"\rround 2/3\n" +
		"after\n"
	if got := out.String(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestStartProgressOffWithoutTerminal(t *testing.T) {
	var out bytes.Buffer
	l := startProgress(&out, func(time.Time) string { return "x" })
	l.println("a line")
	l.stop()
	if got := out.String(); got != "a line\n" {
		t.Fatalf("wrote %q to a buffer, want only the line", got)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Fatal("a regular file counts as a terminal")
	}
	l = startProgress(f, func(time.Time) string { return "x" })
	l.stop()
	l.stop()
	if fi, err := f.Stat(); err != nil || fi.Size() != 0 {
		t.Fatalf("wrote %d bytes to a file (err %v)", fi.Size(), err)
	}
}

func TestRateStatusShortWindowUsesTheRunAverage(t *testing.T) {
	start := time.Unix(0, 0)
	var n int64
	status := rateStatus(start, 4*time.Second, "syncs", func() int64 { return n })
	n = 300
	if got, want := status(start.Add(3*time.Second)), "[===============     ] 3.0s / 4.0s  300 syncs  100/s"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	n = 320 // 10 ms later: 2000/s over the window, 106/s over the run
	if got, want := status(start.Add(3010*time.Millisecond)), "[===============     ] 3.0s / 4.0s  320 syncs  106/s"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	n = 400 // the window runs from the last status that covered enough time
	if got, want := status(start.Add(4*time.Second)), "[====================] 4.0s / 4.0s  400 syncs  100/s"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestBar(t *testing.T) {
	for _, c := range []struct {
		done, total float64
		want        string
	}{
		{0, 10, "[                    ]"},
		{5, 10, "[==========          ]"},
		{12, 10, "[====================]"},
		{-1, 10, "[                    ]"},
		{1, 0, "[====================]"},
	} {
		if got := bar(c.done, c.total); got != c.want {
			t.Errorf("bar(%v, %v) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}
