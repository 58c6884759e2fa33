package node

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// Checkpoint equivocation (DESIGN invariants 2, 7 and 8): the state at an
// index is a pure function of the log, so a correct member signs one
// state hash per checkpoint index. Two signed checkpoint votes of one
// member for one (kind, epoch, index) with different hashes prove that it
// equivocated, to anyone holding the member keys.
//
//	own vote, peer's vote, relayed dissenting vote
//	   │ checkpoint.Collector.Add → *checkpoint.ConflictError (the vote held, the one refused;
//	   │ late votes too, while the collector keeps their index)
//	   │ or a signature of the same member in a peer's certificate or the stable one
//	   ▼ evidence.FromCheckpointConflict
//	detector.handle: verify, store, relay, decide → score 1 → quarantine
//
// A member that sends one state to some peers and another to the rest
// leaves no single node with both votes. So every node that holds a
// member's vote for another state than a quorum signed at the index (a
// dissenting vote, reported as state divergence), or than its own vote
// there, sends that signed vote to the other members once (POST
// /internal/checkpoint/dissent); a peer that holds the member's other
// vote, or a certificate with its other signature, then has the proof,
// and the evidence relay brings it to every correct node. A member that
// diverged without equivocating (one state, not the quorum's) stays a
// state-divergence accusation.

// pathCheckpointDissent takes a member's signed checkpoint vote that the
// sender saw dissent from a quorum or from its own vote (peer port,
// members only). Body: a
// checkpoint.Vote (binary), signed by any member. Answer: 204.
const pathCheckpointDissent = "/internal/checkpoint/dissent"

// Bounds of the dissent relay.
const (
	// dissentQueue bounds the votes waiting to be sent; a full queue
	// drops (the vote is offered again when it is seen again).
	dissentQueue = 64
	// dissentIndexes bounds the indexes whose relayed votes are
	// remembered.
	dissentIndexes = 2 * maxCaptures
)

// dissentRelay is the checkpointer's record of the dissenting votes it
// relayed, and the queue of the ones to send.
type dissentRelay struct {
	out  chan checkpoint.Vote
	mu   sync.Mutex
	sent map[uint64]map[dissentKey]bool // index -> votes sent or queued
}

// dissentKey names one signed vote: its signer and statement.
type dissentKey struct {
	signer string
	digest [32]byte
}

func newDissentRelay() dissentRelay {
	return dissentRelay{out: make(chan checkpoint.Vote, dissentQueue), sent: map[uint64]map[dissentKey]bool{}}
}

// relayDissent queues v, a verified vote that dissents from a quorum or
// from this node's own vote, for every other member, once. It never
// blocks.
func (c *checkpointer) relayDissent(v checkpoint.Vote) {
	r := &c.dissent
	idx, k := v.Statement.Index, dissentKey{v.Signer, v.Statement.Digest()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sent[idx][k] {
		return
	}
	select {
	case r.out <- v:
	default:
		c.log.Warn("dissenting checkpoint vote not relayed: the queue is full", "signer", v.Signer, "statement", v.Statement.String())
		return
	}
	if r.sent[idx] == nil {
		r.sent[idx] = map[dissentKey]bool{}
	}
	r.sent[idx][k] = true
	trimOldest(r.sent, dissentIndexes)
	c.log.Info("relaying a checkpoint vote for another state", "signer", v.Signer, "statement", v.Statement.String())
}

// runDissentRelay sends the queued dissenting votes to every other member
// that is not quarantined (and not the vote's signer) until ctx ends.
func (c *checkpointer) runDissentRelay(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-c.dissent.out:
			body, err := v.MarshalBinary()
			if err != nil {
				c.log.Error("dissenting checkpoint vote not encoded", "err", err)
				continue
			}
			skip := func(id string) bool { return id == v.Signer || c.n.quarantinedPeer(id) }
			postEach(ctx, c.n, c.peers, pathCheckpointDissent, body, 1<<10, skip, func(peer string, _ []byte, err error) {
				if err != nil {
					c.log.Debug("dissenting checkpoint vote not delivered", "peer", peer, "signer", v.Signer, "err", err)
				}
			})
		}
	}
}

// serveDissent takes a dissenting vote a member relays and counts it like
// a peer's own vote: a conflict with a vote this node holds is a proof.
func (c *checkpointer) serveDissent(w http.ResponseWriter, r *http.Request) {
	v, ok := c.readPeerVote(w, r, "dissenting checkpoint vote")
	if !ok {
		return
	}
	if _, err := c.addVote(r.Context(), v); err != nil {
		var ce *checkpoint.ConflictError
		if !errors.As(err, &ce) {
			c.log.Debug("relayed checkpoint vote not counted", "signer", v.Signer, "statement", v.Statement.String(), "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// conflictWithCertificate returns the conflict between v, a vote for
// another state at the index of cert, and the signature of v's signer in
// cert, if cert carries one and both verify (v is verified only then).
func conflictWithCertificate(v checkpoint.Vote, cert *checkpoint.Certificate, com *checkpoint.Committee) *checkpoint.ConflictError {
	for _, sig := range cert.Sigs {
		if sig.Signer != v.Signer {
			continue
		}
		other := checkpoint.Vote{Statement: cert.Statement, Signer: sig.Signer, Sig: sig.Sig}
		if other.Verify(com) == nil && v.Verify(com) == nil {
			return &checkpoint.ConflictError{First: other, Second: v}
		}
	}
	return nil
}

// checkCertificate compares cert, a peer's verified certificate, with the
// votes the collector holds at its index: a signer whose held vote there
// is for another state signed both. (The signatures of a peer's
// certificate are votes like any other; a member that sent this node one
// state and the peer another is caught here.)
func (c *checkpointer) checkCertificate(ctx context.Context, cert *checkpoint.Certificate) {
	if c.n.det == nil || cert.Statement.Index < c.collector.Forgotten() {
		return
	}
	for _, sig := range cert.Sigs {
		// A signature the collector holds already is not verified again.
		c.add(ctx, checkpoint.Vote{Statement: cert.Statement, Signer: sig.Signer, Sig: sig.Sig})
	}
}

// equivocated turns a conflict (two signed states of one member for one
// index) into checkpoint-equivocation evidence and hands it to the
// detector, which verifies it, stores it, relays it and quarantines the
// member. A member already quarantined is left alone: one proof is
// enough.
func (c *checkpointer) equivocated(ctx context.Context, ce *checkpoint.ConflictError) {
	d := c.n.det
	signer := evidence.NodeID(ce.First.Signer)
	if d == nil {
		c.log.Error("a member signed two checkpoints for one index (no detector to act on it)", "signer", signer, "err", ce)
		return
	}
	if d.manager.IsQuarantined(signer) {
		return
	}
	e, err := evidence.FromCheckpointConflict(ce)
	if err != nil {
		c.log.Error("checkpoint equivocation does not encode", "signer", signer, "err", err)
		return
	}
	if res, _ := d.handle(ctx, e, ""); res == resultAdded {
		c.log.Error("checkpoint equivocation: a member signed two states for one index", "signer", signer,
			"index", ce.First.Statement.Index, "evidence", e.ID().Short(), "err", ce)
	}
}
