package node

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// scoreOf returns node's score in d's current decision (0 without one).
func scoreOf(d *detector, node evidence.NodeID) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.book.Decide(d.clock()).Scores {
		if s.Node == node {
			return s.Score
		}
	}
	return 0
}

// TestOmissionAccusesAndEscalatesWithFPlusOne: the engine's omission
// reports make one selective-omission accusation per leader per window
// (the value counts the commands since the last); one accuser changes
// nothing, f+1 of them give the leader a score at the table's escalate
// level — above anomaly_threshold, below quarantine_threshold — and no
// quarantine.
func TestOmissionAccusesAndEscalatesWithFPlusOne(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	t0 := f.clock

	d.observe(ctx, observation{at: t0, other: omission{Leader: "n4", Commands: 2, View: 7}})
	d.observe(ctx, observation{at: t0, other: omission{Leader: "n1", Commands: 1, View: 8}})     // self
	d.observe(ctx, observation{at: t0, other: omission{Leader: "nobody", Commands: 1, View: 8}}) // not a member
	d.observe(ctx, observation{at: t0.Add(time.Second), other: omission{Leader: "n4", Commands: 3, View: 11}})
	if got := accusationsBy(d, evidence.MetricSelectiveOmission); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want one by n1 of n4", got)
	}
	f.clock = t0.Add(omitAccuseEvery)
	d.observe(ctx, observation{at: f.clock, other: omission{Leader: "n4", Commands: 1, View: 15}})
	values := accusationValues(d)
	if !slices.Equal(values, []int64{2, 4}) {
		t.Fatalf("accusation values %v, want [2 4] (the first report, then the commands since)", values)
	}
	if s := scoreOf(d, "n4"); s != 0 {
		t.Fatalf("one accuser gives n4 score %v, want 0", s)
	}

	if res, err := d.handle(ctx, f.accusation("n2", "n4", evidence.MetricSelectiveOmission, 1), "n2"); res != resultAdded || err != nil {
		t.Fatalf("n2's accusation: %s, %v", res, err)
	}
	s := scoreOf(d, "n4")
	if s < d.scfg.AnomalyThreshold || s >= d.scfg.QuarantineThreshold {
		t.Fatalf("n4's score with f+1 accusers %v, want in [%v, %v)", s, d.scfg.AnomalyThreshold, d.scfg.QuarantineThreshold)
	}
	d.mu.Lock()
	dec := d.book.Decide(d.clock())
	d.mu.Unlock()
	if !dec.Escalate || len(dec.Quarantine) != 0 {
		t.Fatalf("decision escalate=%v quarantine=%v, want escalate and no quarantine", dec.Escalate, dec.Quarantine)
	}
	if len(d.manager.IDs()) != 0 {
		t.Fatalf("quarantined %v on omission accusations", d.manager.IDs())
	}
}

// TestDivergenceAccusesOncePerIndex: each diverging index counts once; one
// accusation per member per window; with f+1 accusers the member is to
// re-sync.
func TestDivergenceAccusesOncePerIndex(t *testing.T) {
	f := newDetectorFixture(t)
	d, _ := f.open()
	ctx := context.Background()
	t0 := f.clock
	dv := func(signer string, index uint64) observation {
		return observation{at: f.clock, other: divergence{Signer: signer, Epoch: 1, Index: index, Signed: [32]byte{1}, Quorum: [32]byte{2}, QuorumSignatures: 3}}
	}
	d.observe(ctx, dv("n4", 100))
	d.observe(ctx, dv("n4", 100)) // the same index again
	d.observe(ctx, dv("n1", 100)) // self
	if got := accusationsBy(d, evidence.MetricStateDivergence); !slices.Equal(got, []string{"n1>n4"}) {
		t.Fatalf("accusations %v, want one by n1 of n4", got)
	}
	d.observe(ctx, dv("n4", 100))
	d.observe(ctx, dv("n4", 200))
	f.clock = t0.Add(divergeAccuseEvery)
	d.observe(ctx, dv("n4", 200)) // counted already: the window's end signs it
	values := accusationValues(d)
	if !slices.Equal(values, []int64{1, 1}) {
		t.Fatalf("accusation values %v, want [1 1] (index 100, then index 200)", values)
	}
	if res, err := d.handle(ctx, f.accusation("n3", "n4", evidence.MetricStateDivergence, 1), "n3"); res != resultAdded || err != nil {
		t.Fatalf("n3's accusation: %s, %v", res, err)
	}
	d.mu.Lock()
	dec := d.book.Decide(d.clock())
	d.mu.Unlock()
	if !slices.Equal(dec.Resync, []evidence.NodeID{"n4"}) {
		t.Fatalf("resync %v, want [n4]", dec.Resync)
	}
}

// drainDivergences returns the divergences queued on d, as
// "signer@index".
func drainDivergences(d *detector) []string {
	var out []string
	for {
		select {
		case o := <-d.obs.ch:
			if dv, ok := o.other.(divergence); ok {
				out = append(out, dv.Signer+"@"+itoa(dv.Index))
			}
		default:
			slices.Sort(out)
			return out
		}
	}
}

func itoa(i uint64) string { return strconv.FormatUint(i, 10) }

// TestCheckpointDissentReported: a member's checkpoint vote for another
// state than a quorum signed at its index is handed to the detector —
// whether it came before the quorum, after it, or after the index became
// stable — and nothing else is: not a matching vote, not a vote without a
// quorum, not a forged vote. (A member that signed two states for one
// index is proven instead: detector_ckpteq_test.go.)
func TestCheckpointDissentReported(t *testing.T) {
	fx := newCkptFixture(t, 5)
	r := fx.replicas[0]
	d := &detector{obs: newObserver(), clock: time.Now}
	r.c.n.det = d
	sign := func(i int, st checkpoint.Statement) checkpoint.Vote {
		v, err := checkpoint.Sign(fx.replicas[i].c.key, fx.replicas[i].id, st)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	add := func(v checkpoint.Vote) {
		t.Helper()
		_, err := r.c.addVote(context.Background(), v)
		var ce *checkpoint.ConflictError
		if err != nil && !errors.As(err, &ce) {
			t.Fatalf("vote of %s: %v", v.Signer, err)
		}
	}
	a := checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: cftEpoch, Index: 10, StateHash: [32]byte{0xa}}
	b := a
	b.StateHash = [32]byte{0xb}

	add(sign(3, b)) // n4 dissents before any quorum
	add(sign(0, a))
	add(sign(1, a))
	if got := drainDivergences(d); len(got) != 0 {
		t.Fatalf("reported %v without a quorum", got)
	}
	add(sign(2, a)) // quorum: n4's earlier vote is a divergence
	if got := drainDivergences(d); !slices.Contains(got, "n4@10") || slices.ContainsFunc(got, func(s string) bool { return s != "n4@10" }) {
		t.Fatalf("reported %v, want n4 at 10", got)
	}

	// After the index is stable, a late dissenting vote is checked against
	// the stable certificate; a forged one is not reported.
	c := b
	c.Index = 15
	good := c
	good.StateHash = [32]byte{0xa}
	cert := &checkpoint.Certificate{Statement: good, Form: checkpoint.FormQuorum}
	for i := range 3 {
		cert.Sigs = append(cert.Sigs, checkpoint.Signature{Signer: fx.replicas[i].id, Sig: sign(i, good).Sig})
	}
	r.c.stable.Store(cert)
	forged := sign(3, c)
	forged.Sig[0] ^= 1
	add(forged)
	add(sign(2, good))
	if got := drainDivergences(d); len(got) != 0 {
		t.Fatalf("reported %v for a forged and a matching vote", got)
	}
	add(sign(3, c))
	if got := drainDivergences(d); !slices.Equal(got, []string{"n4@15"}) {
		t.Fatalf("reported %v, want n4 at 15", got)
	}
}
