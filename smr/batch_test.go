package smr

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func batchBytes(t fataler, at int64, envs ...*Envelope) []byte {
	helper(t)
	var list []Envelope
	for _, e := range envs {
		list = append(list, *e)
	}
	ent := NewBatchEntry(at, list)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

// TestBatchEntryBinary: a batch entry round-trips; malformed batches are
// refused with a message naming the problem.
func TestBatchEntryBinary(t *testing.T) {
	a := mustSign(t, testKey(1), 1, Command{Op: OpSetConfig, Key: "a", Value: "1"})
	b := mustSign(t, testKey(2), 7, Command{Op: OpDeleteConfig, Key: "b"})
	data := batchBytes(t, 42, a, b)
	if k, ok := EntryKindOf(data); !ok || k != EntryBatch {
		t.Fatalf("EntryKindOf = %v, %v", k, ok)
	}
	var got Entry
	if err := got.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if got.Kind != EntryBatch || got.Time != 42 || len(got.Batch) != 2 || got.Batch[1].Seq != 7 || !bytes.Equal(got.Batch[0].Command, a.Command) {
		t.Fatalf("decoded %+v", got)
	}
	if again, err := got.MarshalBinary(); err != nil || !bytes.Equal(again, data) {
		t.Fatalf("round trip: %v", err)
	}

	header := data[:entryV2HeaderLen]
	withCount := func(n uint32, rest []byte) []byte {
		out := append(append([]byte(nil), header...), binary.BigEndian.AppendUint32(nil, n)...)
		return append(out, rest...)
	}
	body := data[entryV2HeaderLen+4:]
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"one envelope":   {withCount(1, body), "a batch holds 2 to"},
		"too many":       {withCount(MaxBatchEnvelopes+1, body), "a batch holds 2 to"},
		"no count":       {append([]byte(nil), header...), "too short for its count"},
		"cut short":      {data[:len(data)-3], "only"},
		"missing one":    {withCount(3, body), "cut short"},
		"trailing bytes": {append(append([]byte(nil), data...), 0), "after its 2 envelopes"},
	} {
		var e Entry
		err := e.UnmarshalBinary(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
	for name, ent := range map[string]Entry{
		"one envelope":         NewBatchEntry(1, []Envelope{*a}),
		"with a genesis":       {Kind: EntryBatch, Batch: []Envelope{*a, *b}, Genesis: &Genesis{}},
		"command with a batch": {Kind: EntryCommand, Env: *a, Batch: []Envelope{*b}},
	} {
		if _, err := ent.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary succeeded", name)
		}
	}
}

// TestBatchAppliesLikeSeparateCommands: a batch entry gives each envelope
// the Result it would get as its own command entry at that point (a bad
// signature, a retried seq, an unknown client and a denied command
// included), except that all share the batch's index; and it leaves the
// same state, apart from the exactly-once records' indexes.
func TestBatchAppliesLikeSeparateCommands(t *testing.T) {
	admin, stranger := testKey(1), testKey(9)
	set := mustSign(t, admin, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	again := mustSign(t, admin, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	bad := mustSign(t, admin, 2, Command{Op: OpSetConfig, Key: "x", Value: "y"})
	bad.Sig = append([]byte(nil), bad.Sig...)
	bad.Sig[5] ^= 1
	unknown := mustSign(t, stranger, 1, Command{Op: OpSetConfig, Key: "s", Value: "t"})
	del := mustSign(t, admin, 3, Command{Op: OpDeleteConfig, Key: "k"})
	envs := []*Envelope{set, again, bad, unknown, del}

	one := newHarness(t, admin)
	var want []Result
	for _, e := range envs {
		want = append(want, one.apply(e))
	}
	batched := newHarness(t, admin)
	batched.idx++
	p := batched.sm.Prepare(batchBytes(t, batched.time, envs...))
	if p.ClientPayloadValid() || p.Results() != len(envs) || len(p.Envelopes()) != len(envs) {
		t.Fatalf("prepared: valid=%v results=%d", p.ClientPayloadValid(), p.Results())
	}
	got := batched.sm.ApplyPrepared(batched.idx, p)
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Index != batched.idx {
			t.Errorf("envelope %d: index %d, want the batch's %d", i, got[i].Index, batched.idx)
		}
		g, w := got[i], want[i]
		g.Index, w.Index = 0, 0
		if g.Code != w.Code || g.Seq != w.Seq || g.Duplicate != w.Duplicate || !bytes.Equal(g.Value, w.Value) {
			t.Errorf("envelope %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if one.domainHash() != batched.domainHash() {
		t.Error("a batch left another state than the same commands one by one")
	}
	// Apply of a batch entry answers with its last envelope's Result, and
	// a replay at an applied index is refused for every envelope.
	if r := batched.sm.ApplyPrepared(batched.idx, batched.sm.Prepare(batchBytes(t, batched.time, set, del))); len(r) != 2 || r[0].Code != CodeMalformed || r[1].Seq != del.Seq {
		t.Errorf("replayed index: %+v", r)
	}
}

// TestBatchDeterministic: two fresh machines applying the same batch
// entries reach the same state hash, and a valid batch is a valid client
// payload.
func TestBatchDeterministic(t *testing.T) {
	admin := testKey(1)
	var entries [][]byte
	seq := uint64(0)
	for range 5 {
		var envs []*Envelope
		for range 7 {
			seq++
			envs = append(envs, mustSign(t, admin, seq, Command{Op: OpSetConfig, Key: "k" + string(rune('a'+seq%5)), Value: "v"}))
		}
		entries = append(entries, batchBytes(t, int64(seq), envs...))
	}
	var hashes [2][32]byte
	for m := range hashes {
		h := newHarness(t, admin)
		for _, b := range entries {
			h.idx++
			p := h.sm.Prepare(b)
			if !p.ClientPayloadValid() {
				t.Fatal("a valid batch is not a valid client payload")
			}
			for _, r := range h.sm.ApplyPrepared(h.idx, p) {
				if r.Code != CodeOK {
					t.Fatalf("%+v", r)
				}
			}
		}
		hashes[m] = h.hash()
	}
	if hashes[0] != hashes[1] {
		t.Fatal("state hashes differ")
	}
}
