package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/smr"
)

// Domain tags. Each is NUL-terminated so that no tag is a prefix of another
// tag followed by data, and none equals a tag of another package (HotStuff
// "tandem/hotstuff/v1/...", client "tandem/envelope/v1", 2P-BFT-Log
// "tandem/bftlog/msg/v1"). Changing a tag is a protocol version change.
const (
	// TagRaftProposal starts the bytes a Raft leader signs for each entry
	// it proposes (ProposalAttestation).
	TagRaftProposal = "tandem/raft/v1/proposal\x00"
	// TagRaftPayload starts the preimage of a Raft entry's payload hash.
	TagRaftPayload = "tandem/raft/v1/payload\x00"
	// TagAccusation starts the bytes an accuser signs (Accusation).
	TagAccusation = "tandem/detector/v1/accusation\x00"
	// TagEvidence starts the preimage of an evidence ID.
	TagEvidence = "tandem/detector/v1/evidence\x00"
)

// Hash is a SHA-256 digest.
type Hash [sha256.Size]byte

// String returns h in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short returns the first 6 bytes of h in hex.
func (h Hash) Short() string { return hex.EncodeToString(h[:6]) }

// Compare orders hashes bytewise.
func (h Hash) Compare(o Hash) int { return bytes.Compare(h[:], o[:]) }

// RaftPayloadHash is the hash a Raft leader signs for an entry's payload
// (the smr.Entry bytes it hands to raft.Apply): SHA-256 over
// TagRaftPayload then the payload.
func RaftPayloadHash(payload []byte) Hash {
	h := sha256.New()
	h.Write([]byte(TagRaftPayload))
	h.Write(payload)
	return Hash(h.Sum(nil))
}

// ProposalAttestation is a Raft leader's signature on one entry it
// proposes: in Raft mode the leader signs (epoch, term, per-term sequence,
// payload hash) so that two different entries for one slot, or an entry
// carrying an invalid client signature, are provable (DESIGN invariant 7).
// Seq counts the leader's proposals in Term, from 1.
//
// The signature covers SignBytes:
//
//	TagRaftProposal | epoch u64 | term u64 | seq u64 |
//	len(leader) u8 | leader | payload hash [32]
//
// all integers big-endian.
type ProposalAttestation struct {
	Leader      NodeID
	Epoch       uint64
	Term        uint64
	Seq         uint64
	PayloadHash Hash
	Sig         []byte
}

// SignBytes returns the canonical bytes the leader signs.
func (a *ProposalAttestation) SignBytes() []byte {
	var e encoder
	e.raw([]byte(TagRaftProposal))
	e.u64(a.Epoch)
	e.u64(a.Term)
	e.u64(a.Seq)
	e.str8(string(a.Leader))
	e.raw(a.PayloadHash[:])
	return e.b
}

// String returns a short form for logs.
func (a *ProposalAttestation) String() string {
	if a == nil {
		return "attestation(none)"
	}
	return fmt.Sprintf("attestation(%s epoch %d term %d seq %d payload %s)", a.Leader, a.Epoch, a.Term, a.Seq, a.PayloadHash.Short())
}

// SignProposal returns leader's attestation of payload at (epoch, term,
// seq), signed with priv.
func SignProposal(priv ed25519.PrivateKey, leader NodeID, epoch, term, seq uint64, payload []byte) (*ProposalAttestation, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("evidence: sign proposal: private key has %d bytes, want %d: %w", len(priv), ed25519.PrivateKeySize, ErrMalformed)
	}
	if len(leader) == 0 || len(leader) > MaxIDLen {
		return nil, fmt.Errorf("evidence: sign proposal: leader ID %q has %d bytes, must have 1 to %d: %w", leader, len(leader), MaxIDLen, ErrMalformed)
	}
	a := &ProposalAttestation{Leader: leader, Epoch: epoch, Term: term, Seq: seq, PayloadHash: RaftPayloadHash(payload)}
	a.Sig = ed25519.Sign(priv, a.SignBytes())
	return a, nil
}

// VerifySignature checks a's signature under the key of member a.Leader.
func (a *ProposalAttestation) VerifySignature(m *Members) error {
	if !m.Contains(a.Leader) {
		return fmt.Errorf("attestation by %q: not a member", a.Leader)
	}
	if !m.verifyBy(a.Leader, a.SignBytes(), a.Sig) {
		return fmt.Errorf("attestation by %q (term %d seq %d): signature does not verify", a.Leader, a.Term, a.Seq)
	}
	return nil
}

// errNotClientPayload is wrapped by ValidateClientPayload's errors.
var errNotClientPayload = errors.New("payload is neither a valid client envelope nor a valid log entry")

// ValidateClientPayload decides whether a correct leader could have
// proposed payload. It returns nil when payload is
//
//   - a binary smr.Envelope whose client signature verifies (the HotStuff
//     payload command format), or
//
//   - a binary smr.Entry that is not a command or batch entry, or a
//     command or batch entry whose envelopes' client signatures all verify
//     (the Raft entry format).
//
//   - a well-formed HotStuff read marker (0xFF 'R' | id length u8, at
//     least 1 | id | nonce u64): correct leaders order linearizable reads
//     with them, and they carry no signature to check.
//
// Otherwise it returns an error naming both failures. The rule is
// deliberately lenient: a payload counts as invalid only if it is invalid
// under every format a correct leader uses, so a proof built on it never
// depends on which engine produced it. It checks signatures only, never the
// ACL or the replicated state, so every replica reaches the same verdict
// from the bytes alone.
func ValidateClientPayload(payload []byte) error {
	if isReadMarker(payload) {
		return nil
	}
	var env smr.Envelope
	envErr := env.UnmarshalBinary(payload)
	if envErr == nil {
		if envErr = env.Verify(); envErr == nil {
			return nil
		}
	}
	var ent smr.Entry
	entErr := ent.UnmarshalBinary(payload)
	if entErr == nil {
		switch ent.Kind {
		case smr.EntryCommand:
			entErr = ent.Env.Verify()
		case smr.EntryBatch:
			entErr = errors.Join(smr.VerifyAll(ent.Batch)...)
		}
		if entErr == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: as an envelope: %v; as an entry: %v", errNotClientPayload, envErr, entErr)
}

// isReadMarker reports whether payload is a well-formed read marker of the
// HotStuff engine (consensus/hotstuff/engine, validator.go): no command or
// batch entry starts with 0xFF (entry versions are small numbers), and the
// length must match exactly, so nothing else passes for one.
func isReadMarker(payload []byte) bool {
	return len(payload) >= 3 && payload[0] == 0xFF && payload[1] == 'R' && payload[2] != 0 && len(payload) == 3+int(payload[2])+8
}
