package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/smr"
)

const testEpoch = 7

// checkGolden compares got with testdata/name, which -rewrite writes.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *rewrite {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("golden mismatch:\n got:\n%s\nwant:\n%s", got, want)
	}
}

// decodeCanonical decodes in as a fuzz target does: nil if it does not
// decode (the error must wrap ErrMalformed), else the evidence, which must
// encode back to exactly in.
func decodeCanonical(t *testing.T, in []byte) *Evidence {
	t.Helper()
	e, err := Unmarshal(in)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return nil
	}
	out, err := Marshal(e)
	if err != nil {
		t.Fatalf("decoded evidence does not encode: %v", err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("not canonical:\n in %x\nout %x", in, out)
	}
	return e
}

// fixture is a 4-member set with deterministic keys n0..n3, plus n9, a key
// outside the set.
type fixture struct {
	t       testing.TB
	priv    map[NodeID]ed25519.PrivateKey
	members *Members
}

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("evidence test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, priv: map[NodeID]ed25519.PrivateKey{}}
	var ms []Member
	for i := range 4 {
		id := NodeID(fmt.Sprintf("n%d", i))
		f.priv[id] = testKey(string(id))
		ms = append(ms, Member{ID: id, PublicKey: f.priv[id].Public().(ed25519.PublicKey)})
	}
	f.priv["n9"] = testKey("n9")
	m, err := NewMembers(ms)
	if err != nil {
		t.Fatal(err)
	}
	f.members = m
	return f
}

func (f *fixture) author(id NodeID) bftlog.Author {
	a, err := bftlog.AuthorOf(f.priv[id].Public().(ed25519.PublicKey))
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

// envelope returns a binary client envelope; valid says whether its client
// signature verifies.
func envelope(t testing.TB, valid bool, body string) []byte {
	t.Helper()
	priv := testKey("client")
	env := smr.Envelope{Client: priv.Public().(ed25519.PublicKey), Seq: 1, Command: []byte(body)}
	env.Sig = ed25519.Sign(priv, env.SignBytes())
	if !valid {
		env.Sig[0] ^= 0xff
	}
	b, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// entry returns a binary smr command entry around envelope(valid, body).
func entry(t testing.TB, valid bool, body string) []byte {
	t.Helper()
	var env smr.Envelope
	if err := env.UnmarshalBinary(envelope(t, valid, body)); err != nil {
		t.Fatal(err)
	}
	ent := smr.NewCommandEntry(1_700_000_000_000_000_000, env)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batch returns a binary smr batch entry of envelope(first, "a") and
// envelope(second, "b").
func batch(t testing.TB, first, second bool) []byte {
	t.Helper()
	envs := make([]smr.Envelope, 2)
	for i, c := range []struct {
		valid bool
		body  string
	}{{first, "a"}, {second, "b"}} {
		if err := envs[i].UnmarshalBinary(envelope(t, c.valid, c.body)); err != nil {
			t.Fatal(err)
		}
	}
	ent := smr.NewBatchEntry(1_700_000_000_000_000_000, envs)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) block(view types.View, proposer NodeID, payload ...[]byte) *types.Block {
	b := &types.Block{View: view, Height: uint64(view), Proposer: types.NodeID(proposer), Payload: payload,
		Justify: types.QC{View: view - 1, Block: types.Hash{1}}}
	b.Sig = ed25519.Sign(f.priv[proposer], types.ProposalSignBytes(testEpoch, view, b.Hash()))
	return b
}

func (f *fixture) vote(view types.View, block types.Hash, voter NodeID) *types.Vote {
	return &types.Vote{View: view, Block: block, Voter: types.NodeID(voter),
		Sig: ed25519.Sign(f.priv[voter], types.VoteSignBytes(testEpoch, view, block))}
}

func (f *fixture) must(e *Evidence, err error) *Evidence {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

func (f *fixture) equivocatingProposals() *Evidence {
	a := f.block(5, "n1", envelope(f.t, true, "a"))
	b := f.block(5, "n1", envelope(f.t, true, "b"))
	return f.must(FromHotStuff(&types.Evidence{Kind: types.EquivocatingProposal, Offender: "n1", View: 5, Blocks: [2]*types.Block{a, b}}, testEpoch))
}

func (f *fixture) doubleVote() *Evidence {
	return f.must(FromHotStuff(&types.Evidence{Kind: types.DuplicateVote, Offender: "n2", View: 9,
		Votes: [2]*types.Vote{f.vote(9, types.Hash{1}, "n2"), f.vote(9, types.Hash{2}, "n2")}}, testEpoch))
}

func (f *fixture) invalidPayload(valid bool) *Evidence {
	b := f.block(6, "n1", envelope(f.t, true, "ok"), envelope(f.t, valid, "bad"))
	return f.must(FromHotStuff(&types.Evidence{Kind: types.InvalidPayload, Offender: "n1", View: 6, Blocks: [2]*types.Block{b}, Command: 1}, testEpoch))
}

func (f *fixture) attest(leader NodeID, epoch, term, seq uint64, payload []byte) *ProposalAttestation {
	a, err := SignProposal(f.priv[leader], leader, epoch, term, seq, payload)
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

func (f *fixture) invalidEntry() *Evidence {
	p := entry(f.t, false, "forged")
	return f.must(NewInvalidEntry(f.attest("n0", testEpoch, 3, 4, p), p))
}

func (f *fixture) leaderEquivocation() *Evidence {
	return f.must(NewLeaderEquivocation(f.attest("n0", testEpoch, 3, 4, entry(f.t, true, "x")), f.attest("n0", testEpoch, 3, 4, entry(f.t, true, "y"))))
}

func (f *fixture) msg(id NodeID, prev bftlog.ID, deps []bftlog.Dep, content string) *bftlog.Message {
	m, err := bftlog.NewMessage(f.priv[id], prev, deps, []byte(content))
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fixture) forkProof(id NodeID) *bftlog.ForkProof {
	root := f.msg(id, bftlog.ID{}, nil, "root")
	return &bftlog.ForkProof{A: f.msg(id, root.ID(), nil, "left"), B: f.msg(id, root.ID(), nil, "right")}
}

func (f *fixture) logFork() *Evidence {
	return f.must(FromForkProof(f.forkProof("n3"), f.members, testEpoch))
}

// invalidProof builds, through a bftlog.Store, the proof that n2 signed a
// message whose dep claims author n1 but points at a message of n3.
func (f *fixture) invalidProof() *bftlog.InvalidProof {
	s, err := bftlog.NewStore(bftlog.DefaultConfig())
	if err != nil {
		f.t.Fatal(err)
	}
	other := f.msg("n3", bftlog.ID{}, nil, "n3's")
	if err := s.Add(other); err != nil {
		f.t.Fatal(err)
	}
	bad := f.msg("n2", bftlog.ID{}, []bftlog.Dep{{Author: f.author("n1"), ID: other.ID()}}, "lie")
	if err := s.Add(bad); err == nil {
		f.t.Fatal("store accepted a dep with the wrong author")
	}
	p, ok := s.InvalidProofOf(f.author("n2"))
	if !ok {
		f.t.Fatal("store kept no invalid proof")
	}
	return p
}

func (f *fixture) invalidMessage() *Evidence {
	return f.must(FromInvalidProof(f.invalidProof(), f.members, testEpoch))
}

func (f *fixture) accusation(accuser, accused NodeID, m Metric, v int64, at int64) *Evidence {
	a, err := SignAccusation(f.priv[accuser], Accusation{Accuser: accuser, Accused: accused, Metric: m, Value: v, Epoch: testEpoch, At: at, Detail: "seen"})
	if err != nil {
		f.t.Fatal(err)
	}
	return f.must(FromAccusation(a))
}

// checkpointVote returns signer's checkpoint vote for (epoch, index) and
// the state hash whose every byte is state.
func (f *fixture) checkpointVote(signer NodeID, epoch, index uint64, state byte) checkpoint.Vote {
	var h [32]byte
	for i := range h {
		h[i] = state
	}
	v, err := checkpoint.Sign(f.priv[signer], string(signer), checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: epoch, Index: index, StateHash: h})
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// checkpointEquivocation: n2 signed states 0x0b and 0x0a at index 1200.
func (f *fixture) checkpointEquivocation() *Evidence {
	return f.must(NewCheckpointEquivocation(f.checkpointVote("n2", testEpoch, 1200, 0x0b), f.checkpointVote("n2", testEpoch, 1200, 0x0a)))
}

// samples returns one valid evidence of every kind and form.
func (f *fixture) samples() map[string]*Evidence {
	return map[string]*Evidence{
		"equivocating-proposals":        f.equivocatingProposals(),
		"double-vote":                   f.doubleVote(),
		"invalid-client-signature/hs":   f.invalidPayload(false),
		"invalid-client-signature/raft": f.invalidEntry(),
		"log-fork":                      f.logFork(),
		"invalid-message":               f.invalidMessage(),
		"leader-equivocation":           f.leaderEquivocation(),
		"accusation":                    f.accusation("n0", "n1", MetricSelectiveOmission, 4, 1_000),
		"checkpoint-equivocation":       f.checkpointEquivocation(),
	}
}
