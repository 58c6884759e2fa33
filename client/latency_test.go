package client

import (
	"testing"
	"time"
)

func TestLatencyRingSummary(t *testing.T) {
	var r latencyRing
	if s := r.summary(); s != (LatencySummary{}) {
		t.Fatalf("empty summary = %+v", s)
	}
	for i := 1; i <= 10; i++ {
		r.add(time.Duration(i) * time.Millisecond)
	}
	s := r.summary()
	if s.Count != 10 || s.P50 != 6*time.Millisecond || s.P90 != 10*time.Millisecond || s.Mean != 5500*time.Microsecond {
		t.Fatalf("summary = %+v", s)
	}
	// Past latencySamples, the oldest samples give way; Count keeps all.
	for range latencySamples {
		r.add(time.Second)
	}
	if s := r.summary(); s.Count != 10+latencySamples || s.P50 != time.Second || s.Mean != time.Second {
		t.Fatalf("summary after wrapping = %+v", s)
	}
}

// A Timings shared by a bft client records, per write, the wait for the
// first signed reply and then for the rest of the f+1: with one of the two
// replicas asked first answering slowDelay late, the second wait holds it.
func TestTimingsRecordTheWaitForFPlusOne(t *testing.T) {
	fc := newFakeCommittee(t, 4)
	var tm Timings
	c, err := New(Config{
		HedgeDelay:     time.Hour,
		Committee:      fc.members,
		Key:            testKey(t),
		StartSeq:       1,
		RequestTimeout: 2 * time.Second,
		Timings:        &tm,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// The replica after the primary answers late.
	fc.set((int(c.bft.primary.Load())+1)%4, slow)
	const writes = 3
	for range writes {
		if _, err := c.SetConfig(ctxT(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	s := tm.Summary()
	if s.FirstReply.Count != writes || s.QuorumWait.Count != writes {
		t.Fatalf("recorded %d and %d writes, want %d", s.FirstReply.Count, s.QuorumWait.Count, writes)
	}
	if s.QuorumWait.P50 < slowDelay/2 {
		t.Fatalf("wait for f+1 p50 = %v, want about the slow replica's %v", s.QuorumWait.P50, slowDelay)
	}
	if s.FirstReply.P50 >= slowDelay {
		t.Fatalf("first reply p50 = %v, want the honest replica's quick answer", s.FirstReply.P50)
	}
}
