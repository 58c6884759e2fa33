package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/internal/testlog"
)

// ckptDetector gives replica r of f a detector over the fixture's member
// keys (the checkpoint keys) with a fake engine, and returns both.
func (f *ckptFixture) detector(t *testing.T, r *ckptReplica) (*detector, *fakeQuarantineEngine) {
	t.Helper()
	var ms []evidence.Member
	peers := map[evidence.NodeID]string{}
	for _, o := range f.replicas {
		ms = append(ms, evidence.Member{ID: evidence.NodeID(o.id), PublicKey: o.c.key.Public().(ed25519.PublicKey)})
		if o.id != r.id {
			peers[evidence.NodeID(o.id)] = "addr-" + o.id
		}
	}
	d, err := newDetector(detectorConfig{
		Self: evidence.NodeID(r.id), Key: r.c.key, Epoch: cftEpoch, Members: ms, PeerAddrs: peers,
		Score: score.Default(), DataDir: t.TempDir(), Logger: testlog.New(t, slog.LevelWarn),
		Registry: prometheus.NewRegistry(),
		Deliver:  func(context.Context, string, []byte) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	eng := &fakeQuarantineEngine{}
	d.attach(eng)
	r.c.n.det = d
	return d, eng
}

// twoStates returns two checkpoint statements of the cft epoch for index
// 10, with state hashes 0x0a and 0x0b.
func twoStates() (a, b checkpoint.Statement) {
	a = checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: cftEpoch, Index: 10, StateHash: [32]byte{0xa}}
	b = a
	b.StateHash = [32]byte{0xb}
	return a, b
}

// sign returns replica i's vote for st.
func (f *ckptFixture) sign(t *testing.T, i int, st checkpoint.Statement) checkpoint.Vote {
	t.Helper()
	v, err := checkpoint.Sign(f.replicas[i].c.key, f.replicas[i].id, st)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// publicMembers is the member set built from the public keys alone, what
// any third party verifies evidence against.
func (f *ckptFixture) publicMembers(t *testing.T) *evidence.Members {
	t.Helper()
	var ms []evidence.Member
	for _, r := range f.replicas {
		ms = append(ms, evidence.Member{ID: evidence.NodeID(r.id), PublicKey: r.c.key.Public().(ed25519.PublicKey)})
	}
	m, err := evidence.NewMembers(ms)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// requireProven checks that d holds exactly one checkpoint-equivocation
// record, against offender, that verifies against the public member keys
// alone; that offender is quarantined and its score is 1; that the engine
// was given the list; and that the record waits to be relayed to every
// other member.
func requireProven(t *testing.T, f *ckptFixture, d *detector, eng *fakeQuarantineEngine, offender string) *evidence.Evidence {
	t.Helper()
	var proofs []*evidence.Evidence
	for _, e := range d.evidenceList() {
		if e.Kind == evidence.KindCheckpointEquivocation {
			proofs = append(proofs, e)
		}
	}
	if len(proofs) != 1 {
		t.Fatalf("%d checkpoint-equivocation records, want 1 (all: %v)", len(proofs), d.evidenceList())
	}
	e := proofs[0]
	if e.Offender != evidence.NodeID(offender) || !e.Irrefutable() {
		t.Fatalf("evidence %s", e)
	}
	if err := evidence.Verify(e, f.publicMembers(t)); err != nil {
		t.Fatalf("evidence does not verify against the member keys: %v", err)
	}
	if !d.manager.IsQuarantined(evidence.NodeID(offender)) {
		t.Fatalf("%s not quarantined; list %v", offender, d.manager.IDs())
	}
	if got := eng.last(); !slices.Equal(got, []types.NodeID{types.NodeID(offender)}) {
		t.Fatalf("engine quarantine list %v, want [%s]", got, offender)
	}
	d.mu.Lock()
	dec := d.book.Decide(d.clock())
	d.mu.Unlock()
	for _, s := range dec.Scores {
		if s.Node == evidence.NodeID(offender) && s.Score != 1 {
			t.Fatalf("score of %s = %v, want 1", offender, s.Score)
		}
	}
	for peer, r := range d.relays {
		if id, _, ok := r.next(); !ok || id != e.ID() {
			t.Fatalf("evidence not queued for %s", peer)
		}
	}
	if stored, err := d.store.IDs(); err != nil || !slices.Contains(stored, e.ID()) {
		t.Fatalf("evidence not stored: %v %v", stored, err)
	}
	return e
}

// TestCheckpointConflictQuarantines: a correct collector fed two
// conflicting signed votes of n4 for one index (the second refused as a
// conflict) turns them into checkpoint-equivocation evidence that verifies
// against the member keys alone, stores and relays it, and quarantines n4
// at once: one proof, no accusers needed. The conflicting member is not
// also reported as a state divergence.
func TestCheckpointConflictQuarantines(t *testing.T) {
	f := newCkptFixture(t, 5)
	r := f.replicas[0]
	d, eng := f.detector(t, r)
	ctx := context.Background()
	a, b := twoStates()
	for i := range 3 {
		if _, err := r.c.addVote(ctx, f.sign(t, i, a)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.c.addVote(ctx, f.sign(t, 3, b)); err != nil {
		t.Fatal(err)
	}
	if len(d.evidenceList()) != 0 {
		t.Fatal("evidence before any equivocation")
	}
	drainDivergences(d)
	_, err := r.c.addVote(ctx, f.sign(t, 3, a))
	var ce *checkpoint.ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("second vote of n4: %v, want a conflict", err)
	}
	e := requireProven(t, f, d, eng, "n4")
	if got := drainDivergences(d); len(got) != 0 {
		t.Errorf("the proven member was also reported as diverging: %v", got)
	}
	// The record travels: a peer's detector takes its canonical encoding
	// and reaches the same verdict.
	d2, eng2 := f.detector(t, f.replicas[1])
	b2, err := evidence.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	relayed, err := evidence.Unmarshal(b2)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := d2.handle(ctx, relayed, "n1"); res != resultAdded || err != nil {
		t.Fatalf("peer took the relayed proof: %s, %v", res, err)
	}
	if !d2.manager.IsQuarantined("n4") || !slices.Equal(eng2.last(), []types.NodeID{"n4"}) {
		t.Fatalf("peer did not quarantine n4: %v", d2.manager.IDs())
	}
	// The member keeps sending: nothing more is recorded.
	if _, err := r.c.addVote(ctx, f.sign(t, 3, a)); !errors.As(err, &ce) {
		t.Fatalf("repeated conflicting vote: %v, want a conflict", err)
	}
	if n := len(d.evidenceList()); n != 1 {
		t.Fatalf("%d records after a repeated conflict, want 1", n)
	}
}

// TestCheckpointSplitVotesProven: n4 sends one state to n1 and another to
// n2. Neither holds both votes; n2, which sees n4's vote dissent from the
// quorum, reports the divergence and relays the signed vote once, and n1,
// which holds n4's other vote, proves the equivocation from it — also
// when the index is already stable on n1 and only the certificate still
// carries n4's signature. A forged relayed vote proves nothing.
func TestCheckpointSplitVotesProven(t *testing.T) {
	for _, stable := range []bool{false, true} {
		name := "collector"
		if stable {
			name = "stable certificate"
		}
		t.Run(name, func(t *testing.T) {
			f := newCkptFixture(t, 5)
			ctx := context.Background()
			n1, n2 := f.replicas[0], f.replicas[1]
			d1, eng1 := f.detector(t, n1)
			d2, _ := f.detector(t, n2)
			a, b := twoStates()

			// n1 holds n4's vote for a (with the quorum), n2 n4's vote for b.
			var cert *checkpoint.Certificate
			for _, i := range []int{3, 0, 1, 2} {
				c, err := n1.c.addVote(ctx, f.sign(t, i, a))
				if err != nil {
					t.Fatal(err)
				}
				if c != nil && cert == nil {
					cert = c
				}
			}
			if stable {
				// n1 settled index 10 with a certificate that carries
				// n4's signature, and forgot the votes.
				n1.c.collector = checkpoint.NewCollector(f.com)
				n1.c.stable.Store(cert)
				if !slices.Contains(cert.Signers(), "n4") {
					t.Fatalf("certificate signers %v, want n4 among them", cert.Signers())
				}
			}
			for _, i := range []int{3, 0, 1, 2} {
				st := a
				if i == 3 {
					st = b
				}
				if _, err := n2.c.addVote(ctx, f.sign(t, i, st)); err != nil {
					t.Fatal(err)
				}
			}
			if got := drainDivergences(d2); !slices.Contains(got, "n4@10") {
				t.Fatalf("n2 reported %v, want n4's divergence at 10", got)
			}
			if len(d1.evidenceList())+len(d2.evidenceList()) != 0 {
				t.Fatal("evidence before the dissenting vote was relayed")
			}
			var relayed []checkpoint.Vote
			for len(n2.c.dissent.out) > 0 {
				relayed = append(relayed, <-n2.c.dissent.out)
			}
			if len(relayed) != 1 || relayed[0].Signer != "n4" || relayed[0].Statement.StateHash != b.StateHash {
				t.Fatalf("n2 queued %d votes for relay, want n4's vote for b once", len(relayed))
			}

			forged := relayed[0]
			forged.Sig = slices.Clone(forged.Sig)
			forged.Sig[5] ^= 1
			_, _ = n1.c.addVote(ctx, forged)
			if len(d1.evidenceList()) != 0 || d1.manager.IsQuarantined("n4") {
				t.Fatal("a forged relayed vote made evidence")
			}

			_, _ = n1.c.addVote(ctx, relayed[0]) // what serveDissent does
			requireProven(t, f, d1, eng1, "n4")
		})
	}
}

// TestCheckpointDivergenceWithoutEquivocation: a member that signed one
// state, not the quorum's, is a state divergence: reported, relayed once
// however often it is seen, and never turned into a proof.
func TestCheckpointDivergenceWithoutEquivocation(t *testing.T) {
	f := newCkptFixture(t, 5)
	r := f.replicas[0]
	d, _ := f.detector(t, r)
	ctx := context.Background()
	a, b := twoStates()
	for _, i := range []int{3, 0, 1, 2} {
		st := a
		if i == 3 {
			st = b
		}
		if _, err := r.c.addVote(ctx, f.sign(t, i, st)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.c.addVote(ctx, f.sign(t, 3, b)); err != nil { // sent again
		t.Fatal(err)
	}
	if got := drainDivergences(d); !slices.Contains(got, "n4@10") {
		t.Fatalf("reported %v, want n4 at 10", got)
	}
	if n := len(r.c.dissent.out); n != 1 {
		t.Fatalf("%d votes queued for relay, want 1", n)
	}
	if len(d.evidenceList()) != 0 || d.manager.IsQuarantined("n4") {
		t.Fatal("a divergence without equivocation was taken as a proof")
	}
}

// TestCheckpointLateVotesProven: n1's index 10 is stable on a certificate
// without n4 when n4's votes arrive, the relayed one for another state
// first, its own for the certified state after: the first is a divergence
// (reported, relayed), and the second conflicts with it in the collector,
// which keeps the votes above the previous stable checkpoint: a proof.
func TestCheckpointLateVotesProven(t *testing.T) {
	f := newCkptFixture(t, 5)
	ctx := context.Background()
	r := f.replicas[0]
	d, eng := f.detector(t, r)
	a, b := twoStates()
	var cert *checkpoint.Certificate
	for i := range 3 {
		c, err := r.c.addVote(ctx, f.sign(t, i, a))
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			cert = c
		}
	}
	if cert == nil || slices.Contains(cert.Signers(), "n4") {
		t.Fatalf("certificate %v", cert)
	}
	r.c.stable.Store(cert)
	if _, err := r.c.addVote(ctx, f.sign(t, 3, b)); err != nil {
		t.Fatal(err)
	}
	// Once: the collector's quorum at the stable index already says what
	// the stable certificate says.
	if got := drainDivergences(d); !slices.Equal(got, []string{"n4@10"}) {
		t.Fatalf("reported %v, want n4 at 10 once", got)
	}
	if len(d.evidenceList()) != 0 || len(r.c.dissent.out) != 1 {
		t.Fatalf("after one late vote: %d records, %d votes queued for relay; want none and 1", len(d.evidenceList()), len(r.c.dissent.out))
	}
	if _, err := r.c.addVote(ctx, f.sign(t, 3, a)); err != nil {
		t.Fatal(err)
	}
	requireProven(t, f, d, eng, "n4")

	// Below the previous stable checkpoint nothing is held any more.
	r.c.collector.Forget(11)
	if _, err := r.c.addVote(ctx, f.sign(t, 2, b)); err != nil {
		t.Fatal(err)
	}
	if n := len(d.evidenceList()); n != 1 {
		t.Fatalf("%d records after a vote below what the collector keeps", n)
	}
}

// TestCheckpointPeerCertificateProves: n1 holds n4's vote for b; a peer's
// certificate for a that carries n4's signature (the answer to n1's own
// vote) proves the equivocation. A certificate without n4, or one whose
// signatures match what n1 holds, proves nothing.
func TestCheckpointPeerCertificateProves(t *testing.T) {
	f := newCkptFixture(t, 5)
	ctx := context.Background()
	r := f.replicas[0]
	d, eng := f.detector(t, r)
	a, b := twoStates()
	if _, err := r.c.addVote(ctx, f.sign(t, 3, b)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.addVote(ctx, f.sign(t, 1, a)); err != nil {
		t.Fatal(err)
	}
	cert := func(signers ...int) *checkpoint.Certificate {
		c := &checkpoint.Certificate{Statement: a, Form: checkpoint.FormQuorum}
		for _, i := range signers {
			c.Sigs = append(c.Sigs, checkpoint.Signature{Signer: f.replicas[i].id, Sig: f.sign(t, i, a).Sig})
		}
		if err := c.Verify(f.com, nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	r.c.checkCertificate(ctx, cert(0, 1, 2))
	if len(d.evidenceList()) != 0 {
		t.Fatal("a certificate without n4 made evidence")
	}
	r.c.checkCertificate(ctx, cert(1, 2, 3))
	requireProven(t, f, d, eng, "n4")
}

// TestCheckpointVoteAgainstOwnRelayed: without any quorum at the index
// (the peers whose own votes completed their certificates never sent
// them), a member's vote for another state than this node's own is
// relayed once, whichever of the two arrived first; it is no divergence
// report, and votes that match this node's are not relayed.
func TestCheckpointVoteAgainstOwnRelayed(t *testing.T) {
	for _, ownFirst := range []bool{true, false} {
		f := newCkptFixture(t, 5)
		ctx := context.Background()
		r := f.replicas[1] // n2
		d, _ := f.detector(t, r)
		a, b := twoStates()
		order := []checkpoint.Vote{f.sign(t, 1, a), f.sign(t, 3, b), f.sign(t, 2, a)}
		if !ownFirst {
			order[0], order[1] = order[1], order[0]
		}
		for _, v := range order {
			if _, err := r.c.addVote(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		var relayed []checkpoint.Vote
		for len(r.c.dissent.out) > 0 {
			relayed = append(relayed, <-r.c.dissent.out)
		}
		if len(relayed) != 1 || relayed[0].Signer != "n4" || relayed[0].Statement.StateHash != b.StateHash {
			t.Fatalf("own vote first %v: relayed %v, want n4's vote for b once", ownFirst, relayed)
		}
		if got := drainDivergences(d); len(got) != 0 {
			t.Fatalf("own vote first %v: reported %v without a quorum", ownFirst, got)
		}
	}
}
