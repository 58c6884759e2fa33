package sim

import (
	"math/rand/v2"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
)

// Random returns a randomized run for n members, fully determined by seed:
//   - message delays of 1..4 ticks (so messages reorder);
//   - before StableAt: loss up to 25 %, duplication up to 5 %, up to two
//     partitions (2–3 groups) that heal before StableAt, and crashes of any
//     nodes that restart (sometimes losing their block store) before
//     StableAt;
//   - up to f nodes that crash and never come back;
//   - a command every 3 ticks; liveness is checked after StableAt: every
//     live replica commits again and commits every command injected after
//     the network stabilised.
func Random(n int, seed int64, v core.Variant) Config {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xc0ffee))
	f := (n - 1) / 3
	cfg := Config{
		N:            n,
		Seed:         seed,
		Variant:      v,
		Ticks:        700,
		StableAt:     300,
		Pacemaker:    pacemaker.Config{ViewTimeout: 12, ResendInterval: 4, MaxRetries: 3},
		MaxBatch:     64,
		IdlePropose:  2,
		Net:          NetConfig{MinDelay: 1, MaxDelay: 1 + rng.IntN(4)},
		CommandEvery: 3,
		Liveness:     &Liveness{Grace: 200, MinCommits: 3, Commands: true},
	}
	if rng.IntN(2) == 0 {
		cfg.Net.Loss = rng.Float64() * 0.25
	}
	if rng.IntN(3) == 0 {
		cfg.Net.Duplicate = 0.05
	}
	for range rng.IntN(3) {
		from := rng.IntN(cfg.StableAt - 20)
		to := min(from+10+rng.IntN(120), cfg.StableAt-1)
		k := 2 + rng.IntN(2)
		groups := make([][]int, k)
		for i := range n {
			g := rng.IntN(k)
			groups[g] = append(groups[g], i)
		}
		cfg.Partitions = append(cfg.Partitions, Partition{From: from, To: to, Groups: groups})
	}
	perm := rng.Perm(n)
	down := perm[:rng.IntN(f+1)]
	for _, node := range down {
		cfg.Crashes = append(cfg.Crashes, Crash{Node: node, At: 1 + rng.IntN(cfg.StableAt-1)})
	}
	for _, node := range perm[len(down):] {
		if rng.IntN(3) != 0 {
			continue
		}
		at := 1 + rng.IntN(cfg.StableAt-100)
		cfg.Crashes = append(cfg.Crashes, Crash{
			Node:       node,
			At:         at,
			RestartAt:  at + 5 + rng.IntN(80),
			LoseBlocks: rng.IntN(3) == 0,
		})
	}
	return cfg
}
