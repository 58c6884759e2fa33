package evidence

import (
	"crypto/ed25519"
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// Verify checks e using only e and the member keys m. It returns nil when e
// proves what it claims — for an accusation: that the accuser, a member,
// signed it — and otherwise a *VerifyError (wrapping ErrInvalidEvidence)
// naming the failed check. The checks, in order:
//
// Every kind
//   - CheckKind: Kind is known;
//   - CheckShape: exactly the proof field of Kind is set and complete;
//   - CheckMember: Offender is a member.
//
// EquivocatingProposals, DoubleVote, InvalidClientSignature (HotStuff form)
//   - CheckOffender: the HotStuff evidence is of the matching HotStuff kind
//     and names Offender;
//   - CheckHotStuff: types.Evidence.Verify accepts it against the committee
//     of m in Epoch (same view and signer, different blocks or votes, both
//     signatures; for InvalidClientSignature the command fails
//     ValidateClientPayload).
//
// InvalidClientSignature (Raft form)
//   - CheckOffender: the attestation's leader is Offender;
//   - CheckEpoch: the attestation is of Epoch;
//   - CheckSignature: the attestation's signature verifies under
//     Offender's key;
//   - CheckPayloadHash: RaftPayloadHash(Payload) is the signed hash;
//   - CheckPayload: ValidateClientPayload rejects Payload.
//
// LogFork
//   - CheckOffender: the messages' author is Offender's key;
//   - CheckCanonical: Fork.A's id is below Fork.B's;
//   - CheckForkProof: bftlog.VerifyForkProof accepts it (same author and
//     prev, different ids, both signatures).
//
// InvalidMessage
//   - CheckOffender: the message's author is Offender's key;
//   - CheckInvalidProof: bftlog.VerifyInvalidProof accepts it (the message
//     is signed and its witness shows the broken rule).
//
// LeaderEquivocation
//   - CheckOffender: both attestations' leader is Offender;
//   - CheckEpoch: both are of Epoch;
//   - CheckSameSlot: both have the same term and the same seq;
//   - CheckConflict: their payload hashes differ;
//   - CheckCanonical: the first has the smaller payload hash;
//   - CheckSignature: both signatures verify under Offender's key.
//
// CheckpointEquivocation
//   - CheckOffender: both votes are signed as Offender;
//   - CheckEpoch: both statements are of Epoch;
//   - CheckStatement: both statements are valid (checkpoint.Statement
//     Validate);
//   - CheckSameSlot: both have the same statement kind and index;
//   - CheckConflict: their state hashes differ;
//   - CheckCanonical: the first has the smaller state hash;
//   - CheckSignature: both signatures (over checkpoint.Statement
//     SignBytes) verify under Offender's key.
//
// Accusation
//   - CheckOffender: the accused is Offender;
//   - CheckEpoch: the accusation is of Epoch;
//   - CheckAccuser: the accuser is a member other than the accused;
//   - CheckMetric: the metric is known and the value not negative;
//   - CheckSignature: the signature verifies under the accuser's key.
//
// Verify does not judge an accusation's age or value; detector/score does.
func Verify(e *Evidence, m *Members) error {
	if e == nil {
		return &VerifyError{Check: CheckShape, Detail: "nil evidence"}
	}
	fail := func(c Check, cause error, format string, args ...any) error {
		return &VerifyError{Kind: e.Kind, Offender: e.Offender, Check: c, Detail: fmt.Sprintf(format, args...), Cause: cause}
	}
	if !e.Kind.Valid() {
		return fail(CheckKind, nil, "kind %d is not known", uint8(e.Kind))
	}
	if s := shapeError(e); s != "" {
		return fail(CheckShape, nil, "%s", s)
	}
	if m == nil || !m.Contains(e.Offender) {
		return fail(CheckMember, nil, "%q is not a member", e.Offender)
	}
	key := m.Key(e.Offender)
	switch {
	case e.HotStuff != nil:
		hs := e.HotStuff
		if want := hotstuffKind(e.Kind); hs.Kind != want || NodeID(hs.Offender) != e.Offender {
			return fail(CheckOffender, nil, "hotstuff evidence is %s against %q, want %s against %q", hs.Kind, hs.Offender, want, e.Offender)
		}
		c, err := m.Committee(e.Epoch)
		if err != nil {
			return fail(CheckHotStuff, err, "cannot build the committee of epoch %d", e.Epoch)
		}
		if err := hs.Verify(c, types.ValidatorFunc(ValidateClientPayload)); err != nil {
			return fail(CheckHotStuff, err, "epoch %d", e.Epoch)
		}
		return nil

	case e.Entry != nil:
		a := e.Entry.Attestation
		if a.Leader != e.Offender {
			return fail(CheckOffender, nil, "attestation is by %q", a.Leader)
		}
		if a.Epoch != e.Epoch {
			return fail(CheckEpoch, nil, "attestation epoch %d, evidence epoch %d", a.Epoch, e.Epoch)
		}
		if !verifySig(key, a.SignBytes(), a.Sig) {
			return fail(CheckSignature, nil, "attestation of term %d seq %d does not verify", a.Term, a.Seq)
		}
		if h := RaftPayloadHash(e.Entry.Payload); h != a.PayloadHash {
			return fail(CheckPayloadHash, nil, "payload hashes to %s, attestation signs %s", h.Short(), a.PayloadHash.Short())
		}
		if err := ValidateClientPayload(e.Entry.Payload); err == nil {
			return fail(CheckPayload, nil, "payload of term %d seq %d is a valid client request", a.Term, a.Seq)
		}
		return nil

	case e.Fork != nil:
		p := e.Fork
		for _, msg := range []*bftlog.Message{p.A, p.B} {
			if a := msg.Author(); !equalKey(a[:], key) {
				return fail(CheckOffender, nil, "message %s is by key %s, offender's key is %x", msg.ID().Short(), a.Short(), key[:6])
			}
		}
		if p.A.ID().Compare(p.B.ID()) >= 0 {
			return fail(CheckCanonical, nil, "message ids %s and %s are not increasing", p.A.ID().Short(), p.B.ID().Short())
		}
		if err := bftlog.VerifyForkProof(p); err != nil {
			return fail(CheckForkProof, err, "fork after %s", p.Point().Short())
		}
		return nil

	case e.Invalid != nil:
		p := e.Invalid
		if a := p.Message.Author(); !equalKey(a[:], key) {
			return fail(CheckOffender, nil, "message %s is by key %s, offender's key is %x", p.Message.ID().Short(), a.Short(), key[:6])
		}
		if err := bftlog.VerifyInvalidProof(p); err != nil {
			return fail(CheckInvalidProof, err, "message %s (%s)", p.Message.ID().Short(), p.Reason)
		}
		return nil

	case e.Proposals[0] != nil:
		a, b := e.Proposals[0], e.Proposals[1]
		if a.Leader != e.Offender || b.Leader != e.Offender {
			return fail(CheckOffender, nil, "attestations are by %q and %q", a.Leader, b.Leader)
		}
		if a.Epoch != e.Epoch || b.Epoch != e.Epoch {
			return fail(CheckEpoch, nil, "attestation epochs %d and %d, evidence epoch %d", a.Epoch, b.Epoch, e.Epoch)
		}
		if a.Term != b.Term || a.Seq != b.Seq {
			return fail(CheckSameSlot, nil, "term %d seq %d and term %d seq %d", a.Term, a.Seq, b.Term, b.Seq)
		}
		if a.PayloadHash == b.PayloadHash {
			return fail(CheckConflict, nil, "both attest payload %s", a.PayloadHash.Short())
		}
		if a.PayloadHash.Compare(b.PayloadHash) > 0 {
			return fail(CheckCanonical, nil, "payload hashes %s and %s are not increasing", a.PayloadHash.Short(), b.PayloadHash.Short())
		}
		for i, x := range []*ProposalAttestation{a, b} {
			if !verifySig(key, x.SignBytes(), x.Sig) {
				return fail(CheckSignature, nil, "attestation %d (term %d seq %d payload %s) does not verify", i, x.Term, x.Seq, x.PayloadHash.Short())
			}
		}
		return nil

	case e.Checkpoints[0] != nil:
		return verifyCheckpointEquivocation(e, key, fail)

	default: // Accusation; shapeError guarantees it is set.
		a := e.Accusation
		if a.Accused != e.Offender {
			return fail(CheckOffender, nil, "accusation names %q", a.Accused)
		}
		if a.Epoch != e.Epoch {
			return fail(CheckEpoch, nil, "accusation epoch %d, evidence epoch %d", a.Epoch, e.Epoch)
		}
		if a.Accuser == a.Accused || !m.Contains(a.Accuser) {
			return fail(CheckAccuser, nil, "accuser %q must be a member other than the accused", a.Accuser)
		}
		if !a.Metric.Valid() || a.Value < 0 {
			return fail(CheckMetric, nil, "metric %s value %d", a.Metric, a.Value)
		}
		if !m.verifyBy(a.Accuser, a.SignBytes(), a.Sig) {
			return fail(CheckSignature, nil, "accusation by %q does not verify", a.Accuser)
		}
		return nil
	}
}

// verifySig checks an Ed25519 signature by the rule of every replicated
// check (internal/sigverify: ZIP-215), so a proof verifies exactly when
// the engines would have accepted the signatures in it.
func verifySig(key ed25519.PublicKey, msg, sig []byte) bool {
	return sigverify.Verify(key, msg, sig)
}

func equalKey(a []byte, key ed25519.PublicKey) bool { return string(a) == string(key) }
