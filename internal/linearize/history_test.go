package linearize

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRecorderConcurrent: many goroutines record at once; every operation
// is kept with its client, an invocation no later than its return, and the
// history of sequential clients checks as linearizable.
func TestRecorderConcurrent(t *testing.T) {
	r := NewRecorder()
	const clients, each = 8, 50
	var wg sync.WaitGroup
	var mu sync.Mutex // serializes the shared "state" the clients write
	state := map[string]string{}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				key := fmt.Sprintf("k%d", j%3)
				if j%2 == 0 {
					v := fmt.Sprintf("%d-%d", c, j)
					p := r.Invoke(c, Input{Kind: KindPut, Key: key, Value: v})
					mu.Lock()
					_, found := state[key]
					state[key] = v
					mu.Unlock()
					p.Return(Output{Found: found}, OutcomeOK, nil)
					continue
				}
				p := r.Invoke(c, Input{Kind: KindGet, Key: key})
				mu.Lock()
				v, found := state[key]
				mu.Unlock()
				p.Return(Output{Value: v, Found: found}, OutcomeOK, nil)
			}
		}()
	}
	wg.Wait()
	h := r.History()
	if len(h) != clients*each {
		t.Fatalf("recorded %d operations, want %d", len(h), clients*each)
	}
	per := map[int]int{}
	for _, op := range h {
		per[op.ClientID]++
		if op.Return < op.Call || op.Outcome != OutcomeOK {
			t.Fatalf("bad record %s", op)
		}
	}
	for c := range clients {
		if per[c] != each {
			t.Fatalf("client %d: %d operations, want %d", c, per[c], each)
		}
	}
	if _, err := Check(h, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRecorderPendingAndRepeatedReturn(t *testing.T) {
	r := NewRecorder()
	r.Invoke(0, Input{Kind: KindPut, Key: "k", Value: "a"}) // never returns
	p := r.Invoke(1, Input{Kind: KindGet, Key: "k"})
	first := p.Return(Output{Value: "a", Found: true}, OutcomeOK, nil)
	p.Return(Output{}, OutcomeFailed, fmt.Errorf("late"))

	h := r.History()
	if len(h) != 2 {
		t.Fatalf("history %v", h)
	}
	if h[0].Outcome != OutcomeUnknown || h[0].Return != Never || h[0].Err == "" {
		t.Fatalf("pending operation recorded as %s", h[0])
	}
	if h[1] != first || h[1].Outcome != OutcomeOK || h[1].Err != "" {
		t.Fatalf("second Return changed the record: %s (first %s)", h[1], first)
	}
	if c := h.Counts(0); c != (Counts{OK: 1, Unknown: 1}) {
		t.Fatalf("counts %s", c)
	}
	if c := h.Counts(KindPut); c != (Counts{Unknown: 1}) {
		t.Fatalf("put counts %s", c)
	}
	// The pending put may have happened: the read of its value is legal.
	if _, err := Check(h, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
