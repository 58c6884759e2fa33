package node

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// forkedReplica returns a replica signing with member id's key that has
// appended content as its first message.
func (f *detectorFixture) forkedReplica(id evidence.NodeID, content string) *bftlog.Replica {
	f.t.Helper()
	r, err := bftlog.NewReplica(bftlog.ReplicaConfig{Key: f.keys[id], Name: string(id), MaxPacket: gossipMaxPacket})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := r.Append([]byte(content), nil); err != nil {
		f.t.Fatal(err)
	}
	return r
}

// TestGossipForkQuarantinesItsAuthor: n3 signs two different first
// messages of its log and gossips one to each side; once n1's gossip holds
// both, its detector gets a log-fork proof that verifies from its bytes
// alone and quarantines n3. A copy with a forged signature is refused.
func TestGossipForkQuarantinesItsAuthor(t *testing.T) {
	f := newDetectorFixture(t)
	dir := t.TempDir()
	d := f.openPeer("n1", dir)
	g := f.gossipOf(d, dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	defer func() { cancel(); <-done }()

	g.MergeRemoteState(f.forkedReplica("n3", "one").State(false), false)
	g.MergeRemoteState(f.forkedReplica("n3", "two").State(false), false)
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(d.manager.IDs(), []evidence.NodeID{"n3"}) {
		if time.Now().After(deadline) {
			t.Fatalf("quarantined %v, want [n3]", d.manager.IDs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var fork *evidence.Evidence
	for _, e := range d.evidenceList() {
		if e.Kind == evidence.KindLogFork {
			fork = e
		}
	}
	if fork == nil || fork.Offender != "n3" {
		t.Fatalf("no log-fork evidence of n3 in %v", d.evidenceList())
	}
	// Anyone verifies it from its canonical bytes and the member keys.
	raw, err := evidence.Marshal(fork)
	if err != nil {
		t.Fatal(err)
	}
	back, err := evidence.Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.verify(back); err != nil {
		t.Fatalf("the fork proof does not verify from its bytes: %v", err)
	}

	// The same proof with one branch's signature broken is refused by a
	// fresh detector, which quarantines nobody.
	bad := *back
	p := *back.Fork
	mb, _ := p.B.MarshalBinary()
	mb[len(mb)-1] ^= 1
	if p.B, err = bftlog.DecodeMessage(mb); err != nil {
		t.Fatal(err)
	}
	bad.Fork = &p
	d2 := f.openPeer("n2", t.TempDir())
	if res, err := d2.handle(ctx, &bad, "n4"); res != resultRejected || !errors.Is(err, evidence.ErrInvalidEvidence) {
		t.Fatalf("forged fork proof: %s, %v", res, err)
	}
	if len(d2.manager.IDs()) != 0 || len(d2.evidenceList()) != 0 {
		t.Fatalf("a forged fork proof changed something: %v, %v", d2.manager.IDs(), d2.evidenceList())
	}
	if res, err := d2.handle(ctx, back, "n4"); res != resultAdded || err != nil {
		t.Fatalf("genuine fork proof relayed: %s, %v", res, err)
	}
	if !slices.Equal(d2.manager.IDs(), []evidence.NodeID{"n3"}) {
		t.Fatalf("genuine fork proof: quarantined %v", d2.manager.IDs())
	}
}
