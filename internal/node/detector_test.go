package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/quarantine"
)

// fakeQuarantineEngine records the quarantine lists it is given.
type fakeQuarantineEngine struct {
	mu     sync.Mutex
	leader string
	sets   [][]types.NodeID
}

func (f *fakeQuarantineEngine) SetQuarantined(_ context.Context, ids []types.NodeID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, slices.Clone(ids))
	return nil
}

func (f *fakeQuarantineEngine) Status() consensus.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return consensus.Status{LeaderID: f.leader}
}

func (f *fakeQuarantineEngine) last() []types.NodeID {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sets) == 0 {
		return nil
	}
	return f.sets[len(f.sets)-1]
}

type detectorFixture struct {
	t     *testing.T
	dir   string
	keys  map[evidence.NodeID]ed25519.PrivateKey
	ms    []evidence.Member
	clock time.Time
	sent  chan string // "peer-addr" per delivery
}

func newDetectorFixture(t *testing.T) *detectorFixture {
	f := &detectorFixture{t: t, dir: t.TempDir(), keys: map[evidence.NodeID]ed25519.PrivateKey{}, clock: time.Unix(1_800_000_000, 0), sent: make(chan string, 64)}
	for i := 1; i <= 4; i++ {
		id := evidence.NodeID(fmt.Sprintf("n%d", i))
		seed := sha256.Sum256([]byte("detector test " + id))
		f.keys[id] = ed25519.NewKeyFromSeed(seed[:])
		f.ms = append(f.ms, evidence.Member{ID: id, PublicKey: f.keys[id].Public().(ed25519.PublicKey)})
	}
	return f
}

// open opens n1's detector over the fixture's directory.
func (f *detectorFixture) open() (*detector, *fakeQuarantineEngine) {
	f.t.Helper()
	d, err := newDetector(detectorConfig{
		Self: "n1", Key: f.keys["n1"], Epoch: 1, Members: f.ms,
		PeerAddrs: map[evidence.NodeID]string{"n2": "a2", "n3": "a3", "n4": "a4"},
		Score:     score.Default(), DataDir: f.dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(), Clock: func() time.Time { return f.clock },
		Deliver: func(_ context.Context, addr string, _ []byte) error { f.sent <- addr; return nil },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	eng := &fakeQuarantineEngine{leader: "n4"}
	d.attach(eng)
	return d, eng
}

// equivocation returns node's two signed blocks for view as evidence.
func (f *detectorFixture) equivocation(node evidence.NodeID, view types.View) *evidence.Evidence {
	f.t.Helper()
	var blocks [2]*types.Block
	for i := range blocks {
		b := &types.Block{View: view, Height: 1, Proposer: types.NodeID(node), Payload: [][]byte{{byte(i)}}}
		b.Sig = ed25519.Sign(f.keys[node], types.ProposalSignBytes(1, view, b.Hash()))
		blocks[i] = b
	}
	e, err := evidence.FromHotStuff(&types.Evidence{Kind: types.EquivocatingProposal, Offender: types.NodeID(node), View: view, Blocks: blocks}, 1)
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

func TestDetectorRejectsForgedProofs(t *testing.T) {
	f := newDetectorFixture(t)
	d, eng := f.open()
	ctx := context.Background()
	// A "proof" against n3 whose second block n3 never signed (n2 forged
	// it): rejected, nothing persisted, relayed or quarantined.
	e := f.equivocation("n3", 5)
	forged := *e.HotStuff
	b := *forged.Blocks[1]
	b.Sig = ed25519.Sign(f.keys["n2"], types.ProposalSignBytes(1, 5, b.Hash()))
	forged.Blocks[1] = &b
	fe, err := evidence.FromHotStuff(&forged, 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.handle(ctx, fe, "n2")
	if res != resultRejected || !errors.Is(err, evidence.ErrInvalidEvidence) {
		t.Fatalf("forged proof: %s, %v", res, err)
	}
	// A well-formed accusation by one member alone changes nothing either.
	a, err := evidence.SignAccusation(f.keys["n2"], evidence.Accusation{Accuser: "n2", Accused: "n3", Metric: evidence.MetricSignatureFailure, Value: 5, Epoch: 1, At: f.clock.UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	ae, err := evidence.FromAccusation(a)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := d.handle(ctx, ae, "n2"); res != resultAdded || err != nil {
		t.Fatalf("accusation: %s, %v", res, err)
	}
	if ids := d.manager.IDs(); len(ids) != 0 || len(eng.last()) != 0 {
		t.Fatalf("quarantined %v (engine %v) on a forgery and one accusation", ids, eng.last())
	}
	if recs := d.evidenceList(); len(recs) != 1 || recs[0].Kind != evidence.KindAccusation {
		t.Fatalf("kept %v, want only the accusation", recs)
	}
}

func TestDetectorQuarantinesOnProofAndSurvivesRestart(t *testing.T) {
	f := newDetectorFixture(t)
	d, eng := f.open()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()

	// The engine reports n4's equivocation: n1 verifies it, persists it,
	// relays it to every peer and quarantines n4 in the engine.
	e := f.equivocation("n4", 7)
	d.onEngineEvidence(e.HotStuff)
	got := map[string]bool{}
	for len(got) < 3 {
		select {
		case addr := <-f.sent:
			got[addr] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("relayed to %v only", got)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(eng.last(), []types.NodeID{"n4"}) {
		if time.Now().After(deadline) {
			t.Fatalf("engine quarantine list %v, want [n4]", eng.last())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The same proof from a peer is known; nothing changes.
	if res, err := d.handle(ctx, e, "n2"); res != resultKnown || err != nil {
		t.Fatalf("second copy: %s, %v", res, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// After a restart the quarantine and the evidence are still there and
	// go to the engine again.
	d2, eng2 := f.open()
	if ids := d2.manager.IDs(); !slices.Equal(ids, []evidence.NodeID{"n4"}) {
		t.Fatalf("after restart: quarantined %v", ids)
	}
	if recs := d2.evidenceList(); len(recs) != 1 || recs[0].ID() != e.ID() {
		t.Fatalf("after restart: evidence %v", recs)
	}
	d2.pushQuarantine(context.Background())
	if !slices.Equal(eng2.last(), []types.NodeID{"n4"}) {
		t.Fatalf("after restart the engine got %v", eng2.last())
	}

	// Only an operator lifts it; the same proof then no longer counts, a
	// new offence does.
	if _, err := d2.lift(context.Background(), "n4", ""); !errors.Is(err, quarantine.ErrNoOperator) {
		t.Fatalf("lift without operator: %v", err)
	}
	if _, err := d2.lift(context.Background(), "n4", "admin test"); err != nil {
		t.Fatal(err)
	}
	if len(d2.manager.IDs()) != 0 || len(eng2.last()) != 0 {
		t.Fatalf("after lift: %v, engine %v", d2.manager.IDs(), eng2.last())
	}
	if res, _ := d2.handle(context.Background(), e, "n3"); res == resultAdded || len(d2.manager.IDs()) != 0 {
		t.Fatalf("the lifted proof counted again: %s, %v", res, d2.manager.IDs())
	}
	if res, err := d2.handle(context.Background(), f.equivocation("n4", 9), "n3"); res != resultAdded || err != nil {
		t.Fatalf("new offence: %s, %v", res, err)
	}
	if ids := d2.manager.IDs(); !slices.Equal(ids, []evidence.NodeID{"n4"}) {
		t.Fatalf("after a new offence: %v", ids)
	}
	if h := d2.manager.History(); len(h) != 1 || h[0].Operator != "admin test" {
		t.Fatalf("lift history %+v", h)
	}
}
