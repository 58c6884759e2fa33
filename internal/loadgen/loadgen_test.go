package loadgen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunPerClient: every client issues exactly PerClient operations with
// i = 0..PerClient-1; failures are counted, not timed, and the first one is
// kept.
func TestRunPerClient(t *testing.T) {
	var mu sync.Mutex
	seen := map[[2]int]bool{}
	boom := errors.New("boom")
	r := Run(context.Background(), Options{Clients: 3, PerClient: 5}, func(_ context.Context, c, i int) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[[2]int{c, i}] {
			t.Errorf("operation %d of client %d issued twice", i, c)
		}
		seen[[2]int{c, i}] = true
		if c == 1 && i == 2 {
			return boom
		}
		return nil
	})
	if len(seen) != 15 || r.Ops != 14 || r.Errors != 1 || !errors.Is(r.FirstErr, boom) || len(r.Latencies) != 14 {
		t.Fatalf("issued %d, result %+v", len(seen), r)
	}
	for i := 1; i < len(r.Latencies); i++ {
		if r.Latencies[i] < r.Latencies[i-1] {
			t.Fatal("latencies are not sorted")
		}
	}
	if r.Rate() <= 0 {
		t.Fatalf("rate %v", r.Rate())
	}
}

// TestRunDuration: a duration-bound run stops, and operations cut short by
// its end are not failures.
func TestRunDuration(t *testing.T) {
	r := Run(context.Background(), Options{Clients: 2, Duration: 30 * time.Millisecond}, func(ctx context.Context, _, _ int) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if r.Errors != 0 || r.Ops != 0 || r.Elapsed < 30*time.Millisecond {
		t.Fatalf("result %+v", r)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {0, 1}, {1, 1}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty: want 0")
	}
}

func TestResultAdd(t *testing.T) {
	boom := errors.New("boom")
	a := Result{Clients: 2, Ops: 2, Elapsed: time.Second, Latencies: []time.Duration{1, 5}}
	b := Result{Clients: 2, Ops: 1, Errors: 1, FirstErr: boom, Elapsed: time.Second, Latencies: []time.Duration{3}}
	s := Result{}.Add(a).Add(b)
	if s.Ops != 3 || s.Errors != 1 || s.FirstErr != boom || s.Elapsed != 2*time.Second || s.Rate() != 1.5 || s.Clients != 2 {
		t.Fatalf("%+v", s)
	}
	if len(s.Latencies) != 3 || s.Latencies[1] != 3 || s.Percentile(100) != 5 {
		t.Fatalf("latencies %v", s.Latencies)
	}
}
