package sim

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// ErrViolation is wrapped by Check's error.
var ErrViolation = errors.New("simulation invariant violated")

// ViolationError lists everything Check found wrong in a run.
type ViolationError struct {
	Seed     int64
	Problems []string
}

func (e *ViolationError) Error() string {
	return fmt.Sprintf("seed %d: %d problem(s):\n  %s", e.Seed, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Unwrap returns ErrViolation.
func (e *ViolationError) Unwrap() error { return ErrViolation }

// HasAgreementViolation reports whether the problems include two correct
// instances committing different blocks at one height.
func (e *ViolationError) HasAgreementViolation() bool {
	for _, p := range e.Problems {
		if strings.HasPrefix(p, "agreement:") {
			return true
		}
	}
	return false
}

// Correct reports whether instance in runs correct code (it is not a
// configured Byzantine member; twins count as correct code).
func (s *Sim) Correct(in *Instance) bool { return s.cfg.Byzantine[in.Member] == nil }

// Twinned reports whether member m has more than one instance.
func (s *Sim) Twinned(m int) bool {
	n := 0
	for _, in := range s.Instances {
		if in.Member == m {
			n++
		}
	}
	return n > 1
}

// Check verifies the run's invariants and returns a *ViolationError if any
// fails:
//   - chain: every instance's committed log is a parent chain from genesis
//     (checked as commits happen);
//   - agreement: no two correct instances committed different blocks at the
//     same height (so their logs are prefixes of one another: total order);
//   - duplicates: no command appears twice in a correct instance's log;
//   - evidence: every evidence verifies and names a Byzantine or twinned
//     member, never a correct one;
//   - liveness (when configured).
func (s *Sim) Check() error {
	problems := append([]string(nil), s.problems...)
	var correct []*Instance
	for _, in := range s.Instances {
		if s.Correct(in) {
			correct = append(correct, in)
		}
	}
	// Agreement: compare every correct log with the longest one.
	var ref *Instance
	for _, in := range correct {
		if ref == nil || len(in.Log) > len(ref.Log) {
			ref = in
		}
	}
	for _, in := range correct {
		if in == ref {
			continue
		}
		for h := range in.Log {
			if a, b := in.LogHashes[h], ref.LogHashes[h]; a != b {
				problems = append(problems, fmt.Sprintf("agreement: height %d: instance %d (%s) committed %s (view %d), instance %d (%s) committed %s (view %d)",
					h+1, in.Index, in.ID, a, in.Log[h].View, ref.Index, ref.ID, b, ref.Log[h].View))
				break
			}
		}
	}
	for _, in := range correct {
		seen := map[string]uint64{}
		for _, b := range in.Log {
			for _, c := range b.Payload {
				if h, dup := seen[string(c)]; dup {
					problems = append(problems, fmt.Sprintf("duplicate: instance %d (%s) committed command %q at heights %d and %d", in.Index, in.ID, c, h, b.Height))
				}
				seen[string(c)] = b.Height
			}
		}
	}
	for _, in := range s.Instances {
		for _, ev := range in.Evidence {
			if err := ev.Verify(s.Committee, BadPrefixValidator{}); err != nil {
				problems = append(problems, fmt.Sprintf("evidence: instance %d reported evidence that does not verify: %v", in.Index, err))
			}
			m := s.memberIndex(ev.Offender)
			if s.cfg.Byzantine[m] == nil && !s.Twinned(m) {
				problems = append(problems, fmt.Sprintf("evidence: instance %d (%s) accused correct member %s: %s", in.Index, in.ID, ev.Offender, ev))
			}
		}
	}
	if l := s.cfg.Liveness; l != nil {
		problems = append(problems, s.checkLiveness(correct, l)...)
	}
	if len(problems) > 0 {
		return &ViolationError{Seed: s.cfg.Seed, Problems: problems}
	}
	return nil
}

func (s *Sim) memberIndex(id types.NodeID) int {
	for i, x := range s.IDs {
		if x == id {
			return i
		}
	}
	return -1
}

func (s *Sim) checkLiveness(correct []*Instance, l *Liveness) []string {
	var problems []string
	from := s.cfg.StableAt + l.Grace
	for _, in := range correct {
		if !in.Alive {
			continue
		}
		n := 0
		for _, t := range in.LogTicks {
			if t >= from {
				n++
			}
		}
		if n < l.MinCommits {
			problems = append(problems, fmt.Sprintf("liveness: instance %d (%s) committed %d blocks after tick %d, want at least %d (view %d, height %d)",
				in.Index, in.ID, n, from, l.MinCommits, in.Core.View(), len(in.Log)))
		}
		if !l.Commands {
			continue
		}
		have := map[string]bool{}
		for _, b := range in.Log {
			for _, c := range b.Payload {
				have[string(c)] = true
			}
		}
		missing := 0
		first := ""
		for _, inj := range s.injected {
			if inj.tick < s.cfg.StableAt || inj.tick > s.cfg.Ticks-l.Grace {
				continue
			}
			if !have[inj.cmd] {
				if missing == 0 {
					first = inj.cmd
				}
				missing++
			}
		}
		if missing > 0 {
			problems = append(problems, fmt.Sprintf("liveness: instance %d (%s) is missing %d command(s) injected after stabilisation, first %q",
				in.Index, in.ID, missing, first))
		}
	}
	return problems
}

// Summary describes the outcome of a run in one line.
func (s *Sim) Summary() string {
	minH, maxH := -1, 0
	var maxView types.View
	ev := 0
	for _, in := range s.Instances {
		if !s.Correct(in) {
			continue
		}
		if minH < 0 || len(in.Log) < minH {
			minH = len(in.Log)
		}
		maxH = max(maxH, len(in.Log))
		maxView = max(maxView, in.MaxView)
		ev += len(in.Evidence)
	}
	return fmt.Sprintf("seed=%d ticks=%d committed=[%d,%d] maxView=%d evidence=%d sent=%d dropped=%d",
		s.cfg.Seed, s.Tick, minH, maxH, maxView, ev, s.Stats.Sent, s.Stats.Dropped)
}
