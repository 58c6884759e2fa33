package node

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

// calmFixture is node1's selector in epoch 2, a bft epoch of 4 members
// reached by escalation.
func calmFixture(t *testing.T) *handoffFixture {
	t.Helper()
	f := newHandoffFixture(t, time.Second)
	f.sel.n.cfg.DataDir = t.TempDir()
	f.sel.rec = epochRecord{Epoch: 2, Mode: smr.ModeBFT, Members: f.sel.committee.Members(), Escalated: true,
		Reason: "detector: node4: equivocation", Since: time.Now().Add(-time.Hour)}
	return f
}

func (f *handoffFixture) calm(t *testing.T, id string, epoch uint64, at time.Time) smr.CalmStatement {
	t.Helper()
	c, err := smr.SignCalm(f.keys[id], id, epoch, at.UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// calmEntry encodes the switch to cft of epoch 3 with cs at time at.
func calmEntry(t *testing.T, at time.Time, cs ...smr.CalmStatement) []byte {
	t.Helper()
	smr.SortCalm(cs)
	ent := smr.NewEpochSwitchEntry(at.UnixNano(), smr.EpochSwitch{Epoch: 3, Mode: smr.ModeCFT, Reason: "calm for 2s after quarantining node4", Calm: cs})
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCalmSwitchNeedsFPlusOneMembers: a switch back to cft ends the epoch
// only with f+1 (2 of 4) statements of distinct members of the epoch,
// each signed with the member's own key for the epoch that ends; the
// statements of one member alone (a Byzantine one) or forged ones change
// nothing, and the verdict is the same whichever node checks it.
func TestCalmSwitchNeedsFPlusOneMembers(t *testing.T) {
	now := time.Now()
	f := calmFixture(t)
	forged := f.calm(t, "node4", 2, now)
	forged.Signer = "node2"
	cases := []struct {
		name string
		cs   func() []smr.CalmStatement
		msg  string
	}{
		{"one member", func() []smr.CalmStatement { return []smr.CalmStatement{f.calm(t, "node4", 2, now)} }, "needs 2"},
		{"forged second statement", func() []smr.CalmStatement {
			return []smr.CalmStatement{f.calm(t, "node4", 2, now), forged}
		}, "does not verify"},
		{"not a member", func() []smr.CalmStatement {
			c := f.calm(t, "node4", 2, now)
			c.Signer = "node9"
			return []smr.CalmStatement{f.calm(t, "node4", 2, now), c}
		}, "not a member"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sw := &smr.EpochSwitch{Epoch: 3, Mode: smr.ModeCFT, Calm: c.cs()}
			smr.SortCalm(sw.Calm)
			err := f.sel.checkCalm(f.sel.rec, sw)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("checkCalm = %v, want an error containing %q", err, c.msg)
			}
			b := calmEntry(t, now, sw.Calm...)
			r := f.sel.observe(7, b, smr.Result{Index: 7})
			if r.Code != smr.CodePermissionDenied || f.sel.record().EndIndex != 0 {
				t.Fatalf("observe = %+v, end index %d; want permission_denied and the epoch running", r, f.sel.record().EndIndex)
			}
		})
	}

	b := calmEntry(t, now, f.calm(t, "node3", 2, now), f.calm(t, "node2", 2, now.Add(-time.Second)))
	if r := f.sel.observe(8, b, smr.Result{Index: 8}); r.Code != smr.CodeOK {
		t.Fatalf("observe(two statements) = %+v", r)
	}
	rec := f.sel.record()
	if rec.EndIndex != 8 || rec.Next == nil || rec.Next.Mode != smr.ModeCFT || rec.Next.Escalated || !strings.HasPrefix(rec.Next.Reason, "calm for 2s") {
		t.Fatalf("record after the switch: %+v next %+v", rec, rec.Next)
	}
}

// TestCalmState: a node is calm only in an escalated bft epoch, with a
// member quarantined, itself not quarantined, and no anomaly of a member
// that is not quarantined for the calm period.
func TestCalmState(t *testing.T) {
	now := time.Now()
	f := calmFixture(t)
	d := 2 * time.Second
	if calm, why, _ := f.sel.calmState(f.sel.rec, d, now); calm || !strings.Contains(why, "no member is quarantined") {
		t.Fatalf("calm with nobody quarantined: %v %q", calm, why)
	}
	f.quarantine(t, "node4")
	if calm, why, q := f.sel.calmState(f.sel.rec, d, now); !calm || len(q) != 1 || q[0] != "node4" {
		t.Fatalf("calmState = %v %q %v, want calm after node4's quarantine", calm, why, q)
	}
	if calm, _, _ := f.sel.calmState(f.sel.rec, 0, now); calm {
		t.Fatal("calm with auto_deescalate_after 0")
	}
	op := f.sel.rec
	op.Escalated = false
	if calm, _, _ := f.sel.calmState(op, d, now); calm {
		t.Fatal("calm in a bft epoch an operator started")
	}
	young := f.sel.rec
	young.Since = now.Add(-time.Second)
	if calm, why, _ := f.sel.calmState(young, d, now); calm || !strings.Contains(why, "calm for 1s of 2s") {
		t.Fatalf("calm one second into the epoch: %v %q", calm, why)
	}

	// Evidence against the quarantined node4 is no new anomaly; a score of
	// node2, which is not quarantined, is.
	det := f.sel.n.det
	q := []evidence.NodeID{"node4"}
	det.mu.Lock()
	det.noteAnomalyLocked(score.Decision{Scores: []score.NodeScore{{Node: "node4", Score: 1, Proven: true}}}, q, nil, now)
	det.mu.Unlock()
	if calm, _, _ := f.sel.calmState(f.sel.rec, d, now); !calm {
		t.Fatal("evidence against the quarantined node4 counted as an anomaly")
	}
	det.mu.Lock()
	det.noteAnomalyLocked(score.Decision{Scores: []score.NodeScore{{Node: "node2", Score: 0.3}}}, q, nil, now.Add(-time.Second))
	det.mu.Unlock()
	if calm, why, _ := f.sel.calmState(f.sel.rec, d, now); calm || !strings.Contains(why, "calm for 1s of 2s") {
		t.Fatalf("a score of node2 did not reset the calm period: %v %q", calm, why)
	}
	det.mu.Lock()
	det.noteAnomalyLocked(score.Decision{}, q, []quarantine.Entry{{Node: "node3"}}, now)
	det.mu.Unlock()
	if a := det.calmAnomaly(); !a.Equal(now) {
		t.Fatalf("a new quarantine did not count as an anomaly: last anomaly %s", a)
	}

	// A quarantined node is never calm.
	f.quarantine(t, "node1")
	if calm, why, _ := f.sel.calmState(f.sel.rec, d, now.Add(time.Hour)); calm || !strings.Contains(why, "this node is quarantined") {
		t.Fatalf("quarantined node calm: %v %q", calm, why)
	}
}

// TestCalmPool: the pool keeps each member's newest statement of the
// current epoch, and offers only fresh ones for a switch entry.
func TestCalmPool(t *testing.T) {
	now := time.Now()
	f := calmFixture(t)
	var p calmPool
	p.put(f.calm(t, "node2", 2, now.Add(-time.Second)))
	p.put(f.calm(t, "node2", 2, now.Add(-2*time.Second))) // older: ignored
	p.put(f.calm(t, "node3", 2, now.Add(-calmUsable-time.Second)))
	p.put(f.calm(t, "node1", 2, now))
	got := p.usable(2, now)
	if len(got) != 2 || got[0].Signer != "node1" || got[1].Signer != "node2" || got[1].Time != now.Add(-time.Second).UnixNano() {
		t.Fatalf("usable = %+v, want node1 and node2's newest", got)
	}
	if got := p.usable(3, now); got != nil {
		t.Fatalf("usable for another epoch = %+v", got)
	}
	p.put(f.calm(t, "node2", 3, now)) // a new epoch replaces the old statements
	if _, ok := p.get(2, "node1"); ok {
		t.Fatal("statement of epoch 2 kept after epoch 3 began")
	}
	p.drop("node2")
	if _, ok := p.get(3, "node2"); ok {
		t.Fatal("dropped statement kept")
	}
}
