//go:build byzantine

package engine

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

// TestForgePayload: the forged payload differs from the original only in
// the first command entry, whose client signature no longer verifies.
func TestForgePayload(t *testing.T) {
	_, client, _ := ed25519.GenerateKey(nil)
	env := smr.Envelope{Client: client.Public().(ed25519.PublicKey), Seq: 1, Command: []byte("cmd")}
	env.Sig = ed25519.Sign(client, env.SignBytes())
	e := smr.NewCommandEntry(time.Now().UnixNano(), env)
	ent, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	marker := newReadMarker("n1", 7)
	v := &entryValidator{now: time.Now, maxSkew: time.Second}
	if err := v.Validate(ent); err != nil {
		t.Fatalf("original entry: %v", err)
	}
	out, i, ok := forgePayload([][]byte{marker, ent})
	if !ok || i != 1 {
		t.Fatalf("forgePayload = index %d, ok %v", i, ok)
	}
	if string(out[0]) != string(marker) {
		t.Fatal("the read marker changed")
	}
	if err := v.Validate(out[1]); err == nil {
		t.Fatal("the forged entry validates")
	}
	if _, _, ok := forgePayload([][]byte{marker}); ok {
		t.Fatal("a payload without command entries was forged")
	}
	fe, err := forgedEntry(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(fe); err == nil {
		t.Fatal("the forged entry of a fresh client validates")
	}
	// The detector's rule agrees: both are proofs against their leader.
	for _, cmd := range [][]byte{out[1], fe} {
		if evidence.ValidateClientPayload(cmd) == nil {
			t.Fatal("evidence.ValidateClientPayload accepts a forged entry")
		}
	}
}

// TestTwinVoteIsDuplicateVoteEvidence: a vote and its twin make evidence
// that verifies against the committee.
func TestTwinVoteIsDuplicateVoteEvidence(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	c, err := types.NewCommittee(types.CommitteeConfig{Epoch: 3, Members: []types.Member{{ID: "n1", PublicKey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	v := &types.Vote{View: 9, Block: types.Hash{1, 2, 3}, Voter: "n1"}
	v.Sig = ed25519.Sign(key, types.VoteSignBytes(3, v.View, v.Block))
	twin := twinVote(key, 3, v)
	ev := &types.Evidence{Kind: types.DuplicateVote, Offender: "n1", View: 9, Votes: [2]*types.Vote{v, twin}}
	if err := ev.Verify(c, nil); err != nil {
		t.Fatal(err)
	}
}

// TestGarbageFrames: each garbage frame is refused by the reader's decoder
// or frame limit, or is a vote whose signature fails.
func TestGarbageFrames(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	c, err := types.NewCommittee(types.CommitteeConfig{Epoch: 1, Members: []types.Member{{ID: "n1", PublicKey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	v := &types.Vote{View: 4, Block: types.Hash{9}, Voter: "n1"}
	v.Sig = ed25519.Sign(key, types.VoteSignBytes(1, v.View, v.Block))
	frames := garbageFrames("n1", 4, v, true)
	if len(frames) != 4 {
		t.Fatalf("%d frames", len(frames))
	}
	for i, f := range frames[:3] {
		fr, err := decodeFrame(f[frameHeader], f[frameHeader+1:])
		switch i {
		case 0:
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("frame 0: %v", err)
			}
		case 1:
			if !errors.Is(err, ErrUnknownFrame) {
				t.Fatalf("frame 1: %v", err)
			}
		case 2:
			bad, ok := fr.msg.(*types.Vote)
			if err != nil || !ok {
				t.Fatalf("frame 2: %v %T", err, fr.msg)
			}
			if c.VerifyVote(bad) == nil {
				t.Fatal("the garbage vote verifies")
			}
		}
	}
	if len(frames[3]) != frameHeader+1 {
		t.Fatalf("oversize frame of %d bytes", len(frames[3]))
	}
}
