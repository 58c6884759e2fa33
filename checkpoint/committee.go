package checkpoint

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Committee is the set of members whose signatures count, each with its
// Ed25519 public key. It is immutable after NewCommittee and safe for
// concurrent use.
type Committee struct {
	keys map[string]ed25519.PublicKey
	ids  []string // sorted
}

// NewCommittee builds a committee from member ID -> public key. It copies
// the map and the keys. Every ID must be a valid member ID (non-empty, at
// most MaxIDLen bytes) and every key ed25519.PublicKeySize bytes; the
// committee has 1..MaxMembers members.
func NewCommittee(members map[string]ed25519.PublicKey) (*Committee, error) {
	if len(members) == 0 {
		return nil, errors.New("checkpoint committee: no members")
	}
	if len(members) > MaxMembers {
		return nil, fmt.Errorf("checkpoint committee: %d members, more than the limit of %d", len(members), MaxMembers)
	}
	c := &Committee{keys: make(map[string]ed25519.PublicKey, len(members))}
	for _, id := range slices.Sorted(maps.Keys(members)) {
		if err := validateID(id); err != nil {
			return nil, fmt.Errorf("checkpoint committee: %w", err)
		}
		k := members[id]
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("checkpoint committee: member %q: public key is %d bytes, want %d", id, len(k), ed25519.PublicKeySize)
		}
		c.keys[id] = slices.Clone(k)
		c.ids = append(c.ids, id)
	}
	return c, nil
}

// Size returns the number of members n.
func (c *Committee) Size() int { return len(c.ids) }

// Quorum returns how many distinct members' signatures a certificate needs
// (DESIGN invariant 5): for n ≥ 4, n − f with f = ⌊(n−1)/3⌋; for n ≤ 3,
// where f = 0 and the cluster is crash-only, a majority ⌊n/2⌋+1.
func (c *Committee) Quorum() int { return quorum(len(c.ids)) }

func quorum(n int) int {
	if n <= 3 {
		return n/2 + 1
	}
	return n - (n-1)/3
}

// Key returns the public key of member id. The key is shared: callers must
// not modify it.
func (c *Committee) Key(id string) (ed25519.PublicKey, bool) {
	k, ok := c.keys[id]
	return k, ok
}

// Members returns the sorted member IDs in a new slice.
func (c *Committee) Members() []string { return slices.Clone(c.ids) }
