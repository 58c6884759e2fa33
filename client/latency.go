package client

import (
	"slices"
	"sync"
	"time"
)

// LatencySummary summarises recent durations of one kind: how many were
// recorded in all, and the median, 90th percentile and mean of the last
// latencySamples of them.
type LatencySummary struct {
	Count          uint64
	P50, P90, Mean time.Duration
}

// latencySamples is how many recent durations a latencyRing keeps.
const latencySamples = 8192

// latencyRing keeps the last latencySamples durations recorded.
type latencyRing struct {
	mu    sync.Mutex
	buf   []time.Duration
	next  int
	count uint64
}

// add records d.
func (r *latencyRing) add(d time.Duration) {
	r.mu.Lock()
	if len(r.buf) < latencySamples {
		r.buf = append(r.buf, d)
	} else {
		r.buf[r.next] = d
		r.next = (r.next + 1) % latencySamples
	}
	r.count++
	r.mu.Unlock()
}

// summary summarises the recorded durations.
func (r *latencyRing) summary() LatencySummary {
	r.mu.Lock()
	s := slices.Clone(r.buf)
	n := r.count
	r.mu.Unlock()
	out := LatencySummary{Count: n}
	if len(s) == 0 {
		return out
	}
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	out.P50 = s[len(s)/2]
	out.P90 = s[len(s)*9/10]
	out.Mean = sum / time.Duration(len(s))
	return out
}

// Timings records where bft writes' time went on the client side
// (Config.Timings). It is safe for concurrent use.
type Timings struct {
	firstReply, quorumWait latencyRing
}

// TimingsSummary is what a Timings recorded: for writes decided by f+1
// matching signed replies, the time to the first of them, and from it to
// the last one needed.
type TimingsSummary struct {
	FirstReply, QuorumWait LatencySummary
}

// Summary summarises the recorded timings.
func (t *Timings) Summary() TimingsSummary {
	return TimingsSummary{FirstReply: t.firstReply.summary(), QuorumWait: t.quorumWait.summary()}
}

// noteWrite records one decided write; a nil Timings records nothing.
func (t *Timings) noteWrite(first, quorum time.Duration) {
	if t == nil {
		return
	}
	t.firstReply.add(first)
	t.quorumWait.add(quorum)
}
