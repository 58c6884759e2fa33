package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// Replies signed once per batch. A replica that answers a batch of writes
// (POST /v1/submit/batch) signs one statement for all of its replies in
// that answer instead of one per reply: the root of a hash tree over the
// replies' SignBytes. Each reply carries its place in the tree
// (SubmitReply.Batch) and, as Signature, the signature over the root
// statement. A client checks the path up to the root and the signature
// over the root; the replies of one batch share that signature, so a
// process that checks several of them (the internal/sigverify cache
// remembers verified signatures) pays for one verification. The tree binds
// every reply exactly as a signature over its own SignBytes would.
//
// The tree: leaf = SHA-256(0x00 | SignBytes), inner node = SHA-256(0x01 |
// left | right); a level with an odd number of nodes carries its last node
// up unchanged. The statement signed is SubmitBatchTag, the node ID, the
// number of leaves and the root, length-prefixed like every signed reply.
const SubmitBatchTag = "tandem/bft-submit-batch/v1"

// MaxBatchProofLeaves bounds the leaves a proof may claim (a batch holds
// at most MaxBatchItems replies).
const MaxBatchProofLeaves = MaxBatchItems

// BatchProof places one reply in a batch a replica signed once.
type BatchProof struct {
	Leaves   int      `json:"leaves"`   // replies in the batch
	Position int      `json:"position"` // this reply's leaf, from 0
	Path     []string `json:"path"`     // sibling hashes from the leaf up, unpadded base64url
}

func leafHash(signBytes []byte) [32]byte {
	return sha256.Sum256(append([]byte{0}, signBytes...))
}

func innerHash(l, r [32]byte) [32]byte {
	b := make([]byte, 0, 65)
	b = append(b, 1)
	b = append(b, l[:]...)
	b = append(b, r[:]...)
	return sha256.Sum256(b)
}

// batchStatement is what a replica signs for a batch of leaves replies
// with root.
func batchStatement(nodeID string, leaves int, root [32]byte) []byte {
	var e signEncoder
	e.str(SubmitBatchTag)
	e.str(nodeID)
	e.u64(uint64(leaves))
	e.bytes(root[:])
	return e.b
}

// SignSubmitBatch signs replies (all of node nodeID) as one batch: each
// gets its BatchProof and the signature over the root. One reply is
// signed on its own (no proof).
func SignSubmitBatch(key ed25519.PrivateKey, replies []*SubmitReply) {
	switch len(replies) {
	case 0:
		return
	case 1:
		replies[0].Batch = nil
		replies[0].Sign(key)
		return
	}
	level := make([][32]byte, len(replies))
	for i, r := range replies {
		level[i] = leafHash(r.SignBytes()) // SignBytes leaves Batch out
		r.Batch = &BatchProof{Leaves: len(replies), Position: i}
	}
	pos := make([]int, len(replies)) // each reply's node on the current level
	for i := range pos {
		pos[i] = i
	}
	for len(level) > 1 {
		for i, r := range replies {
			p := pos[i]
			var sib int
			switch {
			case p%2 == 1:
				sib = p - 1
			case p+1 < len(level):
				sib = p + 1
			default:
				pos[i] = p / 2
				continue // carried up
			}
			r.Batch.Path = append(r.Batch.Path, base64.RawURLEncoding.EncodeToString(level[sib][:]))
			pos[i] = p / 2
		}
		next := make([][32]byte, 0, (len(level)+1)/2)
		for i := 0; i < len(level); i += 2 {
			if i+1 < len(level) {
				next = append(next, innerHash(level[i], level[i+1]))
			} else {
				next = append(next, level[i])
			}
		}
		level = next
	}
	sig := base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, batchStatement(replies[0].NodeID, len(replies), level[0])))
	for _, r := range replies {
		r.Signature = sig
	}
}

// root returns the root the proof leads to from the reply's leaf.
func (p *BatchProof) root(signBytes []byte) ([32]byte, error) {
	if p.Leaves < 2 || p.Leaves > MaxBatchProofLeaves || p.Position < 0 || p.Position >= p.Leaves {
		return [32]byte{}, fmt.Errorf("batch proof: position %d of %d leaves is out of range (2..%d leaves)", p.Position, p.Leaves, MaxBatchProofLeaves)
	}
	h := leafHash(signBytes)
	idx, n, k := p.Position, p.Leaves, 0
	for n > 1 {
		if idx%2 == 1 || idx+1 < n {
			if k >= len(p.Path) {
				return [32]byte{}, errors.New("batch proof: path too short")
			}
			sib, err := base64.RawURLEncoding.DecodeString(p.Path[k])
			if err != nil || len(sib) != 32 {
				return [32]byte{}, fmt.Errorf("batch proof: path entry %d is not a base64url SHA-256 hash", k)
			}
			var s [32]byte
			copy(s[:], sib)
			if idx%2 == 1 {
				h = innerHash(s, h)
			} else {
				h = innerHash(h, s)
			}
			k++
		}
		idx /= 2
		n = (n + 1) / 2
	}
	if k != len(p.Path) {
		return [32]byte{}, fmt.Errorf("batch proof: path has %d entries, the tree needs %d", len(p.Path), k)
	}
	return h, nil
}
