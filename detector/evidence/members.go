package evidence

import (
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// NodeID names a cluster member: the node ID of the cluster configuration
// and of the node's TLS certificate. It converts to and from the HotStuff
// types.NodeID and the string IDs of consensus.Member.
type NodeID string

// MaxIDLen is the longest NodeID the codec accepts (it matches the HotStuff
// types.MaxIDLen).
const MaxIDLen = types.MaxIDLen

// Member is one member of the set evidence is verified against: its ID and
// its Ed25519 node key (the key that signs its votes, proposals,
// attestations, accusations and 2P-BFT-Log messages).
type Member struct {
	ID        NodeID
	PublicKey ed25519.PublicKey
}

// Members is an immutable, validated member set. It is safe for concurrent
// use. f = ⌊(n−1)/3⌋ as in DESIGN invariant 5.
type Members struct {
	ids   []NodeID // sorted
	keys  map[NodeID]ed25519.PublicKey
	byKey map[[ed25519.PublicKeySize]byte]NodeID
}

// NewMembers validates ms and returns the set. Every ID must have 1 to
// MaxIDLen bytes and appear once; every key must be a 32-byte Ed25519 key
// used by one member only. The slice and keys are copied.
func NewMembers(ms []Member) (*Members, error) {
	if len(ms) == 0 {
		return nil, fmt.Errorf("evidence: member set is empty: %w", ErrInvalidMembers)
	}
	if len(ms) > types.MaxSigners {
		return nil, fmt.Errorf("evidence: member set has %d members, at most %d allowed: %w", len(ms), types.MaxSigners, ErrInvalidMembers)
	}
	s := &Members{
		keys:  make(map[NodeID]ed25519.PublicKey, len(ms)),
		byKey: make(map[[ed25519.PublicKeySize]byte]NodeID, len(ms)),
	}
	for _, m := range ms {
		if len(m.ID) == 0 || len(m.ID) > MaxIDLen {
			return nil, fmt.Errorf("evidence: member ID %q has %d bytes, must have 1 to %d: %w", m.ID, len(m.ID), MaxIDLen, ErrInvalidMembers)
		}
		if _, dup := s.keys[m.ID]; dup {
			return nil, fmt.Errorf("evidence: member %q listed twice: %w", m.ID, ErrInvalidMembers)
		}
		if len(m.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("evidence: member %q has a %d-byte key, Ed25519 keys have %d: %w", m.ID, len(m.PublicKey), ed25519.PublicKeySize, ErrInvalidMembers)
		}
		k := [ed25519.PublicKeySize]byte(m.PublicKey)
		if other, dup := s.byKey[k]; dup {
			return nil, fmt.Errorf("evidence: members %q and %q share one key: %w", other, m.ID, ErrInvalidMembers)
		}
		s.keys[m.ID] = slices.Clone(m.PublicKey)
		s.byKey[k] = m.ID
		s.ids = append(s.ids, m.ID)
	}
	slices.Sort(s.ids)
	return s, nil
}

// N returns the number of members.
func (s *Members) N() int { return len(s.ids) }

// F returns the number of Byzantine members tolerated, ⌊(n−1)/3⌋.
func (s *Members) F() int { return (len(s.ids) - 1) / 3 }

// IDs returns the member IDs in ascending order; the caller owns the slice.
func (s *Members) IDs() []NodeID { return slices.Clone(s.ids) }

// Contains reports whether id is a member.
func (s *Members) Contains(id NodeID) bool { _, ok := s.keys[id]; return ok }

// Key returns id's public key (shared: do not modify), or nil for a
// non-member.
func (s *Members) Key(id NodeID) ed25519.PublicKey { return s.keys[id] }

// ByKey returns the member whose key is pub.
func (s *Members) ByKey(pub []byte) (NodeID, bool) {
	if len(pub) != ed25519.PublicKeySize {
		return "", false
	}
	id, ok := s.byKey[[ed25519.PublicKeySize]byte(pub)]
	return id, ok
}

// Committee returns the HotStuff committee of these members in epoch, the
// form HotStuff evidence is verified against. The genesis hash is left
// zero: evidence never involves a QC.
func (s *Members) Committee(epoch uint64) (*types.Committee, error) {
	ms := make([]types.Member, len(s.ids))
	for i, id := range s.ids {
		ms[i] = types.Member{ID: types.NodeID(id), PublicKey: s.keys[id]}
	}
	return types.NewCommittee(types.CommitteeConfig{Epoch: epoch, Members: ms})
}

// verifyBy checks an Ed25519 signature of member id.
func (s *Members) verifyBy(id NodeID, msg, sig []byte) bool {
	key, ok := s.keys[id]
	return ok && verifySig(key, msg, sig)
}
