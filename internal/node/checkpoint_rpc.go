package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// The checkpoint endpoints on the peer port (mutual TLS, members only):
//
//	POST /internal/checkpoint/vote   body: a checkpoint.Vote (binary), the
//	    sender's own. 200 with this node's newest stable certificate
//	    (binary) when its index is at or above the vote's, 204 otherwise.
//	GET  /internal/checkpoint/state  checkpoint.NewHandler over the store:
//	    the newest stable checkpoint for state transfer.

// maxVoteBytes bounds a vote on the wire.
const maxVoteBytes = 4 << 10

// withCheckpointRPC routes the checkpoint endpoints to c and everything
// else to next. With checkpoints off it returns next.
func (n *Node) withCheckpointRPC(next http.Handler) http.Handler {
	c := n.ckpt
	if c == nil {
		return next
	}
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("POST "+pathCheckpointVote, c.serveVote)
	mux.Handle("GET "+pathCheckpointState, c.n.misbehaveTransfer(checkpoint.NewHandler(c.store, maxStateBytes)))
	return mux
}

// serveVote takes a member's own vote and answers with the newest stable
// certificate when it settles the vote's index.
func (c *checkpointer) serveVote(w http.ResponseWriter, r *http.Request) {
	if !c.n.fromMember(r) {
		writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "checkpoint votes are taken only from members"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxVoteBytes))
	if err != nil {
		writeRPCError(w, smr.Errorf(smr.CodeMalformed, "checkpoint vote: %v", err))
		return
	}
	var v checkpoint.Vote
	if err := v.UnmarshalBinary(body); err != nil {
		writeRPCError(w, smr.Errorf(smr.CodeMalformed, "checkpoint vote: %v", err))
		return
	}
	if from := transport.PeerIDFromContext(r.Context()); v.Signer != from {
		writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "checkpoint vote signed by %q sent by %q: members send their own votes", v.Signer, from))
		return
	}
	cert, err := c.addVote(v)
	if err != nil {
		c.log.Debug("peer checkpoint vote not counted", "signer", v.Signer, "statement", v.Statement.String(), "err", err)
	}
	if cert != nil {
		c.offer(cert)
	}
	s := c.stable.Load()
	if s == nil || s.Statement.Index < v.Statement.Index {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b, err := s.MarshalBinary()
	if err != nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

// broadcast sends v to every peer and keeps the certificates they answer
// with, once verified.
func (c *checkpointer) broadcast(ctx context.Context, v checkpoint.Vote) {
	body, err := v.MarshalBinary()
	if err != nil {
		c.log.Error("own checkpoint vote not encoded", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, m := range c.peers {
		if c.n.quarantinedPeer(m.ID) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cert, err := c.sendVote(ctx, m.Addr, body)
			if err != nil {
				c.log.Debug("checkpoint vote not delivered", "peer", m.ID, "err", err)
				return
			}
			if cert == nil {
				return
			}
			if err := cert.Verify(c.committee, c.n.quarantinedMembers()); err != nil {
				c.log.Warn("a peer answered a checkpoint vote with a certificate that does not verify", "peer", m.ID, "err", err)
				return
			}
			if cert.Statement.Kind == checkpoint.KindCheckpoint {
				c.offer(cert)
			}
		}()
	}
	wg.Wait()
}

// sendVote posts a vote to one peer and decodes the certificate it
// answers with (nil for none).
func (c *checkpointer) sendVote(ctx context.Context, addr string, body []byte) (*checkpoint.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+pathCheckpointVote, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := c.n.rpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	if err != nil {
		return nil, err
	}
	var cert checkpoint.Certificate
	if err := cert.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return &cert, nil
}
