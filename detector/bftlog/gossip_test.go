package bftlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// forkedLog returns a store holding a chain a1 of k and two forks b1, b2
// after it, and the shrinking log built from them.
func forkedLog(t *testing.T, k tkey) (*Store, Log, []*Message) {
	t.Helper()
	s, err := NewStore(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	a1 := signRaw(k, ID{}, nil, []byte("a1"))
	b1 := signRaw(k, a1.ID(), nil, []byte("b1"))
	b2 := signRaw(k, a1.ID(), nil, []byte("b2"))
	f := s.NewFrontier()
	for _, m := range []*Message{a1, b1, b2} {
		if err := s.Add(m); err != nil {
			t.Fatal(err)
		}
		if err := f.Update(m.ID()); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := f.Log(k.a)
	if l.Growing() {
		t.Fatal("log did not shrink on a fork")
	}
	return s, l, []*Message{a1, b1, b2}
}

func statePacket(t *testing.T) *Packet {
	t.Helper()
	k1, k2 := newKey(1), newKey(2)
	_, forked, msgs := forkedLog(t, k1)
	m2 := signRaw(k2, ID{}, []Dep{{Author: k1.a, ID: msgs[0].ID()}}, []byte("m2"))
	logs := []Log{forked, {Author: k2.a, Last: m2.ID()}, {Author: newKey(3).a}}
	slices.SortFunc(logs, func(x, y Log) int { return x.Author.Compare(y.Author) })
	return &Packet{Kind: PacketState, From: "node-1", Logs: logs, Wants: []ID{msgs[1].ID()}, Messages: []*Message{msgs[0], m2}}
}

func samePacket(t *testing.T, got, want *Packet) {
	t.Helper()
	if got.Kind != want.Kind || got.From != want.From || len(got.Logs) != len(want.Logs) ||
		!slices.Equal(got.Wants, want.Wants) || len(got.Messages) != len(want.Messages) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	for i := range got.Logs {
		if !got.Logs[i].Equal(want.Logs[i]) {
			t.Errorf("log %d = %v, want %v", i, got.Logs[i], want.Logs[i])
		}
	}
	for i := range got.Messages {
		if got.Messages[i].ID() != want.Messages[i].ID() || !bytes.Equal(got.Messages[i].Signature(), want.Messages[i].Signature()) {
			t.Errorf("message %d = %v, want %v", i, got.Messages[i], want.Messages[i])
		}
	}
}

// TestPacketRoundTrip: a state (with a fork proof, an empty log, wants
// and messages) and a broadcast decode to what was encoded, and encode
// again to the same bytes.
func TestPacketRoundTrip(t *testing.T) {
	st := statePacket(t)
	bc := &Packet{Kind: PacketMessages, From: "", Messages: st.Messages}
	for _, p := range []*Packet{st, bc, {Kind: PacketState}} {
		b, err := EncodePacket(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodePacket(b, len(b))
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind == PacketState && p.Logs == nil {
			p.Logs, p.Wants = []Log{}, []ID{}
		}
		samePacket(t, got, p)
		again, err := EncodePacket(got, 0)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs (err %v)", err)
		}
	}
}

// TestPacketRefused: oversized input fails with ErrOversized, everything
// that breaks the layout with ErrMalformed; EncodePacket refuses the same.
func TestPacketRefused(t *testing.T) {
	good, err := EncodePacket(statePacket(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodePacket(good, len(good)-1); !errors.Is(err, ErrOversized) {
		t.Errorf("one byte over the limit: err %v, want ErrOversized", err)
	}
	if _, err := DecodePacket(make([]byte, DefaultMaxPacket+1), 0); !errors.Is(err, ErrOversized) {
		t.Errorf("over the default limit: err %v, want ErrOversized", err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":        nil,
		"version":      mod(func(b []byte) []byte { b[0] = 9; return b }),
		"kind":         mod(func(b []byte) []byte { b[1] = 7; return b }),
		"from length":  mod(func(b []byte) []byte { b[2] = MaxGossipFrom + 1; return b }),
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"huge counts":  {GossipVersion, byte(PacketState), 0, 0xFF, 0xFF},
		"huge message": binary.BigEndian.AppendUint32([]byte{GossipVersion, byte(PacketMessages), 0, 0, 1}, 1<<30),
		"zero want":    append([]byte{GossipVersion, byte(PacketState), 0, 0, 0, 0, 1}, append(make([]byte, 32), 0, 0)...),
		"bad flags":    append(append([]byte{GossipVersion, byte(PacketState), 0, 0, 1}, make([]byte, 32)...), 4, 0, 0, 0, 0),
		"zero last":    append(append([]byte{GossipVersion, byte(PacketState), 0, 0, 1}, make([]byte, 32)...), append([]byte{1}, make([]byte, 36)...)...),
		"bad utf8":     {GossipVersion, byte(PacketMessages), 1, 0xFF, 0, 0},
	}
	for name, b := range cases {
		if _, err := DecodePacket(b, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}

	p := statePacket(t)
	p.Logs[0], p.Logs[1] = p.Logs[1], p.Logs[0]
	if _, err := EncodePacket(p, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("unsorted logs: err %v", err)
	}
	p = statePacket(t)
	for i, l := range p.Logs {
		if l.Forks != nil {
			p.Logs[i].Forks = &ForkProof{A: l.Forks.B, B: l.Forks.A}
		}
	}
	if _, err := EncodePacket(p, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("proof out of order: err %v", err)
	}
	if _, err := EncodePacket(&Packet{Kind: PacketMessages, Wants: []ID{{1}}}, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("wants in a broadcast: err %v", err)
	}
	if _, err := EncodePacket(statePacket(t), 100); !errors.Is(err, ErrOversized) {
		t.Errorf("over the limit: err %v", err)
	}
}

// FuzzDecodePacket: no input panics or decodes to something that encodes
// differently (the encoding is canonical).
func FuzzDecodePacket(f *testing.F) {
	t := &testing.T{}
	for _, p := range []*Packet{statePacket(t), {Kind: PacketMessages, From: "x", Messages: statePacket(t).Messages}, {Kind: PacketState}} {
		b, err := EncodePacket(p, 0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{GossipVersion, byte(PacketState), 0, 0xFF, 0xFF})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePacket(b, 1<<16)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOversized) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrOversized", err)
			}
			return
		}
		again, err := EncodePacket(p, 0)
		if err != nil {
			t.Fatalf("decoded packet does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal(fmt.Sprintf("re-encoding differs: %x vs %x", again, b))
		}
	})
}
