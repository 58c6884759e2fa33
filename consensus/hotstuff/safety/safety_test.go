package safety

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// chain builds g ─ a(1) ─ b(2) ─ c(3) and a rival c'(3) on b.
func chain(fx *fixture) {
	fx.add("a", "g", 1)
	fx.add("b", "a", 2)
	fx.add("c", "b", 3)
	c2 := fx.add("c'", "b", 3)
	c2.Payload = [][]byte{[]byte("rival")}
}

// TestVoteRepeatsAndRefuses: asked again for the block it voted for, Rules
// returns the same vote without saving; asked for another block in that
// view, it refuses with the numbers (Aptos order: repeat before rules).
func TestVoteRepeatsAndRefuses(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	store := NewMemStore()
	r := fx.rules(store, ThreeChain{})
	v1, err := r.Vote(fx.cand("c", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.c.VerifyVote(v1); err != nil {
		t.Fatalf("vote does not verify: %v", err)
	}
	saves := store.Saves()
	v2, err := r.Vote(fx.cand("c", nil))
	if err != nil || !bytes.Equal(v1.Sig, v2.Sig) || v1.Block != v2.Block {
		t.Fatalf("repeat: %v", err)
	}
	if store.Saves() != saves {
		t.Fatal("repeating a vote saved again")
	}
	_, err = r.Vote(fx.cand("c'", nil))
	var ns *NotSafeToVoteError
	if !errors.As(err, &ns) || ns.View != 3 || ns.LastVoted != 3 {
		t.Fatalf("second block in view 3: err = %v", err)
	}
	if d := r.Data(); d.LastVotedView != 3 || d.LastVote.Block != fx.blocks["c"].Hash() || d.HighQC.View != 2 {
		t.Fatalf("safety data after vote: %+v", d)
	}
}

// TestNothingLeavesBeforeSave: when Save fails no vote, timeout or
// proposal is returned and the state does not move.
func TestNothingLeavesBeforeSave(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	store := NewMemStore()
	r := fx.rules(store, ThreeChain{})
	disk := errors.New("disk full")
	store.FailSaves(disk)
	if v, err := r.Vote(fx.cand("c", nil)); v != nil || !errors.Is(err, disk) {
		t.Fatalf("vote with failing store: %v, %v", v, err)
	}
	if to, err := r.SignTimeout(4, fx.qcFor("b"), nil); to != nil || !errors.Is(err, disk) {
		t.Fatalf("timeout with failing store: %v, %v", to, err)
	}
	p := fx.add("p", "c", 4)
	p.Proposer = "n3"
	if sig, err := r.SignProposal(p); sig != nil || !errors.Is(err, disk) {
		t.Fatalf("proposal with failing store: %v", err)
	}
	if d := r.Data(); d.LastVotedView != 0 || d.LastVote != nil || d.LastProposal != nil || d.LastTimeout != nil {
		t.Fatalf("state moved without a durable save: %+v", d)
	}
	store.FailSaves(nil)
	if _, err := r.Vote(fx.cand("c", nil)); err != nil {
		t.Fatalf("after the store recovered: %v", err)
	}
}

// TestRestartNeverVotesTwice: a replica restarted from its file store
// repeats its vote for view 3 and refuses the rival block, and refuses a
// second proposal for a view it proposed in.
func TestRestartNeverVotesTwice(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	path := filepath.Join(t.TempDir(), "safety")
	r := fx.rules(NewFileStore(path), ThreeChain{})
	v1, err := r.Vote(fx.cand("c", nil))
	if err != nil {
		t.Fatal(err)
	}
	p := fx.add("p", "c", 4)
	psig, err := r.SignProposal(p)
	if err != nil {
		t.Fatal(err)
	}

	r2 := fx.rules(NewFileStore(path), ThreeChain{}) // the restart
	if _, err := r2.Vote(fx.cand("c'", nil)); err == nil {
		t.Fatal("restarted replica voted for a second block in view 3")
	}
	v2, err := r2.Vote(fx.cand("c", nil))
	if err != nil || !bytes.Equal(v1.Sig, v2.Sig) {
		t.Fatalf("restarted replica does not repeat its vote: %v", err)
	}
	p2 := *p
	p2.Payload = [][]byte{[]byte("other")}
	var eq *EquivocationError
	if _, err := r2.SignProposal(&p2); !errors.As(err, &eq) || eq.View != 4 {
		t.Fatalf("second proposal for view 4 after restart: %v", err)
	}
	if sig, err := r2.SignProposal(p); err != nil || !bytes.Equal(sig, psig) {
		t.Fatalf("same proposal after restart: %v", err)
	}
	older := fx.add("older", "b", 3)
	if _, err := r2.SignProposal(older); !errors.As(err, &eq) {
		t.Fatalf("proposal for an older view: %v", err)
	}
}

// TestTimeoutRules: a timeout raises the last voted view (no vote in that
// view any more), never carries a lower QC than voted on, repeats itself,
// and is refused for older views.
func TestTimeoutRules(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	fx.add("d", "c", 4)
	r := fx.rules(NewMemStore(), TwoChain{})
	if _, err := r.Vote(fx.cand("c", nil)); err != nil { // high QC is now QC(b)
		t.Fatal(err)
	}
	to, err := r.SignTimeout(4, fx.qcFor("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if to.HighQC.View != 2 {
		t.Fatalf("timeout carries QC view %d, want 2 (never below what it voted on)", to.HighQC.View)
	}
	if err := fx.c.VerifyTimeout(to); err != nil {
		t.Fatal(err)
	}
	again, err := r.SignTimeout(4, fx.qcFor("b"), nil)
	if err != nil || !bytes.Equal(again.Sig, to.Sig) {
		t.Fatalf("repeat timeout: %v", err)
	}
	if _, err := r.Vote(fx.cand("d", nil)); err == nil {
		t.Fatal("voted in a view it had timed out")
	}
	var nt *NotSafeToTimeoutError
	if _, err := r.SignTimeout(3, fx.qcFor("b"), nil); !errors.As(err, &nt) || nt.LastVoted != 4 {
		t.Fatalf("timeout for an older view: %v", err)
	}
	higher, err := r.SignTimeout(4, fx.qcFor("c"), nil)
	if err != nil || higher.HighQC.View != 3 {
		t.Fatalf("timeout with a newer QC: %v", err)
	}
}

// TestVoteRejectsBadCandidates: malformed candidates and forged
// certificates are errors, not votes.
func TestVoteRejectsBadCandidates(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	r := fx.rules(NewMemStore(), ThreeChain{})
	wrongParent := fx.cand("c", nil)
	wrongParent.Certified = fx.blocks["a"]
	if _, err := r.Vote(wrongParent); !errors.Is(err, ErrInvalidCandidate) {
		t.Fatalf("wrong certified parent: %v", err)
	}
	forged := *fx.blocks["c"]
	forged.Justify.Sigs = append([]types.PartialSig(nil), forged.Justify.Sigs...)
	forged.Justify.Sigs[0].Sig = bytes.Clone(forged.Justify.Sigs[0].Sig)
	forged.Justify.Sigs[0].Sig[3] ^= 0xff
	c := fx.cand("c", nil)
	c.Block = &forged
	if _, err := r.Vote(c); !errors.Is(err, types.ErrBadSignature) {
		t.Fatalf("forged justify: %v", err)
	}
	c = fx.cand("c", fx.tc(1, "g"))
	if _, err := r.Vote(c); !errors.Is(err, ErrInvalidCandidate) {
		t.Fatalf("TC for another view: %v", err)
	}
	notMine := *fx.blocks["c"]
	notMine.Proposer = "n1"
	if _, err := r.SignProposal(&notMine); !errors.Is(err, ErrInvalidCandidate) {
		t.Fatalf("signing someone else's proposal: %v", err)
	}
}

// runStoreSuite is the conformance suite every Store passes.
func runStoreSuite(t *testing.T, newStore func() Store) {
	fx := newFixture(t)
	chain(fx)
	s := newStore()
	d, err := s.Load()
	if err != nil || d.LastVotedView != 0 || d.LastVote != nil {
		t.Fatalf("fresh store: %+v, %v", d, err)
	}
	v := &types.Vote{View: 3, Block: fx.blocks["c"].Hash(), Voter: "n3", Sig: []byte("sig")}
	to := &types.Timeout{View: 4, HighQC: fx.qcFor("b"), Sender: "n3", Sig: []byte("t")}
	want := SafetyData{Epoch: 1, LastVotedView: 4, LastVote: v, LockedQC: fx.qcFor("a"), HighQC: fx.qcFor("b"),
		LastTimeout: to, LastProposal: &ProposalRecord{View: 2, Block: fx.blocks["b"].Hash(), Sig: []byte("p")}}
	for range 2 {
		if err := s.Save(want); err != nil {
			t.Fatal(err)
		}
		got, err := newStoreReopen(s).Load()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(MarshalSafetyData(got), MarshalSafetyData(want)) {
			t.Fatalf("loaded %+v, saved %+v", got, want)
		}
		want.LastVotedView++
	}
}

// newStoreReopen returns a store reading what s wrote (a new FileStore on
// the same path, or s itself).
func newStoreReopen(s Store) Store {
	if f, ok := s.(*FileStore); ok {
		return NewFileStore(f.Path())
	}
	return s
}

func TestStoreSuite(t *testing.T) {
	t.Run("mem", func(t *testing.T) { runStoreSuite(t, func() Store { return NewMemStore() }) })
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		runStoreSuite(t, func() Store { return NewFileStore(filepath.Join(dir, "s")) })
	})
}

// TestFileStoreCorruption: damage is reported as a *CorruptionError and a
// Rules cannot be built over it.
func TestFileStoreCorruption(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	r := fx.rules(NewFileStore(good), ThreeChain{})
	if _, err := r.Vote(fx.cand("c", nil)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(raw); b[i] ^= 0x40; return b }
	badPayload := frame([]byte{dataVersion, 1, 2})
	cases := map[string][]byte{
		"empty":             {},
		"short header":      raw[:7],
		"bad magic":         flip(0),
		"length mismatch":   flip(5),
		"checksum mismatch": flip(len(raw) - 1),
		"truncated tail":    raw[:len(raw)-3],
		"undecodable":       badPayload,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewFileStore(p).Load()
			if !IsCorruption(err) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, want a *CorruptionError", err)
			}
			if _, err := New(Config{Store: NewFileStore(p), Signer: fx.signers["n3"], Committee: fx.c}); !IsCorruption(err) {
				t.Fatalf("New over a corrupt store: %v", err)
			}
		})
	}
}

// TestFileStoreCopies: a Save interrupted at any point leaves data that
// loads as that of the last Save that returned or of the interrupted one;
// the older single-file format still loads; saves never reuse a seq.
func TestFileStoreCopies(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	fs := NewFileStore(p)
	if _, err := fs.Load(); err != nil {
		t.Fatal(err)
	}
	v := func(n types.View) SafetyData { return SafetyData{Epoch: 1, LastVotedView: n} }
	for n := range types.View(3) {
		if err := fs.Save(v(n + 1)); err != nil {
			t.Fatal(err)
		}
	}
	a, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p + ".2")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || len(a)%copyAlign != 0 {
		t.Fatalf("the copies differ or are not padded (%d and %d bytes)", len(a), len(b))
	}
	// A copy of the previous Save (view 2), as a crash before the third
	// would have left it, and a copy torn by a crash while it was written.
	prev := frameCopy(2, MarshalSafetyData(v(2)))
	torn := append(bytes.Clone(a[:40]), make([]byte, len(a)-40)...)
	load := func(first, second []byte) (SafetyData, error) {
		t.Helper()
		q := NewFileStore(filepath.Join(t.TempDir(), "s"))
		for i, content := range [][]byte{first, second} {
			if content == nil {
				continue
			}
			if err := os.WriteFile(q.copyPath(i), content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return q.Load()
	}
	cases := []struct {
		name          string
		first, second []byte
		want          types.View // 0: corruption
	}{
		{"both written", a, b, 3},
		{"first torn", torn, prev, 2},
		{"first written, second not yet", a, prev, 3},
		{"second torn", a, torn, 3},
		{"second missing", a, nil, 3},
		{"first missing", nil, b, 3},
		{"both torn", torn, torn, 0},
		{"first torn, second missing", torn, nil, 0},
		{"single-file format", frame(MarshalSafetyData(v(7))), nil, 7},
	}
	for _, c := range cases {
		d, err := load(c.first, c.second)
		if c.want == 0 {
			if !IsCorruption(err) {
				t.Errorf("%s: Load = %+v, %v; want a *CorruptionError", c.name, d, err)
			}
			continue
		}
		if err != nil || d.LastVotedView != c.want {
			t.Errorf("%s: Load = view %d, %v; want view %d", c.name, d.LastVotedView, err, c.want)
		}
	}
	// A store that saves without loading first continues the seq, so its
	// copies are not taken for older ones.
	if err := NewFileStore(p).Save(v(9)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".2", a, 0o600); err != nil { // the second copy as of view 3
		t.Fatal(err)
	}
	if d, err := NewFileStore(p).Load(); err != nil || d.LastVotedView != 9 {
		t.Errorf("after a Save without Load: view %d, %v; want 9", d.LastVotedView, err)
	}
	// Saving over the single-file format replaces it.
	q := filepath.Join(dir, "old")
	if err := os.WriteFile(q, frame(MarshalSafetyData(v(7))), 0o600); err != nil {
		t.Fatal(err)
	}
	old := NewFileStore(q)
	if d, err := old.Load(); err != nil || d.LastVotedView != 7 {
		t.Fatalf("single-file format: view %d, %v", d.LastVotedView, err)
	}
	if err := old.Save(v(8)); err != nil {
		t.Fatal(err)
	}
	if d, err := NewFileStore(q).Load(); err != nil || d.LastVotedView != 8 {
		t.Errorf("after saving over the single-file format: view %d, %v; want 8", d.LastVotedView, err)
	}
}

func TestNewRejects(t *testing.T) {
	fx := newFixture(t)
	store := NewMemStore()
	if err := store.Save(SafetyData{Epoch: 9, LastVotedView: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Store: store, Signer: fx.signers["n3"], Committee: fx.c}); !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("other epoch: %v", err)
	}
	outsider := types.NewEd25519Signer("zz", make([]byte, 64))
	if _, err := New(Config{Store: NewMemStore(), Signer: outsider, Committee: fx.c}); err == nil {
		t.Fatal("accepted a signer outside the committee")
	}
}

func FuzzUnmarshalSafetyData(f *testing.F) {
	fx := newFixture(f)
	chain(fx)
	f.Add(MarshalSafetyData(SafetyData{}))
	f.Add(MarshalSafetyData(SafetyData{Epoch: 1, LastVotedView: 3, LockedQC: fx.qcFor("a"), HighQC: fx.qcFor("b"),
		LastVote: &types.Vote{View: 3, Voter: "n1", Sig: []byte{1}}, LastProposal: &ProposalRecord{View: 1}}))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := UnmarshalSafetyData(in)
		if err != nil {
			return
		}
		if out := MarshalSafetyData(d); !bytes.Equal(out, in) {
			t.Fatalf("not canonical")
		}
	})
}

func FuzzFileFrame(f *testing.F) {
	f.Add(frame(MarshalSafetyData(SafetyData{Epoch: 1})))
	f.Add([]byte("HSSD"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, reason := unframe(in)
		if reason == "" && !bytes.Equal(frame(p), in) {
			t.Fatal("frame not canonical")
		}
	})
}

// TestLastTCKept: the TC that brought the replica into its last voted view
// is stored with the vote or timeout (so a restarted replica can show peers
// why it is in that view) and dropped once the replica moves on.
func TestLastTCKept(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	fx.add("q", "b", 5)
	path := filepath.Join(t.TempDir(), "s")
	r := fx.rules(NewFileStore(path), TwoChain{})
	tc4 := fx.tc(4, "b")
	if _, err := r.Vote(fx.cand("q", tc4)); err != nil {
		t.Fatal(err)
	}
	if d := r.Data(); d.LastTC == nil || d.LastTC.View != 4 {
		t.Fatalf("vote via TC did not keep it: %+v", d.LastTC)
	}
	tc5 := fx.tc(5, "b")
	if _, err := r.SignTimeout(6, fx.qcFor("b"), tc5); err != nil {
		t.Fatal(err)
	}
	r2 := fx.rules(NewFileStore(path), TwoChain{})
	if d := r2.Data(); d.LastTC == nil || d.LastTC.View != 5 || d.LastVotedView != 6 {
		t.Fatalf("after restart: last TC %v, last voted %d", d.LastTC, d.LastVotedView)
	}
	if _, err := r2.SignTimeout(7, fx.qcFor("b"), nil); err != nil {
		t.Fatal(err)
	}
	if d := r2.Data(); d.LastTC != nil {
		t.Fatal("a TC for an older view was kept")
	}
	if _, err := r2.SignTimeout(8, fx.qcFor("b"), tc4); !errors.Is(err, ErrInvalidCandidate) {
		t.Fatalf("TC for the wrong view: %v", err)
	}
}

// TestProposeAndVote: the leader's proposal and its vote for it are saved
// in one write; after a restart neither a second proposal nor a vote for a
// rival block is signed in that view; when Save fails, neither leaves;
// when the vote rule refuses, only the proposal is signed.
func TestProposeAndVote(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	path := filepath.Join(t.TempDir(), "safety")
	mem := NewMemStore()
	r := fx.rules(mem, ThreeChain{})
	fail := errors.New("disk full")
	mem.FailSaves(fail)
	if sig, v, err := r.ProposeAndVote(fx.cand("c", nil)); sig != nil || v != nil || !errors.Is(err, fail) {
		t.Fatalf("with a failing store: %v %v %v", sig, v, err)
	}
	if d := r.Data(); d.LastProposal != nil || d.LastVote != nil {
		t.Fatalf("state moved without a durable save: %+v", d)
	}
	mem.FailSaves(nil)

	r = fx.rules(NewFileStore(path), ThreeChain{})
	counted := &countingStore{Store: NewFileStore(path)}
	r.store = counted
	sig, v, err := r.ProposeAndVote(fx.cand("c", nil))
	if err != nil || v == nil {
		t.Fatalf("propose and vote: %v, vote %v", err, v)
	}
	if counted.saves != 1 {
		t.Fatalf("%d saves, want 1", counted.saves)
	}
	if err := fx.c.VerifyVote(v); err != nil || v.Block != fx.blocks["c"].Hash() {
		t.Fatalf("vote: %v", err)
	}
	if !ed25519.Verify(fx.c.PublicKey("n3"), types.ProposalSignBytes(fx.c.Epoch(), 3, fx.blocks["c"].Hash()), sig) {
		t.Fatal("proposal signature does not verify")
	}

	r2 := fx.rules(NewFileStore(path), ThreeChain{}) // the restart
	var eq *EquivocationError
	if _, err := r2.SignProposal(fx.blocks["c'"]); !errors.As(err, &eq) {
		t.Fatalf("second proposal for view 3 after restart: %v", err)
	}
	var ns *NotSafeToVoteError
	if _, err := r2.Vote(fx.cand("c'", nil)); !errors.As(err, &ns) {
		t.Fatalf("vote for the rival after restart: %v", err)
	}
	if v2, err := r2.Vote(fx.cand("c", nil)); err != nil || !bytes.Equal(v2.Sig, v.Sig) {
		t.Fatalf("the vote is not repeated after restart: %v", err)
	}

	// A replica that voted in view 4 already proposes there without a
	// vote (the rule refuses a second block in the view).
	fx.add("d", "c", 4)
	d2 := fx.add("d'", "c", 4)
	d2.Payload = [][]byte{[]byte("rival")}
	if _, err := r2.Vote(fx.cand("d", nil)); err != nil {
		t.Fatal(err)
	}
	sig, v, err = r2.ProposeAndVote(fx.cand("d'", nil))
	if err != nil || sig == nil || v != nil {
		t.Fatalf("proposal after a vote in its view: sig %v vote %v err %v", sig != nil, v, err)
	}
}

// countingStore counts Saves.
type countingStore struct {
	Store
	saves int
}

func (s *countingStore) Save(d SafetyData) error {
	s.saves++
	return s.Store.Save(d)
}

// keepingStore keeps every SafetyData handed to Save, uncopied, with its
// encoding at the time.
type keepingStore struct {
	Store
	kept []SafetyData
	enc  [][]byte
}

func (s *keepingStore) Save(d SafetyData) error {
	s.kept = append(s.kept, d)
	s.enc = append(s.enc, MarshalSafetyData(d))
	return s.Store.Save(d)
}

// TestSavedDataNeverChanged: what Rules hands to Save stays as it was
// through later signing and callers setting the fields of the votes and
// timeouts they get, or the bytes of proposal signatures (Store's
// contract: a Store may keep d uncopied).
func TestSavedDataNeverChanged(t *testing.T) {
	fx := newFixture(t)
	chain(fx)
	fx.add("d", "c", 4)
	fx.add("e", "d", 5)
	store := &keepingStore{Store: NewMemStore()}
	r := fx.rules(store, ThreeChain{})
	scribble := func(v *types.Vote, to *types.Timeout, sig []byte) {
		if v != nil {
			v.View, v.Block, v.Sig = 99, types.Hash{9}, nil
		}
		if to != nil {
			to.View, to.HighQC, to.LastTC, to.Sig = 99, types.QC{}, &types.TC{View: 98}, nil
		}
		if sig != nil {
			sig[0] ^= 0xFF
		}
	}
	sig, err := r.SignProposal(fx.blocks["c"])
	if err != nil {
		t.Fatal(err)
	}
	scribble(nil, nil, sig)
	v, err := r.Vote(fx.cand("c", nil))
	if err != nil {
		t.Fatal(err)
	}
	scribble(v, nil, nil)
	for _, qc := range []string{"b", "c"} {
		to, err := r.SignTimeout(4, fx.qcFor(qc), nil)
		if err != nil {
			t.Fatal(err)
		}
		scribble(nil, to, nil)
	}
	sig, v, err = r.ProposeAndVote(fx.cand("e", nil))
	if err != nil || v == nil {
		t.Fatalf("propose and vote: %v, vote %v", err, v)
	}
	scribble(v, nil, sig)
	if len(store.kept) != 5 {
		t.Fatalf("%d saves, want 5", len(store.kept))
	}
	for i, d := range store.kept {
		if !bytes.Equal(MarshalSafetyData(d), store.enc[i]) {
			t.Fatalf("save %d changed after it was handed over", i)
		}
	}
}
