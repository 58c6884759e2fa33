package wire

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tandem-consensus/tandem/smr"
)

func batchReplies(n int) []*SubmitReply {
	out := make([]*SubmitReply, n)
	for i := range out {
		client := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
		r := NewSubmitReply("node2", client, smr.Result{Index: uint64(100 + i), Seq: uint64(i + 1), Value: json.RawMessage(`{"n":1}`)})
		out[i] = &r
	}
	return out
}

func batchKey(seed string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(seed))
	return ed25519.NewKeyFromSeed(s[:])
}

// TestSubmitBatchSignatures: every reply of a batch signed once verifies
// with its proof, for every batch size; one reply is signed on its own.
func TestSubmitBatchSignatures(t *testing.T) {
	key := batchKey("node2")
	pub := key.Public().(ed25519.PublicKey)
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 100, MaxBatchItems} {
		rs := batchReplies(n)
		SignSubmitBatch(key, rs)
		for i, r := range rs {
			if err := r.Verify(pub); err != nil {
				t.Fatalf("n=%d reply %d: %v", n, i, err)
			}
			if (r.Batch == nil) != (n == 1) {
				t.Fatalf("n=%d reply %d: batch proof %v", n, i, r.Batch)
			}
		}
	}
}

// TestSubmitBatchProofRejects: a changed reply, a proof taken from another
// reply, a wrong position or leaf count, a path too short or too long, a
// malformed path entry, another key, and a batch proof over one leaf all
// fail verification.
func TestSubmitBatchProofRejects(t *testing.T) {
	key := batchKey("node2")
	pub := key.Public().(ed25519.PublicKey)
	fresh := func() []*SubmitReply {
		rs := batchReplies(5)
		SignSubmitBatch(key, rs)
		return rs
	}
	for _, tc := range []struct {
		name   string
		mutate func(rs []*SubmitReply) *SubmitReply
	}{
		{"changed value", func(rs []*SubmitReply) *SubmitReply { rs[2].Value = json.RawMessage(`{"n":2}`); return rs[2] }},
		{"changed index", func(rs []*SubmitReply) *SubmitReply { rs[0].Index++; return rs[0] }},
		{"other node", func(rs []*SubmitReply) *SubmitReply { rs[1].NodeID = "node3"; return rs[1] }},
		{"swapped proof", func(rs []*SubmitReply) *SubmitReply {
			rs[1].Batch, rs[3].Batch = rs[3].Batch, rs[1].Batch
			return rs[1]
		}},
		{"wrong position", func(rs []*SubmitReply) *SubmitReply { rs[4].Batch.Position = 3; return rs[4] }},
		{"position out of range", func(rs []*SubmitReply) *SubmitReply { rs[4].Batch.Position = 5; return rs[4] }},
		{"wrong leaves", func(rs []*SubmitReply) *SubmitReply { rs[0].Batch.Leaves = 6; return rs[0] }},
		{"too many leaves", func(rs []*SubmitReply) *SubmitReply { rs[0].Batch.Leaves = MaxBatchProofLeaves + 1; return rs[0] }},
		{"one leaf", func(rs []*SubmitReply) *SubmitReply { rs[0].Batch.Leaves = 1; return rs[0] }},
		{"short path", func(rs []*SubmitReply) *SubmitReply { rs[0].Batch.Path = rs[0].Batch.Path[:1]; return rs[0] }},
		{"long path", func(rs []*SubmitReply) *SubmitReply {
			rs[0].Batch.Path = append(rs[0].Batch.Path, rs[0].Batch.Path[0])
			return rs[0]
		}},
		{"bad path entry", func(rs []*SubmitReply) *SubmitReply { rs[0].Batch.Path[0] = "not-a-hash"; return rs[0] }},
		{"proof dropped", func(rs []*SubmitReply) *SubmitReply { rs[0].Batch = nil; return rs[0] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.mutate(fresh())
			if err := r.Verify(pub); err == nil {
				t.Fatal("verified")
			}
		})
	}
	rs := fresh()
	if err := rs[0].Verify(batchKey("node3").Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("verified under another key")
	}
}

// TestSubmitBatchGolden pins the tree and statement: a change of the
// signed format must be deliberate (and versioned by SubmitBatchTag).
func TestSubmitBatchGolden(t *testing.T) {
	rs := batchReplies(3)
	SignSubmitBatch(batchKey("node2"), rs)
	// By hand: root = inner(inner(leaf0, leaf1), leaf2); leaf 2 was
	// carried up a level, so its path is the one inner node.
	l01 := innerHash(leafHash(rs[0].SignBytes()), leafHash(rs[1].SignBytes()))
	if len(rs[2].Batch.Path) != 1 || rs[2].Batch.Path[0] != base64.RawURLEncoding.EncodeToString(l01[:]) {
		t.Fatalf("path of leaf 2: %v", rs[2].Batch.Path)
	}
	got := fmt.Sprintf("%s %v", rs[0].Signature, rs[2].Batch.Path)
	const want = "pRq8kqnoUuvM9QpXh7-FcSlU99-ZY4SrzFaXhWOZDS9bTJzoJKDiaZp-VMubHpeeb0fUX7DiqWW9uKqW302mDQ [l-AwaHs54U50E3MLTP5bxNe0EEDRCYBZjoyPm1Z862U]"
	if got != want {
		t.Fatalf("batch of 3: %s", got)
	}
}

// FuzzBatchProofVerify: any proof a replica sends is checked without
// panicking, and only the honest one verifies.
func FuzzBatchProofVerify(f *testing.F) {
	key := batchKey("node2")
	pub := key.Public().(ed25519.PublicKey)
	rs := batchReplies(5)
	SignSubmitBatch(key, rs)
	honest, _ := json.Marshal(rs[3])
	f.Add(honest)
	f.Add([]byte(`{"node_id":"node2","batch":{"leaves":2,"position":1,"path":[""]},"signature":""}`))
	f.Add([]byte(`{"batch":{"leaves":-1,"position":-5,"path":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r SubmitReply
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if r.Verify(pub) != nil {
			return
		}
		for _, s := range rs {
			if s.MatchKey() == r.MatchKey() && s.NodeID == r.NodeID && s.Duplicate == r.Duplicate {
				return
			}
		}
		t.Fatalf("a reply the batch did not sign verified: %s", data)
	})
}
