// Package twins tests HotStuff safety the Twins way (Bano et al., "Twins:
// BFT Systems Made Robust"): some members run as two instances that share
// one identity and one key, each running correct code with its own
// storage. Twins model equivocation (two leaders of one view, two votes of
// one member) without writing any Byzantine code. A scenario fixes, for each
// of its views, the leader and a partition of the instances; messages
// crossing the partition of the sender's current view are dropped. After the
// listed views, or from tick HealAt on, the network is whole again; leaders
// after the listed views rotate round-robin.
//
// Scenarios are plain JSON (Scenario), generated from a seed (Generate) and
// replayable exactly (Run is deterministic). Every run is checked with
// sim.Sim.Check: no two instances commit different blocks at one height,
// logs are parent chains, and evidence never names a member without a twin.
//
// BrokenVoteTwice is a deliberately unsafe voting rule; the package's tests
// show that the harness finds a safety violation with it.
package twins

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/sim"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Scenario is one Twins test case.
type Scenario struct {
	// Seed drives the simulation's delays, delivery order and command
	// injection.
	Seed int64 `json:"seed"`
	// N is the number of members (IDs n0 … n{N−1}).
	N int `json:"n"`
	// Twins lists the members that run as two instances. Instance i < N is
	// member i; instance N+k is the twin of member Twins[k].
	Twins []int `json:"twins"`
	// Variant is "chained-hotstuff" or "two-chain-hotstuff".
	Variant string `json:"variant"`
	// Views gives, for views 1, 2, …, the leader (a member index) and the
	// partition of instances (groups of instance indexes; an instance in no
	// group is isolated).
	Views []View `json:"views"`
	// Ticks is the run length.
	Ticks int `json:"ticks"`
	// HealAt is the tick from which no message is dropped any more (a
	// partition without a quorum would otherwise freeze its view, and with
	// it the partition, forever). 0 means 12 ticks per scripted view.
	HealAt int `json:"heal_at,omitempty"`
}

// View is one view of a scenario.
type View struct {
	Leader     int     `json:"leader"`
	Partitions [][]int `json:"partitions"`
}

// Instances returns the number of instances.
func (sc *Scenario) Instances() int { return sc.N + len(sc.Twins) }

// Validate checks the scenario's indexes.
func (sc *Scenario) Validate() error {
	if sc.N < 1 {
		return fmt.Errorf("twins: n is %d", sc.N)
	}
	if _, err := core.ParseVariant(sc.Variant); err != nil {
		return fmt.Errorf("twins: %w", err)
	}
	for _, m := range sc.Twins {
		if m < 0 || m >= sc.N {
			return fmt.Errorf("twins: twin of member %d, n is %d", m, sc.N)
		}
	}
	for i, v := range sc.Views {
		if v.Leader < 0 || v.Leader >= sc.N {
			return fmt.Errorf("twins: view %d: leader %d, n is %d", i+1, v.Leader, sc.N)
		}
		seen := map[int]bool{}
		for _, g := range v.Partitions {
			for _, x := range g {
				if x < 0 || x >= sc.Instances() || seen[x] {
					return fmt.Errorf("twins: view %d: instance %d out of range or in two groups", i+1, x)
				}
				seen[x] = true
			}
		}
	}
	if sc.Ticks < 1 {
		return fmt.Errorf("twins: ticks is %d", sc.Ticks)
	}
	return nil
}

// Load reads a JSON scenario.
func Load(path string) (*Scenario, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("twins: %w", err)
	}
	var sc Scenario
	if err := json.Unmarshal(raw, &sc); err != nil {
		return nil, fmt.Errorf("twins: decode %s: %w", path, err)
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// JSON returns the scenario as indented JSON.
func (sc *Scenario) JSON() string {
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		panic(err)
	}
	return string(b)
}

// GenerateConfig shapes generated scenarios.
type GenerateConfig struct {
	N       int
	Twins   []int
	Variant core.Variant
	// Views is how many views the scenario fixes.
	Views int
	// Ticks is the run length.
	Ticks int
	// MaxGroups bounds the number of partition groups per view (1 means
	// never partitioned).
	MaxGroups int
	// TwinLeaders is the probability that a view is led by a twinned
	// member (otherwise the leader is uniform over all members).
	TwinLeaders float64
}

// DefaultGenerateConfig: 4 members, member 0 twinned, 8 views, up to 3
// groups.
func DefaultGenerateConfig(v core.Variant) GenerateConfig {
	return GenerateConfig{N: 4, Twins: []int{0}, Variant: v, Views: 8, Ticks: 220, MaxGroups: 3, TwinLeaders: 0.5}
}

// Generate returns the scenario sampled by seed. Twinned members lead a
// TwinLeaders share of the views (they are the interesting leaders);
// partitions split the instances uniformly into 1..MaxGroups groups.
func Generate(cfg GenerateConfig, seed int64) *Scenario {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7a1115))
	sc := &Scenario{Seed: seed, N: cfg.N, Twins: slices.Clone(cfg.Twins), Variant: cfg.Variant.String(), Ticks: cfg.Ticks}
	ni := sc.Instances()
	for range cfg.Views {
		var v View
		if len(cfg.Twins) > 0 && rng.Float64() < cfg.TwinLeaders {
			v.Leader = cfg.Twins[rng.IntN(len(cfg.Twins))]
		} else {
			v.Leader = rng.IntN(cfg.N)
		}
		k := 1 + rng.IntN(max(cfg.MaxGroups, 1))
		groups := make([][]int, k)
		for i := range ni {
			g := rng.IntN(k)
			groups[g] = append(groups[g], i)
		}
		for _, g := range groups {
			if len(g) > 0 {
				v.Partitions = append(v.Partitions, g)
			}
		}
		sc.Views = append(sc.Views, v)
	}
	return sc
}

// Options changes how a scenario runs.
type Options struct {
	// VoteRule replaces the variant's voting rule in every instance (to
	// check that the harness catches a broken rule).
	VoteRule safety.VoteRule
}

// Result summarises a run.
type Result struct {
	// Violation is set when Check failed.
	Violation *sim.ViolationError
	// MinCommitted and MaxCommitted are the shortest and longest committed
	// logs among instances.
	MinCommitted, MaxCommitted int
	// Evidence counts evidence reports (all against twinned members when
	// Violation is nil).
	Evidence int
	// HonestFork is set when two instances of members without a twin
	// committed different blocks at one height (the strongest kind of
	// violation: not even the twinned identity is involved).
	HonestFork string
}

// Safe reports whether the run kept agreement (other invariants may still
// have failed; see Violation).
func (r *Result) Safe() bool { return r.Violation == nil || !r.Violation.HasAgreementViolation() }

// Run executes the scenario.
func Run(sc *Scenario, opts Options) (*Result, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	v, _ := core.ParseVariant(sc.Variant)
	instances := make([]int, 0, sc.Instances())
	for i := range sc.N {
		instances = append(instances, i)
	}
	instances = append(instances, sc.Twins...)
	cfg := sim.Config{
		N:             sc.N,
		Instances:     instances,
		Seed:          sc.Seed,
		Variant:       v,
		Ticks:         sc.Ticks,
		Pacemaker:     pacemaker.Config{ViewTimeout: 8, ResendInterval: 3, MaxRetries: 2},
		MaxBatch:      4,
		IdlePropose:   1,
		Net:           sim.NetConfig{MinDelay: 1, MaxDelay: 2},
		CommandEvery:  2,
		CommandSubset: true,
		VoteRule:      opts.VoteRule,
	}
	cfg.NewRotation = func(members []types.NodeID) leaderrotation.Rotation {
		sched := map[types.View]types.NodeID{}
		for i, vw := range sc.Views {
			sched[types.View(i+1)] = members[vw.Leader]
		}
		return &leaderrotation.Fixed{Schedule: sched, Fallback: leaderrotation.NewRoundRobin(members)}
	}
	healAt := sc.HealAt
	if healAt == 0 {
		healAt = 12 * len(sc.Views)
	}
	cfg.Drop = func(s *sim.Sim, from, to *sim.Instance, _ types.Message) bool {
		if s.Tick >= healAt {
			return false
		}
		view := int(from.Core.View())
		if view < 1 || view > len(sc.Views) {
			return false
		}
		return !sameGroup(sc.Views[view-1].Partitions, from.Index, to.Index)
	}
	s, err := sim.New(cfg)
	if err != nil {
		return nil, err
	}
	res := &Result{MinCommitted: -1}
	if err := s.Run(); err != nil {
		var ve *sim.ViolationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		res.Violation = ve
	}
	var honest []*sim.Instance
	for _, in := range s.Instances {
		if !s.Twinned(in.Member) {
			honest = append(honest, in)
		}
	}
	for i, a := range honest {
		for _, b := range honest[i+1:] {
			for h := range min(len(a.LogHashes), len(b.LogHashes)) {
				if a.LogHashes[h] != b.LogHashes[h] && res.HonestFork == "" {
					res.HonestFork = fmt.Sprintf("height %d: %s committed %s, %s committed %s", h+1, a.ID, a.LogHashes[h], b.ID, b.LogHashes[h])
				}
			}
		}
	}
	for _, in := range s.Instances {
		if res.MinCommitted < 0 || len(in.Log) < res.MinCommitted {
			res.MinCommitted = len(in.Log)
		}
		res.MaxCommitted = max(res.MaxCommitted, len(in.Log))
		res.Evidence += len(in.Evidence)
	}
	return res, nil
}

func sameGroup(groups [][]int, a, b int) bool {
	for _, g := range groups {
		if slices.Contains(g, a) {
			return slices.Contains(g, b)
		}
	}
	return false
}

// BrokenVoteTwice is a deliberately unsafe voting rule: it wraps a sound
// rule but forgets that it already voted in its last voted view, so it
// votes for a second, different block in that view (the mistake the
// one-vote-per-view check and CometBFT's double-sign guard exist to
// prevent). Safety rests on it: with twinned leaders proposing two blocks
// per view, correct replicas then certify both and the chain forks.
type BrokenVoteTwice struct {
	Inner safety.VoteRule
}

// Check implements safety.VoteRule.
func (r BrokenVoteTwice) Check(d safety.SafetyData, c safety.Candidate) (safety.SafetyData, error) {
	last := d.LastVotedView
	if c.Block.View == last && last > 0 {
		d.LastVotedView = last - 1
	}
	out, err := r.Inner.Check(d, c)
	if err == nil {
		out.LastVotedView = max(out.LastVotedView, last)
	}
	return out, err
}

// BrokenIgnoreLock is a voting rule that checks only the view (it ignores
// the lock and the 2-chain TC condition). It is unsafe against a Byzantine
// leader that proposes on a stale QC; see the tests for why Twins, whose
// twins run correct code, cannot expose it in this implementation.
type BrokenIgnoreLock struct{}

// Check implements safety.VoteRule.
func (BrokenIgnoreLock) Check(d safety.SafetyData, c safety.Candidate) (safety.SafetyData, error) {
	return d, safety.CheckView(d, c)
}

var (
	_ safety.VoteRule = BrokenVoteTwice{}
	_ safety.VoteRule = BrokenIgnoreLock{}
)
