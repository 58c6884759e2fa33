package types

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// sampleMessages returns one valid instance of every message type (several
// for the ones with optional parts).
func sampleMessages(t testing.TB) map[string]Message {
	fx := newFixture(t, 4, 1)
	g := fx.genesis
	gqc := GenesisQC(g.Hash())
	b1 := fx.block(g, gqc, 1, "n1", "a", "", "ccc")
	qc1 := fx.qc(1, b1.Hash(), "n0", "n1", "n2")
	b2 := fx.block(b1, qc1, 2, "n2")
	tc2 := fx.tc(2, []NodeID{"n3", "n1", "n0"}, []QC{qc1, gqc, qc1})
	b3 := fx.block(b2, fx.qc(2, b2.Hash(), "n1", "n2", "n3"), 3, "n3", "x")
	to := fx.timeout("n2", 3, qc1)
	to.LastTC = tc2
	return map[string]Message{
		"proposal":          &Proposal{Block: b1},
		"proposal+tc":       &Proposal{Block: b3, TC: tc2},
		"vote":              fx.vote("n0", 1, b1.Hash()),
		"timeout":           fx.timeout("n1", 2, qc1),
		"timeout+lasttc":    to,
		"block-request":     &BlockRequest{Hash: b2.Hash(), Count: 32},
		"block-response":    &BlockResponse{Blocks: []*Block{b2, b1}},
		"block-response-0":  &BlockResponse{},
		"sync":              &SyncInfo{HighQC: qc1},
		"sync+tc":           &SyncInfo{HighQC: qc1, TC: tc2},
		"proposal-empty":    &Proposal{Block: fx.block(g, gqc, 5, "n1")},
		"sync-genesis-only": &SyncInfo{HighQC: gqc},
	}
}

// TestCodecRoundTrip: decode(encode(m)) == m and the encoding is canonical
// (re-encoding the decoded value gives the same bytes).
func TestCodecRoundTrip(t *testing.T) {
	for name, m := range sampleMessages(t) {
		t.Run(name, func(t *testing.T) {
			enc := EncodeMessage(m)
			got, err := DecodeMessage(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.MsgType() != m.MsgType() {
				t.Fatalf("type %v, want %v", got.MsgType(), m.MsgType())
			}
			if re := EncodeMessage(got); !bytes.Equal(re, enc) {
				t.Fatalf("re-encoding differs:\n%x\n%x", re, enc)
			}
			if p, ok := m.(*Proposal); ok {
				if got.(*Proposal).Block.Hash() != p.Block.Hash() {
					t.Fatal("block hash changed across the wire")
				}
			}
			if v, ok := m.(*Vote); ok && !reflect.DeepEqual(v, got) {
				t.Fatalf("vote %+v, want %+v", got, v)
			}
		})
	}
}

func TestStandaloneCodecsRoundTrip(t *testing.T) {
	fx := newFixture(t, 4, 1)
	b := fx.block(fx.genesis, GenesisQC(fx.genesis.Hash()), 1, "n0", "cmd")
	qc := fx.qc(1, b.Hash(), "n1", "n2", "n3")
	tc := fx.tc(2, []NodeID{"n0", "n1", "n2"}, []QC{qc, qc, qc})

	if got, err := UnmarshalBlock(MarshalBlock(b)); err != nil || got.Hash() != b.Hash() || !bytes.Equal(got.Sig, b.Sig) {
		t.Fatalf("block round trip: %v", err)
	}
	if got, err := UnmarshalQC(MarshalQC(qc)); err != nil || !reflect.DeepEqual(got, qc) {
		t.Fatalf("QC round trip: %v %+v", err, got)
	}
	if got, err := UnmarshalTC(MarshalTC(tc)); err != nil || !reflect.DeepEqual(got, tc) {
		t.Fatalf("TC round trip: %v", err)
	}
	v := fx.vote("n3", 9, b.Hash())
	if got, err := UnmarshalVote(MarshalVote(v)); err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("vote round trip: %v", err)
	}
	to := fx.timeout("n2", 3, qc)
	if got, err := UnmarshalTimeout(MarshalTimeout(to)); err != nil || !reflect.DeepEqual(got, to) {
		t.Fatalf("timeout round trip: %v", err)
	}
	g := fx.genesis
	if got, err := UnmarshalBlock(MarshalBlock(g)); err != nil || got.Hash() != g.Hash() {
		t.Fatalf("genesis round trip: %v", err)
	}
}

// TestDecodeRejectsGarbage: every malformed input fails with an error that
// wraps ErrMalformed, and never panics.
func TestDecodeRejectsGarbage(t *testing.T) {
	msgs := sampleMessages(t)
	prop := EncodeMessage(msgs["proposal+tc"])

	// Every strict prefix of a valid message is rejected.
	for i := range len(prop) {
		if _, err := DecodeMessage(prop[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrMalformed", i, len(prop), err)
		}
	}

	qc := EncodeMessage(msgs["sync"]) // version, type, QC (view, block, n, sigs...), tc flag
	withCount := func(n uint16) []byte {
		b := bytes.Clone(qc)
		binary.BigEndian.PutUint16(b[2+8+32:], n)
		return b
	}
	swapped := func() []byte {
		// Re-encode a QC with its signers out of order.
		m := msgs["sync"].(*SyncInfo)
		q := m.HighQC
		q.Sigs = []PartialSig{q.Sigs[1], q.Sigs[0], q.Sigs[2]}
		return EncodeMessage(&SyncInfo{HighQC: q})
	}
	dup := func() []byte {
		m := msgs["sync"].(*SyncInfo)
		q := m.HighQC
		q.Sigs = []PartialSig{q.Sigs[0], q.Sigs[0], q.Sigs[2]}
		return EncodeMessage(&SyncInfo{HighQC: q})
	}
	cases := map[string][]byte{
		"empty":            nil,
		"version only":     {WireVersion},
		"bad version":      append([]byte{9}, prop[1:]...),
		"unknown type":     {WireVersion, 99},
		"trailing byte":    append(bytes.Clone(prop), 0),
		"unsorted signers": swapped(),
		"duplicate signer": dup(),
		"count too large":  withCount(MaxSigners + 1),
		"count past input": withCount(900),
		"bad bool":         append(bytes.Clone(qc[:len(qc)-1]), 2),
		"request short":    {WireVersion, byte(MsgBlockRequest), 1, 2, 3},
		"response count":   {WireVersion, byte(MsgBlockResponse), 0xff, 0xff},
		"vote empty voter": append(append([]byte{WireVersion, byte(MsgVote)}, make([]byte, 8+32)...), 0, 0, 0),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeMessage(in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("err %v is not a *DecodeError with a reason", err)
			}
		})
	}
}

// TestDecodeBoundsAllocation: a forged payload count cannot make the decoder
// allocate more than the input justifies.
func TestDecodeBoundsAllocation(t *testing.T) {
	in := []byte{WireVersion, byte(MsgProposal)}
	in = append(in, make([]byte, 32+8+8)...)      // parent, view, height
	in = append(in, make([]byte, 8+32)...)        // justify view, block
	in = append(in, 0, 0)                         // no signers
	in = append(in, 2, 'n', '1')                  // proposer
	in = binary.BigEndian.AppendUint32(in, 60000) // 60000 commands claimed
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := DecodeMessage(in); err == nil {
			t.Fatal("decoded a block claiming 60000 commands in a few bytes")
		}
	})
	if allocs > 20 {
		t.Fatalf("%v allocations for a tiny forged input", allocs)
	}
}

// TestBlockHashCoversFields: every field but the signature changes the hash.
func TestBlockHashCoversFields(t *testing.T) {
	fx := newFixture(t, 4, 1)
	base := fx.block(fx.genesis, GenesisQC(fx.genesis.Hash()), 1, "n0", "a")
	h := base.Hash()
	mut := map[string]func(b *Block){
		"parent":   func(b *Block) { b.Parent[0] ^= 1 },
		"view":     func(b *Block) { b.View++ },
		"height":   func(b *Block) { b.Height++ },
		"justify":  func(b *Block) { b.Justify.View++ },
		"proposer": func(b *Block) { b.Proposer = "n1" },
		"payload":  func(b *Block) { b.Payload = [][]byte{[]byte("b")} },
		"split":    func(b *Block) { b.Payload = [][]byte{[]byte(""), []byte("a")} },
	}
	for name, f := range mut {
		b := *base
		f(&b)
		if b.Hash() == h {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
	b := *base
	b.Sig = []byte("other")
	if b.Hash() != h {
		t.Error("the signature is part of the hash")
	}
}
