//go:build byzantine

package raftengine

import (
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

// Byzantine behaviours for tests of the detector. They exist only in a
// binary built with -tags byzantine and are chosen by the environment
// variable EnvByzantine (comma-separated behaviours):
//
//   - equivocate: while this node leads, the AppendEntries it sends to one
//     follower (EnvByzantineTarget, or the first follower it replicates
//     to) carry a different payload for each attested command entry — the
//     same command a nanosecond later — with a fresh attestation of the
//     same (epoch, term, seq) over it. The target applies the other
//     payload; the attestations the replicas exchange then hold two
//     signed payloads for one slot: an irrefutable proof
//     (evidence.KindLeaderEquivocation).
//   - disrupt-elections: this node skips pre-vote (its transport hides the
//     pre-vote RPC, so its own Raft campaigns with real votes whenever its
//     heartbeat timer fires), and every election timeout while it follows
//     a live leader it asks every other voter for a real vote of a term
//     above any it used or knows (disrupt_on.go). hashicorp/raft refuses a
//     vote while it knows a leader without taking the vote's term, so
//     against peers that hear from their leader these requests change
//     nothing; a peer between leaders takes the term, and then the leader
//     steps down on that peer's next AppendEntries reply. Each request is
//     what the RPC inspector of every correct member reports as an
//     election disruption.
//   - block-switch: while this node leads, it never proposes an epoch
//     switch entry (ProposeEpochSwitch waits for its context to end and
//     appends nothing), so the escalation to bft that the detector asks
//     for is never ordered by this Raft leader. Combined with
//     omit-requests (TANDEM_BYZANTINE=omit-requests,block-switch) it is
//     the accused leader that blocks the barrier of DESIGN invariant 10.

// EnvByzantine selects the Byzantine behaviours of a byzantine build.
const EnvByzantine = "TANDEM_BYZANTINE"

// EnvByzantineTarget names the follower that gets the other payloads.
const EnvByzantineTarget = "TANDEM_BYZANTINE_TARGET"

var (
	byzEquivocate = ByzantineBehaviour("equivocate")
	byzDisrupt    = ByzantineBehaviour("disrupt-elections")
	byzBlock      = ByzantineBehaviour("block-switch")
)

// dropsEpochSwitch reports whether the block-switch behaviour drops the
// epoch switch being proposed.
func (e *Engine) dropsEpochSwitch() bool {
	if byzBlock {
		e.logger.Warn("byzantine: block-switch: the epoch switch entry is not proposed")
	}
	return byzBlock
}

// ByzantineBehaviour reports whether EnvByzantine selects the behaviour
// name. Only a byzantine build has it: the node's own behaviours use it
// too.
func ByzantineBehaviour(name string) bool {
	return slices.Contains(strings.Split(os.Getenv(EnvByzantine), ","), name)
}

// misbehaveTransport wraps t with the chosen behaviours.
func (e *Engine) misbehaveTransport(t raft.Transport) raft.Transport {
	if byzEquivocate && e.cfg.Signer != nil {
		e.logger.Warn("byzantine build: this leader equivocates to one follower", "target", os.Getenv(EnvByzantineTarget))
		// The equivocator keeps the pre-vote RPC: campaigning without it
		// is not the misbehaviour under test (keepPreVote).
		t = keepPreVote(&equivocatingTransport{Transport: t, e: e, target: raft.ServerID(os.Getenv(EnvByzantineTarget))}, t)
	}
	if byzDisrupt {
		e.logger.Warn("byzantine build: this node campaigns without pre-vote and starts elections while a leader is alive")
		t = withoutPreVote{t}
	}
	return t
}

// equivocatingTransport rewrites the AppendEntries to one follower.
type equivocatingTransport struct {
	raft.Transport
	e *Engine

	mu     sync.Mutex
	target raft.ServerID
	logged bool
}

// AppendEntriesPipeline is refused, so that every AppendEntries goes
// through AppendEntries below.
func (t *equivocatingTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func (t *equivocatingTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.victim(id) && len(args.Entries) > 0 {
		cp := *args
		cp.Entries = make([]*raft.Log, len(args.Entries))
		for i, l := range args.Entries {
			cp.Entries[i] = t.twin(l)
		}
		args = &cp
	}
	return t.Transport.AppendEntries(id, target, args, resp)
}

func (t *equivocatingTransport) victim(id raft.ServerID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.target == "" {
		t.target = id
	}
	return id == t.target
}

// twin returns l with another payload and an attestation of the same slot
// over it, or l itself when it is not an attested command entry. The log
// entry Raft holds is never modified.
func (t *equivocatingTransport) twin(l *raft.Log) *raft.Log {
	if l.Type != raft.LogCommand || len(l.Extensions) == 0 {
		return l
	}
	a, err := evidence.UnmarshalAttestation(l.Extensions)
	if err != nil || string(a.Leader) != t.e.cfg.NodeID {
		return l
	}
	var ent smr.Entry
	if err := ent.UnmarshalBinary(l.Data); err != nil {
		return l
	}
	ent.Time++
	data, err := ent.MarshalBinary()
	if err != nil {
		return l
	}
	b, err := evidence.SignProposal(t.e.cfg.Signer, a.Leader, a.Epoch, a.Term, a.Seq, data)
	if err != nil {
		return l
	}
	ext, err := evidence.MarshalAttestation(b)
	if err != nil {
		return l
	}
	t.mu.Lock()
	if !t.logged {
		t.logged = true
		t.e.logger.Warn("byzantine: equivocating", "to", string(t.target), "term", a.Term, "seq", a.Seq, "index", l.Index,
			"payload", a.PayloadHash.Short(), "twin", b.PayloadHash.Short())
	}
	t.mu.Unlock()
	cp := *l
	cp.Data, cp.Extensions = data, ext
	return &cp
}

// Close closes the wrapped transport, which Raft's shutdown expects to do.
func (t *equivocatingTransport) Close() error { return closeTransport(t.Transport) }
