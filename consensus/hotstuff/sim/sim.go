package sim

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// NetConfig describes the simulated network.
type NetConfig struct {
	// MinDelay and MaxDelay bound a message's delay in ticks (uniform);
	// differing delays reorder messages. MinDelay ≥ 1.
	MinDelay, MaxDelay int
	// Loss is the probability that a message is dropped before StableAt.
	Loss float64
	// Duplicate is the probability that a message is delivered twice
	// before StableAt.
	Duplicate float64
}

// Partition cuts the network into Groups (instance indexes) during ticks
// [From, To). An instance in no group is isolated. Messages crossing groups
// are dropped when they would be delivered.
type Partition struct {
	From, To int
	Groups   [][]int
}

// Crash stops instance Node at tick At and, if RestartAt > At, restarts it
// at RestartAt from its persisted safety data, committed log and (unless
// LoseBlocks) its block store.
type Crash struct {
	Node       int
	At         int
	RestartAt  int
	LoseBlocks bool
}

// Liveness asks Check to verify progress after the network stabilised.
type Liveness struct {
	// Grace is how many ticks after StableAt the cluster gets to recover
	// before commits are counted.
	Grace int
	// MinCommits is how many blocks every live correct instance must commit
	// after StableAt+Grace.
	MinCommits int
	// Commands requires every command injected in [StableAt, Ticks−Grace]
	// to be committed by every live correct instance.
	Commands bool
}

// Config describes one simulated run.
type Config struct {
	// N is the committee size; members are named n0 … n{N−1}.
	N int
	// Instances maps each instance to a member index; nil means one
	// instance per member. Listing a member twice makes Twins: two
	// instances with one identity and one key, each with its own storage.
	Instances []int
	// Seed drives every random choice of the run.
	Seed int64
	// Variant selects the protocol variant.
	Variant core.Variant
	// Reputation selects the reputation leader rotation instead of
	// round-robin.
	Reputation bool
	// Ed25519 uses real Ed25519 keys instead of MACScheme.
	Ed25519 bool
	// Ticks is the length of the run.
	Ticks int
	// Pacemaker, MaxBatch, IdlePropose configure every core.
	Pacemaker   pacemaker.Config
	MaxBatch    int
	IdlePropose int
	// Net is the network model; Partitions and Crashes are the faults.
	Net        NetConfig
	Partitions []Partition
	Crashes    []Crash
	// StableAt is the tick from which Loss and Duplicate stop. Partitions
	// and crashes are not checked against it; generators keep them before.
	StableAt int
	// CommandEvery injects one new command every that many ticks into every
	// live instance (0: none). With CommandSubset each instance gets each
	// command with probability 0.7 instead.
	CommandEvery  int
	CommandSubset bool
	// Byzantine maps member indexes to misbehaviours. Evidence against any
	// other member is a violation.
	Byzantine map[int]Behavior
	// StoreDir, when set, gives every instance a safety.FileStore there
	// (instead of a MemStore).
	StoreDir string
	// Drop, when set, is asked for every delivery; true drops the message.
	Drop func(s *Sim, from, to *Instance, m types.Message) bool
	// NewRotation builds each instance's leader rotation (overrides
	// Reputation).
	NewRotation func(members []types.NodeID) leaderrotation.Rotation
	// VoteRule, when set, replaces the variant's voting rule in every
	// instance (broken-rule tests).
	VoteRule safety.VoteRule
	// Liveness, when set, is checked by Check.
	Liveness *Liveness
	// Logger receives the cores' debug logs; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a small fault-free configuration for n members.
func DefaultConfig(n int, seed int64) Config {
	return Config{
		N:            n,
		Seed:         seed,
		Ticks:        300,
		Pacemaker:    pacemaker.Config{ViewTimeout: 12, ResendInterval: 4, MaxRetries: 3},
		MaxBatch:     16,
		IdlePropose:  2,
		Net:          NetConfig{MinDelay: 1, MaxDelay: 3},
		CommandEvery: 3,
	}
}

// BadPrefixValidator is the simulations' payload validity rule: a command
// starting with "bad:" is invalid.
type BadPrefixValidator struct{}

// Validate implements types.Validator.
func (BadPrefixValidator) Validate(cmd []byte) error {
	if strings.HasPrefix(string(cmd), "bad:") {
		return errors.New("command marked bad")
	}
	return nil
}

var _ types.Validator = BadPrefixValidator{}

// Instance is one simulated replica process.
type Instance struct {
	Index  int
	Member int
	ID     types.NodeID
	Core   *core.Core
	Alive  bool

	store  safety.Store
	blocks map[types.Hash]*types.Block // the block store (Ready.Blocks)
	rootQC types.QC

	// Log is the committed chain (applied state), lowest first, and
	// LogHashes the blocks' hashes.
	Log       []*types.Block
	LogHashes []types.Hash
	// LogTicks[i] is the tick at which Log[i] was committed.
	LogTicks []int
	// Evidence reported by this instance.
	Evidence []*types.Evidence
	// Alerts counts EventAlert events.
	Alerts int
	// StepErrors counts messages its core rejected.
	StepErrors int
	// MaxView is the highest view it reached.
	MaxView types.View
}

type envelope struct {
	from, to int
	data     []byte
}

// Stats counts network activity.
type Stats struct {
	Sent, Dropped, Duplicated, Delivered int
}

// Sim is a deterministic simulation: one goroutine, a seeded random
// source, a logical clock. Two runs with the same Config are identical.
type Sim struct {
	cfg       Config
	rng       *rand.Rand
	Keys      *Keys
	Committee *types.Committee
	Genesis   *types.Block
	IDs       []types.NodeID
	Instances []*Instance
	Tick      int
	Stats     Stats

	pending  map[int][]envelope
	injected []injection
	problems []string
}

type injection struct {
	tick int
	cmd  string
}

// New builds the simulation (at tick 0, nothing run yet).
func New(cfg Config) (*Sim, error) {
	if cfg.N < 1 {
		return nil, fmt.Errorf("sim: N is %d", cfg.N)
	}
	if cfg.Net.MinDelay < 1 || cfg.Net.MaxDelay < cfg.Net.MinDelay {
		return nil, fmt.Errorf("sim: delays [%d, %d] invalid", cfg.Net.MinDelay, cfg.Net.MaxDelay)
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 16
	}
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed)), pending: map[int][]envelope{}}
	for i := range cfg.N {
		s.IDs = append(s.IDs, types.NodeID(fmt.Sprintf("n%d", i)))
	}
	s.Keys = NewKeys(s.IDs, cfg.Seed, !cfg.Ed25519)
	s.Genesis = types.NewGenesis([]byte("sim-genesis"))
	c, err := types.NewCommittee(types.CommitteeConfig{Epoch: 1, Members: s.Keys.Members, Genesis: s.Genesis.Hash(), Scheme: s.Keys.Scheme})
	if err != nil {
		return nil, err
	}
	s.Committee = c
	insts := cfg.Instances
	if insts == nil {
		for i := range cfg.N {
			insts = append(insts, i)
		}
	}
	for idx, m := range insts {
		if m < 0 || m >= cfg.N {
			return nil, fmt.Errorf("sim: instance %d names member %d of %d", idx, m, cfg.N)
		}
		in := &Instance{Index: idx, Member: m, ID: s.IDs[m], blocks: map[types.Hash]*types.Block{}, rootQC: types.GenesisQC(s.Genesis.Hash())}
		if cfg.StoreDir != "" {
			in.store = safety.NewFileStore(filepath.Join(cfg.StoreDir, fmt.Sprintf("inst-%d.safety", idx)))
		} else {
			in.store = safety.NewMemStore()
		}
		s.Instances = append(s.Instances, in)
		if err := s.start(in); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Config returns the run's configuration.
func (s *Sim) Config() Config { return s.cfg }

// Rand returns the run's random source (for behaviours and generators that
// must stay deterministic).
func (s *Sim) Rand() *rand.Rand { return s.rng }

func (s *Sim) start(in *Instance) error {
	verifier := types.NewQCCache(s.Committee, 4096)
	rule := s.cfg.Variant.VoteRule()
	if s.cfg.VoteRule != nil {
		rule = s.cfg.VoteRule
	}
	rules, err := safety.New(safety.Config{Store: in.store, Signer: s.Keys.Signers[in.ID], Committee: s.Committee, Verifier: verifier, Rule: rule})
	if err != nil {
		return fmt.Errorf("sim: instance %d: %w", in.Index, err)
	}
	var rot leaderrotation.Rotation
	switch {
	case s.cfg.NewRotation != nil:
		rot = s.cfg.NewRotation(s.IDs)
	case s.cfg.Reputation:
		rot = leaderrotation.NewReputation(s.IDs, leaderrotation.DefaultReputationConfig(s.cfg.N))
	default:
		rot = leaderrotation.NewRoundRobin(s.IDs)
	}
	cc := core.DefaultConfig()
	cc.ID = in.ID
	cc.Committee = s.Committee
	cc.Genesis = s.Genesis
	cc.Safety = rules
	cc.Verifier = verifier
	cc.Variant = s.cfg.Variant
	cc.Rotation = rot
	cc.Validator = BadPrefixValidator{}
	cc.Pacemaker = s.cfg.Pacemaker
	cc.MaxBatch = s.cfg.MaxBatch
	cc.IdlePropose = s.cfg.IdlePropose
	cc.RetainCommitted = 1 << 20
	cc.Logger = s.cfg.Logger
	root := s.Genesis
	if len(in.Log) > 0 {
		root = in.Log[len(in.Log)-1]
	}
	r := &core.Restore{Root: root, RootQC: in.rootQC, Committed: in.Log}
	for _, b := range in.blocks {
		if b.Height > root.Height {
			r.Blocks = append(r.Blocks, b)
		}
	}
	slices.SortFunc(r.Blocks, func(a, b *types.Block) int {
		if a.Height != b.Height {
			return cmp.Compare(a.Height, b.Height)
		}
		ha, hb := a.Hash(), b.Hash()
		return bytes.Compare(ha[:], hb[:])
	})
	cc.Restore = r
	c, err := core.New(cc)
	if err != nil {
		return fmt.Errorf("sim: instance %d: %w", in.Index, err)
	}
	in.Core = c
	in.Alive = true
	return nil
}

// Crash stops instance i now.
func (s *Sim) Crash(i int) {
	in := s.Instances[i]
	in.Alive = false
	in.Core = nil
}

// Restart restarts a crashed instance from its persisted state.
func (s *Sim) Restart(i int, loseBlocks bool) error {
	in := s.Instances[i]
	if in.Alive {
		return nil
	}
	if loseBlocks {
		in.blocks = map[types.Hash]*types.Block{}
	}
	return s.start(in)
}

// Run runs the simulation to cfg.Ticks and returns Check's verdict.
func (s *Sim) Run() error {
	for s.Tick < s.cfg.Ticks {
		if err := s.Step(); err != nil {
			return err
		}
	}
	return s.Check()
}

// RunUntil runs ticks until tick t.
func (s *Sim) RunUntil(t int) error {
	for s.Tick < t {
		if err := s.Step(); err != nil {
			return err
		}
	}
	return nil
}

// Step runs one tick: faults, deliveries (shuffled), every live core's Tick,
// command injection.
func (s *Sim) Step() error {
	s.Tick++
	for _, cr := range s.cfg.Crashes {
		if cr.At == s.Tick && s.Instances[cr.Node].Alive {
			s.Crash(cr.Node)
		}
		if cr.RestartAt == s.Tick && cr.RestartAt > cr.At {
			if err := s.Restart(cr.Node, cr.LoseBlocks); err != nil {
				return err
			}
		}
	}
	batch := s.pending[s.Tick]
	delete(s.pending, s.Tick)
	s.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	for _, e := range batch {
		from, to := s.Instances[e.from], s.Instances[e.to]
		if !to.Alive {
			continue
		}
		m, err := types.DecodeMessage(e.data)
		if err != nil {
			return fmt.Errorf("sim: tick %d: message from %s does not decode: %w", s.Tick, from.ID, err)
		}
		if s.cut(e.from, e.to) || (s.cfg.Drop != nil && s.cfg.Drop(s, from, to, m)) {
			s.Stats.Dropped++
			continue
		}
		s.Stats.Delivered++
		if err := to.Core.Step(from.ID, m); err != nil {
			to.StepErrors++
		}
		s.process(to)
	}
	order := s.rng.Perm(len(s.Instances))
	for _, i := range order {
		in := s.Instances[i]
		if !in.Alive {
			continue
		}
		in.Core.Tick()
		s.process(in)
	}
	if s.cfg.CommandEvery > 0 && s.Tick%s.cfg.CommandEvery == 0 {
		cmd := fmt.Sprintf("cmd-%d", len(s.injected))
		s.injected = append(s.injected, injection{tick: s.Tick, cmd: cmd})
		for _, in := range s.Instances {
			if !in.Alive || (s.cfg.CommandSubset && s.rng.Float64() >= 0.7) {
				continue
			}
			_ = in.Core.Propose([]byte(cmd))
			s.process(in)
		}
	}
	return nil
}

// Inject proposes cmd to every live instance now.
func (s *Sim) Inject(cmd []byte) {
	s.injected = append(s.injected, injection{tick: s.Tick, cmd: string(cmd)})
	for _, in := range s.Instances {
		if in.Alive {
			_ = in.Core.Propose(cmd)
			s.process(in)
		}
	}
}

// Do runs f on a live instance's core and processes its output (for inputs
// like SetQuarantined and ForceViewChange).
func (s *Sim) Do(i int, f func(c *core.Core)) {
	in := s.Instances[i]
	if !in.Alive {
		return
	}
	f(in.Core)
	s.process(in)
}

func (s *Sim) cut(from, to int) bool {
	for _, p := range s.cfg.Partitions {
		if s.Tick < p.From || s.Tick >= p.To {
			continue
		}
		if groupOf(p.Groups, from) != groupOf(p.Groups, to) || groupOf(p.Groups, from) < 0 {
			return true
		}
	}
	return false
}

func groupOf(groups [][]int, i int) int {
	for g, members := range groups {
		if slices.Contains(members, i) {
			return g
		}
	}
	return -1
}

// process drains an instance's Ready batches the way an engine shell would:
// persist blocks, apply commits, record events, send messages, Advance.
func (s *Sim) process(in *Instance) {
	for in.Alive && in.Core.HasReady() {
		rd := in.Core.Ready()
		in.MaxView = max(in.MaxView, rd.View)
		for _, b := range rd.Blocks {
			in.blocks[b.Hash()] = b
		}
		for _, b := range rd.Committed {
			parent := s.Committee.Genesis()
			if len(in.Log) > 0 {
				parent = in.LogHashes[len(in.Log)-1]
			}
			if b.Parent != parent || b.Height != uint64(len(in.Log))+1 {
				s.problem("chain: instance %d (%s) committed block height %d whose parent %s is not its last committed block %s",
					in.Index, in.ID, b.Height, b.Parent, parent)
			}
			in.Log = append(in.Log, b)
			in.LogHashes = append(in.LogHashes, b.Hash())
			in.LogTicks = append(in.LogTicks, s.Tick)
		}
		if n := len(rd.Committed); n > 0 {
			in.rootQC = rd.CommitQC
			top := rd.Committed[n-1].Height
			for h, b := range in.blocks {
				if b.Height <= top {
					delete(in.blocks, h)
				}
			}
		}
		for _, ev := range rd.Events {
			switch ev.Kind {
			case core.EventEvidence:
				in.Evidence = append(in.Evidence, ev.Evidence)
			case core.EventAlert:
				in.Alerts++
			}
		}
		out := rd.Messages
		if b := s.cfg.Byzantine[in.Member]; b != nil {
			out = b.Outgoing(&ByzContext{Sim: s, Inst: in, Signer: s.Keys.Signers[in.ID]}, out)
		}
		for _, o := range out {
			s.send(in, o)
		}
		in.Core.Advance()
	}
}

func (s *Sim) send(from *Instance, o core.Outbound) {
	data := types.EncodeMessage(o.Msg)
	for _, to := range s.Instances {
		if to == from || to.ID == from.ID && o.To == "" {
			continue
		}
		if o.To != "" && to.ID != o.To {
			continue
		}
		s.Stats.Sent++
		unstable := s.Tick < s.cfg.StableAt
		if unstable && s.cfg.Net.Loss > 0 && s.rng.Float64() < s.cfg.Net.Loss {
			s.Stats.Dropped++
			continue
		}
		s.enqueue(envelope{from: from.Index, to: to.Index, data: data})
		if unstable && s.cfg.Net.Duplicate > 0 && s.rng.Float64() < s.cfg.Net.Duplicate {
			s.Stats.Duplicated++
			s.enqueue(envelope{from: from.Index, to: to.Index, data: data})
		}
	}
}

func (s *Sim) enqueue(e envelope) {
	d := s.cfg.Net.MinDelay + s.rng.IntN(s.cfg.Net.MaxDelay-s.cfg.Net.MinDelay+1)
	s.pending[s.Tick+d] = append(s.pending[s.Tick+d], e)
}

func (s *Sim) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}
