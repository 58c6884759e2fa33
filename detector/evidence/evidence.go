package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/bftlog"
)

// Kind names what an evidence record claims. The numbers are part of the
// encoding.
type Kind uint8

// Evidence kinds. All but KindAccusation are irrefutable: they hold
// messages only the offender could have signed, which no correct node ever
// signs together.
const (
	// KindEquivocatingProposals: two HotStuff blocks of one view signed by
	// the same proposer (HotStuff types.EquivocatingProposal).
	KindEquivocatingProposals Kind = 1
	// KindDoubleVote: two HotStuff votes of one member in one view for
	// different blocks (types.DuplicateVote).
	KindDoubleVote Kind = 2
	// KindInvalidClientSignature: a payload signed by its leader — a
	// HotStuff block (types.InvalidPayload) or a Raft entry with its
	// ProposalAttestation — that no correct leader would propose: it fails
	// ValidateClientPayload.
	KindInvalidClientSignature Kind = 3
	// KindLogFork: two messages of the offender's 2P-BFT-Log after the
	// same predecessor (bftlog.ForkProof).
	KindLogFork Kind = 4
	// KindInvalidMessage: a correctly signed 2P-BFT-Log message that
	// breaks a validity rule (bftlog.InvalidProof).
	KindInvalidMessage Kind = 5
	// KindLeaderEquivocation: two Raft ProposalAttestations of the offender
	// for one (epoch, term, seq) with different payload hashes.
	KindLeaderEquivocation Kind = 6
	// KindAccusation: a member's signed Accusation. Statistical, not a
	// proof.
	KindAccusation Kind = 7
	// KindCheckpointEquivocation: two checkpoint.Votes of the offender for
	// one (statement kind, epoch, index) with different state hashes
	// (checkpoint.ConflictError). The state at an index is a pure function
	// of the log (DESIGN invariant 2), so a correct member signs one hash
	// there.
	KindCheckpointEquivocation Kind = 8
)

// kinds lists every known kind in numeric order.
var kinds = [...]Kind{KindEquivocatingProposals, KindDoubleVote, KindInvalidClientSignature,
	KindLogFork, KindInvalidMessage, KindLeaderEquivocation, KindAccusation, KindCheckpointEquivocation}

func (k Kind) String() string {
	switch k {
	case KindEquivocatingProposals:
		return "equivocating-proposals"
	case KindDoubleVote:
		return "double-vote"
	case KindInvalidClientSignature:
		return "invalid-client-signature"
	case KindLogFork:
		return "log-fork"
	case KindInvalidMessage:
		return "invalid-message"
	case KindLeaderEquivocation:
		return "leader-equivocation"
	case KindAccusation:
		return "accusation"
	case KindCheckpointEquivocation:
		return "checkpoint-equivocation"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for _, k := range kinds {
		if k.String() == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("evidence: unknown kind %q: %w", s, ErrMalformed)
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k >= KindEquivocatingProposals && k <= KindCheckpointEquivocation }

// Irrefutable reports whether evidence of kind k proves misbehaviour by
// itself (every known kind but KindAccusation).
func (k Kind) Irrefutable() bool { return k.Valid() && k != KindAccusation }

// SignedEntry is a Raft entry's payload with its leader's attestation: the
// Raft form of KindInvalidClientSignature.
type SignedEntry struct {
	Attestation *ProposalAttestation
	Payload     []byte
}

// Evidence is a self-contained record that Offender misbehaved, or, for
// KindAccusation, that a member says so. It carries the signed messages
// themselves, so Verify can re-check it with nothing but the member keys:
// whoever acts on evidence verifies it again and never takes a peer's word
// (STYLE principle 12).
//
// Exactly one proof field is set, the one of Kind:
//
//	KindEquivocatingProposals, KindDoubleVote   HotStuff
//	KindInvalidClientSignature                  HotStuff or Entry
//	KindLogFork                                 Fork
//	KindInvalidMessage                          Invalid
//	KindLeaderEquivocation                      Proposals
//	KindAccusation                              Accusation
//	KindCheckpointEquivocation                  Checkpoints
//
// Epoch names the member set and, for HotStuff evidence, the committee
// epoch bound into its signatures; Raft attestations, accusations and
// checkpoint votes carry it in their signed bytes too. For 2P-BFT-Log kinds, whose messages carry
// no epoch, it only records when the proof was found.
//
// Treat an Evidence as immutable once built; values from Unmarshal do not
// alias the input.
type Evidence struct {
	Kind     Kind
	Offender NodeID
	Epoch    uint64

	HotStuff   *types.Evidence
	Entry      *SignedEntry
	Fork       *bftlog.ForkProof
	Invalid    *bftlog.InvalidProof
	Proposals  [2]*ProposalAttestation
	Accusation *Accusation
	// Checkpoints: the offender's two votes, the smaller state hash
	// first.
	Checkpoints [2]*checkpoint.Vote
}

// ID identifies an evidence record: SHA-256 of TagEvidence followed by its
// canonical encoding.
type ID [sha256.Size]byte

// String returns id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 6 bytes of id in hex.
func (id ID) Short() string { return hex.EncodeToString(id[:6]) }

// Compare orders ids bytewise.
func (id ID) Compare(o ID) int { return bytes.Compare(id[:], o[:]) }

// ParseID parses a hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("evidence: id %q is not %d hex bytes: %w", s, len(id), ErrMalformed)
	}
	copy(id[:], b)
	return id, nil
}

// ID returns e's identity. It panics if e cannot be encoded: an Evidence
// that does not Marshal is a programming error (build evidence with the
// constructors or Unmarshal).
func (e *Evidence) ID() ID {
	b, err := Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("evidence: ID of unencodable evidence: %v", err))
	}
	return IDOf(b)
}

// IDOf returns the ID of the evidence whose canonical encoding is enc.
func IDOf(enc []byte) ID {
	h := sha256.New()
	h.Write([]byte(TagEvidence))
	h.Write(enc)
	return ID(h.Sum(nil))
}

// Irrefutable reports whether e is a proof rather than an accusation.
func (e *Evidence) Irrefutable() bool { return e.Kind.Irrefutable() }

// String returns a short form for logs.
func (e *Evidence) String() string {
	if e == nil {
		return "evidence(none)"
	}
	return fmt.Sprintf("evidence(%s against %s epoch %d: %s)", e.Kind, e.Offender, e.Epoch, e.Summary())
}

// Summary describes the claim in one line, for operators.
func (e *Evidence) Summary() string {
	switch {
	case e.HotStuff != nil:
		return fmt.Sprintf("hotstuff %s in view %d", e.HotStuff.Kind, e.HotStuff.View)
	case e.Entry != nil && e.Entry.Attestation != nil:
		a := e.Entry.Attestation
		return fmt.Sprintf("raft entry term %d seq %d with payload %s fails client validation", a.Term, a.Seq, a.PayloadHash.Short())
	case e.Fork != nil && e.Fork.A != nil && e.Fork.B != nil:
		return fmt.Sprintf("2P-BFT-Log fork after %s: %s and %s", e.Fork.Point().Short(), e.Fork.A.ID().Short(), e.Fork.B.ID().Short())
	case e.Invalid != nil && e.Invalid.Message != nil:
		return fmt.Sprintf("2P-BFT-Log message %s is invalid: %s", e.Invalid.Message.ID().Short(), e.Invalid.Reason)
	case e.Proposals[0] != nil && e.Proposals[1] != nil:
		a, b := e.Proposals[0], e.Proposals[1]
		return fmt.Sprintf("raft term %d seq %d signed for payloads %s and %s", a.Term, a.Seq, a.PayloadHash.Short(), b.PayloadHash.Short())
	case e.Accusation != nil:
		a := e.Accusation
		return fmt.Sprintf("%s reports %s=%d", a.Accuser, a.Metric, a.Value)
	case e.Checkpoints[0] != nil && e.Checkpoints[1] != nil:
		a, b := e.Checkpoints[0].Statement, e.Checkpoints[1].Statement
		return fmt.Sprintf("%s epoch %d index %d signed for states %x and %x", a.Kind, a.Epoch, a.Index, a.StateHash, b.StateHash)
	default:
		return "no proof"
	}
}

// OffenseKey names the misbehaviour e establishes, independently of which
// copy of the proof it is: two proofs of one offence share the key. It is
// what an operator's lift forgives (see detector/score.Forgiveness):
//
//   - HotStuff kinds: kind, offender, epoch and view;
//   - Raft kinds: kind, offender, epoch, term and seq;
//   - 2P-BFT-Log kinds: kind and the author key (a forked log stays
//     forked for good, so every fork proof of one key is one offence);
//   - checkpoint equivocation: kind, offender, epoch, statement kind and
//     index;
//   - accusations: the evidence ID (they are forgiven by time instead).
func (e *Evidence) OffenseKey() string {
	switch {
	case e.Kind == KindAccusation:
		return fmt.Sprintf("%s/%s", e.Kind, e.ID())
	case e.HotStuff != nil:
		return fmt.Sprintf("%s/%s/%d/view/%d", e.Kind, e.Offender, e.Epoch, e.HotStuff.View)
	case e.Entry != nil && e.Entry.Attestation != nil:
		a := e.Entry.Attestation
		return fmt.Sprintf("%s/%s/%d/term/%d/seq/%d", e.Kind, e.Offender, e.Epoch, a.Term, a.Seq)
	case e.Proposals[0] != nil:
		a := e.Proposals[0]
		return fmt.Sprintf("%s/%s/%d/term/%d/seq/%d", e.Kind, e.Offender, e.Epoch, a.Term, a.Seq)
	case e.Fork != nil && e.Fork.A != nil:
		return fmt.Sprintf("%s/%s", e.Kind, e.Fork.Author())
	case e.Invalid != nil && e.Invalid.Message != nil:
		return fmt.Sprintf("%s/%s", e.Kind, e.Invalid.Author())
	case e.Checkpoints[0] != nil:
		s := e.Checkpoints[0].Statement
		return fmt.Sprintf("%s/%s/%d/%s/%d", e.Kind, e.Offender, e.Epoch, s.Kind, s.Index)
	default:
		return fmt.Sprintf("%s/%s/unknown", e.Kind, e.Offender)
	}
}

// FromHotStuff wraps HotStuff evidence found in the committee of epoch. The
// kind follows ev.Kind; an unknown HotStuff kind is ErrMalformed.
func FromHotStuff(ev *types.Evidence, epoch uint64) (*Evidence, error) {
	if ev == nil {
		return nil, fmt.Errorf("evidence: from hotstuff: nil evidence: %w", ErrMalformed)
	}
	var k Kind
	switch ev.Kind {
	case types.EquivocatingProposal:
		k = KindEquivocatingProposals
	case types.DuplicateVote:
		k = KindDoubleVote
	case types.InvalidPayload:
		k = KindInvalidClientSignature
	default:
		return nil, fmt.Errorf("evidence: from hotstuff: unknown kind %s: %w", ev.Kind, ErrMalformed)
	}
	return checked(&Evidence{Kind: k, Offender: NodeID(ev.Offender), Epoch: epoch, HotStuff: ev})
}

// hotstuffKind returns the HotStuff kind that evidence of kind k carries.
func hotstuffKind(k Kind) types.EvidenceKind {
	switch k {
	case KindEquivocatingProposals:
		return types.EquivocatingProposal
	case KindDoubleVote:
		return types.DuplicateVote
	default:
		return types.InvalidPayload
	}
}

// NewInvalidEntry returns the Raft form of KindInvalidClientSignature: the
// leader's attestation and the payload it covers.
func NewInvalidEntry(a *ProposalAttestation, payload []byte) (*Evidence, error) {
	if a == nil {
		return nil, fmt.Errorf("evidence: invalid entry: nil attestation: %w", ErrMalformed)
	}
	return checked(&Evidence{Kind: KindInvalidClientSignature, Offender: a.Leader, Epoch: a.Epoch,
		Entry: &SignedEntry{Attestation: a, Payload: bytes.Clone(payload)}})
}

// NewLeaderEquivocation returns KindLeaderEquivocation evidence from two
// attestations of one slot, put in canonical order (smaller payload hash
// first). It does not verify them; Verify does.
func NewLeaderEquivocation(a, b *ProposalAttestation) (*Evidence, error) {
	if a == nil || b == nil {
		return nil, fmt.Errorf("evidence: leader equivocation: nil attestation: %w", ErrMalformed)
	}
	if b.PayloadHash.Compare(a.PayloadHash) < 0 {
		a, b = b, a
	}
	return checked(&Evidence{Kind: KindLeaderEquivocation, Offender: a.Leader, Epoch: a.Epoch, Proposals: [2]*ProposalAttestation{a, b}})
}

// FromForkProof returns KindLogFork evidence for p, whose author must be a
// member of m; epoch records when it was found. The proof is put in
// canonical order (smaller message ID first).
func FromForkProof(p *bftlog.ForkProof, m *Members, epoch uint64) (*Evidence, error) {
	if p == nil || p.A == nil || p.B == nil {
		return nil, fmt.Errorf("evidence: from fork proof: missing message: %w", ErrMalformed)
	}
	id, ok := m.ByKey(p.A.Author().PublicKey())
	if !ok {
		return nil, fmt.Errorf("evidence: from fork proof: author %s is not a member: %w", p.A.Author().Short(), ErrMalformed)
	}
	if p.B.ID().Compare(p.A.ID()) < 0 {
		p = &bftlog.ForkProof{A: p.B, B: p.A}
	}
	return checked(&Evidence{Kind: KindLogFork, Offender: id, Epoch: epoch, Fork: p})
}

// FromInvalidProof returns KindInvalidMessage evidence for p, whose author
// must be a member of m; epoch records when it was found.
func FromInvalidProof(p *bftlog.InvalidProof, m *Members, epoch uint64) (*Evidence, error) {
	if p == nil || p.Message == nil {
		return nil, fmt.Errorf("evidence: from invalid proof: missing message: %w", ErrMalformed)
	}
	id, ok := m.ByKey(p.Message.Author().PublicKey())
	if !ok {
		return nil, fmt.Errorf("evidence: from invalid proof: author %s is not a member: %w", p.Message.Author().Short(), ErrMalformed)
	}
	return checked(&Evidence{Kind: KindInvalidMessage, Offender: id, Epoch: epoch, Invalid: p})
}

// FromAccusation wraps a signed accusation.
func FromAccusation(a *Accusation) (*Evidence, error) {
	if a == nil {
		return nil, fmt.Errorf("evidence: from accusation: nil: %w", ErrMalformed)
	}
	return checked(&Evidence{Kind: KindAccusation, Offender: a.Accused, Epoch: a.Epoch, Accusation: a})
}

// checked returns e if it encodes.
func checked(e *Evidence) (*Evidence, error) {
	if _, err := Marshal(e); err != nil {
		return nil, err
	}
	return e, nil
}
