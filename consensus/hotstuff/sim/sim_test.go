package sim

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
)

var (
	flagSeed = flag.Int64("seed", -1, "replay one randomized simulation seed")
	flagRuns = flag.Int("runs", 0, "randomized runs per configuration (0: default)")
	flagLong = flag.Bool("long", false, "run many more randomized simulations")
)

// runs returns how many randomized runs to do: -runs, else 10x the default
// with -long or HOTSTUFF_LONG=1, else the default (fewer under the race
// detector, which slows the cores down about tenfold).
func runs(def int) int {
	if *flagRuns > 0 {
		return *flagRuns
	}
	if *flagLong || os.Getenv("HOTSTUFF_LONG") != "" {
		return def * 10
	}
	if raceEnabled {
		return max(def/10, 15)
	}
	return def
}

// seeds returns the seeds to run: the one from -seed, or 1..n.
func seeds(n int) []int64 {
	if *flagSeed >= 0 {
		return []int64{*flagSeed}
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

// TestRandomized runs seeded randomized simulations (delay, reordering,
// loss, duplication, partitions that heal, crashes and restarts, up to f
// replicas down for good) and checks agreement, total order, no duplicate
// commits, and liveness after stabilisation. A failure prints the seed;
// replay it with
//
//	go test ./consensus/hotstuff/sim -run TestRandomized/<variant>/n=<n> -seed <seed> -v
func TestRandomized(t *testing.T) {
	for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
		for _, n := range []int{4, 7} {
			t.Run(fmt.Sprintf("%s/n=%d", v, n), func(t *testing.T) {
				start := time.Now()
				count := runs(map[int]int{4: 300, 7: 120}[n])
				total := 0
				for _, seed := range seeds(count) {
					cfg := Random(n, seed, v)
					s, err := New(cfg)
					if err != nil {
						t.Fatal(err)
					}
					if err := s.Run(); err != nil {
						t.Fatalf("%v\nreplay: go test ./consensus/hotstuff/sim -run 'TestRandomized/%s/n=%d' -seed %d -v\nconfig: %+v", err, v, n, seed, cfg)
					}
					if *flagSeed >= 0 {
						t.Log(s.Summary())
					}
					total++
				}
				t.Logf("%d runs in %v", total, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// TestDeterministic: a run is a function of its Config: the same seed gives
// the same committed logs, evidence and network statistics.
func TestDeterministic(t *testing.T) {
	for _, seed := range []int64{3, 17, 210, 1956} {
		var first []string
		for round := range 2 {
			cfg := Random(4, seed, core.ThreeChain)
			cfg.Byzantine = map[int]Behavior{2: Equivocate{}}
			cfg.Liveness = nil
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Run()
			var got []string
			got = append(got, s.Summary(), fmt.Sprint(s.Stats))
			for _, in := range s.Instances {
				got = append(got, fmt.Sprint(in.LogHashes, len(in.Evidence), in.MaxView))
			}
			if round == 0 {
				first = got
				continue
			}
			for i := range got {
				if got[i] != first[i] {
					t.Fatalf("seed %d: second run differs:\n%s\n%s", seed, first[i], got[i])
				}
			}
		}
	}
}

// TestCrashRestartFileStoreEd25519: real Ed25519 signatures and fsynced
// file safety stores, with replicas crashing and restarting (some losing
// their block store). A restarted replica that voted twice in a view would
// be reported as duplicate-vote evidence against a correct member, which
// Check rejects; agreement and liveness are checked as in TestRandomized.
func TestCrashRestartFileStoreEd25519(t *testing.T) {
	variants := []core.Variant{core.ThreeChain, core.TwoChain}
	if raceEnabled {
		variants = variants[:1] // Ed25519 is about ten times slower under -race
	}
	for _, v := range variants {
		for _, seed := range seeds(1) {
			cfg := Random(4, seed+1000, v)
			cfg.Ed25519 = true
			cfg.StoreDir = t.TempDir()
			// Every replica crashes and restarts once before StableAt.
			cfg.Crashes = nil
			for i := range 4 {
				at := 20 + 50*i
				cfg.Crashes = append(cfg.Crashes, Crash{Node: i, At: at, RestartAt: at + 15 + 5*i, LoseBlocks: i%2 == 1})
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Run(); err != nil {
				t.Fatalf("%v\nreplay: go test ./consensus/hotstuff/sim -run TestCrashRestartFileStoreEd25519 -seed %d", err, seed)
			}
			t.Log(s.Summary())
		}
	}
}

// TestRandomizedReputation is TestRandomized with the reputation leader
// rotation.
func TestRandomizedReputation(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			for _, seed := range seeds(runs(60)) {
				cfg := Random(n, seed, core.Variant(seed%2))
				cfg.Reputation = true
				// Leaders are judged on committed history, so after the
				// network stabilises replicas first fall back to
				// round-robin, with backed-off timeouts, before the
				// reputation takes over again: give it more time.
				cfg.Ticks += 400
				cfg.Liveness.Grace += 200
				s, err := New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Run(); err != nil {
					t.Fatalf("%v\nreplay: go test ./consensus/hotstuff/sim -run 'TestRandomizedReputation/n=%d' -seed %d -v", err, n, seed)
				}
			}
		})
	}
}
