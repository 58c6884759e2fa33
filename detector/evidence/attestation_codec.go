package evidence

import "fmt"

// AttestationVersion is the first byte of an attestation's standalone
// encoding (MarshalAttestation).
const AttestationVersion = 1

// MaxAttestationSize bounds an attestation's standalone encoding.
const MaxAttestationSize = 1 + 1 + MaxIDLen + 3*8 + 32 + 1 + maxSig

// MarshalAttestation returns the standalone binary form of a, which a Raft
// leader carries beside each entry it proposes (raft.Log.Extensions) and
// nodes exchange to find leader equivocation:
//
//	version u8 (AttestationVersion) | len(leader) u8 | leader |
//	epoch u64 | term u64 | seq u64 | payload hash [32] |
//	len(sig) u8 | sig
//
// all integers big-endian. The body after the version byte is the one
// evidence records use for an attestation.
func MarshalAttestation(a *ProposalAttestation) ([]byte, error) {
	if a == nil {
		return nil, fmt.Errorf("evidence: encode attestation: nil: %w", ErrMalformed)
	}
	var e encoder
	e.u8(AttestationVersion)
	if err := e.attestation(a); err != nil {
		return nil, fmt.Errorf("evidence: encode attestation: %w", err)
	}
	return e.b, nil
}

// UnmarshalAttestation decodes MarshalAttestation's form strictly (a wrong
// version, a short or long input is ErrMalformed). It does not verify the
// signature; VerifySignature does. The result does not alias b.
func UnmarshalAttestation(b []byte) (*ProposalAttestation, error) {
	if len(b) > MaxAttestationSize {
		return nil, fmt.Errorf("evidence: decode attestation: %w: %d bytes, at most %d allowed", ErrMalformed, len(b), MaxAttestationSize)
	}
	d := newDecoder(b)
	if v := d.U8("attestation version"); d.Err() == nil && v != AttestationVersion {
		d.Fail("attestation version", "version %d, want %d", v, AttestationVersion)
	}
	a := d.attestation("attestation")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return a, nil
}

// SameSlot reports whether a and b attest the same (leader, epoch, term,
// seq) slot.
func (a *ProposalAttestation) SameSlot(b *ProposalAttestation) bool {
	return a.Leader == b.Leader && a.Epoch == b.Epoch && a.Term == b.Term && a.Seq == b.Seq
}
