package node

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

// handoffFixture is the hand-over part of node1's selector in a 4-member
// auto cluster in epoch 1, without engines, and the members' keys.
type handoffFixture struct {
	sel     *selector
	keys    map[string]ed25519.PrivateKey
	manager *quarantine.Manager
}

func newHandoffFixture(t *testing.T, vct time.Duration) *handoffFixture {
	t.Helper()
	keys := map[string]ed25519.PrivateKey{}
	pubs := map[string]ed25519.PublicKey{}
	for i := 1; i <= 4; i++ {
		id := fmt.Sprintf("node%d", i)
		seed := sha256.Sum256([]byte("handoff test " + id))
		keys[id] = ed25519.NewKeyFromSeed(seed[:])
		pubs[id] = keys[id].Public().(ed25519.PublicKey)
	}
	com, err := checkpoint.NewCommittee(pubs)
	if err != nil {
		t.Fatal(err)
	}
	m, err := quarantine.Open(filepath.Join(t.TempDir(), "quarantine.db"), quarantine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{cfg: config.Config{NodeID: "node1", ConsensusMode: "auto", ViewChangeTimeout: vct},
		log: testlog.New(t, slog.LevelDebug), det: &detector{manager: m}}
	sel := &selector{n: n, committee: com, collector: checkpoint.NewCollector(com),
		rec:   epochRecord{Epoch: 1, Mode: smr.ModeCFT, Members: com.Members()},
		ended: make(chan struct{}, 1), certs: make(chan *checkpoint.Certificate, 1)}
	return &handoffFixture{sel: sel, keys: keys, manager: m}
}

func (f *handoffFixture) vote(t *testing.T, id string, st checkpoint.Statement) {
	t.Helper()
	v, err := checkpoint.Sign(f.keys[id], id, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sel.addVote(v); err != nil {
		t.Fatalf("vote of %s: %v", id, err)
	}
}

func (f *handoffFixture) quarantine(t *testing.T, id string) {
	t.Helper()
	if _, err := f.manager.Quarantine(quarantine.Entry{Node: quarantine.NodeID(id), Since: time.Now(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
}

func handoffState(hash string) checkpoint.Statement {
	return checkpoint.Statement{Kind: checkpoint.KindHandoff, Epoch: 2, Index: 8, StateHash: sha256.Sum256([]byte(hash)),
		Mode: smr.ModeBFT, Members: []string{"node1", "node2", "node3", "node4"}}
}

// TestHandoffFallbackForALaggard: node1 has not applied the switch; node4
// is quarantined; node2, node3 and node4 sign state Y. node4's vote does
// not count, so no quorum certificate forms; the fallback is not taken
// before view_change_timeout has passed since the first vote, and is
// taken after it: Y, signed by node2 and node3.
func TestHandoffFallbackForALaggard(t *testing.T) {
	f := newHandoffFixture(t, time.Hour)
	f.quarantine(t, "node4")
	y := handoffState("Y")
	for _, id := range []string{"node4", "node2", "node3"} {
		f.vote(t, id, y)
	}
	select {
	case c := <-f.sel.certs:
		t.Fatalf("a certificate formed counting the quarantined node4: %v", c.Signers())
	default:
	}
	if c := f.sel.laggardFallback(); c != nil {
		t.Fatalf("fallback taken before view_change_timeout: %v", c.Signers())
	}
	// view_change_timeout has passed since the first vote.
	f.sel.mu.Lock()
	f.sel.firstVote = time.Now().Add(-2 * time.Hour)
	f.sel.mu.Unlock()
	c := f.sel.laggardFallback()
	if c == nil {
		t.Fatal("no fallback certificate after view_change_timeout")
	}
	if c.Form != checkpoint.FormFallback || !c.Statement.Equal(y) || !slices.Equal(c.Signers(), []string{"node2", "node3"}) {
		t.Fatalf("fallback certificate %s %s by %v", c.Form, c.Statement, c.Signers())
	}
	if err := c.Verify(f.sel.committee, f.sel.n.quarantinedMembers()); err != nil {
		t.Fatal(err)
	}
	// A node that applied the switch itself goes through handOver instead.
	f.sel.mu.Lock()
	f.sel.rec.EndIndex, f.sel.rec.Next = 8, &nextEpochTo{Epoch: 2, Mode: smr.ModeBFT}
	f.sel.mu.Unlock()
	if c := f.sel.laggardFallback(); c != nil {
		t.Fatal("laggardFallback certified for a node that ended the epoch itself")
	}
	// The status shows the form of the epoch's certificate.
	f.sel.mu.Lock()
	f.sel.rec = epochRecord{Epoch: 2, Mode: smr.ModeBFT, Members: y.Members, BaseIndex: 8, Cert: c}
	f.sel.mu.Unlock()
	if st := f.sel.status(); st.CertificateForm != "fallback" || st.Certificate != c {
		t.Fatalf("status %+v", st)
	}
}

// TestHandoffQuorumWithoutQuarantine: with nobody quarantined, node4's
// vote counts and three matching votes form a quorum certificate at once;
// two matching votes never make a fallback certificate then, however
// late (the fallback needs a quorum while nobody is quarantined).
func TestHandoffQuorumWithoutQuarantine(t *testing.T) {
	f := newHandoffFixture(t, time.Hour)
	y := handoffState("Y")
	f.vote(t, "node2", y)
	f.vote(t, "node3", y)
	f.vote(t, "node1", handoffState("X"))
	f.sel.mu.Lock()
	f.sel.firstVote = time.Now().Add(-2 * time.Hour)
	f.sel.mu.Unlock()
	if c := f.sel.laggardFallback(); c != nil {
		t.Fatalf("fallback of 2 with nobody quarantined: %v", c.Signers())
	}
	f.vote(t, "node4", y)
	select {
	case c := <-f.sel.certs:
		if c.Form != checkpoint.FormQuorum || !slices.Equal(c.Signers(), []string{"node2", "node3", "node4"}) {
			t.Fatalf("certificate %s by %v", c.Form, c.Signers())
		}
	default:
		t.Fatal("no quorum certificate")
	}
}
