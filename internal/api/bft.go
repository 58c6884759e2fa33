package api

import (
	"context"
	"crypto/ed25519"
	"net/url"
	"strconv"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// MaxNonceBytes bounds the nonce parameter of a read, which a signed read
// reply echoes.
const MaxNonceBytes = 128

// BFTBackend is implemented by a Backend that can run consensus_mode bft.
// When ReplyKey reports ok, the server answers writes and reads with
// signed replies (wire.SubmitReply, wire.QueryReply) and hands writes to
// SubmitBFT.
type BFTBackend interface {
	// ReplyKey returns the node ID and the node key that sign replies; ok
	// is false when the node does not sign them (cft mode).
	ReplyKey() (nodeID string, key ed25519.PrivateKey, ok bool)
	// SubmitBFT is Submit in bft mode. Every replica that receives a
	// write queues it and answers once its own replica applied it. With
	// propose false the replica first waits for another replica's copy
	// of the envelope to be applied and proposes it only after a fallback
	// delay (a client that sends a write to every replica asks one of
	// them to propose, so that the log holds one copy).
	SubmitBFT(ctx context.Context, env *smr.Envelope, propose bool) (smr.Result, error)
}

// replier is the identity that signs a node's replies in bft mode.
type replier struct {
	id  string
	key ed25519.PrivateKey
	b   BFTBackend
}

// replyKey returns the signing identity when the backend signs replies,
// else nil. A request reads it once, so that all of its replies are
// signed, or none.
func (s *Server) replyKey() *replier {
	b, ok := s.cfg.Backend.(BFTBackend)
	if !ok {
		return nil
	}
	id, key, ok := b.ReplyKey()
	if !ok {
		return nil
	}
	return &replier{id: id, key: key, b: b}
}

// parsePropose reads the propose query parameter of POST /v1/submit
// (absent means true).
func parsePropose(q url.Values) (bool, error) {
	v := q.Get(wire.SubmitQueryPropose)
	if v == "" {
		return true, nil
	}
	p, err := strconv.ParseBool(v)
	if err != nil {
		return false, smr.Errorf(smr.CodeMalformed, "%s: %q is not a boolean", wire.SubmitQueryPropose, v)
	}
	return p, nil
}

// submitBFT runs a write in bft mode and returns its Result with the
// reply, unsigned: the caller signs the replies of its request.
func (rk *replier) submitBFT(ctx context.Context, env *smr.Envelope, propose bool) (smr.Result, *wire.SubmitReply, error) {
	res, err := rk.b.SubmitBFT(ctx, env, propose)
	if err != nil {
		return smr.Result{}, nil, err
	}
	r := wire.NewSubmitReply(rk.id, env.Client, res)
	return res, &r, nil
}

// signQuery builds the signed reply to a read.
func signQuery(id string, key ed25519.PrivateKey, q smr.Query, nonce string, fast bool, index uint64, value []byte) *wire.QueryReply {
	mode := wire.ReadOrdered
	if fast {
		mode = wire.ReadFast
	}
	r := &wire.QueryReply{NodeID: id, Kind: q.Kind, Key: q.Key, Nonce: nonce, Mode: mode, Index: index, Value: wire.CanonicalJSON(value)}
	r.Sign(key)
	return r
}
