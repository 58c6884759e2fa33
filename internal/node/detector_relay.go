package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// Evidence relay: a node that verifies a new record sends it to every
// other member over the peer port (HTTP over mutual TLS, like forwarding),
// and keeps retrying a peer that does not answer. The receiver verifies the
// record itself before it counts: the relay carries proofs, never verdicts.

// pathEvidence is the peer endpoint that takes one record in its canonical
// binary encoding.
const pathEvidence = "/internal/evidence"

// evidenceAnswer is the body of a 200 answer of pathEvidence.
type evidenceAnswer struct {
	Result string `json:"result"`
}

// relay holds the records waiting to be delivered to one peer.
type relay struct {
	mu      sync.Mutex
	pending map[evidence.ID][]byte
	order   []evidence.ID
	wake    chan struct{}
}

func newRelay() *relay {
	return &relay{pending: map[evidence.ID][]byte{}, wake: make(chan struct{}, 1)}
}

// add queues a record; it reports false when the queue is full.
func (r *relay) add(id evidence.ID, b []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[id]; ok {
		return true
	}
	if len(r.pending) >= maxRelayPending {
		return false
	}
	r.pending[id] = b
	r.order = append(r.order, id)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// next returns the oldest pending record.
func (r *relay) next() (evidence.ID, []byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.order) > 0 {
		id := r.order[0]
		if b, ok := r.pending[id]; ok {
			return id, b, true
		}
		r.order = r.order[1:]
	}
	return evidence.ID{}, nil, false
}

func (r *relay) done(id evidence.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, id)
	if i := slices.Index(r.order, id); i >= 0 {
		r.order = slices.Delete(r.order, i, i+1)
	}
}

// relayLocked queues e for every member but this node and the one it came
// from. d.mu is held.
func (d *detector) relayLocked(e *evidence.Evidence, from evidence.NodeID) {
	b, err := evidence.Marshal(e)
	if err != nil {
		d.log.Error("evidence does not encode; not relayed", "err", err)
		return
	}
	id := evidence.IDOf(b)
	for peer, r := range d.relays {
		if peer == from {
			continue
		}
		if !r.add(id, b) {
			d.log.Warn("relay queue full: evidence not sent to a peer", "peer", string(peer), "id", id.Short())
		}
	}
}

// runRelay delivers peer's queue in order until ctx ends, backing off
// while the peer does not answer.
func (d *detector) runRelay(ctx context.Context, peer evidence.NodeID, r *relay) {
	addr := d.peers[peer]
	backoff := time.Duration(0)
	for {
		if backoff > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		id, b, ok := r.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		actx, cancel := context.WithTimeout(ctx, relayTimeout)
		err := d.deliver(actx, addr, b)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var rej *rejectedError
		switch {
		case err == nil:
			r.done(id)
			backoff = 0
		case errors.As(err, &rej):
			// The peer examined it and refused it: sending it again
			// would not change its mind.
			d.metrics.relayed.WithLabelValues(string(resultRejected)).Inc()
			d.log.Warn("peer rejected relayed evidence", "peer", string(peer), "id", id.Short(), "err", err)
			r.done(id)
			backoff = 0
		default:
			d.metrics.relayFails.Inc()
			backoff = min(max(2*backoff, relayRetryMin), relayRetryMax)
			d.log.Debug("evidence relay failed; retrying", "peer", string(peer), "id", id.Short(), "in", backoff, "err", err)
		}
	}
}

// rejectedError is a peer's refusal of a record.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string { return "rejected: " + e.msg }

// deliverEvidence POSTs an encoded record to the evidence endpoint of the
// peer at addr.
func (n *Node) deliverEvidence(ctx context.Context, addr string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+pathEvidence, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("evidence relay to %s: %w", addr, err)
	}
	resp, err := n.rpc.Do(req)
	if err != nil {
		return fmt.Errorf("evidence relay to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
		var a evidenceAnswer
		if err := json.Unmarshal(data, &a); err != nil {
			return fmt.Errorf("evidence relay to %s: answer: %w", addr, err)
		}
		if n.det != nil {
			n.det.metrics.relayed.WithLabelValues(a.Result).Inc()
		}
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		return &rejectedError{msg: string(bytes.TrimSpace(data))}
	default:
		return fmt.Errorf("evidence relay to %s: HTTP %d: %s", addr, resp.StatusCode, bytes.TrimSpace(data))
	}
}

// registerDetectorRPC adds the evidence endpoint (and, for cft mode, the
// attestation endpoint) to the peer-port handler.
// Only current members reach it, and each record is verified here before
// it counts.
func (n *Node) registerDetectorRPC(mux *http.ServeMux) {
	n.registerAttestationRPC(mux)
	mux.HandleFunc("POST "+pathEvidence, func(w http.ResponseWriter, r *http.Request) {
		body, ok := n.memberBody(w, r, evidence.MaxEncodedSize, "evidence is accepted only from current members", "evidence")
		if !ok {
			return
		}
		if n.det == nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "this node runs no detector (consensus_mode %s)", n.cfg.ConsensusMode))
			return
		}
		e, err := evidence.Unmarshal(body)
		if err != nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "evidence: %v", err))
			return
		}
		from := evidence.NodeID(transport.PeerIDFromContext(r.Context()))
		res, err := n.det.handle(r.Context(), e, from)
		if err != nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "evidence %s: %v", e.ID().Short(), err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(evidenceAnswer{Result: string(res)})
	})
}
