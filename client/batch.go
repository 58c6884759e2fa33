package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
)

// A Batcher sends the signed writes of every Client that shares it to each
// node in batches (POST /v1/submit/batch, docs/api.md): a process that
// writes for many clients at once — a gateway, a load generator — then
// pays one HTTPS request and one JSON document per batch instead of per
// write. Batching needs no timer: a write goes out at once while fewer
// than MaxInflight batches are on their way to its node, and the writes
// that arrive meanwhile leave together in the next batch. Each write keeps
// its own semantics: the SDK handles its answer exactly as the answer of
// its own request (retries, leader hints, outcome unknown).
//
// A write whose context ends while it waits in the queue is not sent; one
// that already left is reported as possibly delivered, like a request
// whose answer was lost. A node that does not know the batch endpoint gets
// single requests from then on. A Batcher is safe for concurrent use;
// Close it after the Clients that use it.
type Batcher struct {
	cfg  BatcherConfig
	http *http.Client
	own  *http.Transport

	mu          sync.Mutex
	lanes       map[string]*batchLane // by endpoint
	unsupported map[string]bool       // endpoints without the batch endpoint

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	batches, writes atomic.Uint64
	queueWait       latencyRing // a write's wait in its lane's queue
	roundTrip       latencyRing // one batch request, sent to answered
}

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	// TLS is the client TLS configuration (the cluster CA, and the client
	// certificate when the nodes require one), as Config.TLS.
	TLS *tls.Config
	// RequestTimeout bounds one batch request (default
	// DefaultRequestTimeout).
	RequestTimeout time.Duration
	// MaxInflight is how many batches may be on their way to one node at
	// once (default 2).
	MaxInflight int
	// HTTPClient, when set, is used instead of a client built from TLS.
	HTTPClient *http.Client
}

// maxBatchBytes bounds the envelope bytes of one batch the SDK sends,
// below the nodes' batch limit with the default limits.max_request_bytes
// (a node configured lower refuses a larger batch whole, and its writes
// then go singly).
const maxBatchBytes = 512 << 10

// errBatchUnsupported: the node does not serve the batch endpoint.
var errBatchUnsupported = errors.New("node does not serve " + wire.PathSubmitBatch)

// NewBatcher returns a Batcher.
func NewBatcher(cfg BatcherConfig) *Batcher {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 2
	}
	b := &Batcher{cfg: cfg, lanes: map[string]*batchLane{}, unsupported: map[string]bool{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	if cfg.HTTPClient != nil {
		b.http = cfg.HTTPClient
	} else {
		b.own = newTransport(cfg.TLS, cfg.RequestTimeout, cfg.MaxInflight*2)
		b.http = &http.Client{Transport: b.own}
	}
	return b
}

// BatcherStats counts what a Batcher sent.
type BatcherStats struct {
	Batches uint64 // batch requests sent
	Writes  uint64 // writes they carried
	// QueueWait is how long writes waited in a node's queue before their
	// batch left; RoundTrip how long batch requests took, sent to
	// answered (the node answers once every write of the batch was
	// handled).
	QueueWait, RoundTrip LatencySummary
}

// Stats returns the Batcher's counters.
func (b *Batcher) Stats() BatcherStats {
	return BatcherStats{Batches: b.batches.Load(), Writes: b.writes.Load(), QueueWait: b.queueWait.summary(), RoundTrip: b.roundTrip.summary()}
}

// Close ends the batches on their way (their writes are reported as
// possibly delivered) and releases the connections.
func (b *Batcher) Close() error {
	b.cancel()
	b.wg.Wait()
	if b.own != nil {
		b.own.CloseIdleConnections()
	}
	return nil
}

// batchLane is the queue of one endpoint.
type batchLane struct {
	queue    []*batchJob
	inflight int
}

// batchJob is one write waiting for its answer.
type batchJob struct {
	item  wire.SubmitBatchItem
	taken bool      // guarded by Batcher.mu: it left in a batch
	at    time.Time // when it was queued
	wrote *atomic.Bool
	done  chan batchDone // buffered 1
}

type batchDone struct {
	ans wire.SubmitBatchAnswer
	err error
}

// submit sends the write c (a POST /v1/submit) to ep in a batch and
// returns its answer as the response of its own request. wrote is set
// once the write left in a batch.
func (b *Batcher) submit(ctx context.Context, ep string, c *call, wrote *atomic.Bool) (*http.Response, error) {
	item := wire.SubmitBatchItem{Envelope: c.body, Propose: c.propose}
	j := &batchJob{item: item, at: time.Now(), wrote: wrote, done: make(chan batchDone, 1)}
	b.mu.Lock()
	if b.unsupported[ep] {
		b.mu.Unlock()
		return nil, errBatchUnsupported
	}
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return nil, errors.New("batcher closed")
	}
	lane := b.lanes[ep]
	if lane == nil {
		lane = &batchLane{}
		b.lanes[ep] = lane
	}
	lane.queue = append(lane.queue, j)
	if lane.inflight < b.cfg.MaxInflight {
		lane.inflight++
		b.wg.Add(1)
		go b.flush(ep, lane)
	}
	b.mu.Unlock()

	select {
	case d := <-j.done:
		if d.err != nil {
			return nil, d.err
		}
		h := http.Header{}
		h.Set("Content-Type", "application/json")
		if d.ans.Leader != "" {
			h.Set(wire.HeaderLeader, d.ans.Leader)
		}
		if d.ans.RetryAfter != "" {
			h.Set("Retry-After", d.ans.RetryAfter)
		}
		return &http.Response{StatusCode: d.ans.Status, Header: h, Body: io.NopCloser(bytes.NewReader(d.ans.Body))}, nil
	case <-ctx.Done():
		b.mu.Lock()
		if !j.taken {
			for i, x := range lane.queue {
				if x == j {
					lane.queue = append(lane.queue[:i], lane.queue[i+1:]...)
					break
				}
			}
		}
		b.mu.Unlock()
		return nil, ctx.Err()
	}
}

// flush sends the lane's queue in batches until it is empty.
func (b *Batcher) flush(ep string, lane *batchLane) {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		n, size := 0, 0
		for n < len(lane.queue) && n < wire.MaxBatchItems && (n == 0 || size+len(lane.queue[n].item.Envelope) <= maxBatchBytes) {
			size += len(lane.queue[n].item.Envelope)
			n++
		}
		if n == 0 {
			lane.inflight--
			b.mu.Unlock()
			return
		}
		// jobs is capped at n, and lane.queue from n on: neither's
		// appends or removals reach the other's elements. A drained
		// queue drops the array, so that it keeps no sent envelope.
		jobs := lane.queue[:n:n]
		if lane.queue = lane.queue[n:]; len(lane.queue) == 0 {
			lane.queue = nil
		}
		for _, j := range jobs {
			j.taken = true
		}
		b.mu.Unlock()
		b.send(ep, jobs)
	}
}

// send posts one batch and hands each job its answer.
func (b *Batcher) send(ep string, jobs []*batchJob) {
	fail := func(err error) {
		for _, j := range jobs {
			j.done <- batchDone{err: err}
		}
	}
	req := wire.SubmitBatchRequest{Items: make([]wire.SubmitBatchItem, len(jobs))}
	for i, j := range jobs {
		req.Items[i] = j.item
	}
	body, err := json.Marshal(req)
	if err != nil {
		fail(fmt.Errorf("batch: encode: %w", err))
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.RequestTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+wire.PathSubmitBatch, bytes.NewReader(body))
	if err != nil {
		fail(fmt.Errorf("batch: build request: %w", err))
		return
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	sent := time.Now()
	for _, j := range jobs {
		j.wrote.Store(true) // from here on, a write may reach the node
		b.queueWait.add(sent.Sub(j.at))
	}
	b.batches.Add(1)
	b.writes.Add(uint64(len(jobs)))
	resp, err := b.http.Do(hreq)
	if err != nil {
		fail(fmt.Errorf("batch of %d to %s: %w", len(jobs), ep, err))
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		fail(fmt.Errorf("batch of %d to %s: read answer: %w", len(jobs), ep, err))
		return
	}
	b.roundTrip.add(time.Since(sent))
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		// An older node: nothing was handled; send singly from now on.
		b.mu.Lock()
		b.unsupported[ep] = true
		b.mu.Unlock()
		fail(errBatchUnsupported)
		return
	case http.StatusRequestEntityTooLarge:
		// Refused whole before anything was handled (a node with a low
		// limits.max_request_bytes): these writes go singly.
		fail(errBatchUnsupported)
		return
	}
	var out wire.SubmitBatchResponse
	if resp.StatusCode != http.StatusOK {
		fail(fmt.Errorf("batch of %d to %s: answered %d: %s", len(jobs), ep, resp.StatusCode, bytes.TrimSpace(raw)))
		return
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Items) != len(jobs) {
		fail(fmt.Errorf("batch of %d to %s: answer does not decode into %d items (%v)", len(jobs), ep, len(jobs), err))
		return
	}
	for i, j := range jobs {
		j.done <- batchDone{ans: out.Items[i]}
	}
}
