package evidence

import (
	"fmt"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/bftlog"
)

// Forms of KindInvalidClientSignature in the encoding.
const (
	formHotStuff uint8 = 1
	formRaft     uint8 = 2
)

// shapeError reports whether e has exactly the proof field of its kind, and
// says what is wrong otherwise. It does not look inside the proof.
func shapeError(e *Evidence) string {
	if e == nil {
		return "nil evidence"
	}
	set := map[string]bool{
		"HotStuff":    e.HotStuff != nil,
		"Entry":       e.Entry != nil,
		"Fork":        e.Fork != nil,
		"Invalid":     e.Invalid != nil,
		"Proposals":   e.Proposals[0] != nil || e.Proposals[1] != nil,
		"Accusation":  e.Accusation != nil,
		"Checkpoints": e.Checkpoints[0] != nil || e.Checkpoints[1] != nil,
	}
	var want []string
	switch e.Kind {
	case KindEquivocatingProposals, KindDoubleVote:
		want = []string{"HotStuff"}
	case KindInvalidClientSignature:
		if set["Entry"] {
			want = []string{"Entry"}
		} else {
			want = []string{"HotStuff"}
		}
	case KindLogFork:
		want = []string{"Fork"}
	case KindInvalidMessage:
		want = []string{"Invalid"}
	case KindLeaderEquivocation:
		want = []string{"Proposals"}
	case KindAccusation:
		want = []string{"Accusation"}
	case KindCheckpointEquivocation:
		want = []string{"Checkpoints"}
	default:
		return fmt.Sprintf("unknown kind %d", uint8(e.Kind))
	}
	for _, f := range []string{"HotStuff", "Entry", "Fork", "Invalid", "Proposals", "Accusation", "Checkpoints"} {
		if set[f] != (f == want[0]) {
			if set[f] {
				return fmt.Sprintf("%s evidence must not carry %s", e.Kind, f)
			}
			return fmt.Sprintf("%s evidence lacks %s", e.Kind, f)
		}
	}
	switch {
	case e.Entry != nil && e.Entry.Attestation == nil:
		return "entry lacks its attestation"
	case e.Fork != nil && (e.Fork.A == nil || e.Fork.B == nil):
		return "fork proof lacks a message"
	case e.Invalid != nil && e.Invalid.Message == nil:
		return "invalid-message proof lacks the message"
	case set["Proposals"] && (e.Proposals[0] == nil || e.Proposals[1] == nil):
		return "leader equivocation needs two attestations"
	case set["Checkpoints"] && (e.Checkpoints[0] == nil || e.Checkpoints[1] == nil):
		return "checkpoint equivocation needs two votes"
	}
	return ""
}

// Marshal returns the canonical binary encoding of e:
//
//	version u8 (WireVersion) | kind u8 | len u8 | offender | epoch u64 | body
//
// where the body depends on the kind (u32-length-prefixed byte strings
// hold the nested encodings of other packages):
//
//	equivocating-proposals, double-vote:
//	    types.MarshalEvidence (u32 len)
//	invalid-client-signature:
//	    form u8 = 1, types.MarshalEvidence (u32 len)        HotStuff
//	    form u8 = 2, attestation, payload (u32 len)          Raft
//	log-fork:
//	    message A, message B (bftlog wire form, u32 len each; A.ID < B.ID)
//	invalid-message:
//	    message (u32 len), reason u8, detail (u16 len),
//	    witness count u16, witness messages (u32 len each)
//	leader-equivocation:
//	    attestation A, attestation B (A.PayloadHash < B.PayloadHash)
//	accusation:
//	    accuser (u8 len), accused (u8 len), metric u8, value i64,
//	    epoch u64, at i64, detail (u16 len), signature (u8 len)
//	checkpoint-equivocation:
//	    vote A, vote B (checkpoint.Vote wire form, u32 len each;
//	    A's state hash < B's)
//
// An attestation is leader (u8 len), epoch u64, term u64, seq u64,
// payload hash [32], signature (u8 len). Integers are big-endian.
//
// Marshal fails with ErrMalformed when e does not have the shape of its
// kind, a field is over its limit, or the encoding would exceed
// MaxEncodedSize. It checks no signature.
func Marshal(e *Evidence) ([]byte, error) {
	if s := shapeError(e); s != "" {
		return nil, fmt.Errorf("evidence: marshal: %w: %s", ErrMalformed, s)
	}
	if len(e.Offender) == 0 || len(e.Offender) > MaxIDLen {
		return nil, fmt.Errorf("evidence: marshal: %w: offender ID %q has %d bytes, must have 1 to %d", ErrMalformed, e.Offender, len(e.Offender), MaxIDLen)
	}
	var enc encoder
	enc.u8(WireVersion)
	enc.u8(uint8(e.Kind))
	enc.str8(string(e.Offender))
	enc.u64(e.Epoch)
	var err error
	switch e.Kind {
	case KindEquivocatingProposals, KindDoubleVote:
		enc.bytes32(types.MarshalEvidence(e.HotStuff))
	case KindInvalidClientSignature:
		if e.HotStuff != nil {
			enc.u8(formHotStuff)
			enc.bytes32(types.MarshalEvidence(e.HotStuff))
		} else {
			enc.u8(formRaft)
			err = enc.attestation(e.Entry.Attestation)
			enc.bytes32(e.Entry.Payload)
		}
	case KindLogFork:
		if e.Fork.A.ID().Compare(e.Fork.B.ID()) >= 0 {
			return nil, fmt.Errorf("evidence: marshal: %w: fork proof messages %s and %s not in increasing id order", ErrMalformed, e.Fork.A.ID().Short(), e.Fork.B.ID().Short())
		}
		err = encodeNested(&enc, bftlogMessage, e.Fork.A, e.Fork.B)
	case KindInvalidMessage:
		p := e.Invalid
		if err = encodeNested(&enc, bftlogMessage, p.Message); err != nil {
			break
		}
		if p.Reason < 0 || p.Reason > 255 {
			return nil, fmt.Errorf("evidence: marshal: %w: invalid reason %d", ErrMalformed, int(p.Reason))
		}
		enc.u8(uint8(p.Reason))
		if len(p.Detail) > maxProofDetail {
			return nil, fmt.Errorf("evidence: marshal: %w: proof detail has %d bytes, at most %d allowed", ErrMalformed, len(p.Detail), maxProofDetail)
		}
		enc.str16(p.Detail)
		if len(p.Witness) > maxWitness {
			return nil, fmt.Errorf("evidence: marshal: %w: %d witness messages, at most %d allowed", ErrMalformed, len(p.Witness), maxWitness)
		}
		enc.u16(uint16(len(p.Witness)))
		err = encodeNested(&enc, bftlogMessage, p.Witness...)
	case KindLeaderEquivocation:
		a, b := e.Proposals[0], e.Proposals[1]
		if a.PayloadHash.Compare(b.PayloadHash) >= 0 {
			return nil, fmt.Errorf("evidence: marshal: %w: attestations not in increasing payload-hash order", ErrMalformed)
		}
		if err = enc.attestation(a); err == nil {
			err = enc.attestation(b)
		}
	case KindAccusation:
		a := e.Accusation
		if err = a.checkFields(); err != nil {
			break
		}
		enc.str8(string(a.Accuser))
		enc.str8(string(a.Accused))
		enc.u8(uint8(a.Metric))
		enc.u64(uint64(a.Value))
		enc.u64(a.Epoch)
		enc.u64(uint64(a.At))
		enc.str16(a.Detail)
		enc.bytes8(a.Sig)
	case KindCheckpointEquivocation:
		a, b := e.Checkpoints[0], e.Checkpoints[1]
		if compareStateHash(a, b) >= 0 {
			return nil, fmt.Errorf("evidence: marshal: %w: checkpoint votes not in increasing state-hash order", ErrMalformed)
		}
		err = encodeNested(&enc, "checkpoint vote", a, b)
	}
	if err != nil {
		return nil, fmt.Errorf("evidence: marshal %s: %w", e.Kind, err)
	}
	if len(enc.b) > MaxEncodedSize {
		return nil, fmt.Errorf("evidence: marshal: %w: encoding has %d bytes, at most %d allowed", ErrMalformed, len(enc.b), MaxEncodedSize)
	}
	return enc.b, nil
}

// Limits of the invalid-message proof encoding.
const (
	maxProofDetail = 1 << 12
	maxWitness     = 1 << 12
)

func (e *encoder) attestation(a *ProposalAttestation) error {
	if len(a.Leader) == 0 || len(a.Leader) > MaxIDLen {
		return fmt.Errorf("%w: attestation leader ID %q has %d bytes, must have 1 to %d", ErrMalformed, a.Leader, len(a.Leader), MaxIDLen)
	}
	if len(a.Sig) > maxSig {
		return fmt.Errorf("%w: attestation signature has %d bytes, at most %d allowed", ErrMalformed, len(a.Sig), maxSig)
	}
	e.str8(string(a.Leader))
	e.u64(a.Epoch)
	e.u64(a.Term)
	e.u64(a.Seq)
	e.raw(a.PayloadHash[:])
	e.bytes8(a.Sig)
	return nil
}

// bftlogMessage names a 2P-BFT-Log message in encoding errors.
const bftlogMessage = "2P-BFT-Log message"

// Unmarshal decodes Marshal's output. It accepts only the canonical
// encoding: unknown versions or kinds, truncated or trailing bytes, lengths
// over the limits, nested encodings the owning package rejects, and proofs
// out of canonical order all fail with an error wrapping ErrMalformed. It
// allocates at most about len(b) bytes and does not alias b. It checks no
// signature: call Verify.
func Unmarshal(b []byte) (*Evidence, error) {
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("evidence: decode: %w: %d bytes, at most %d allowed", ErrMalformed, len(b), MaxEncodedSize)
	}
	d := newDecoder(b)
	if v := d.U8("version"); d.Err() == nil && v != WireVersion {
		d.Fail("version", "version %d, want %d", v, WireVersion)
	}
	e := &Evidence{Kind: Kind(d.U8("kind"))}
	if d.Err() == nil && !e.Kind.Valid() {
		d.Fail("kind", "unknown kind %d", uint8(e.Kind))
	}
	e.Offender = d.id("offender")
	e.Epoch = d.U64("epoch")
	if d.Err() != nil {
		return nil, d.Err()
	}
	switch e.Kind {
	case KindEquivocatingProposals, KindDoubleVote:
		e.HotStuff = decodeNested(d, "hotstuff evidence", types.UnmarshalEvidence)
	case KindInvalidClientSignature:
		switch form := d.U8("form"); {
		case d.Err() != nil:
		case form == formHotStuff:
			e.HotStuff = decodeNested(d, "hotstuff evidence", types.UnmarshalEvidence)
		case form == formRaft:
			a := d.attestation("attestation")
			payload := d.bytes32("payload")
			e.Entry = &SignedEntry{Attestation: a, Payload: append([]byte{}, payload...)}
		default:
			d.Fail("form", "unknown form %d", form)
		}
	case KindLogFork:
		a, b := decodeNested(d, "fork message A", bftlog.DecodeMessage), decodeNested(d, "fork message B", bftlog.DecodeMessage)
		if d.Err() == nil && a.ID().Compare(b.ID()) >= 0 {
			d.Fail("fork proof", "messages %s and %s not in increasing id order", a.ID().Short(), b.ID().Short())
		}
		e.Fork = &bftlog.ForkProof{A: a, B: b}
	case KindInvalidMessage:
		p := &bftlog.InvalidProof{Message: decodeNested(d, "invalid message", bftlog.DecodeMessage)}
		p.Reason = bftlog.InvalidReason(d.U8("reason"))
		p.Detail = d.str16("detail", maxProofDetail)
		n := int(d.U16("witness count"))
		if d.Err() == nil && n > maxWitness {
			d.Fail("witness count", "%d witness messages, at most %d allowed", n, maxWitness)
		}
		for i := 0; i < n && d.Err() == nil; i++ {
			p.Witness = append(p.Witness, decodeNested(d, fmt.Sprintf("witness %d", i), bftlog.DecodeMessage))
		}
		e.Invalid = p
	case KindLeaderEquivocation:
		a, b := d.attestation("attestation A"), d.attestation("attestation B")
		if d.Err() == nil && a.PayloadHash.Compare(b.PayloadHash) >= 0 {
			d.Fail("attestations", "not in increasing payload-hash order")
		}
		e.Proposals = [2]*ProposalAttestation{a, b}
	case KindAccusation:
		a := &Accusation{Accuser: d.id("accuser"), Accused: d.id("accused")}
		a.Metric = Metric(d.U8("metric"))
		a.Value = int64(d.U64("value"))
		a.Epoch = d.U64("accusation epoch")
		a.At = int64(d.U64("at"))
		a.Detail = d.str16("detail", MaxDetail)
		a.Sig = d.bytes8("signature")
		e.Accusation = a
	case KindCheckpointEquivocation:
		a, b := decodeNested(d, "checkpoint vote A", unmarshalVote), decodeNested(d, "checkpoint vote B", unmarshalVote)
		if d.Err() == nil && compareStateHash(a, b) >= 0 {
			d.Fail("checkpoint votes", "not in increasing state-hash order")
		}
		e.Checkpoints = [2]*checkpoint.Vote{a, b}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return e, nil
}

func (d *decoder) attestation(field string) *ProposalAttestation {
	a := &ProposalAttestation{Leader: d.id(field + " leader")}
	a.Epoch = d.U64(field + " epoch")
	a.Term = d.U64(field + " term")
	a.Seq = d.U64(field + " seq")
	a.PayloadHash = d.hash(field + " payload hash")
	a.Sig = d.bytes8(field + " signature")
	return a
}
