// Package loadgen runs a closed-loop load: a number of clients, each
// issuing one operation at a time back to back, for a duration or a number
// of operations, and reports throughput and latency percentiles. The
// benchmarks of the engines and `tandem bench` share it, so the figures
// they compare are measured the same way.
package loadgen

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Op performs operation i of client c. An error counts the operation as
// failed; its latency is not recorded.
type Op func(ctx context.Context, c, i int) error

// Options bound a run. At least one of PerClient and Duration should be
// set; the run ends at whichever comes first (or when ctx ends).
type Options struct {
	Clients   int           // concurrent clients, at least 1
	PerClient int           // operations each client issues; 0: no bound
	Duration  time.Duration // wall time; 0: no bound
}

// Result is what a run measured.
type Result struct {
	Clients   int
	Ops       int           // operations that succeeded
	Errors    int           // operations that failed
	FirstErr  error         // the first failure, if any
	Elapsed   time.Duration // from the first operation's start to the last one's end
	Latencies []time.Duration
}

// Add returns the result of r and o run one after the other: operations,
// errors and elapsed times add up, latencies merge (sorted).
func (r Result) Add(o Result) Result {
	out := Result{
		Clients:   max(r.Clients, o.Clients),
		Ops:       r.Ops + o.Ops,
		Errors:    r.Errors + o.Errors,
		FirstErr:  cmp.Or(r.FirstErr, o.FirstErr),
		Elapsed:   r.Elapsed + o.Elapsed,
		Latencies: append(slices.Clone(r.Latencies), o.Latencies...),
	}
	slices.Sort(out.Latencies)
	return out
}

// Rate returns successful operations per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0..100) of the latencies by the
// nearest-rank method, 0 without latencies.
func (r Result) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile returns the p-th percentile (0..100) of sorted by the
// nearest-rank method, 0 when sorted is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(p/100*float64(len(sorted))+0.5) - 1
	k = max(0, min(k, len(sorted)-1))
	return sorted[k]
}

// Run runs op under o and returns the result with sorted latencies.
func Run(ctx context.Context, o Options, op Op) Result {
	clients := max(o.Clients, 1)
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	type tally struct {
		lat    []time.Duration
		errs   int
		first  error
		firstT time.Time
	}
	tallies := make([]tally, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[c]
			for i := 0; ctx.Err() == nil && (o.PerClient == 0 || i < o.PerClient); i++ {
				t0 := time.Now()
				err := op(ctx, c, i)
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil && o.Duration > 0 {
						return // cut short by the end of the run, not a failure
					}
					t.errs++
					if t.first == nil {
						t.first, t.firstT = err, t0
					}
					continue
				}
				t.lat = append(t.lat, d)
			}
		}()
	}
	wg.Wait()
	r := Result{Clients: clients, Elapsed: time.Since(start)}
	var firstT time.Time
	for _, t := range tallies {
		r.Latencies = append(r.Latencies, t.lat...)
		r.Errors += t.errs
		if t.first != nil && (r.FirstErr == nil || t.firstT.Before(firstT)) {
			r.FirstErr, firstT = t.first, t.firstT
		}
	}
	r.Ops = len(r.Latencies)
	slices.Sort(r.Latencies)
	return r
}
