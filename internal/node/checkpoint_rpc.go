package node

import (
	"context"
	"net/http"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// The checkpoint endpoints on the peer port (mutual TLS, members only):
//
//	POST /internal/checkpoint/vote   body: a checkpoint.Vote (binary), the
//	    sender's own. 200 with this node's newest stable certificate
//	    (binary) when its index is at or above the vote's, 204 otherwise.
//	POST /internal/checkpoint/dissent  body: a checkpoint.Vote (binary) of
//	    any member that the sender saw dissent from a quorum; 204
//	    (detector_ckpteq.go).
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
	mux.HandleFunc("POST "+pathCheckpointDissent, c.serveDissent)
	mux.Handle("GET "+pathCheckpointState, c.n.misbehaveTransfer(checkpoint.NewHandler(c.store, maxStateBytes)))
	return mux
}

// serveVote takes a member's own vote and answers with the newest stable
// certificate when it settles the vote's index.
func (c *checkpointer) serveVote(w http.ResponseWriter, r *http.Request) {
	v, ok := c.readPeerVote(w, r, "checkpoint vote")
	if !ok {
		return
	}
	if from := transport.PeerIDFromContext(r.Context()); v.Signer != from {
		writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "checkpoint vote signed by %q sent by %q: members send their own votes", v.Signer, from))
		return
	}
	cert, err := c.addVote(r.Context(), v)
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

// readPeerVote reads the checkpoint vote a member posts (what names it
// in the malformed answer). ok is false when the error was written.
func (c *checkpointer) readPeerVote(w http.ResponseWriter, r *http.Request, what string) (v checkpoint.Vote, ok bool) {
	body, ok := c.n.memberBody(w, r, maxVoteBytes, "checkpoint votes are taken only from members", what)
	if !ok {
		return v, false
	}
	if err := v.UnmarshalBinary(body); err != nil {
		writeRPCError(w, smr.Errorf(smr.CodeMalformed, "%s: %v", what, err))
		return v, false
	}
	return v, true
}

// broadcast sends v to every peer and keeps the certificates they answer
// with, once verified. (A byzantine test build may send some peers
// another vote: checkpoint_byzantine_on.go.)
func (c *checkpointer) broadcast(ctx context.Context, v checkpoint.Vote) {
	for _, g := range c.voteGroups(v) {
		body, err := g.vote.MarshalBinary()
		if err != nil {
			c.log.Error("own checkpoint vote not encoded", "err", err)
			return
		}
		skip := c.n.quarantinedPeer
		if g.to != nil {
			skip = func(id string) bool { return !g.to(id) || c.n.quarantinedPeer(id) }
		}
		postEach(ctx, c.n, c.peers, pathCheckpointVote, body, 256<<10, skip, func(peer string, answer []byte, err error) {
			if err != nil {
				c.log.Debug("checkpoint vote not delivered", "peer", peer, "err", err)
				return
			}
			if answer == nil {
				return // no certificate that covers the vote
			}
			var cert checkpoint.Certificate
			if err := cert.UnmarshalBinary(answer); err != nil {
				c.log.Debug("checkpoint vote not delivered", "peer", peer, "err", err)
				return
			}
			if err := cert.Verify(c.committee, c.n.quarantinedMembers()); err != nil {
				c.log.Warn("a peer answered a checkpoint vote with a certificate that does not verify", "peer", peer, "err", err)
				return
			}
			if cert.Statement.Kind == checkpoint.KindCheckpoint {
				c.checkCertificate(ctx, &cert)
				c.offer(&cert)
			}
		})
	}
}

// voteGroup is one vote broadcast sends, and to whom: every peer when to
// is nil.
type voteGroup struct {
	vote checkpoint.Vote
	to   func(peer string) bool
}
