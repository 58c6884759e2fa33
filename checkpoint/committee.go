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

// Faulty returns f, the number of arbitrary faults the committee
// tolerates: ⌊(n−1)/3⌋ for n ≥ 4, 0 for the crash-only n ≤ 3.
func (c *Committee) Faulty() int { return faulty(len(c.ids)) }

func faulty(n int) int {
	if n <= 3 {
		return 0
	}
	return (n - 1) / 3
}

// FallbackThreshold returns how many matching signatures of distinct
// members that are not quarantined a fallback certificate needs when
// quarantined of the committee's members are quarantined (DESIGN
// invariant 10):
//
//	max(f+1, ⌈(n+f+1)/2⌉ − min(k, f))    with k = quarantined
//
// For n = 3f+1 this is max(f+1, q − k): f+1 once f members are
// quarantined, and q when none is (the fallback then needs as much as a
// quorum). Why this is safe, assuming at most f members are faulty and
// a member is quarantined only on proof that it is faulty (DESIGN
// invariants 8 and 9), so that every quarantined member is faulty:
//
//   - A certificate counts no quarantined signer, and at most f − k of
//     its signers are faulty members that are not quarantined; f+1
//     counted signers therefore include a correct member.
//   - Let A and B be two certificates for the same (kind, epoch), each
//     verified by a correct node against its own quarantined set (of k_A
//     and k_B members, both sets faulty). Each has T + k ≥ ⌈(n+f+1)/2⌉
//     with T its threshold: for a fallback certificate by the formula
//     (min(k, f) ≤ k), for a quorum certificate because q = n − f ≥
//     ⌈(n+f+1)/2⌉ when n ≥ 3f+1 (and q = ⌈(n+1)/2⌉ when f = 0).
//   - With F the faulty members (|F| ≤ f), A has at least T_A + k_A − |F|
//     correct signers, since its faulty signers lie in F minus A's
//     quarantined set; the same for B. Together that is at least
//     n + f + 1 − 2|F| > n − |F|, the number of correct members, so a
//     correct member signed both.
//   - A correct member signs one hand-over statement per epoch, so A and
//     B certify the same statement: two conflicting certificates, of
//     either form, are never both accepted by correct nodes.
//
// quarantined is clamped to [0, f]: more than f quarantined members
// break the assumption above, and the higher threshold is kept.
func (c *Committee) FallbackThreshold(quarantined int) int {
	return fallbackThreshold(len(c.ids), quarantined)
}

func fallbackThreshold(n, k int) int {
	f := faulty(n)
	k = min(max(k, 0), f)
	return max(f+1, (n+f+2)/2-k)
}

// Key returns the public key of member id. The key is shared: callers must
// not modify it.
func (c *Committee) Key(id string) (ed25519.PublicKey, bool) {
	k, ok := c.keys[id]
	return k, ok
}

// quarantinedSet returns the members of c among ids, as a set.
func (c *Committee) quarantinedSet(ids []string) map[string]bool {
	q := make(map[string]bool, len(ids))
	for _, id := range ids {
		if _, ok := c.keys[id]; ok {
			q[id] = true
		}
	}
	return q
}

// Members returns the sorted member IDs in a new slice.
func (c *Committee) Members() []string { return slices.Clone(c.ids) }
