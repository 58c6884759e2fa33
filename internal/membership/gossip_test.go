package membership

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/internal/testlog"
)

// replicaGossip carries a bftlog.Replica over a Membership: states in
// push/pull, new messages as broadcasts (re-broadcast once on receipt).
type replicaGossip struct {
	r *bftlog.Replica
	m atomic.Pointer[Membership]
}

func (g *replicaGossip) LocalState(join bool) []byte { return g.r.State(join) }

func (g *replicaGossip) MergeRemoteState(buf []byte, join bool) { g.r.MergeState(buf) }

func (g *replicaGossip) NotifyMsg(buf []byte) {
	for _, msg := range g.r.MergeMessages(buf) {
		g.broadcast(msg)
	}
}

func (g *replicaGossip) broadcast(msg *bftlog.Message) {
	m := g.m.Load()
	if m == nil {
		return
	}
	if b, ok := g.r.Broadcast(msg, m.MaxBroadcastSize()); ok {
		_ = m.Broadcast(b)
	}
}

type gkey struct {
	priv ed25519.PrivateKey
	a    bftlog.Author
}

func gossipKey(name string) gkey {
	seed := sha256.Sum256([]byte("membership gossip test " + name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	a, _ := bftlog.AuthorOf(priv.Public().(ed25519.PublicKey))
	return gkey{priv: priv, a: a}
}

// startGossip starts a member that carries a replica signing with key.
func startGossip(t *testing.T, id string, key gkey, store bftlog.Config, join ...string) (*Membership, *replicaGossip) {
	t.Helper()
	r, err := bftlog.NewReplica(bftlog.ReplicaConfig{Store: store, Key: key.priv, Name: id, MaxPacket: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	g := &replicaGossip{r: r}
	m, err := Start(context.Background(), Config{
		NodeID:       id,
		BindAddr:     "127.0.0.1:0",
		Join:         join,
		Meta:         Meta{PeerAddr: "127.0.0.1:7000"},
		Logger:       testlog.New(t, slog.LevelInfo),
		Timing:       fast,
		JoinRetryMin: 20 * time.Millisecond,
		JoinRetryMax: 100 * time.Millisecond,
		Gossip:       g,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.m.Store(m)
	t.Cleanup(func() { m.Shutdown() })
	return m, g
}

func sameFrontier(a, b []bftlog.Log) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// TestGossipConvergence: four members append to their own logs; a
// Byzantine author shows one branch of a fork to node-1 and another to
// node-3. Through memberlist alone (broadcasts and push/pull), every node
// ends up with every log and the same fork proof.
func TestGossipConvergence(t *testing.T) {
	var gs []*replicaGossip
	var first *Membership
	for i := range 4 {
		id := fmt.Sprintf("node-%d", i+1)
		var join []string
		if first != nil {
			join = []string{first.LocalAddr()}
		}
		m, g := startGossip(t, id, gossipKey(id), bftlog.DefaultConfig(), join...)
		if first == nil {
			first = m
		}
		gs = append(gs, g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := first.WaitForExpect(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for i, g := range gs {
		for j := range 3 {
			msg, err := g.r.Append(fmt.Appendf(nil, "node-%d attestation %d", i+1, j), nil)
			if err != nil {
				t.Fatal(err)
			}
			g.broadcast(msg)
		}
	}
	byz := gossipKey("byzantine")
	root, _ := bftlog.NewMessage(byz.priv, bftlog.ID{}, nil, []byte("root"))
	x, _ := bftlog.NewMessage(byz.priv, root.ID(), nil, []byte("to node-1"))
	y, _ := bftlog.NewMessage(byz.priv, root.ID(), nil, []byte("to node-3"))
	for _, in := range []struct {
		g    *replicaGossip
		msgs []*bftlog.Message
	}{{gs[0], []*bftlog.Message{root, x}}, {gs[2], []*bftlog.Message{root, y}}} {
		b, err := bftlog.EncodePacket(&bftlog.Packet{Kind: bftlog.PacketMessages, Messages: in.msgs}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := in.g.r.MergeMessages(b); len(got) != 2 {
			t.Fatalf("injected branch: %d messages stored", len(got))
		}
	}

	waitFor(t, "every replica to hold 14 messages and the same frontier", func() bool {
		f0 := gs[0].r.Frontier()
		for _, g := range gs {
			if g.r.Len() != 4*3+3 || !sameFrontier(g.r.Frontier(), f0) {
				return false
			}
		}
		return len(f0) == 5
	})
	var proof *bftlog.ForkProof
	for i, g := range gs {
		eq := g.r.Equivocators()
		if len(eq) != 1 || eq[0].Author != byz.a || eq[0].Last != root.ID() {
			t.Fatalf("node-%d equivocators = %v", i+1, eq)
		}
		if err := bftlog.VerifyForkProof(eq[0].Forks); err != nil {
			t.Fatalf("node-%d proof: %v", i+1, err)
		}
		if proof != nil && !proof.Equal(eq[0].Forks) {
			t.Errorf("node-%d holds proof %v, node-1 %v", i+1, eq[0].Forks, proof)
		}
		proof = eq[0].Forks
	}
}

// TestGossipFloodBounded: an author that appends far more than the others'
// per-author cap reaches them only up to the cap.
func TestGossipFloodBounded(t *testing.T) {
	small := bftlog.Config{MaxContentSize: 256, MaxMessagesPerAuthor: 20, MaxAuthors: 8}
	big := small
	big.MaxMessagesPerAuthor = 500
	flooder := gossipKey("flooder")
	m1, g1 := startGossip(t, "node-1", flooder, big)
	_, g2 := startGossip(t, "node-2", gossipKey("node-2"), small, m1.LocalAddr())
	_, g3 := startGossip(t, "node-3", gossipKey("node-3"), small, m1.LocalAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m1.WaitForExpect(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		msg, err := g1.r.Append(fmt.Appendf(nil, "flood %d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		g1.broadcast(msg)
	}
	if q := m1.QueuedBroadcasts(); q > maxQueuedBroadcasts {
		t.Errorf("%d broadcasts queued, bound %d", q, maxQueuedBroadcasts)
	}
	for _, g := range []*replicaGossip{g2, g3} {
		waitFor(t, "the flooder's log to reach the cap", func() bool { return g.r.Count(flooder.a) == 20 })
	}
	// Another round of push/pull changes nothing.
	time.Sleep(3 * fast.PushPullInterval)
	for i, g := range []*replicaGossip{g2, g3} {
		if n := g.r.Count(flooder.a); n != 20 {
			t.Errorf("node-%d holds %d of the flooder's messages, cap 20", i+2, n)
		}
	}
}
