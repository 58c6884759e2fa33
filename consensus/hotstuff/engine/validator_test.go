package engine

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// TestEntryValidator: the rule a replica applies to every command of a
// proposal before voting (one case per bullet of entryValidator's doc).
func TestEntryValidator(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	admin, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	g := smr.Genesis{AdminKeys: []ed25519.PublicKey{admin.Public().(ed25519.PublicKey)}}.WithDefaults()
	ownGenesis := mustEntry(t, smr.NewGenesisEntry(0, g))
	v := &entryValidator{now: func() time.Time { return now }, maxSkew: 5 * time.Second, genesis: ownGenesis}

	env, err := smr.Sign(admin, 1, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	forged := *env
	forged.Command = []byte(`{"op":"set_config","key":"k","value":"w"}`)
	other := smr.Genesis{AdminKeys: []ed25519.PublicKey{make(ed25519.PublicKey, 32)}}.WithDefaults()
	r, err := smr.SignRestore(admin, "/v1/admin/snapshot/restore", now.Unix(), []byte("snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	badRestore := *r
	badRestore.Snapshot = []byte("other snapshot")

	cases := []struct {
		name string
		cmd  []byte
		want string // "" = valid; else a substring of the error
		code smr.Code
	}{
		{"signed command", mustEntry(t, smr.NewCommandEntry(now.UnixNano(), *env)), "", ""},
		{"forged command", mustEntry(t, smr.NewCommandEntry(now.UnixNano(), forged)), "does not verify", smr.CodeBadSignature},
		{"time at the skew bound", mustEntry(t, smr.NewCommandEntry(now.Add(5*time.Second).UnixNano(), *env)), "", ""},
		{"time beyond the skew bound", mustEntry(t, smr.NewCommandEntry(now.Add(6*time.Second).UnixNano(), *env)), "ahead of this replica's clock", smr.CodeMalformed},
		{"time long past", mustEntry(t, smr.NewCommandEntry(now.Add(-time.Hour).UnixNano(), *env)), "", ""},
		{"own genesis", ownGenesis, "", ""},
		{"other genesis", mustEntry(t, smr.NewGenesisEntry(0, other)), "differs from this replica's genesis", smr.CodeMalformed},
		{"signed restore", mustEntry(t, smr.NewRestoreEntry(now.UnixNano(), *r)), "", ""},
		{"altered restore", mustEntry(t, smr.NewRestoreEntry(now.UnixNano(), badRestore)), "does not verify", smr.CodeBadSignature},
		{"read marker", newReadMarker("node-1", 7), "", ""},
		{"truncated read marker", newReadMarker("node-1", 7)[:6], "read marker", smr.CodeMalformed},
		{"garbage", []byte{9, 9, 9}, "unknown", smr.CodeMalformed},
	}
	for _, c := range cases {
		err := v.Validate(c.cmd)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: rejected: %v", c.name, err)
			}
			continue
		}
		var se *smr.Error
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &se) || se.Code != c.code {
			t.Errorf("%s: error %v, want %s containing %q", c.name, err, c.code, c.want)
		}
	}
	// A validated command's signature is remembered, but the verdict does
	// not change: a time beyond the bound is still refused for the same
	// bytes.
	signed := mustEntry(t, smr.NewCommandEntry(now.UnixNano(), *env))
	now = now.Add(-time.Minute)
	if err := v.Validate(signed); err == nil {
		t.Error("a cached command from the future (after the clock moved back) was accepted")
	}
}

func mustEntry(t *testing.T, e smr.Entry) []byte {
	t.Helper()
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPrepareBatch: prepare verifies a batch of commands in which some are
// forged, undecodable or not commands at all, without deciding anything:
// afterwards Validate accepts exactly the valid ones, as it would have
// without prepare.
func TestPrepareBatch(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	v := &entryValidator{now: func() time.Time { return now }, maxSkew: 5 * time.Second}
	var cmds [][]byte
	var want []bool
	for i := range 12 {
		key, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		env, err := smr.Sign(key, uint64(i+1), smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		switch i % 4 {
		case 1:
			env.Sig[5] ^= 1
			ok = false
		case 2:
			env.Seq++ // signed for another seq
			ok = false
		}
		cmds = append(cmds, mustEntry(t, smr.NewCommandEntry(now.UnixNano(), *env)))
		want = append(want, ok)
	}
	cmds = append(cmds, []byte("not an entry"), newReadMarker("node-1", 1))
	want = append(want, false, true)
	v.prepare(cmds)
	for i, c := range cmds {
		if err := v.Validate(c); (err == nil) != want[i] {
			t.Errorf("command %d: Validate after prepare = %v, want valid %v", i, err, want[i])
		}
	}
}

// TestStoreRoundTrip: accepted and committed blocks, the root QC and a
// snapshot survive a reopen; forks below the committed height are
// forgotten; ancestry walks parents; a store of another committee is
// refused.
func TestStoreRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocks.db")
	genesis := types.NewGenesis([]byte("g"))
	gh := genesis.Hash()
	s, err := openStore(path, gh)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(parent types.Hash, view types.View, height uint64, payload ...string) *types.Block {
		b := &types.Block{Parent: parent, View: view, Height: height, Proposer: "n1", Justify: types.QC{View: view - 1, Block: parent}}
		for _, p := range payload {
			b.Payload = append(b.Payload, []byte(p))
		}
		return b
	}
	b1 := mk(gh, 1, 1, "a", "b")
	b2 := mk(b1.Hash(), 2, 2)
	fork := mk(b1.Hash(), 3, 2, "f")
	b3 := mk(b2.Hash(), 4, 3, "c")
	if _, err := s.save([]*types.Block{b1, b2, fork, b3}, nil, types.QC{}); err != nil {
		t.Fatal(err)
	}
	qc := types.QC{View: 2, Block: b2.Hash()}
	committed := []committedBlock{
		{block: b1, entry: chainEntry{height: 1, hash: b1.Hash(), first: 1, last: 2}},
		{block: b2, entry: chainEntry{height: 2, hash: b2.Hash(), first: 3, last: 2}},
	}
	if _, err := s.save(nil, committed, qc); err != nil {
		t.Fatal(err)
	}
	if err := s.saveSnapshot(storedSnapshot{height: 1, index: 2, data: []byte("state")}); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := openStore(path, types.Hash{1}); !errors.Is(err, ErrWrongCommittee) {
		t.Fatalf("opening with another genesis: %v", err)
	}
	s, err = openStore(path, gh)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	st, err := s.load(10)
	if err != nil {
		t.Fatal(err)
	}
	if st.root == nil || st.root.Hash() != b2.Hash() || st.rootQC.Block != b2.Hash() || st.last.last != 2 || st.last.height != 2 {
		t.Fatalf("loaded root %v, QC %v, last %+v", st.root, st.rootQC, st.last)
	}
	if len(st.pending) != 1 || st.pending[0].Hash() != b3.Hash() {
		t.Fatalf("pending = %v, want only b3", st.pending)
	}
	if len(st.recent) != 2 || st.recent[0].Hash() != b1.Hash() || st.recent[1].Hash() != b2.Hash() {
		t.Fatalf("recent = %v", st.recent)
	}
	if b, err := s.block(fork.Hash()); err != nil || b != nil {
		t.Errorf("the dead fork is still stored: %v %v", b, err)
	}
	anc, err := s.ancestry(b3.Hash(), 10, 1<<20)
	if err != nil || len(anc) != 3 || anc[2].Hash() != b1.Hash() {
		t.Fatalf("ancestry of b3 = %v, %v", anc, err)
	}
	if anc, _ := s.ancestry(b3.Hash(), 10, 1); len(anc) != 1 {
		t.Errorf("ancestry with a 1-byte budget returned %d blocks, want 1", len(anc))
	}
	snap, err := s.snapshot()
	if err != nil || snap == nil || snap.height != 1 || snap.index != 2 || string(snap.data) != "state" {
		t.Fatalf("snapshot = %+v, %v", snap, err)
	}
	var heights []uint64
	if err := s.replay(1, func(e chainEntry, b *types.Block) error {
		heights = append(heights, e.height)
		return nil
	}); err != nil || len(heights) != 1 || heights[0] != 2 {
		t.Fatalf("replay above height 1 visited %v, %v", heights, err)
	}
}

// TestRateWindow: at most limit events per one-second window.
func TestRateWindow(t *testing.T) {
	var w rateWindow
	now := time.Unix(100, 0)
	for i := range 3 {
		if !w.allow(now, 3) {
			t.Fatalf("event %d refused", i)
		}
	}
	if w.allow(now.Add(500*time.Millisecond), 3) {
		t.Fatal("fourth event in the window allowed")
	}
	if !w.allow(now.Add(time.Second), 3) {
		t.Fatal("event in the next window refused")
	}
}

// TestCommandKey: the entries replicas make of one request (each with its
// own time) share a key; other requests, and anything but a command entry,
// are keyed by their bytes.
func TestCommandKey(t *testing.T) {
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env, err := smr.Sign(key, 1, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := smr.Sign(key, 2, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	a := mustEntry(t, smr.NewCommandEntry(1, *env))
	b := mustEntry(t, smr.NewCommandEntry(2, *env))
	if bytes.Equal(a, b) || commandKey(a) != commandKey(b) {
		t.Error("two entries of one envelope at different times have different keys")
	}
	if commandKey(a) == commandKey(mustEntry(t, smr.NewCommandEntry(1, *other))) {
		t.Error("entries of different envelopes share a key")
	}
	if commandKey(a) == types.CommandHash(a) {
		t.Error("a command entry is keyed by its bytes")
	}
	r, err := smr.SignRestore(key, "/v1/admin/snapshot/restore", 1, []byte("snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]byte{mustEntry(t, smr.NewRestoreEntry(1, *r)), newReadMarker("node-1", 3), {0x01}} {
		if commandKey(cmd) != types.CommandHash(cmd) {
			t.Errorf("%x... is not keyed by its bytes", cmd[:1])
		}
	}
}
