package bftlog_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/tandem-consensus/tandem/detector/bftlog"
)

// A node signs two different messages after the same predecessor. Two
// replicas each see one branch; after exchanging frontiers both hold the
// fork proof, which anyone can check on its own.
func Example() {
	seed := sha256.Sum256([]byte("example node"))
	key := ed25519.NewKeyFromSeed(seed[:])

	m1, _ := bftlog.NewMessage(key, bftlog.ID{}, nil, []byte("vote view 1"))
	x, _ := bftlog.NewMessage(key, m1.ID(), nil, []byte("vote view 2: block X"))
	y, _ := bftlog.NewMessage(key, m1.ID(), nil, []byte("vote view 2: block Y"))

	replica := func(msgs ...*bftlog.Message) (*bftlog.Store, *bftlog.Frontier) {
		s, _ := bftlog.NewStore(bftlog.DefaultConfig())
		f := s.NewFrontier()
		for _, m := range msgs {
			if err := s.Add(m); err != nil {
				panic(err)
			}
			_ = f.Update(m.ID())
		}
		return s, f
	}
	s1, f1 := replica(m1, x)
	_, f2 := replica(m1, y)
	fmt.Println("equivocators before:", len(f1.Equivocators()))

	// Replica 1 fetches what replica 2's frontier names, then merges it.
	_ = s1.Add(y)
	if err := f1.Merge(f2); err != nil {
		panic(err)
	}
	eq := f1.Equivocators()
	fmt.Println("equivocators after:", len(eq))
	fmt.Println("fork right after the first message:", eq[0].Last == m1.ID())
	fmt.Println("proof verifies:", bftlog.VerifyForkProof(eq[0].Forks) == nil)
	// Output:
	// equivocators before: 0
	// equivocators after: 1
	// fork right after the first message: true
	// proof verifies: true
}
