package evidence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/checkpoint"
)

// TestGoldenCheckpointEquivocation pins the whole encoding of the kind
// (the ID in golden.txt pins it too; this file shows the bytes). Rewrite
// with `go test -run GoldenCheckpoint -rewrite` and review the diff: a
// change is a protocol change.
func TestGoldenCheckpointEquivocation(t *testing.T) {
	f := newFixture(t)
	b, err := Marshal(f.checkpointEquivocation())
	if err != nil {
		t.Fatal(err)
	}
	got := "checkpoint-equivocation " + hex.EncodeToString(b) + "\n"
	checkGolden(t, "checkpoint_equivocation.golden", got)
	// The layout: header, then two u32-length-prefixed checkpoint votes in
	// their own wire form, the smaller state hash first.
	const head = 1 + 1 + 1 + 2 + 8
	if b[0] != WireVersion || Kind(b[1]) != KindCheckpointEquivocation || string(b[3:5]) != "n2" {
		t.Fatalf("header %x", b[:head])
	}
	d := newDecoder(b[head:])
	var votes [2]checkpoint.Vote
	for i := range votes {
		if err := votes[i].UnmarshalBinary(d.bytes32("vote")); err != nil {
			t.Fatalf("vote %d: %v", i, err)
		}
	}
	if d.Err() != nil || d.Remaining() != 0 || votes[0].Statement.StateHash[0] != 0x0a || votes[1].Statement.StateHash[0] != 0x0b {
		t.Fatalf("body: %v, %d bytes left, hashes %x %x", d.Err(), d.Remaining(), votes[0].Statement.StateHash[:1], votes[1].Statement.StateHash[:1])
	}
}

// TestCheckpointEquivocationFromCollector: the conflict a checkpoint
// collector reports becomes evidence that verifies against the member keys
// alone, in canonical order whichever vote came first, and that shares no
// memory with the votes it was built from.
func TestCheckpointEquivocationFromCollector(t *testing.T) {
	f := newFixture(t)
	keys := map[string]ed25519.PublicKey{}
	for _, id := range f.members.IDs() {
		keys[string(id)] = f.members.Key(id)
	}
	com, err := checkpoint.NewCommittee(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, order := range [][2]byte{{0x0a, 0x0b}, {0x0b, 0x0a}} {
		c := checkpoint.NewCollector(com)
		if _, err := c.Add(f.checkpointVote("n2", testEpoch, 1200, order[0])); err != nil {
			t.Fatal(err)
		}
		second := f.checkpointVote("n2", testEpoch, 1200, order[1])
		_, err := c.Add(second)
		var ce *checkpoint.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("second vote: %v, want a conflict", err)
		}
		e, err := FromCheckpointConflict(ce)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(e, f.members); err != nil {
			t.Fatalf("order %x: %v", order, err)
		}
		if e.ID() != f.checkpointEquivocation().ID() {
			t.Fatalf("order %x: not the canonical record", order)
		}
		if e.Offender != "n2" || e.Epoch != testEpoch || !strings.Contains(e.OffenseKey(), "/checkpoint/1200") {
			t.Fatalf("offender %q epoch %d offence %q", e.Offender, e.Epoch, e.OffenseKey())
		}
		ce.Second.Sig[0] ^= 1
		ce.First.Sig[0] ^= 1
		if err := Verify(e, f.members); err != nil {
			t.Fatalf("evidence aliases the conflict's votes: %v", err)
		}
	}
	if _, err := FromCheckpointConflict(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil conflict: %v", err)
	}
}

// TestCheckpointEquivocationEncodingRejects: the votes out of order, two
// votes for one state, and a vote that is not a checkpoint vote's wire
// form do not encode or decode.
func TestCheckpointEquivocationEncodingRejects(t *testing.T) {
	f := newFixture(t)
	const head = 1 + 1 + 1 + 2 + 8
	raw, err := Marshal(f.checkpointEquivocation())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(swapTail(t, raw, head)); !errors.Is(err, ErrMalformed) {
		t.Errorf("decode of votes out of order: %v", err)
	}
	e := f.checkpointEquivocation()
	e.Checkpoints[0], e.Checkpoints[1] = e.Checkpoints[1], e.Checkpoints[0]
	if _, err := Marshal(e); !errors.Is(err, ErrMalformed) {
		t.Errorf("encode of votes out of order: %v", err)
	}
	v := f.checkpointVote("n2", testEpoch, 1200, 0x0a)
	if _, err := NewCheckpointEquivocation(v, v); !errors.Is(err, ErrMalformed) {
		t.Errorf("two votes for one state: %v", err)
	}
	same := e.Checkpoints[0]
	var enc encoder
	enc.raw(raw[:head])
	for range 2 {
		if err := encodeNested(&enc, "checkpoint vote", same); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Unmarshal(enc.b); !errors.Is(err, ErrMalformed) {
		t.Errorf("decode of two votes for one state: %v", err)
	}
	bad := f.checkpointEquivocation()
	bad.Checkpoints[1].Sig = bad.Checkpoints[1].Sig[:10] // not a signature the vote form carries
	if _, err := Marshal(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("encode of a short signature: %v", err)
	}
	garbage := bytes.Clone(raw)
	garbage[head+4] ^= 0xff // the first vote's magic
	if _, err := Unmarshal(garbage); !errors.Is(err, ErrMalformed) {
		t.Errorf("decode of a damaged vote: %v", err)
	}
}

// TestCheckpointEquivocationJSON: the readable form shows both votes.
func TestCheckpointEquivocationJSON(t *testing.T) {
	f := newFixture(t)
	e := f.checkpointEquivocation()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Kind        string `json:"kind"`
		Irrefutable bool   `json:"irrefutable"`
		Offense     string `json:"offense"`
		Votes       []struct {
			Signer    string `json:"signer"`
			Kind      string `json:"kind"`
			Index     uint64 `json:"index"`
			StateHash string `json:"state_hash"`
			Signature string `json:"signature"`
		} `json:"checkpoint_votes"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if j.Kind != "checkpoint-equivocation" || !j.Irrefutable || len(j.Votes) != 2 || j.Offense != "checkpoint-equivocation/n2/7/checkpoint/1200" {
		t.Fatalf("JSON %s", b)
	}
	for i, want := range []string{strings.Repeat("0a", 32), strings.Repeat("0b", 32)} {
		v := j.Votes[i]
		if v.Signer != "n2" || v.Kind != "checkpoint" || v.Index != 1200 || v.StateHash != want || len(v.Signature) != 2*ed25519.SignatureSize {
			t.Errorf("vote %d: %+v", i, v)
		}
	}
	if !strings.Contains(e.Summary(), "index 1200") {
		t.Errorf("summary %q", e.Summary())
	}
}

// FuzzUnmarshalCheckpointEquivocation: no panic on any input; what decodes
// re-encodes to the same bytes; and what Verify accepts is exactly what a
// checkpoint committee of the same keys would call an equivocation: two
// votes that each verify, by one member, for one slot, with different
// state hashes.
func FuzzUnmarshalCheckpointEquivocation(f *testing.F) {
	fx := newFixture(f)
	good, err := Marshal(fx.checkpointEquivocation())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	h, err := Marshal(fx.must(NewCheckpointEquivocation(fx.checkpointVote("n1", 3, 10, 1), fx.checkpointVote("n1", 3, 10, 2))))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h)
	f.Add([]byte{WireVersion, byte(KindCheckpointEquivocation), 2, 'n', '2'})
	keys := map[string]ed25519.PublicKey{}
	for _, id := range fx.members.IDs() {
		keys[string(id)] = fx.members.Key(id)
	}
	com, err := checkpoint.NewCommittee(keys)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		e := decodeCanonical(t, in)
		if e == nil {
			return
		}
		verr := Verify(e, fx.members)
		if e.Kind != KindCheckpointEquivocation || verr != nil {
			return
		}
		a, b := e.Checkpoints[0], e.Checkpoints[1]
		if a.Verify(com) != nil || b.Verify(com) != nil || a.Signer != b.Signer || NodeID(a.Signer) != e.Offender ||
			a.Statement.Kind != b.Statement.Kind || a.Statement.Epoch != b.Statement.Epoch || a.Statement.Index != b.Statement.Index ||
			a.Statement.StateHash == b.Statement.StateHash {
			t.Fatalf("Verify accepted a record that is no equivocation: %s", e.Summary())
		}
	})
}
