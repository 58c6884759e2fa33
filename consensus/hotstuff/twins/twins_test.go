package twins

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
)

var (
	flagScenario = flag.String("scenario", "", "replay one JSON Twins scenario file")
	flagSeed     = flag.Int64("seed", -1, "replay the generated scenario of this seed")
	flagRuns     = flag.Int("runs", 0, "scenarios per variant (0: default)")
	flagLong     = flag.Bool("long", false, "run many more scenarios")
)

func scenarioCount() int {
	switch {
	case *flagRuns > 0:
		return *flagRuns
	case *flagLong || os.Getenv("HOTSTUFF_LONG") != "":
		return 20000
	case raceEnabled:
		return 60
	}
	return 400
}

// TestTwinsSafety runs generated scenarios (4 members, member n0 twinned and
// allowed to lead, 8 scripted views with random leaders and partitions,
// then a healed network) for both variants and requires safety in every
// one. A failure prints the scenario as JSON; save it and replay with
//
//	go test ./consensus/hotstuff/twins -run TestTwinsReplay -scenario file.json -v
func TestTwinsSafety(t *testing.T) {
	for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
		t.Run(v.String(), func(t *testing.T) {
			start := time.Now()
			gen := DefaultGenerateConfig(v)
			count, committed, evidence := 0, 0, 0
			for seed := int64(1); seed <= int64(scenarioCount()); seed++ {
				if *flagSeed >= 0 && seed != *flagSeed {
					continue
				}
				sc := Generate(gen, seed)
				res, err := Run(sc, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if res.Violation != nil || res.HonestFork != "" {
					t.Fatalf("scenario violates an invariant: %v %s\nscenario:\n%s", res.Violation, res.HonestFork, sc.JSON())
				}
				count++
				if res.MinCommitted > 0 {
					committed++
				}
				evidence += res.Evidence
			}
			t.Logf("%d scenarios safe in %v; %d made every instance commit; %d evidence reports, all against the twinned member",
				count, time.Since(start).Round(time.Millisecond), committed, evidence)
			if count > 50 && committed < count/2 {
				t.Fatalf("only %d of %d scenarios committed anything: the harness is not exercising the protocol", committed, count)
			}
		})
	}
}

// TestTwinsTwoTwins: n = 7 with two twinned members (f = 2).
func TestTwinsTwoTwins(t *testing.T) {
	gen := DefaultGenerateConfig(core.ThreeChain)
	gen.N, gen.Twins = 7, []int{0, 3}
	runs := max(scenarioCount()/6, 20)
	for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
		gen.Variant = v
		for seed := int64(1); seed <= int64(runs); seed++ {
			sc := Generate(gen, seed)
			res, err := Run(sc, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Violation != nil {
				t.Fatalf("%s: %v\nscenario:\n%s", v, res.Violation, sc.JSON())
			}
		}
	}
}

// brokenSearch is the generator for the broken-rule search: twinned
// leaders in most views and longer scripts make forks likelier.
func brokenSearch(v core.Variant) GenerateConfig {
	g := DefaultGenerateConfig(v)
	g.Views, g.MaxGroups, g.TwinLeaders = 12, 3, 0.9
	return g
}

// TestTwinsCatchesBrokenRules: with BrokenVoteTwice (a voter that forgets
// it already voted in a view) the same harness finds a scenario in which two
// correct-code instances commit different blocks at one height. The seeded
// search is deterministic (it stops at seed 28 for chained HotStuff and 30
// for two-chain at the time of writing).
//
// With TWINS_WRITE_TESTDATA=1 it goes on to find a scenario in which two
// members WITHOUT a twin fork (rarer for the 3-chain rule, which needs three
// consecutive certified views on both branches) and writes it to testdata,
// where TestTwinsBrokenScenarioReplay replays it.
func TestTwinsCatchesBrokenRules(t *testing.T) {
	write := os.Getenv("TWINS_WRITE_TESTDATA") != ""
	for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
		t.Run(v.String(), func(t *testing.T) {
			gen := brokenSearch(v)
			broken := Options{VoteRule: BrokenVoteTwice{Inner: v.VoteRule()}}
			caught := false
			for seed := int64(1); seed <= 3000; seed++ {
				sc := Generate(gen, seed)
				res, err := Run(sc, broken)
				if err != nil {
					t.Fatal(err)
				}
				if res.Safe() {
					continue
				}
				if !caught {
					caught = true
					t.Logf("broken rule caught after %d scenarios: %s", seed, res.Violation.Problems[0])
					if !write {
						return
					}
				}
				if res.HonestFork != "" {
					t.Logf("fork between members without a twin at seed %d: %s", seed, res.HonestFork)
					p := filepath.Join("testdata", fmt.Sprintf("broken-vote-twice-%s.json", v))
					if err := os.WriteFile(p, []byte(sc.JSON()+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
			}
			if !caught {
				t.Fatal("the Twins harness did not catch a voter that votes twice per view in 3000 scenarios")
			}
			t.Fatal("no fork between members without a twin in 3000 scenarios")
		})
	}
}

// TestTwinsBrokenScenarioReplay: the committed scenarios make two members
// without a twin commit different blocks under the broken rule, and are
// safe with the real rule. (If a protocol change makes one stop forking,
// regenerate with TWINS_WRITE_TESTDATA=1 go test -run
// TestTwinsCatchesBrokenRules.)
func TestTwinsBrokenScenarioReplay(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "broken-*.json"))
	if len(files) == 0 {
		t.Fatal("no committed broken-rule scenarios in testdata")
	}
	for _, f := range files {
		sc, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := core.ParseVariant(sc.Variant)
		res, err := Run(sc, Options{VoteRule: BrokenVoteTwice{Inner: v.VoteRule()}})
		if err != nil {
			t.Fatal(err)
		}
		if res.HonestFork == "" || res.Safe() {
			t.Fatalf("%s: the broken rule no longer forks correct replicas", f)
		}
		res, err = Run(sc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Violation != nil || res.HonestFork != "" {
			t.Fatalf("%s with the real rule: %v", f, res.Violation)
		}
	}
}

// TestTwinsIgnoreLockNotExposed documents a finding: a voter that ignores
// the lock (BrokenIgnoreLock) is NOT exposed by Twins here. Twins run
// correct code, and a correct leader always extends a QC at least as high as
// every correct replica's lock: it enters its view with a QC for the
// previous view, or with a TC whose high QC is the highest of a quorum of
// timeouts (which intersects every QC's voters in a correct replica, whose
// timeout carries a QC at or above its lock); and it waits for that QC's
// block instead of falling back to an older one. So the lock only matters
// against a Byzantine leader that deliberately proposes on a stale QC —
// which the safety package's rule tests cover. If this test starts failing
// because a violation is found, the leader logic changed: investigate.
func TestTwinsIgnoreLockNotExposed(t *testing.T) {
	runs := 150
	if raceEnabled {
		runs = 20
	}
	for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
		gen := DefaultGenerateConfig(v)
		for seed := int64(1); seed <= int64(runs); seed++ {
			sc := Generate(gen, seed)
			res, err := Run(sc, Options{VoteRule: BrokenIgnoreLock{}})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Safe() {
				t.Fatalf("%s seed %d: ignoring the lock broke agreement with correct-code leaders: %v\n%s", v, seed, res.Violation, sc.JSON())
			}
		}
	}
}

// TestTwinsReplay replays -scenario FILE (or does nothing).
func TestTwinsReplay(t *testing.T) {
	if *flagScenario == "" {
		t.Skip("no -scenario given")
	}
	sc, err := Load(*flagScenario)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("committed [%d, %d], evidence %d", res.MinCommitted, res.MaxCommitted, res.Evidence)
	if res.Violation != nil {
		t.Fatal(res.Violation)
	}
}

func TestScenarioValidate(t *testing.T) {
	sc := Generate(DefaultGenerateConfig(core.ThreeChain), 1)
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := *sc
	bad.Views = append([]View(nil), sc.Views...)
	bad.Views[0] = View{Leader: 9}
	if bad.Validate() == nil {
		t.Fatal("leader out of range accepted")
	}
	bad = *sc
	bad.Twins = []int{7}
	if bad.Validate() == nil {
		t.Fatal("twin of a non-member accepted")
	}
	var _ safety.VoteRule = BrokenVoteTwice{Inner: safety.ThreeChain{}}
}

// TestTwinsDeterministic: replaying a scenario gives the same outcome.
func TestTwinsDeterministic(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		sc := Generate(DefaultGenerateConfig(core.TwoChain), seed)
		a, err := Run(sc, Options{VoteRule: BrokenVoteTwice{Inner: safety.TwoChain{}}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Run(sc, Options{VoteRule: BrokenVoteTwice{Inner: safety.TwoChain{}}})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(a.MinCommitted, a.MaxCommitted, a.Evidence, a.Violation) != fmt.Sprint(b.MinCommitted, b.MaxCommitted, b.Evidence, b.Violation) {
			t.Fatalf("seed %d: %+v vs %+v", seed, a, b)
		}
	}
}
