package quarantine

import (
	"errors"
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

func nodes(es []Entry) []NodeID {
	var out []NodeID
	for _, e := range es {
		out = append(out, e.Node)
	}
	return out
}

func TestDecideProofCFT(t *testing.T) {
	p := policy(t, 4)
	a := Decide(p, decision(p, proof(t, "n2", 1)), State{Self: "n0", Leader: "n1", Mode: ModeCFT})
	if !slices.Equal(nodes(a.Quarantine), []NodeID{"n2"}) || !slices.Equal(a.RemoveVoters, []NodeID{"n2"}) || !a.Escalate {
		t.Fatalf("action %+v", a)
	}
	if a.TransferLeadership || a.ViewChange || a.SelfQuarantined || len(a.Refused) != 0 {
		t.Fatalf("unexpected flags %+v", a)
	}
	if len(a.Quarantine[0].Evidence) != 1 || !a.Quarantine[0].Since.Equal(t0) {
		t.Fatalf("entry %+v", a.Quarantine[0])
	}
}

func TestDecideLeader(t *testing.T) {
	p := policy(t, 4)
	d := decision(p, proof(t, "n1", 1))
	cft := Decide(p, d, State{Self: "n0", Leader: "n1", Mode: ModeCFT})
	if !cft.TransferLeadership || cft.ViewChange || !cft.Escalate {
		t.Fatalf("CFT leader quarantined: %+v", cft)
	}
	bft := Decide(p, d, State{Self: "n0", Leader: "n1", Mode: ModeBFT})
	if !bft.ViewChange || bft.TransferLeadership || bft.Escalate || len(bft.RemoveVoters) != 0 {
		t.Fatalf("BFT leader quarantined: %+v", bft)
	}
	self := Decide(p, d, State{Self: "n1", Leader: "n1", Mode: ModeBFT})
	if !self.SelfQuarantined {
		t.Fatalf("self not flagged: %+v", self)
	}
}

func TestDecideAlreadyQuarantined(t *testing.T) {
	p := policy(t, 4)
	a := Decide(p, decision(p, proof(t, "n2", 1), proof(t, "n2", 2)), State{Self: "n0", Mode: ModeCFT, Quarantined: []NodeID{"n2"}})
	if len(a.Quarantine) != 0 || len(a.RemoveVoters) != 0 || !slices.Equal(nodes(a.AddEvidence), []NodeID{"n2"}) || len(a.AddEvidence[0].Evidence) != 2 {
		t.Fatalf("action %+v", a)
	}
}

// TestDecideReverifies: a decision whose reasons do not hold up — forged
// evidence, too few accusers — is refused, whatever it claims.
func TestDecideReverifies(t *testing.T) {
	p := policy(t, 4)
	one := accuse(t, "n0", "n3", evidence.MetricSignatureFailure, t0)
	forged := accuse(t, "n1", "n3", evidence.MetricSignatureFailure, t0)
	forged.Accusation.Value = 7 // breaks the signature
	fake := score.Decision{Escalate: true, Quarantine: []NodeID{"n3"}, Reasons: []score.Reason{
		{Node: "n3", Action: score.ActionQuarantine, Evidence: []*evidence.Evidence{one, forged}},
	}}
	a := Decide(p, fake, State{Self: "n0", Mode: ModeCFT})
	if len(a.Quarantine) != 0 || a.Escalate || len(a.Refused) != 1 || !errors.Is(a.Refused[0].Err, score.ErrNotJustified) {
		t.Fatalf("acted on an unjustified decision: %+v", a)
	}
}

// TestDecideAtMostFOnAccusations: accusations alone never quarantine more
// than f members; proofs always quarantine.
func TestDecideAtMostFOnAccusations(t *testing.T) {
	p := policy(t, 4) // f = 1
	evs := []*evidence.Evidence{
		accuse(t, "n0", "n2", evidence.MetricSignatureFailure, t0), accuse(t, "n1", "n2", evidence.MetricSignatureFailure, t0),
		accuse(t, "n0", "n3", evidence.MetricSignatureFailure, t0), accuse(t, "n1", "n3", evidence.MetricSignatureFailure, t0),
	}
	a := Decide(p, decision(p, evs...), State{Self: "n0", Mode: ModeCFT})
	if len(a.Quarantine) != 1 || len(a.Refused) != 1 || !errors.Is(a.Refused[0].Err, ErrTooMany) {
		t.Fatalf("action %+v", a)
	}
	a = Decide(p, decision(p, append(evs, proof(t, "n2", 1), proof(t, "n3", 1))...), State{Self: "n0", Mode: ModeCFT})
	if !slices.Equal(nodes(a.Quarantine), []NodeID{"n2", "n3"}) || len(a.Refused) != 0 {
		t.Fatalf("proofs: %+v", a)
	}
	a = Decide(p, decision(p, evs[:2]...), State{Self: "n0", Mode: ModeCFT, Quarantined: []NodeID{"n1"}})
	if len(a.Quarantine) != 0 || len(a.Refused) != 1 {
		t.Fatalf("with one already quarantined: %+v", a)
	}
}

func TestDecideResyncAndEscalateOnly(t *testing.T) {
	p := policy(t, 4)
	div := decision(p, accuse(t, "n1", "n0", evidence.MetricStateDivergence, t0), accuse(t, "n2", "n0", evidence.MetricStateDivergence, t0))
	if a := Decide(p, div, State{Self: "n0", Mode: ModeCFT}); !a.Resync || len(a.Quarantine) != 0 || a.Escalate {
		t.Fatalf("divergence: %+v", a)
	}
	om := decision(p, accuse(t, "n1", "n0", evidence.MetricSelectiveOmission, t0), accuse(t, "n2", "n0", evidence.MetricSelectiveOmission, t0))
	if a := Decide(p, om, State{Self: "n3", Leader: "n0", Mode: ModeCFT}); !a.Escalate || len(a.Quarantine) != 0 || a.TransferLeadership {
		t.Fatalf("omission: %+v", a)
	}
	if a := Decide(p, score.Decision{}, State{Self: "n0", Mode: ModeCFT}); !a.Empty() {
		t.Fatalf("empty decision gives %+v", a)
	}
}
