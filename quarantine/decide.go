package quarantine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// NodeID is a member ID.
type NodeID = evidence.NodeID

// ErrTooMany is wrapped by a Refusal when quarantining one more node on
// accusations alone would quarantine more than f members.
var ErrTooMany = errors.New("more than f members would be quarantined on accusations")

// Mode is the consensus mode the cluster runs in.
type Mode uint8

// Modes.
const (
	ModeCFT Mode = 1 // Raft
	ModeBFT Mode = 2 // HotStuff
)

func (m Mode) String() string {
	switch m {
	case ModeCFT:
		return "cft"
	case ModeBFT:
		return "bft"
	default:
		return fmt.Sprintf("mode(%d)", uint8(m))
	}
}

// State is what Decide needs to know of the node: who it is, who leads,
// the mode, and who is quarantined already (Manager.IDs).
type State struct {
	Self        NodeID
	Leader      NodeID // "" when unknown
	Mode        Mode
	Quarantined []NodeID
}

// Policy is how Decide re-checks a decision: the scoring config, the
// member set, the operator lifts in force (Manager.Forgiven) and the time.
type Policy struct {
	Config   score.Config
	Members  *evidence.Members
	Forgiven []score.Forgiveness
	Now      time.Time
}

// Entry is one quarantined node: since when, why, and the evidence that
// justified it (re-verified before the entry was made).
type Entry struct {
	Node     NodeID
	Since    time.Time
	Reason   string
	Evidence []*evidence.Evidence
}

// Refusal is a decision Decide would not act on, and why.
type Refusal struct {
	Node NodeID
	Err  error
}

// Action is what the node must do after a decision. The fields are
// independent; the node applies them in this order: persist (Manager.Apply)
// and alert, then tell the engines.
type Action struct {
	// Quarantine lists newly quarantined nodes, with their evidence.
	Quarantine []Entry
	// AddEvidence lists further evidence against nodes already
	// quarantined (kept with their entry, for forensics and lifts).
	AddEvidence []Entry
	// Refused lists decisions that did not survive re-verification.
	Refused []Refusal
	// RemoveVoters (CFT): the newly quarantined members to remove from
	// the Raft voters. The Raft leader does it; RPCs from them are
	// refused by every node (Manager.IsQuarantined).
	RemoveVoters []NodeID
	// TransferLeadership (CFT): the current leader is newly quarantined;
	// if it is Self, it must transfer leadership, and the others stop
	// accepting its entries and call an election.
	TransferLeadership bool
	// ViewChange (BFT): the current leader is newly quarantined; force an
	// immediate view change (the rotation skips quarantined members).
	ViewChange bool
	// Escalate (CFT): switch the cluster to BFT.
	Escalate bool
	// Resync: Self is reported diverged by enough members and must
	// re-sync from a checkpoint.
	Resync bool
	// SelfQuarantined: the cluster proved Self misbehaved (for example
	// its key leaked). It should stop taking part and alert its operator.
	SelfQuarantined bool
	// Warn lists nodes with a positive score and no other action.
	Warn []NodeID
}

// Empty reports whether a asks for nothing.
func (a Action) Empty() bool {
	return len(a.Quarantine) == 0 && len(a.AddEvidence) == 0 && len(a.Refused) == 0 && len(a.RemoveVoters) == 0 &&
		!a.TransferLeadership && !a.ViewChange && !a.Escalate && !a.Resync && !a.SelfQuarantined && len(a.Warn) == 0
}

// Decide turns a detector decision into an action for this node. It is
// pure. It never takes the decision's word: each quarantine is re-justified
// with score.Justify from the reason's own evidence (STYLE principle 12),
// and so is escalation. Rules:
//
//   - a node is quarantined only if its reason re-justifies; a node proven
//     by irrefutable evidence always is;
//   - a node is quarantined on accusations alone only while that keeps
//     the quarantined members (old and new, proofs first) at most f (f of
//     p.Members); further ones are refused with ErrTooMany, since more
//     than f Byzantine members breaks every assumption the rule rests on;
//   - an already quarantined node gets no new entry; its new evidence goes
//     to AddEvidence;
//   - CFT: new quarantines are removed from the voters, and a quarantined
//     leader loses leadership; escalation happens if any escalate or
//     quarantine reason re-justifies escalation;
//   - BFT: a quarantined leader triggers a view change; Escalate stays
//     false (already BFT).
func Decide(p Policy, d score.Decision, st State) Action {
	var a Action
	if p.Members == nil {
		return a
	}
	already := map[NodeID]bool{}
	for _, id := range st.Quarantined {
		already[id] = true
	}
	total := len(already) // quarantined members, old and new
	escalate := false
	reasons := slices.Clone(d.Reasons)
	// Proofs first, so the f budget goes to accusations last.
	slices.SortStableFunc(reasons, func(x, y score.Reason) int {
		if x.Proof != y.Proof {
			if x.Proof {
				return -1
			}
			return 1
		}
		return 0
	})
	for _, r := range reasons {
		if r.Action < score.ActionEscalate {
			continue
		}
		if !escalate && score.Justify(p.Config, p.Members, r.Node, score.ActionEscalate, r.Evidence, p.Forgiven, p.Now) == nil {
			escalate = true
		}
		if r.Action != score.ActionQuarantine {
			continue
		}
		if err := score.Justify(p.Config, p.Members, r.Node, score.ActionQuarantine, r.Evidence, p.Forgiven, p.Now); err != nil {
			a.Refused = append(a.Refused, Refusal{Node: r.Node, Err: err})
			continue
		}
		e := Entry{Node: r.Node, Since: p.Now, Reason: r.Text, Evidence: slices.Clone(r.Evidence)}
		if already[r.Node] {
			a.AddEvidence = append(a.AddEvidence, e)
			continue
		}
		if !r.Proof && total+1 > p.Members.F() {
			a.Refused = append(a.Refused, Refusal{Node: r.Node, Err: fmt.Errorf("quarantine: %q: %w (f = %d, %d quarantined)", r.Node, ErrTooMany, p.Members.F(), total)})
			continue
		}
		total++
		already[r.Node] = true
		a.Quarantine = append(a.Quarantine, e)
		switch st.Mode {
		case ModeCFT:
			a.RemoveVoters = append(a.RemoveVoters, r.Node)
			if r.Node == st.Leader {
				a.TransferLeadership = true
			}
		case ModeBFT:
			if r.Node == st.Leader {
				a.ViewChange = true
			}
		}
		if r.Node == st.Self {
			a.SelfQuarantined = true
		}
	}
	a.Escalate = escalate && st.Mode == ModeCFT
	a.Resync = slices.Contains(d.Resync, st.Self)
	a.Warn = slices.Clone(d.Warn)
	return a
}
