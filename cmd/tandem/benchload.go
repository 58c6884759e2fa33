package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/client"
)

// ackLog records a steady write load: when each write was acknowledged
// and at which log index, and the failures. Safe for concurrent use.
type ackLog struct {
	mu     sync.Mutex
	acks   []ack // in the order they were added
	errors int
	first  error
}

type ack struct {
	at    time.Time
	index uint64
}

func (l *ackLog) add(at time.Time, index uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errors++
		if l.first == nil {
			l.first = err
		}
		return
	}
	l.acks = append(l.acks, ack{at: at, index: index})
}

// totals returns the acknowledged writes, the failed ones and the first
// failure.
func (l *ackLog) totals() (writes, errors int, first error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks), l.errors, l.first
}

// since returns how many writes were acknowledged after t, and in total.
func (l *ackLog) since(t time.Time) (n, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.acks {
		if a.at.After(t) {
			n++
		}
	}
	return n, len(l.acks)
}

// firstAbove returns the first write acknowledged at or after t at a log
// index above base.
func (l *ackLog) firstAbove(t time.Time, base uint64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.acks {
		if a.index > base && !a.at.Before(t) {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// gap returns the longest interval without an acknowledged write that ends
// after t0, up to end: it starts at the last write acknowledged at or
// before t0 (or at t0), and the interval still open at end counts up to
// end.
func (l *ackLog) gap(t0, end time.Time) time.Duration {
	l.mu.Lock()
	acks := slices.Clone(l.acks)
	l.mu.Unlock()
	slices.SortFunc(acks, func(a, b ack) int { return a.at.Compare(b.at) })
	prev := t0
	var longest time.Duration
	for _, a := range acks {
		if !a.at.After(t0) {
			prev = a.at
			continue
		}
		if a.at.After(end) {
			break
		}
		longest = max(longest, a.at.Sub(prev))
		prev = a.at
	}
	return max(longest, end.Sub(prev))
}

// startLoad runs one goroutine per writer that writes set_config keys
// "<prefix>/<writer>/<0..63>" back to back into log until ctx ends or the
// returned stop is called; stop waits for the goroutines.
func startLoad(ctx context.Context, writers []*client.Client, prefix string, log *ackLog) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, cl := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ctx.Err() == nil; j++ {
				wctx, cancelWrite := context.WithTimeout(ctx, 30*time.Second)
				res, err := cl.SetConfig(wctx, fmt.Sprintf("%s/%d/%d", prefix, i, j%64), "v")
				cancelWrite()
				if ctx.Err() != nil {
					return
				}
				log.add(time.Now(), res.Index, err)
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
