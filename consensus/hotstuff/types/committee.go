package types

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// Verification errors. Errors returned by Committee wrap one of these with
// the view, signer and what was being verified.
var (
	// ErrUnknownSigner: a signature is attributed to a node that is not a
	// member of the committee.
	ErrUnknownSigner = errors.New("signer is not a committee member")
	// ErrDuplicateSigner: a certificate lists the same signer twice.
	ErrDuplicateSigner = errors.New("duplicate signer in certificate")
	// ErrBadSignature: a signature does not verify.
	ErrBadSignature = errors.New("invalid signature")
	// ErrTooFewSignatures: a certificate has fewer than Quorum() signers.
	ErrTooFewSignatures = errors.New("too few signatures for a quorum")
	// ErrInvalidCertificate: a certificate is inconsistent (a genesis QC for
	// another block, a TC whose high QC does not match its signed views).
	ErrInvalidCertificate = errors.New("invalid certificate")
)

// Scheme verifies signatures for one signature algorithm.
type Scheme interface {
	// Verify reports whether sig is a valid signature of msg under pub.
	Verify(pub, msg, sig []byte) bool
}

// BatchScheme is a Scheme that can also check several signatures at once,
// with exactly the verdicts Verify gives each.
type BatchScheme interface {
	Scheme
	// VerifyBatch reports, for each i, whether sigs[i] is a valid
	// signature of msgs[i] under pubs[i].
	VerifyBatch(pubs, msgs, sigs [][]byte) []bool
}

// Ed25519 is the production Scheme (signature_algorithm: ed25519).
type Ed25519 struct{}

var _ BatchScheme = Ed25519{}

// VerifyBatch checks Ed25519 signatures as one batch (package sigverify:
// the same verdicts as Verify).
func (Ed25519) VerifyBatch(pubs, msgs, sigs [][]byte) []bool {
	var b sigverify.Batch
	for i := range pubs {
		b.Add(pubs[i], msgs[i], sigs[i])
	}
	return b.Verify()
}

// Verify checks an Ed25519 signature by the rule of package sigverify
// (ZIP-215, the rule of every replicated signature check); malformed keys
// or signatures fail.
func (Ed25519) Verify(pub, msg, sig []byte) bool {
	return sigverify.Verify(pub, msg, sig)
}

// Signer produces signatures for one member. Only package safety calls a
// Signer in a running replica; tests and Byzantine simulations use it
// directly.
type Signer interface {
	ID() NodeID
	Sign(msg []byte) ([]byte, error)
}

// Ed25519Signer signs with an Ed25519 private key.
type Ed25519Signer struct {
	id  NodeID
	key ed25519.PrivateKey
}

var _ Signer = (*Ed25519Signer)(nil)

// NewEd25519Signer returns a Signer for id. It panics if key has the wrong
// length (a programming error: keys come from the identity package).
func NewEd25519Signer(id NodeID, key ed25519.PrivateKey) *Ed25519Signer {
	if len(key) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("hotstuff: Ed25519 private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize))
	}
	return &Ed25519Signer{id: id, key: key}
}

// ID returns the member ID.
func (s *Ed25519Signer) ID() NodeID { return s.id }

// Sign signs msg.
func (s *Ed25519Signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// Member is one committee member and its public key.
type Member struct {
	ID        NodeID
	PublicKey []byte
}

// CommitteeConfig describes the committee of one epoch.
type CommitteeConfig struct {
	// Epoch is bound into every signature.
	Epoch uint64
	// Members lists the members; order does not matter.
	Members []Member
	// Genesis is the hash of the epoch's genesis block.
	Genesis Hash
	// Scheme verifies signatures. Nil means Ed25519.
	Scheme Scheme
}

// Committee is the fixed member set of one epoch and the quorum arithmetic
// over it. It is immutable and safe for concurrent use.
type Committee struct {
	epoch   uint64
	genesis Hash
	scheme  Scheme
	ids     []NodeID // sorted
	keys    map[NodeID][]byte
}

// NewCommittee validates cfg and returns the committee.
func NewCommittee(cfg CommitteeConfig) (*Committee, error) {
	if len(cfg.Members) == 0 {
		return nil, errors.New("committee: no members")
	}
	if len(cfg.Members) > MaxSigners {
		return nil, fmt.Errorf("committee: %d members, at most %d allowed", len(cfg.Members), MaxSigners)
	}
	c := &Committee{epoch: cfg.Epoch, genesis: cfg.Genesis, scheme: cfg.Scheme, keys: make(map[NodeID][]byte, len(cfg.Members))}
	if c.scheme == nil {
		c.scheme = Ed25519{}
	}
	for _, m := range cfg.Members {
		if len(m.ID) == 0 || len(m.ID) > MaxIDLen {
			return nil, fmt.Errorf("committee: member ID %q must have 1..%d bytes", m.ID, MaxIDLen)
		}
		if _, dup := c.keys[m.ID]; dup {
			return nil, fmt.Errorf("committee: member %q listed twice", m.ID)
		}
		if len(m.PublicKey) == 0 {
			return nil, fmt.Errorf("committee: member %q has no public key", m.ID)
		}
		if _, ok := c.scheme.(Ed25519); ok && len(m.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("committee: member %q has a %d-byte key, Ed25519 keys have %d", m.ID, len(m.PublicKey), ed25519.PublicKeySize)
		}
		c.keys[m.ID] = append([]byte(nil), m.PublicKey...)
		c.ids = append(c.ids, m.ID)
	}
	slices.Sort(c.ids)
	return c, nil
}

// Epoch returns the epoch bound into signatures.
func (c *Committee) Epoch() uint64 { return c.epoch }

// Genesis returns the genesis block hash.
func (c *Committee) Genesis() Hash { return c.genesis }

// N returns the number of members.
func (c *Committee) N() int { return len(c.ids) }

// F returns the number of Byzantine members tolerated: ⌊(n−1)/3⌋.
func (c *Committee) F() int { return (len(c.ids) - 1) / 3 }

// Quorum returns n − f, the size of a QC or TC.
func (c *Committee) Quorum() int { return len(c.ids) - c.F() }

// Members returns the member IDs in ascending order. The caller owns the
// returned slice.
func (c *Committee) Members() []NodeID { return slices.Clone(c.ids) }

// IsMember reports whether id is a member.
func (c *Committee) IsMember(id NodeID) bool { _, ok := c.keys[id]; return ok }

// PublicKey returns id's key, or nil for a non-member.
func (c *Committee) PublicKey(id NodeID) []byte { return c.keys[id] }

func (c *Committee) verifySig(id NodeID, msg, sig []byte) error {
	key, ok := c.keys[id]
	if !ok {
		return fmt.Errorf("signer %q: %w", id, ErrUnknownSigner)
	}
	if !c.scheme.Verify(key, msg, sig) {
		return fmt.Errorf("signer %q: %w", id, ErrBadSignature)
	}
	return nil
}

// VerifyVote checks v's signature and that the voter is a member.
func (c *Committee) VerifyVote(v *Vote) error {
	if err := c.verifySig(v.Voter, VoteSignBytes(c.epoch, v.View, v.Block), v.Sig); err != nil {
		return fmt.Errorf("vote view %d block %s: %w", v.View, v.Block, err)
	}
	return nil
}

// VerifyQC checks a quorum certificate:
//   - the genesis QC (view 0, no signatures) is valid only for Genesis();
//   - every signer is a member (ErrUnknownSigner) and appears once
//     (ErrDuplicateSigner);
//   - every signature verifies over VoteSignBytes (ErrBadSignature);
//   - there are at least Quorum() signatures (ErrTooFewSignatures).
func (c *Committee) VerifyQC(qc QC) error {
	if qc.View == 0 {
		if qc.Block != c.genesis || len(qc.Sigs) != 0 {
			return fmt.Errorf("QC view 0 for block %s: only the signature-less genesis QC has view 0: %w", qc.Block, ErrInvalidCertificate)
		}
		return nil
	}
	if err := c.checkSigners(len(qc.Sigs), func(i int) NodeID { return qc.Sigs[i].Signer }); err != nil {
		return fmt.Errorf("QC view %d block %s: %w", qc.View, qc.Block, err)
	}
	msg := VoteSignBytes(c.epoch, qc.View, qc.Block)
	if bs, ok := c.scheme.(BatchScheme); ok {
		pubs, msgs, sigs := make([][]byte, len(qc.Sigs)), make([][]byte, len(qc.Sigs)), make([][]byte, len(qc.Sigs))
		for i, s := range qc.Sigs {
			pubs[i], msgs[i], sigs[i] = c.keys[s.Signer], msg, s.Sig
		}
		for i, ok := range bs.VerifyBatch(pubs, msgs, sigs) {
			if !ok {
				return fmt.Errorf("QC view %d block %s: signer %q: %w", qc.View, qc.Block, qc.Sigs[i].Signer, ErrBadSignature)
			}
		}
		return nil
	}
	for _, s := range qc.Sigs {
		if err := c.verifySig(s.Signer, msg, s.Sig); err != nil {
			return fmt.Errorf("QC view %d block %s: %w", qc.View, qc.Block, err)
		}
	}
	return nil
}

// checkSigners rejects duplicates, non-members and too few signers before
// any signature is verified.
func (c *Committee) checkSigners(n int, signer func(int) NodeID) error {
	seen := make(map[NodeID]struct{}, n)
	for i := range n {
		id := signer(i)
		if _, ok := c.keys[id]; !ok {
			return fmt.Errorf("signer %q: %w", id, ErrUnknownSigner)
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("signer %q: %w", id, ErrDuplicateSigner)
		}
		seen[id] = struct{}{}
	}
	if n < c.Quorum() {
		return fmt.Errorf("%d distinct signers, quorum is %d of %d: %w", n, c.Quorum(), c.N(), ErrTooFewSignatures)
	}
	return nil
}

// VerifyTC checks a timeout certificate:
//   - signers are distinct members, at least Quorum() of them;
//   - each signature verifies over TimeoutSignBytes(epoch, View, HighQCView);
//   - HighQC.View equals the largest HighQCView, HighQC.View < View, and
//     HighQC itself verifies.
func (c *Committee) VerifyTC(tc *TC) error {
	if tc == nil {
		return fmt.Errorf("nil TC: %w", ErrInvalidCertificate)
	}
	if err := c.checkSigners(len(tc.Sigs), func(i int) NodeID { return tc.Sigs[i].Signer }); err != nil {
		return fmt.Errorf("TC view %d: %w", tc.View, err)
	}
	var maxView View
	for _, s := range tc.Sigs {
		if s.HighQCView >= tc.View {
			return fmt.Errorf("TC view %d: signer %q claims high QC view %d, not below the TC view: %w", tc.View, s.Signer, s.HighQCView, ErrInvalidCertificate)
		}
		maxView = max(maxView, s.HighQCView)
	}
	if tc.HighQC.View != maxView {
		return fmt.Errorf("TC view %d: high QC has view %d but the largest signed high QC view is %d: %w", tc.View, tc.HighQC.View, maxView, ErrInvalidCertificate)
	}
	for _, s := range tc.Sigs {
		if err := c.verifySig(s.Signer, TimeoutSignBytes(c.epoch, tc.View, s.HighQCView), s.Sig); err != nil {
			return fmt.Errorf("TC view %d: %w", tc.View, err)
		}
	}
	if err := c.VerifyQC(tc.HighQC); err != nil {
		return fmt.Errorf("TC view %d high QC: %w", tc.View, err)
	}
	return nil
}

// VerifyTimeoutSig checks t's signature (over its view and its high QC's
// view) and that HighQC.View < View. It does not verify HighQC or LastTC;
// see VerifyTimeout.
func (c *Committee) VerifyTimeoutSig(t *Timeout) error {
	if t.HighQC.View >= t.View {
		return fmt.Errorf("timeout view %d from %q: high QC view %d is not below it: %w", t.View, t.Sender, t.HighQC.View, ErrInvalidCertificate)
	}
	if err := c.verifySig(t.Sender, TimeoutSignBytes(c.epoch, t.View, t.HighQC.View), t.Sig); err != nil {
		return fmt.Errorf("timeout view %d: %w", t.View, err)
	}
	return nil
}

// VerifyTimeout checks t's signature, its high QC and, when present, its
// LastTC (which must be for view t.View−1).
func (c *Committee) VerifyTimeout(t *Timeout) error {
	if err := c.VerifyTimeoutSig(t); err != nil {
		return err
	}
	if err := c.VerifyQC(t.HighQC); err != nil {
		return fmt.Errorf("timeout view %d from %q: high QC: %w", t.View, t.Sender, err)
	}
	if t.LastTC != nil {
		if t.LastTC.View+1 != t.View {
			return fmt.Errorf("timeout view %d from %q: last TC has view %d, want %d: %w", t.View, t.Sender, t.LastTC.View, t.View-1, ErrInvalidCertificate)
		}
		if err := c.VerifyTC(t.LastTC); err != nil {
			return fmt.Errorf("timeout view %d from %q: last TC: %w", t.View, t.Sender, err)
		}
	}
	return nil
}

// VerifyBlockSig checks that b is signed by its proposer, a member; hash is
// b.Hash() (passed in because callers have usually computed it already).
func (c *Committee) VerifyBlockSig(b *Block, hash Hash) error {
	if err := c.verifySig(b.Proposer, ProposalSignBytes(c.epoch, b.View, hash), b.Sig); err != nil {
		return fmt.Errorf("block view %d hash %s: %w", b.View, hash, err)
	}
	return nil
}
