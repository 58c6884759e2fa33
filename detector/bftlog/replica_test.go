package bftlog

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

type drops struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *drops) add(reason string, _ error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[reason]++
}

func (d *drops) get(reason string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[reason]
}

func mkReplica(t *testing.T, name string, k *tkey, cfg Config, authors []Author, d *drops) *Replica {
	t.Helper()
	rc := ReplicaConfig{Store: cfg, Name: name, Authors: authors, OnDrop: d.add}
	if k != nil {
		rc.Key = k.priv
	}
	r, err := NewReplica(rc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// syncPair runs one push/pull exchange between a and b.
func syncPair(a, b *Replica) {
	sa, sb := a.State(false), b.State(false)
	b.MergeState(sa)
	a.MergeState(sb)
}

// TestReplicasConverge: three replicas that each append to their own log,
// plus a Byzantine author that forks (one branch to each of two replicas)
// and signs an invalid message, converge through state exchanges alone:
// same frontier, the same fork proof, the invalid-message proof.
func TestReplicasConverge(t *testing.T) {
	keys := []tkey{newKey(1), newKey(2), newKey(3), newKey(4)}
	var authors []Author
	for _, k := range keys {
		authors = append(authors, k.a)
	}
	d := &drops{}
	rs := make([]*Replica, 3)
	for i := range rs {
		rs[i] = mkReplica(t, fmt.Sprintf("r%d", i), &keys[i], DefaultConfig(), authors, d)
		for j := range 3 {
			if _, err := rs[i].Append(fmt.Appendf(nil, "r%d-%d", i, j), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	byz := keys[3]
	root := signRaw(byz, ID{}, nil, []byte("root"))
	x := signRaw(byz, root.ID(), nil, []byte("x"))
	y := signRaw(byz, root.ID(), nil, []byte("y"))
	bad := signRaw(byz, ID{}, []Dep{{Author: keys[0].a, ID: root.ID()}}, []byte("claims root is by r0"))
	bcast := func(r *Replica, ms ...*Message) {
		for _, m := range ms {
			b, ok := r.Broadcast(m, 1400)
			if !ok {
				t.Fatal("message does not fit a broadcast")
			}
			r.MergeMessages(b)
		}
	}
	bcast(rs[0], root, x)
	bcast(rs[1], root, y, bad)

	for range 3 {
		syncPair(rs[0], rs[1])
		syncPair(rs[1], rs[2])
		syncPair(rs[2], rs[0])
	}
	f0 := rs[0].Frontier()
	for i, r := range rs {
		f := r.Frontier()
		if len(f) != 4 {
			t.Fatalf("replica %d holds %d logs, want 4", i, len(f))
		}
		for j := range f {
			if !f[j].Equal(f0[j]) {
				t.Errorf("replica %d log %d = %v, replica 0 has %v", i, j, f[j], f0[j])
			}
		}
		eq := r.Equivocators()
		if len(eq) != 1 || eq[0].Author != byz.a || eq[0].Last != root.ID() {
			t.Fatalf("replica %d equivocators = %v", i, eq)
		}
		if err := VerifyForkProof(eq[0].Forks); err != nil {
			t.Errorf("replica %d proof: %v", i, err)
		}
		inv := r.Invalid()
		if len(inv) != 1 || inv[0].Message.ID() != bad.ID() {
			t.Fatalf("replica %d invalid proofs = %v", i, inv)
		}
		if r.Len() != 3*3+3 {
			t.Errorf("replica %d holds %d messages, want 12", i, r.Len())
		}
	}
	if d.get(DropInvalid) == 0 {
		t.Error("the invalid message was not counted")
	}
}

// TestReplicaOutOfOrder: a broadcast that arrives before its predecessor
// waits, and is stored once the predecessor comes.
func TestReplicaOutOfOrder(t *testing.T) {
	k := newKey(1)
	d := &drops{}
	src := mkReplica(t, "src", &k, DefaultConfig(), nil, d)
	dst := mkReplica(t, "dst", nil, DefaultConfig(), nil, d)
	m1, _ := src.Append([]byte("1"), nil)
	m2, _ := src.Append([]byte("2"), nil)
	b2, _ := src.Broadcast(m2, 0)
	b1, _ := src.Broadcast(m1, 0)
	if got := dst.MergeMessages(b2); len(got) != 0 || dst.Waiting() != 1 {
		t.Fatalf("m2 before m1: added %v, waiting %d", got, dst.Waiting())
	}
	if got := dst.MergeMessages(b1); len(got) != 2 || got[0].ID() != m1.ID() || got[1].ID() != m2.ID() || dst.Waiting() != 0 {
		t.Fatalf("after m1: added %v, waiting %d", got, dst.Waiting())
	}
}

// TestReplicaBounds: a flood from one author stops at its cap, an unknown
// author and garbage are dropped and counted, the waiting room is bounded.
func TestReplicaBounds(t *testing.T) {
	member, member2, outsider := newKey(1), newKey(3), newKey(2)
	cfg := Config{MaxContentSize: 64, MaxMessagesPerAuthor: 10, MaxAuthors: 4}
	d := &drops{}
	r, err := NewReplica(ReplicaConfig{Store: cfg, Authors: []Author{member.a, member2.a}, OnDrop: d.add, MaxWaiting: 5})
	if err != nil {
		t.Fatal(err)
	}
	var flood []*Message
	prev := ID{}
	for i := range 50 {
		m := signRaw(member, prev, nil, fmt.Appendf(nil, "%d", i))
		flood = append(flood, m)
		prev = m.ID()
	}
	b, err := EncodePacket(&Packet{Kind: PacketMessages, Messages: flood}, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.MergeMessages(b)
	if got := r.Count(member.a); got != 10 {
		t.Errorf("flooding author holds %d messages, cap 10", got)
	}
	if got := d.get(DropAuthorFull); got != 40 {
		t.Errorf("author_full drops = %d, want 40", got)
	}

	big := signRaw(member2, ID{}, nil, make([]byte, 65))
	other := signRaw(outsider, ID{}, nil, []byte("x"))
	b, _ = EncodePacket(&Packet{Kind: PacketMessages, Messages: []*Message{big, other}}, 0)
	r.MergeMessages(b)
	if d.get(DropTooLarge) != 1 || d.get(DropUnknownAuthor) != 1 {
		t.Errorf("drops = %v", d.n)
	}
	r.MergeMessages([]byte{1, 2, 3})
	r.MergeState(make([]byte, DefaultMaxPacket+1))
	if d.get(DropMalformed) != 1 || d.get(DropOversized) != 1 {
		t.Errorf("drops = %v", d.n)
	}

	var orphans []*Message
	for i := range 8 {
		orphans = append(orphans, signRaw(member2, ID{byte(i + 1)}, nil, []byte("orphan")))
	}
	b, _ = EncodePacket(&Packet{Kind: PacketMessages, Messages: orphans}, 0)
	r.MergeMessages(b)
	if r.Waiting() != 5 || d.get(DropWaitingFull) != 3 {
		t.Errorf("waiting %d, waiting_full drops %d; want 5 and 3", r.Waiting(), d.get(DropWaitingFull))
	}
	if r.Len() != 10 {
		t.Errorf("store holds %d messages, want 10", r.Len())
	}
}

// TestReplicaRestore: a restored replica continues its own chain; one that
// restores nothing and appends forks it, which its peers prove.
func TestReplicaRestore(t *testing.T) {
	k := newKey(1)
	d := &drops{}
	a := mkReplica(t, "a", &k, DefaultConfig(), nil, d)
	var own []*Message
	for i := range 3 {
		m, err := a.Append(fmt.Appendf(nil, "%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		own = append(own, m)
	}
	b := mkReplica(t, "b", &k, DefaultConfig(), nil, d)
	if err := b.Restore(own); err != nil {
		t.Fatal(err)
	}
	m, err := b.Append([]byte("3"), nil)
	if err != nil || m.Prev() != own[2].ID() {
		t.Fatalf("append after restore: %v, prev %v", err, m)
	}
	if err := b.Restore(own[:1]); err == nil {
		t.Error("restoring a message that does not follow the own last succeeded")
	}
	c := mkReplica(t, "c", &k, DefaultConfig(), nil, d)
	if _, err := c.Append([]byte("fresh start"), nil); err != nil {
		t.Fatal(err)
	}
	syncPair(a, c)
	if eq := a.Equivocators(); len(eq) != 1 {
		t.Fatalf("an unrestored restart is not caught as a fork: %v", eq)
	}
	if _, err := a.Append([]byte("more"), nil); err == nil {
		t.Error("a replica extended its forked own log")
	}
	if _, err := NewReplica(ReplicaConfig{Name: string(make([]byte, MaxGossipFrom+1))}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("long name: %v", err)
	}
}
