package core_test

import (
	"fmt"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/sim"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// cluster is a hand-driven network of cores for unit tests: messages are
// delivered in FIFO order when the test says so.
type cluster struct {
	t         *testing.T
	keys      *sim.Keys
	committee *types.Committee
	genesis   *types.Block
	ids       []types.NodeID
	cores     map[types.NodeID]*core.Core
	stores    map[types.NodeID]*safety.MemStore
	down      map[types.NodeID]bool
	queue     []envelope
	committed map[types.NodeID][]*types.Block
	events    map[types.NodeID][]core.Event
	stored    map[types.NodeID][]*types.Block // Ready.Blocks (the block WAL)
	rootQC    map[types.NodeID]types.QC
	// drop, when set, decides whether to drop a message.
	drop func(from, to types.NodeID, m types.Message) bool
}

type envelope struct {
	from, to types.NodeID
	msg      types.Message
}

type clusterOpt func(*core.Config)

func newCluster(t *testing.T, n int, v core.Variant, opts ...clusterOpt) *cluster {
	c := &cluster{t: t, cores: map[types.NodeID]*core.Core{}, stores: map[types.NodeID]*safety.MemStore{},
		down: map[types.NodeID]bool{}, committed: map[types.NodeID][]*types.Block{}, events: map[types.NodeID][]core.Event{},
		stored: map[types.NodeID][]*types.Block{}, rootQC: map[types.NodeID]types.QC{}}
	for i := range n {
		c.ids = append(c.ids, types.NodeID(fmt.Sprintf("n%d", i)))
	}
	c.keys = sim.NewKeys(c.ids, 1, false)
	c.genesis = types.NewGenesis([]byte("core-test"))
	com, err := types.NewCommittee(types.CommitteeConfig{Epoch: 1, Members: c.keys.Members, Genesis: c.genesis.Hash(), Scheme: c.keys.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	c.committee = com
	for _, id := range c.ids {
		c.stores[id] = safety.NewMemStore()
		c.start(id, v, nil, opts...)
	}
	return c
}

func (c *cluster) start(id types.NodeID, v core.Variant, restore *core.Restore, opts ...clusterOpt) {
	c.t.Helper()
	verifier := types.NewQCCache(c.committee, 1024)
	rules, err := core.NewSafety(c.stores[id], c.keys.Signers[id], c.committee, verifier, v)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := core.DefaultConfig()
	cfg.ID, cfg.Committee, cfg.Genesis, cfg.Safety, cfg.Verifier, cfg.Variant = id, c.committee, c.genesis, rules, verifier, v
	cfg.Pacemaker = pacemaker.Config{ViewTimeout: 10, ResendInterval: 3, MaxRetries: 2}
	cfg.IdlePropose = 2
	cfg.MaxBatch = 4
	cfg.Validator = sim.BadPrefixValidator{}
	cfg.Restore = restore
	for _, o := range opts {
		o(&cfg)
	}
	co, err := core.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.cores[id] = co
	c.down[id] = false
	c.collect(id)
}

// collect drains a core's Ready into the queue.
func (c *cluster) collect(id types.NodeID) {
	co := c.cores[id]
	for co.HasReady() {
		rd := co.Ready()
		c.committed[id] = append(c.committed[id], rd.Committed...)
		c.stored[id] = append(c.stored[id], rd.Blocks...)
		if len(rd.Committed) > 0 {
			c.rootQC[id] = rd.CommitQC
		}
		c.events[id] = append(c.events[id], rd.Events...)
		for _, o := range rd.Messages {
			for _, to := range c.ids {
				if to == id || (o.To != "" && o.To != to) {
					continue
				}
				// Round-trip through the codec, like a real transport.
				m, err := types.DecodeMessage(types.EncodeMessage(o.Msg))
				if err != nil {
					c.t.Fatalf("%s sent an undecodable %s: %v", id, o.Msg.MsgType(), err)
				}
				c.queue = append(c.queue, envelope{from: id, to: to, msg: m})
			}
		}
		co.Advance()
	}
}

// deliver delivers queued messages (and what they cause) until none are
// left, at most limit messages.
func (c *cluster) deliver(limit int) {
	for n := 0; len(c.queue) > 0 && n < limit; n++ {
		e := c.queue[0]
		c.queue = c.queue[1:]
		if c.down[e.to] || c.down[e.from] || (c.drop != nil && c.drop(e.from, e.to, e.msg)) {
			continue
		}
		if err := c.cores[e.to].Step(e.from, e.msg); err != nil {
			c.t.Logf("%s rejected %s from %s: %v", e.to, e.msg.MsgType(), e.from, err)
		}
		c.collect(e.to)
	}
}

// tick ticks every live core once and delivers everything.
func (c *cluster) tick() {
	for _, id := range c.ids {
		if !c.down[id] {
			c.cores[id].Tick()
			c.collect(id)
		}
	}
	c.deliver(100000)
}

// restart replaces id's core by one restored from what the shell
// persisted: safety data (the store), the committed log and the blocks.
func (c *cluster) restart(id types.NodeID, v core.Variant, opts ...clusterOpt) {
	r := &core.Restore{Committed: c.committed[id]}
	if n := len(c.committed[id]); n > 0 {
		r.Root = c.committed[id][n-1]
		r.RootQC = c.rootQC[id]
		for _, b := range c.stored[id] {
			if b.Height > r.Root.Height {
				r.Blocks = append(r.Blocks, b)
			}
		}
	}
	c.start(id, v, r, opts...)
}

func (c *cluster) propose(cmds ...string) {
	for _, id := range c.ids {
		if c.down[id] {
			continue
		}
		for _, cmd := range cmds {
			if err := c.cores[id].Propose([]byte(cmd)); err != nil {
				c.t.Fatal(err)
			}
		}
		c.collect(id)
	}
}

func (c *cluster) evidence(id types.NodeID) []*types.Evidence {
	var out []*types.Evidence
	for _, e := range c.events[id] {
		if e.Kind == core.EventEvidence {
			out = append(out, e.Evidence)
		}
	}
	return out
}

// commands returns the commands id committed, in order.
func (c *cluster) commands(id types.NodeID) []string {
	var out []string
	for _, b := range c.committed[id] {
		for _, cmd := range b.Payload {
			out = append(out, string(cmd))
		}
	}
	return out
}

func withRotation(r func([]types.NodeID) leaderrotation.Rotation) clusterOpt {
	return func(cfg *core.Config) { cfg.Rotation = r(cfg.Committee.Members()) }
}
