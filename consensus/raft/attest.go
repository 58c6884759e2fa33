package raftengine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

// Leader attestations (DESIGN invariant 7). With Config.Signer set, the
// leader signs every entry it proposes:
//
//	evidence.ProposalAttestation{leader, epoch, term, seq, payload hash}
//
// where seq counts the leader's proposals in the term from 1 (the leader
// keeps the counter and starts again at 1 in a new term), and carries the
// attestation's binary form (evidence.MarshalAttestation) in the entry's
// raft.Log.Extensions. Raft replicates Extensions with the entry, so every
// replica sees what the leader signed.
//
// On apply, with Config.Members set, each replica checks the attestation of
// every command entry and reports the outcome to Config.OnCheck:
//
//   - present and decodable, for Config.Epoch, by a member, with a valid
//     signature, for a term no later than the entry's, by the one leader
//     this replica saw sign for that term, and over the entry's bytes;
//   - and then, the payload must be one a correct leader proposes
//     (evidence.ValidateClientPayload); otherwise the check carries
//     KindInvalidClientSignature evidence, which anyone can verify.
//
// A missing or invalid attestation is not a proof (anyone could strip or
// garble it), so the check reports it with the leader this replica knew for
// the entry's term, and the node decides what to do with it. Equivocation
// (two attestations of one slot with different payloads) needs the
// attestations other replicas applied: the node exchanges them.
//
// An attestation may name an earlier term than its entry: the leader reads
// its term before Raft appends the entry, and may have been re-elected in
// between. Its slot (term, seq) is still unique, which is all equivocation
// detection needs.

// maxTermLeaders bounds the term → leader map used by the checks.
const maxTermLeaders = 1024

// AttestationCheck is the outcome of checking one applied command entry.
type AttestationCheck struct {
	// Index and Term are the entry's.
	Index, Term uint64
	// Leader is the leader this replica knows for Term: the one whose
	// attestations it accepted for Term, or the current leader when Term
	// is the current term; "" when unknown (for example while replaying
	// the log after a restart).
	Leader string
	// Attestation is the decoded attestation (nil when missing or
	// undecodable). It is verified when Err is nil.
	Attestation *evidence.ProposalAttestation
	// Err says why the attestation is missing or invalid; nil when it
	// verified.
	Err error
	// Evidence is an irrefutable proof found in the entry (a verified
	// attestation over a payload no correct leader proposes), or nil.
	Evidence *evidence.Evidence
}

// attester is the leader side: the per-term proposal counter.
type attester struct {
	mu   sync.Mutex
	term uint64
	seq  uint64
}

// next returns the slot of the next proposal in term.
func (a *attester) next(term uint64) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if term != a.term {
		a.term, a.seq = term, 0
	}
	a.seq++
	return a.seq
}

// attest returns the Extensions carrying this node's attestation of data,
// or nil when the engine has no signer.
func (e *Engine) attest(data []byte) ([]byte, error) {
	if e.cfg.Signer == nil {
		return nil, nil
	}
	term := e.raft.CurrentTerm()
	seq := e.attester.next(term)
	a, err := evidence.SignProposal(e.cfg.Signer, evidence.NodeID(e.cfg.NodeID), e.cfg.Epoch, term, seq, data)
	if err != nil {
		return nil, fmt.Errorf("attest entry: %w", err)
	}
	b, err := evidence.MarshalAttestation(a)
	if err != nil {
		return nil, fmt.Errorf("attest entry: %w", err)
	}
	return b, nil
}

// checker is the replica side, used from the FSM goroutine only (and
// from tests).
type checker struct {
	epoch   uint64
	members *evidence.Members
	// current returns the current term and leader.
	current func() (uint64, string)
	// leaders maps a term to the leader whose attestations were accepted
	// for it (bounded: the oldest terms are forgotten).
	leaders map[uint64]string
	terms   []uint64
}

// verdict is what checking an entry's attestation finds from the bytes
// alone (checker.verify), before the term bookkeeping (checker.finish).
type verdict struct {
	a        *evidence.ProposalAttestation
	err      error // missing or undecodable attestation
	sigErr   error
	hashOK   bool
	evidence *evidence.Evidence
}

// check examines one applied command entry.
func (c *checker) check(l *raft.Log) AttestationCheck {
	return c.finish(l, c.verify(l, nil))
}

// verify runs the checks that depend on the entry's bytes alone; it does
// not touch c's state, so the entries of a batch are verified
// concurrently. payloadValid, when not nil, is the state machine's own
// verdict on the entry's client signature (Prepared.ClientPayloadValid);
// it spares verifying the signature twice when it holds.
func (c *checker) verify(l *raft.Log, payloadValid func() bool) verdict {
	if len(l.Extensions) == 0 {
		return verdict{err: errors.New("the entry carries no leader attestation")}
	}
	a, err := evidence.UnmarshalAttestation(l.Extensions)
	if err != nil {
		return verdict{err: err}
	}
	v := verdict{a: a, sigErr: a.VerifySignature(c.members), hashOK: evidence.RaftPayloadHash(l.Data) == a.PayloadHash}
	if v.sigErr == nil && v.hashOK && (payloadValid == nil || !payloadValid()) && evidence.ValidateClientPayload(l.Data) != nil {
		if ev, err := evidence.NewInvalidEntry(a, l.Data); err == nil {
			v.evidence = ev
		}
	}
	return v
}

// finish completes the check of l from its verdict, in log order: the
// term's leader is remembered here.
func (c *checker) finish(l *raft.Log, v verdict) AttestationCheck {
	res := AttestationCheck{Index: l.Index, Term: l.Term, Leader: c.leaders[l.Term]}
	if res.Leader == "" {
		if term, leader := c.current(); term == l.Term {
			res.Leader = leader
		}
	}
	if v.err != nil {
		res.Err = v.err
		return res
	}
	a := v.a
	res.Attestation = a
	switch {
	case a.Epoch != c.epoch:
		res.Err = fmt.Errorf("%s is for epoch %d, this cluster runs epoch %d", a, a.Epoch, c.epoch)
	case a.Term > l.Term:
		res.Err = fmt.Errorf("%s names a term after the entry's term %d", a, l.Term)
	case v.sigErr != nil:
		res.Err = v.sigErr
	case c.leaders[a.Term] != "" && c.leaders[a.Term] != string(a.Leader):
		res.Err = fmt.Errorf("%s: term %d was led by %s", a, a.Term, c.leaders[a.Term])
	case !v.hashOK:
		res.Err = fmt.Errorf("%s does not cover the entry's bytes (payload hash %s)", a, evidence.RaftPayloadHash(l.Data).Short())
	}
	if res.Err != nil {
		return res
	}
	c.remember(a.Term, string(a.Leader))
	if a.Term == l.Term {
		res.Leader = string(a.Leader)
	}
	res.Evidence = v.evidence
	return res
}

func (c *checker) remember(term uint64, leader string) {
	if _, ok := c.leaders[term]; ok {
		return
	}
	c.leaders[term] = leader
	c.terms = append(c.terms, term)
	if len(c.terms) > maxTermLeaders {
		delete(c.leaders, c.terms[0])
		c.terms = c.terms[1:]
	}
}
