package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// batchServer is a fake node that serves POST /v1/submit/batch (unless
// noBatch) and POST /v1/submit, answering each envelope with a result at
// the next index. hold, when set, blocks each batch until it is closed.
type batchServer struct {
	noBatch  bool
	tooLarge bool // refuse every batch whole with 413
	hold     chan struct{}

	mu       sync.Mutex
	index    uint64
	seen     map[string]bool // client/seq of every envelope handled
	batches  int
	items    int
	singles  int
	notFound int
	proposes []*bool // the propose field of every batch item
}

func (s *batchServer) result(body []byte) (int, any) {
	var env smr.Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return http.StatusBadRequest, wire.ErrorBody{Code: smr.CodeMalformed, Message: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.seen[smr.FormatKey(env.Client)+"/"+jsonString(env.Seq)] = true
	return http.StatusOK, wire.SubmitResponse{Result: smr.Result{Index: s.index, Seq: env.Seq, Value: json.RawMessage(`{"ok":true}`)}}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func (s *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.URL.Path == wire.PathSubmitBatch && s.tooLarge:
		s.mu.Lock()
		s.batches++
		s.mu.Unlock()
		writeErr(w, http.StatusRequestEntityTooLarge, string(smr.CodeTooLarge), "batch too large", "")
	case r.URL.Path == wire.PathSubmitBatch && !s.noBatch:
		if s.hold != nil {
			<-s.hold
		}
		var req wire.SubmitBatchRequest
		if err := json.Unmarshal(body, &req); err != nil {
			writeErr(w, http.StatusBadRequest, string(smr.CodeMalformed), err.Error(), "")
			return
		}
		var out wire.SubmitBatchResponse
		for _, it := range req.Items {
			s.mu.Lock()
			s.proposes = append(s.proposes, it.Propose)
			s.mu.Unlock()
			status, v := s.result(it.Envelope)
			b, _ := json.Marshal(v)
			out.Items = append(out.Items, wire.SubmitBatchAnswer{Status: status, Body: b})
		}
		s.mu.Lock()
		s.batches++
		s.items += len(req.Items)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case r.URL.Path == "/v1/submit":
		s.mu.Lock()
		s.singles++
		s.mu.Unlock()
		status, v := s.result(body)
		writeJSON(w, status, v)
	default:
		s.mu.Lock()
		s.notFound++
		s.mu.Unlock()
		writeErr(w, http.StatusNotFound, string(smr.CodeNotFound), "no such endpoint", "")
	}
}

func newBatchServer(t *testing.T, s *batchServer) string {
	t.Helper()
	s.seen = map[string]bool{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

func batchClients(t *testing.T, url string, b *Batcher, n int) []*Client {
	t.Helper()
	out := make([]*Client, n)
	for i := range out {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{Endpoints: []string{url}, Key: key, StartSeq: 1, Batcher: b,
			RequestTimeout: 5 * time.Second, Retry: RetryConfig{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		out[i] = c
	}
	return out
}

// TestBatcherCoalescesConcurrentWrites: the writes of many clients sharing
// a Batcher travel in fewer requests than writes, and each gets the answer
// for its own envelope.
func TestBatcherCoalescesConcurrentWrites(t *testing.T) {
	srv := &batchServer{}
	url := newBatchServer(t, srv)
	b := NewBatcher(BatcherConfig{MaxInflight: 1})
	t.Cleanup(func() { _ = b.Close() })
	clients := batchClients(t, url, b, 32)
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*3)
	for _, c := range clients {
		wg.Go(func() {
			for want := uint64(1); want <= 3; want++ {
				res, err := c.SetConfig(ctxT(t), "k", "v")
				if err == nil && res.Seq != want {
					err = errors.New("answer for another seq")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.items != 96 || srv.singles != 0 || len(srv.seen) != 96 {
		t.Fatalf("server handled %d items in batches, %d singly, %d distinct; want 96, 0, 96", srv.items, srv.singles, len(srv.seen))
	}
	if srv.batches >= srv.items {
		t.Fatalf("%d batches for %d writes: nothing was coalesced", srv.batches, srv.items)
	}
	if st := b.Stats(); st.Batches != uint64(srv.batches) || st.Writes != 96 {
		t.Fatalf("stats %+v, server saw %d batches", st, srv.batches)
	}
}

// TestBatcherFallsBackToSingleRequests: a node without the batch endpoint
// answers 404 once; that write and every later one go singly.
func TestBatcherFallsBackToSingleRequests(t *testing.T) {
	srv := &batchServer{noBatch: true}
	url := newBatchServer(t, srv)
	b := NewBatcher(BatcherConfig{})
	t.Cleanup(func() { _ = b.Close() })
	c := batchClients(t, url, b, 1)[0]
	for range 3 {
		if _, err := c.SetConfig(ctxT(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.notFound != 1 || srv.singles != 3 {
		t.Fatalf("%d answers 404, %d single writes; want 1 and 3", srv.notFound, srv.singles)
	}
}

// TestBatcherDropsCancelledQueuedWrite: a write whose context ends while
// it waits behind a batch on its way is never sent, and is not reported as
// possibly delivered.
func TestBatcherDropsCancelledQueuedWrite(t *testing.T) {
	srv := &batchServer{hold: make(chan struct{})}
	url := newBatchServer(t, srv)
	b := NewBatcher(BatcherConfig{MaxInflight: 1})
	t.Cleanup(func() { _ = b.Close() })
	cs := batchClients(t, url, b, 2)
	first := make(chan error, 1)
	go func() {
		_, err := cs[0].SetConfig(ctxT(t), "k", "v")
		first <- err
	}()
	// Wait until the first write is on its way (the server holds it).
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Batches == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first write never left")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := cs[1].SetConfig(ctx, "k", "v")
	if err == nil || IsOutcomeUnknown(err) {
		t.Fatalf("cancelled queued write: %v, want an error that is not outcome unknown", err)
	}
	close(srv.hold)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.items != 1 || srv.seen[smr.FormatKey(cs[1].PublicKey())+"/1"] {
		t.Fatalf("server handled %d items (cancelled write seen: %v), want only the first", srv.items, srv.seen[smr.FormatKey(cs[1].PublicKey())+"/1"])
	}
}

// TestBatcherSendsSinglyWhatANodeRefusesWhole: a batch refused whole as
// too large (nothing in it was handled) is sent as single writes, and the
// node still gets batches later.
func TestBatcherSendsSinglyWhatANodeRefusesWhole(t *testing.T) {
	srv := &batchServer{tooLarge: true}
	url := newBatchServer(t, srv)
	b := NewBatcher(BatcherConfig{})
	t.Cleanup(func() { _ = b.Close() })
	c := batchClients(t, url, b, 1)[0]
	for range 2 {
		if _, err := c.SetConfig(ctxT(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.batches != 2 || srv.singles != 2 || len(srv.seen) != 2 {
		t.Fatalf("%d batches refused, %d single writes, %d handled; want 2, 2, 2", srv.batches, srv.singles, len(srv.seen))
	}
}

// TestBatcherCarriesTheProposeFlag: a write's propose flag travels as its
// batch item's propose field, and a write without one leaves it out.
func TestBatcherCarriesTheProposeFlag(t *testing.T) {
	srv := &batchServer{}
	url := newBatchServer(t, srv)
	b := NewBatcher(BatcherConfig{MaxInflight: 1})
	t.Cleanup(func() { _ = b.Close() })
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	no := false
	for seq, propose := range []*bool{nil, &no} {
		env, err := smr.Sign(key, uint64(seq+1), smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(env)
		var wrote atomic.Bool
		resp, err := b.submit(ctxT(t), url, &call{method: http.MethodPost, path: "/v1/submit", body: body, batch: true, propose: propose}, &wrote)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !wrote.Load() {
			t.Fatalf("write %d: status %d, sent %v", seq+1, resp.StatusCode, wrote.Load())
		}
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.proposes) != 2 || srv.proposes[0] != nil || srv.proposes[1] == nil || *srv.proposes[1] {
		t.Fatalf("batch items carried propose %v, want [nil false]", srv.proposes)
	}
}
