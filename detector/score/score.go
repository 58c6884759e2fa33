package score

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

// NodeID is a member ID.
type NodeID = evidence.NodeID

// ErrNotJustified is wrapped by Justify when the evidence does not support
// the action.
var ErrNotJustified = errors.New("action not justified by the evidence")

// Action is what the decision asks for one node, in increasing severity.
type Action uint8

// Actions.
const (
	ActionNone       Action = 0
	ActionWarn       Action = 1 // a positive score: log and metric
	ActionResync     Action = 2 // state divergence reported by enough members: re-sync
	ActionEscalate   Action = 3 // score ≥ AnomalyThreshold: escalate to BFT
	ActionQuarantine Action = 4 // proof, or score ≥ QuarantineThreshold
)

func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionWarn:
		return "warn"
	case ActionResync:
		return "resync"
	case ActionEscalate:
		return "escalate"
	case ActionQuarantine:
		return "quarantine"
	default:
		return fmt.Sprintf("action(%d)", uint8(a))
	}
}

// Decay returns weight after age with the given half-life:
// weight · 2^(−age/halfLife). A negative age counts as 0, so the result
// never exceeds weight; it is non-increasing in age.
func Decay(weight float64, age, halfLife time.Duration) float64 {
	if age <= 0 {
		return weight
	}
	return weight * math.Exp2(-float64(age)/float64(halfLife))
}

// Contribution returns what accusation a adds, at now, to its accuser's
// score of the accused, and the level it allows: zero unless the value is
// above the metric's threshold and a is neither older than MaxAge nor dated
// more than MaxClockSkew after now.
func (c Config) Contribution(a *evidence.Accusation, now time.Time) (float64, Level) {
	s, ok := c.Signal(a.Metric)
	if !ok || a.Value <= s.Threshold {
		return 0, LevelNone
	}
	age := now.Sub(a.Time())
	if age > c.MaxAge || age < -c.MaxClockSkew {
		return 0, LevelNone
	}
	return Decay(s.Weight, age, c.HalfLife), s.Level
}

// AccuserScore returns one accuser's score of one accused from that
// accuser's accusations (all of the same pair): the decayed contributions
// summed in a fixed order, capped at the ceiling of the most severe level
// among them and at 1. It is non-increasing in now (for accusations not
// dated in the future).
func (c Config) AccuserScore(as []*evidence.Accusation, now time.Time) float64 {
	sorted := slices.Clone(as)
	slices.SortFunc(sorted, compareAccusations)
	sum, lvl := 0.0, LevelNone
	for _, a := range sorted {
		w, l := c.Contribution(a, now)
		if w > 0 {
			sum += w
			lvl = max(lvl, l)
		}
	}
	return min(sum, c.ceiling(lvl), 1)
}

func compareAccusations(x, y *evidence.Accusation) int {
	return cmp.Or(cmp.Compare(x.At, y.At), cmp.Compare(x.Metric, y.Metric), cmp.Compare(x.Value, y.Value), strings.Compare(x.Detail, y.Detail), slices.Compare(x.Sig, y.Sig))
}

// Forgiveness is an operator's lift of a quarantine, as the scorer sees it:
// proofs against Node whose offence key (evidence.OffenseKey) is listed,
// and accusations against Node dated at or before At, no longer count.
// Later offences and accusations count again.
type Forgiveness struct {
	Node     NodeID
	At       time.Time
	Offenses []string
}

// Input is what a decision is computed from. Nothing else is read: no
// clock, no state.
type Input struct {
	Members  *evidence.Members
	Evidence []*evidence.Evidence
	Forgiven []Forgiveness
	Now      time.Time
}

// NodeScore is one member's standing.
type NodeScore struct {
	Node NodeID
	// Score is 1 with a proof, otherwise the robust accusation score.
	Score float64
	// Proven: an irrefutable proof against the node counts.
	Proven bool
	// Accusers is the number of distinct eligible members whose own score
	// of the node is positive.
	Accusers int
	// Action is the most severe action the decision takes for the node.
	Action Action
}

// Reason explains one action for one node.
type Reason struct {
	Node   NodeID
	Action Action
	// Proof: the action rests on irrefutable evidence.
	Proof bool
	Score float64
	// Accusers are the distinct members whose accusations carry the action
	// (the Needed highest-scoring ones), sorted; empty for a proof.
	Accusers []NodeID
	// Evidence holds what justifies the action — the proofs, or the
	// counted accusations of Accusers — sorted by ID. Justify accepts it.
	Evidence []*evidence.Evidence
	Text     string
}

// Rejected is evidence Decide dropped because it does not verify.
type Rejected struct {
	ID       evidence.ID
	Kind     evidence.Kind
	Offender NodeID
	Err      error
}

// Decision is the cluster-wide verdict. It is a pure function of Input.
type Decision struct {
	// Escalate: switch the cluster to BFT (a proof exists, or some node's
	// score reached AnomalyThreshold).
	Escalate bool
	// Quarantine lists the nodes to quarantine, sorted.
	Quarantine []NodeID
	// Resync lists nodes (not quarantined) that enough members report as
	// diverged: they should re-sync from a checkpoint. Sorted.
	Resync []NodeID
	// Warn lists nodes with a positive score and no other action. Sorted.
	Warn []NodeID
	// Threat is the cluster threat level: the highest node score.
	Threat float64
	// Needed is the number of distinct accusers an action on accusations
	// needs: max(f+1, MinAccusers).
	Needed int
	// Scores has every member with a positive score or a proof, sorted.
	Scores []NodeScore
	// Reasons has one entry per node with an action above warn, sorted by
	// node.
	Reasons []Reason
	// Rejected lists evidence that failed evidence.Verify.
	Rejected []Rejected
	// Forgiven counts evidence ignored because of an operator's lift.
	Forgiven int
}

// forgiven reports whether e is covered by a lift in fs.
func isForgiven(e *evidence.Evidence, fs []Forgiveness) bool {
	for _, f := range fs {
		if f.Node != e.Offender {
			continue
		}
		if e.Kind == evidence.KindAccusation {
			if e.Accusation.At <= f.At.UnixNano() {
				return true
			}
			continue
		}
		if slices.Contains(f.Offenses, e.OffenseKey()) {
			return true
		}
	}
	return false
}

// accuserView is one accuser's standing against one node.
type accuserView struct {
	accuser    NodeID
	score      float64
	divergence bool // a counted state-divergence accusation
	evidence   []*evidence.Evidence
}

// Decide computes the cluster decision (DESIGN invariant 8). The formula,
// also in docs/detector.md:
//
//  1. Every evidence record is verified with evidence.Verify against
//     in.Members; failures go to Rejected and count for nothing. Evidence
//     covered by a Forgiveness is ignored.
//  2. A node with a verified irrefutable proof is proven: its score is 1
//     and it is quarantined, whatever else holds.
//  3. For an accused node X and each eligible accuser A (a member other
//     than X, not itself proven), A's score of X is
//     s_A(X) = min(1, ceiling(L), Σ w_i · 2^(−age_i/HalfLife)) over A's
//     accusations of X whose value is above the metric's threshold and
//     whose age is at most MaxAge (dated at most MaxClockSkew ahead),
//     where w_i is the metric's weight and L the most severe level among
//     them (ceiling: WarningCeiling, EscalateCeiling, or 1).
//  4. X's score is the k-th largest s_A(X), k = Needed(n) =
//     max(f+1, MinAccusers), or 0 with fewer than k accusers. At most f
//     accusers lie, so at least one of the top k is correct: no score
//     exceeds what some correct member observed.
//  5. Quarantine X iff proven or score ≥ QuarantineThreshold. Escalate iff
//     any node is proven or the threat level (the highest score) is ≥
//     AnomalyThreshold. Resync X (if not quarantined) when k eligible
//     accusers counted a state divergence of X. Warn X when its score is
//     positive and nothing else applies.
//
// Decide is deterministic: the same Input gives the same Decision (sums
// run in a fixed order; ties are broken by ID).
func Decide(c Config, in Input) Decision {
	d := Decision{}
	if in.Members == nil {
		return d
	}
	d.Needed = c.Needed(in.Members.N())
	evs := slices.Clone(in.Evidence)
	ids := make(map[*evidence.Evidence]evidence.ID, len(evs))
	for _, e := range evs {
		if e == nil {
			continue
		}
		if b, err := evidence.Marshal(e); err == nil {
			ids[e] = evidence.IDOf(b)
		}
	}
	proofs := map[NodeID][]*evidence.Evidence{}
	accs := map[NodeID]map[NodeID][]*evidence.Evidence{} // accused → accuser → accusations
	seen := map[evidence.ID]bool{}
	for _, e := range evs {
		if _, ok := ids[e]; !ok && e != nil {
			d.Rejected = append(d.Rejected, Rejected{Kind: e.Kind, Offender: e.Offender, Err: fmt.Errorf("score: evidence does not encode: %w", evidence.ErrMalformed)})
			continue
		}
		if err := evidence.Verify(e, in.Members); err != nil {
			r := Rejected{Err: err}
			if e != nil {
				r.ID, r.Kind, r.Offender = ids[e], e.Kind, e.Offender
			}
			d.Rejected = append(d.Rejected, r)
			continue
		}
		if seen[ids[e]] {
			continue
		}
		seen[ids[e]] = true
		if isForgiven(e, in.Forgiven) {
			d.Forgiven++
			continue
		}
		if e.Irrefutable() {
			proofs[e.Offender] = append(proofs[e.Offender], e)
			continue
		}
		a := e.Accusation
		if accs[a.Accused] == nil {
			accs[a.Accused] = map[NodeID][]*evidence.Evidence{}
		}
		accs[a.Accused][a.Accuser] = append(accs[a.Accused][a.Accuser], e)
	}
	slices.SortFunc(d.Rejected, func(x, y Rejected) int { return x.ID.Compare(y.ID) })
	byID := func(x, y *evidence.Evidence) int { return ids[x].Compare(ids[y]) }

	for _, x := range in.Members.IDs() {
		ns := NodeScore{Node: x}
		if ps := proofs[x]; len(ps) > 0 {
			slices.SortFunc(ps, byID)
			ns.Score, ns.Proven, ns.Action = 1, true, ActionQuarantine
			d.Reasons = append(d.Reasons, Reason{Node: x, Action: ActionQuarantine, Proof: true, Score: 1, Evidence: ps,
				Text: fmt.Sprintf("%d irrefutable proof(s), first: %s", len(ps), ps[0].Summary())})
		}
		var views []accuserView
		for accuser, list := range accs[x] {
			if len(proofs[accuser]) > 0 {
				continue // a proven liar's word counts for nothing
			}
			v := accuserView{accuser: accuser}
			var counted []*evidence.Accusation
			for _, e := range list {
				if w, _ := c.Contribution(e.Accusation, in.Now); w > 0 {
					counted = append(counted, e.Accusation)
					v.evidence = append(v.evidence, e)
					if e.Accusation.Metric == evidence.MetricStateDivergence {
						v.divergence = true
					}
				}
			}
			if v.score = c.AccuserScore(counted, in.Now); v.score > 0 {
				views = append(views, v)
			}
		}
		slices.SortFunc(views, func(a, b accuserView) int {
			return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(string(a.accuser), string(b.accuser)))
		})
		ns.Accusers = len(views)
		k := d.Needed
		if !ns.Proven && len(views) >= k {
			top := views[:k]
			ns.Score = top[k-1].score
			reason := Reason{Node: x, Score: ns.Score}
			for _, v := range top {
				reason.Accusers = append(reason.Accusers, v.accuser)
				reason.Evidence = append(reason.Evidence, v.evidence...)
			}
			slices.Sort(reason.Accusers)
			slices.SortFunc(reason.Evidence, byID)
			switch {
			case ns.Score >= c.QuarantineThreshold:
				ns.Action = ActionQuarantine
			case ns.Score >= c.AnomalyThreshold:
				ns.Action = ActionEscalate
			}
			if ns.Action == ActionNone {
				var div []accuserView
				for _, v := range views {
					if v.divergence {
						div = append(div, v)
					}
				}
				if len(div) >= k {
					ns.Action = ActionResync
					reason.Accusers, reason.Evidence = nil, nil
					for _, v := range div[:k] {
						reason.Accusers = append(reason.Accusers, v.accuser)
						for _, e := range v.evidence {
							if e.Accusation.Metric == evidence.MetricStateDivergence {
								reason.Evidence = append(reason.Evidence, e)
							}
						}
					}
					slices.Sort(reason.Accusers)
					slices.SortFunc(reason.Evidence, byID)
				}
			}
			if ns.Action != ActionNone {
				reason.Action = ns.Action
				reason.Text = fmt.Sprintf("score %.3f from %d distinct accusers: %s", ns.Score, k, strings.Join(ids2str(reason.Accusers), ", "))
				d.Reasons = append(d.Reasons, reason)
			}
		}
		if ns.Action == ActionNone && ns.Score > 0 {
			ns.Action = ActionWarn
		}
		switch ns.Action {
		case ActionQuarantine:
			d.Quarantine = append(d.Quarantine, x)
		case ActionResync:
			d.Resync = append(d.Resync, x)
		case ActionWarn:
			d.Warn = append(d.Warn, x)
		}
		if ns.Proven || ns.Score >= c.AnomalyThreshold {
			d.Escalate = true
		}
		d.Threat = max(d.Threat, ns.Score)
		if ns.Score > 0 || ns.Proven || ns.Accusers > 0 {
			d.Scores = append(d.Scores, ns)
		}
	}
	return d
}

func ids2str(ids []NodeID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

// ActionFor returns the action d takes for node.
func (d Decision) ActionFor(node NodeID) Action {
	for _, s := range d.Scores {
		if s.Node == node {
			return s.Action
		}
	}
	return ActionNone
}

// Justify re-checks, from evs alone, that action for node is supported: it
// runs Decide on evs and requires an action at least as severe for node
// (for ActionEscalate, that the decision escalates). The quarantine
// package calls it on a Reason's Evidence before acting, so it never acts
// on a decision it has not verified itself. Evidence against other nodes
// is not needed, so an accuser whose own proof is missing from evs counts;
// Justify is therefore never stricter than Decide.
func Justify(c Config, members *evidence.Members, node NodeID, action Action, evs []*evidence.Evidence, forgiven []Forgiveness, now time.Time) error {
	d := Decide(c, Input{Members: members, Evidence: evs, Forgiven: forgiven, Now: now})
	got := d.ActionFor(node)
	if action == ActionEscalate && d.Escalate {
		return nil
	}
	if got >= action {
		return nil
	}
	var why []string
	for _, r := range d.Rejected {
		why = append(why, r.Err.Error())
	}
	score := 0.0
	for _, s := range d.Scores {
		if s.Node == node {
			score = s.Score
		}
	}
	return fmt.Errorf("score: %w: %s of %q: the %d evidence record(s) give %s (score %.3f, %d accusers needed); rejected: [%s]",
		ErrNotJustified, action, node, len(evs), got, score, d.Needed, strings.Join(why, "; "))
}
