package sim

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// byzConfig is a run with f Byzantine members (the lowest-numbered ones
// after a seeded shuffle) all behaving as b, over a network with delays of
// 1–3 ticks and, before tick 150, 5 % loss.
func byzConfig(n int, seed int64, v core.Variant, b Behavior) (Config, []int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	cfg := DefaultConfig(n, seed)
	cfg.Variant = v
	cfg.Ticks = 600
	cfg.StableAt = 150
	cfg.Net = NetConfig{MinDelay: 1, MaxDelay: 3, Loss: 0.05}
	cfg.MaxBatch = 64
	cfg.Byzantine = map[int]Behavior{}
	var byz []int
	for _, m := range rng.Perm(n)[:(n-1)/3] {
		cfg.Byzantine[m] = b
		byz = append(byz, m)
	}
	return cfg, byz
}

// TestByzantine runs each misbehaviour with f Byzantine members (n = 4 and
// 7, both variants, several seeds) and checks:
//   - safety: agreement, total order, no duplicate commits among correct
//     replicas;
//   - evidence: every evidence verifies and names a Byzantine member, never
//     a correct one; provable misbehaviour (equivocation, invalid payload,
//     double vote) is reported by some correct replica;
//   - progress: correct replicas keep committing while the Byzantine
//     members still lead some views, and once they are quarantined (as the
//     detector would do on the evidence) every later command commits.
func TestByzantine(t *testing.T) {
	behaviours := []struct {
		name     string
		b        Behavior
		evidence types.EvidenceKind // 0: not provable
	}{
		{"equivocating-leader", Equivocate{}, types.EquivocatingProposal},
		{"invalid-payload-leader", InvalidPayload{}, types.InvalidPayload},
		{"double-voter", DoubleVote{}, types.DuplicateVote},
		{"silent-leader", Silent{}, 0},
		{"vote-withholder", WithholdVotes{}, 0},
	}
	seedsPer := 6
	switch {
	case *flagRuns > 0:
		seedsPer = *flagRuns
	case *flagLong:
		seedsPer = 60
	case raceEnabled:
		seedsPer = 2
	}
	for _, bh := range behaviours {
		for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
			for _, n := range []int{4, 7} {
				t.Run(fmt.Sprintf("%s/%s/n=%d", bh.name, v, n), func(t *testing.T) {
					for _, seed := range seeds(seedsPer) {
						runByzantine(t, n, seed, v, bh.b, bh.evidence)
					}
				})
			}
		}
	}
}

func runByzantine(t *testing.T, n int, seed int64, v core.Variant, b Behavior, want types.EvidenceKind) {
	t.Helper()
	cfg, byz := byzConfig(n, seed, v, b)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	replay := fmt.Sprintf("replay: go test ./consensus/hotstuff/sim -run 'TestByzantine/.*/%s/n=%d' -seed %d", v, n, seed)
	// Phase 1: the Byzantine members take part (and lead) for 300 ticks.
	if err := s.RunUntil(300); err != nil {
		t.Fatal(err)
	}
	heightAt := func() (lo int) {
		lo = -1
		for _, in := range s.Instances {
			if s.Correct(in) && (lo < 0 || len(in.Log) < lo) {
				lo = len(in.Log)
			}
		}
		return lo
	}
	if h := heightAt(); h < 5 {
		t.Fatalf("seed %d: correct replicas committed only %d blocks in 300 ticks with Byzantine members leading\n%s", seed, h, replay)
	}
	if want != 0 {
		found := false
		for _, in := range s.Instances {
			for _, ev := range in.Evidence {
				if s.Correct(in) && ev.Kind == want && s.Config().Byzantine[s.memberIndex(ev.Offender)] != nil {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("seed %d: no correct replica reported %s evidence\n%s", seed, want, replay)
		}
	}
	// Phase 2: quarantine the Byzantine members everywhere; from then on
	// every command must commit.
	var ids []types.NodeID
	for _, m := range byz {
		ids = append(ids, s.IDs[m])
	}
	for i, in := range s.Instances {
		if s.Correct(in) {
			s.Do(i, func(c *core.Core) { c.SetQuarantined(ids) })
		}
	}
	s.cfg.StableAt = 300
	s.cfg.Liveness = &Liveness{Grace: 100, MinCommits: 10, Commands: true}
	if err := s.Run(); err != nil {
		t.Fatalf("%v\n%s", err, replay)
	}
	for _, in := range s.Instances {
		if !s.Correct(in) {
			continue
		}
		for i, blk := range in.Log {
			if in.LogTicks[i] > 400 && s.Config().Byzantine[s.memberIndex(blk.Proposer)] != nil {
				t.Fatalf("seed %d: block of quarantined %s committed at tick %d\n%s", seed, blk.Proposer, in.LogTicks[i], replay)
			}
		}
	}
}
