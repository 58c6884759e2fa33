package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

// openCFT opens n1's detector in cft mode, as newCFTDetector sets it up.
func (f *detectorFixture) openCFT() (*detector, *fakeQuarantineEngine) {
	d, eng := f.open()
	d.mode = quarantine.ModeCFT
	d.fromRaft = make(chan raftengine.AttestationCheck, raftCheckQueue)
	d.slots = newSlotTable(maxSlots)
	d.deliverAttestations = func(context.Context, string, []byte) error { return nil }
	return d, eng
}

func (f *detectorFixture) attest(leader evidence.NodeID, term, seq uint64, payload string) *evidence.ProposalAttestation {
	f.t.Helper()
	a, err := evidence.SignProposal(f.keys[leader], leader, 1, term, seq, []byte(payload))
	if err != nil {
		f.t.Fatal(err)
	}
	return a
}

// TestCFTDetectorEquivocationQuarantinesAndEscalates: an applied
// attestation and a peer's attestation of the same slot over another
// payload make a leader-equivocation proof; the leader is quarantined and
// the escalation hook is called once for it.
func TestCFTDetectorEquivocationQuarantinesAndEscalates(t *testing.T) {
	f := newDetectorFixture(t)
	d, eng := f.openCFT()
	var mu sync.Mutex
	var escalations [][]evidence.ID
	d.setOnEscalate(func(reason string, ids []evidence.ID) {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(reason, "n4") {
			t.Errorf("escalation reason %q does not name n4", reason)
		}
		escalations = append(escalations, ids)
	})
	ctx := context.Background()
	d.raftCheck(ctx, raftengine.AttestationCheck{Index: 3, Term: 2, Leader: "n4", Attestation: f.attest("n4", 2, 1, "x")})
	if n := len(d.manager.IDs()); n != 0 {
		t.Fatalf("quarantined %d on one attestation", n)
	}
	// The same attestation again is no conflict.
	d.attestation(ctx, f.attest("n4", 2, 1, "x"), "n2")
	d.attestation(ctx, f.attest("n4", 2, 1, "y"), "n2")
	if ids := d.manager.IDs(); !slices.Equal(ids, []evidence.NodeID{"n4"}) {
		t.Fatalf("quarantined %v, want [n4]", ids)
	}
	if !slices.Equal(eng.last(), []types.NodeID{"n4"}) {
		t.Fatalf("engine list %v", eng.last())
	}
	recs := d.evidenceList()
	if len(recs) != 1 || recs[0].Kind != evidence.KindLeaderEquivocation || evidence.Verify(recs[0], d.members) != nil {
		t.Fatalf("evidence %v", recs)
	}
	// A further attestation of another slot escalates nothing new.
	d.attestation(ctx, f.attest("n4", 2, 2, "z"), "n3")
	mu.Lock()
	defer mu.Unlock()
	if len(escalations) != 1 || !slices.Contains(escalations[0], recs[0].ID()) {
		t.Fatalf("escalations %v, want one with %s", escalations, recs[0].ID().Short())
	}
	if got := counterValue(d.metrics.escalations); got != 1 {
		t.Fatalf("escalation metric %v", got)
	}
}

// TestCFTDetectorUnattestedEntryAccuses: an entry without a valid
// attestation yields one signed accusation per leader and term, which
// alone quarantines nobody.
func TestCFTDetectorUnattestedEntryAccuses(t *testing.T) {
	f := newDetectorFixture(t)
	d, eng := f.openCFT()
	ctx := context.Background()
	bad := raftengine.AttestationCheck{Index: 5, Term: 3, Leader: "n4", Err: errors.New("the entry carries no leader attestation")}
	d.raftCheck(ctx, bad)
	bad.Index = 6
	d.raftCheck(ctx, bad)
	d.raftCheck(ctx, raftengine.AttestationCheck{Index: 7, Term: 4, Err: errors.New("unknown leader")})
	recs := d.evidenceList()
	if len(recs) != 1 {
		t.Fatalf("kept %d records, want 1 accusation", len(recs))
	}
	a := recs[0].Accusation
	if a == nil || a.Accuser != "n1" || a.Accused != "n4" || a.Metric != evidence.MetricSignatureFailure || evidence.Verify(recs[0], d.members) != nil {
		t.Fatalf("record %v", recs[0])
	}
	if len(d.manager.IDs()) != 0 || len(eng.last()) != 0 {
		t.Fatalf("one accuser quarantined %v", d.manager.IDs())
	}
}

// TestCFTDetectorInvalidEntryProof: a leader-signed entry whose client
// signature is invalid is a proof by itself.
func TestCFTDetectorInvalidEntryProof(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.openCFT()
	payload := []byte("not a client request")
	e, err := evidence.NewInvalidEntry(f.attest("n3", 1, 1, string(payload)), payload)
	if err != nil {
		t.Fatal(err)
	}
	d.raftCheck(context.Background(), raftengine.AttestationCheck{Index: 2, Term: 1, Leader: "n3", Attestation: e.Entry.Attestation, Evidence: e})
	if ids := d.manager.IDs(); !slices.Equal(ids, []evidence.NodeID{"n3"}) {
		t.Fatalf("quarantined %v, want [n3]", ids)
	}
}

func TestAttestationBatchCodec(t *testing.T) {
	f := newDetectorFixture(t)
	as := []*evidence.ProposalAttestation{f.attest("n1", 1, 1, "a"), f.attest("n2", 2, 1, "b")}
	b, err := encodeAttestations(as)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeAttestations(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].PayloadHash != as[1].PayloadHash || got[0].Leader != "n1" {
		t.Fatalf("round trip: %v", got)
	}
	for name, in := range map[string][]byte{
		"empty":     nil,
		"count":     {0, 3},
		"truncated": b[:len(b)-1],
		"trailing":  append(slices.Clone(b), 0),
	} {
		if _, err := decodeAttestations(in); err == nil || !strings.Contains(err.Error(), "attestation batch") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

// TestCFTClusterQuarantinesProvenLeader: four real nodes in cft mode with
// member keys exchange attestations; a leader-equivocation proof against
// the leader handed to one node reaches every node, each refuses the
// leader, a new leader removes it from the voters, and writes go on.
func TestCFTClusterQuarantinesProvenLeader(t *testing.T) {
	c := startClusterKeys(t, 4, config.ModeCFT, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.leader(t)
	for i := range 3 {
		c.submit(t, ctx, l, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: string(rune('a' + i))})
	}
	for _, tn := range c.nodes {
		if tn.n.det == nil {
			t.Fatalf("%s runs no detector", tn.id)
		}
		waitFor(t, tn.id+" to receive peer attestations", 10*time.Second, func() bool {
			return counterValue(tn.n.det.metrics.attestations) > 0
		})
	}
	// A proof of the leader's equivocation, signed with its own key.
	lid := evidence.NodeID(l.id)
	a1, err := evidence.SignProposal(l.key, lid, cftEpoch, 1_000, 1, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := evidence.SignProposal(l.key, lid, cftEpoch, 1_000, 1, []byte("two"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := evidence.NewLeaderEquivocation(a1, a2)
	if err != nil {
		t.Fatal(err)
	}
	others := c.followers(l)
	if res, err := others[0].n.det.handle(ctx, e, ""); res != resultAdded || err != nil {
		t.Fatalf("handle: %s, %v", res, err)
	}
	for _, tn := range others {
		waitFor(t, tn.id+" to quarantine "+l.id, 10*time.Second, func() bool { return tn.n.det.manager.IsQuarantined(lid) })
	}
	var nl *testNode
	waitFor(t, "a new leader without "+l.id+" among the voters", 20*time.Second, func() bool {
		for _, tn := range others {
			if tn.n.raft.Status().Role != "leader" {
				continue
			}
			ms, err := tn.n.raft.Members(ctx)
			if err != nil {
				return false
			}
			for _, m := range ms {
				if m.ID == l.id {
					return false
				}
			}
			nl = tn
			return true
		}
		return false
	})
	c.submit(t, ctx, nl, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "after"})
}

// counterValue reads a counter through a throwaway registry.
func counterValue(c prometheus.Counter) float64 {
	r := prometheus.NewRegistry()
	if err := r.Register(c); err != nil {
		return -1
	}
	fams, err := r.Gather()
	if err != nil || len(fams) != 1 || len(fams[0].GetMetric()) != 1 {
		return -1
	}
	return fams[0].GetMetric()[0].GetCounter().GetValue()
}
