package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// TestEntryV1IsUnchanged: a command entry is still version 1, byte for
// byte, and an Entry literal without a Kind is a command entry.
func TestEntryV1IsUnchanged(t *testing.T) {
	env := mustSign(t, testKey(1), 3, Command{Op: OpDeleteConfig, Key: "k"})
	envBytes, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{1}, binary.BigEndian.AppendUint64(nil, 77)...)
	want = append(want, envBytes...)
	lit := Entry{Time: 77, Env: *env}
	for name, ent := range map[string]Entry{"literal": lit, "constructor": NewCommandEntry(77, *env)} {
		b, err := ent.MarshalBinary()
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("%s: MarshalBinary = %x, %v; want %x", name, b, err, want)
		}
	}
	var got Entry
	if err := got.UnmarshalBinary(want); err != nil || got.Kind != EntryCommand || got.Time != 77 || got.Genesis != nil || got.Restore != nil {
		t.Fatalf("UnmarshalBinary = %+v, %v", got, err)
	}
}

func TestEntryGenesisAndRestoreBinary(t *testing.T) {
	k1, k2 := pubOf(testKey(1)), pubOf(testKey(2))
	lo, hi := k1, k2
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	// Genesis: keys sorted, defaults written out.
	gb := genesisBytes(t, -5, Genesis{AdminKeys: []ed25519.PublicKey{hi, lo}})
	want := []byte{2, 1}
	want = binary.BigEndian.AppendUint64(want, uint64(1<<64-5))
	want = binary.BigEndian.AppendUint32(want, 2)
	want = append(want, lo...)
	want = append(want, hi...)
	want = binary.BigEndian.AppendUint32(want, DefaultResultWindow)
	want = binary.BigEndian.AppendUint32(want, DefaultMaxCommandBytes)
	if !bytes.Equal(gb, want) {
		t.Fatalf("genesis entry = %x\nwant           %x", gb, want)
	}
	var ent Entry
	if err := ent.UnmarshalBinary(gb); err != nil {
		t.Fatal(err)
	}
	if ent.Kind != EntryGenesis || ent.Time != -5 || ent.Genesis == nil || ent.Restore != nil ||
		!reflect.DeepEqual(ent.Genesis.AdminKeys, []ed25519.PublicKey{lo, hi}) ||
		ent.Genesis.ResultWindow != DefaultResultWindow || ent.Genesis.MaxCommandBytes != DefaultMaxCommandBytes {
		t.Fatalf("decoded genesis entry = %+v %+v", ent, ent.Genesis)
	}

	// Restore: fixed fields, the URI with its length, the snapshot as the rest.
	r := mustSignRestore(t, testKey(1), []byte("snapshot-bytes"))
	rb := restoreBytes(t, 9, r)
	want = []byte{2, 2}
	want = binary.BigEndian.AppendUint64(want, uint64(r.Time*1e9+9))
	want = append(want, r.Admin...)
	want = binary.BigEndian.AppendUint64(want, uint64(r.Time))
	want = append(want, r.Sig...)
	want = binary.BigEndian.AppendUint32(want, uint32(len(restoreURI)))
	want = append(want, restoreURI...)
	want = append(want, "snapshot-bytes"...)
	if !bytes.Equal(rb, want) {
		t.Fatalf("restore entry = %x\nwant           %x", rb, want)
	}
	ent = Entry{}
	if err := ent.UnmarshalBinary(rb); err != nil {
		t.Fatal(err)
	}
	if ent.Kind != EntryRestore || ent.Time != r.Time*1e9+9 || !reflect.DeepEqual(*ent.Restore, *r) {
		t.Fatalf("decoded restore = %+v, want %+v", ent.Restore, r)
	}
	// The decoded restore does not alias the input.
	rb[len(rb)-1] ^= 0xFF
	if ent.Restore.Snapshot[len(ent.Restore.Snapshot)-1] == rb[len(rb)-1] {
		t.Fatal("UnmarshalBinary aliases its input")
	}
	rb[len(rb)-1] ^= 0xFF

	for name, in := range map[string][]byte{
		"v2 command":        append([]byte{2, 0}, gb[2:]...),
		"unknown kind":      append([]byte{2, 3}, gb[2:]...),
		"v2 without time":   gb[:9],
		"genesis truncated": gb[:len(gb)-1],
		"genesis trailing":  append(bytes.Clone(gb), 0),
		"restore header":    rb[:10+ed25519.PublicKeySize+8+ed25519.SignatureSize+3],
		"restore uri too long": func() []byte {
			c := bytes.Clone(rb)
			binary.BigEndian.PutUint32(c[10+ed25519.PublicKeySize+8+ed25519.SignatureSize:], 1<<20)
			return c
		}(),
	} {
		var e Entry
		if err := e.UnmarshalBinary(in); !isCode(err, CodeMalformed) {
			t.Errorf("%s: UnmarshalBinary = %v, want malformed", name, err)
		}
	}
	var e Entry
	if err := e.UnmarshalBinary(append([]byte{2, 0}, gb[2:]...)); err == nil || !strings.Contains(err.Error(), "command entries use version 1") {
		t.Errorf("v2 command error = %v", err)
	}

	env := mustSign(t, testKey(1), 1, Command{Op: OpDeleteConfig, Key: "k"})
	g := Genesis{AdminKeys: []ed25519.PublicKey{k1}}
	for name, bad := range map[string]Entry{
		"unknown kind":          {Kind: 9},
		"command with genesis":  {Env: *env, Genesis: &g},
		"genesis without one":   {Kind: EntryGenesis},
		"genesis with envelope": {Kind: EntryGenesis, Genesis: &g, Env: *env},
		"restore without one":   {Kind: EntryRestore},
		"restore short key":     {Kind: EntryRestore, Restore: &Restore{Admin: k1[:5], Sig: r.Sig}},
		"restore short sig":     {Kind: EntryRestore, Restore: &Restore{Admin: k1, Sig: r.Sig[:5]}},
		"genesis short key":     {Kind: EntryGenesis, Genesis: &Genesis{AdminKeys: []ed25519.PublicKey{k1[:31]}}},
		"genesis negative":      {Kind: EntryGenesis, Genesis: &Genesis{AdminKeys: []ed25519.PublicKey{k1}, ResultWindow: -1}},
	} {
		if _, err := bad.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary accepted it", name)
		}
	}
	if s := EntryKind(7).String(); s != "kind(7)" || EntryRestore.String() != "restore" {
		t.Errorf("EntryKind strings: %s, %s", s, EntryRestore)
	}
}

func TestEntryKindOfAndEnvelopeBytes(t *testing.T) {
	env := mustSign(t, testKey(1), 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	cmd := entryBytes(t, 5, env)
	if k, ok := EntryKindOf(cmd); !ok || k != EntryCommand {
		t.Fatalf("EntryKindOf(command) = %v, %v", k, ok)
	}
	b, ok := EnvelopeBytes(cmd)
	want, err := env.MarshalBinary()
	if err != nil || !ok || string(b) != string(want) {
		t.Fatalf("EnvelopeBytes = %x, %v; want %x (%v)", b, ok, want, err)
	}
	g := genesisBytes(t, 5, genesisOf(testKey(1)))
	if k, ok := EntryKindOf(g); !ok || k != EntryGenesis {
		t.Fatalf("EntryKindOf(genesis) = %v, %v", k, ok)
	}
	if _, ok := EnvelopeBytes(g); ok {
		t.Fatal("EnvelopeBytes found an envelope in a genesis entry")
	}
	if _, ok := EntryKindOf(nil); ok {
		t.Fatal("EntryKindOf(nil) reported a kind")
	}
}
