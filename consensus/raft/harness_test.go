package raftengine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/testlog"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fastRaft keeps elections and commits quick on loopback, with some slack
// for a loaded machine and the race detector.
func fastRaft() config.RaftConfig {
	return config.RaftConfig{
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 200 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		ApplyTimeout:       2 * time.Second,
	}
}

// testLogger writes to t.Log at warn level (raft is chatty at info), or
// at the level named by TANDEM_TEST_LOG (debug, info, ...).
func testLogger(t *testing.T) *slog.Logger { return testlog.New(t, slog.LevelWarn) }

// gatedSM wraps an smr.StateMachine; while a gate is set, Apply signals
// entered and waits for the gate to close.
type gatedSM struct {
	*smr.StateMachine
	gate    atomic.Pointer[chan struct{}]
	entered chan struct{}
}

func (g *gatedSM) Apply(index uint64, data []byte) smr.Result {
	res := g.ApplyPrepared(index, g.Prepare(data))
	return res[len(res)-1]
}

func (g *gatedSM) ApplyPrepared(index uint64, p *smr.Prepared) []smr.Result {
	if gp := g.gate.Load(); gp != nil {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-*gp
	}
	return g.StateMachine.ApplyPrepared(index, p)
}

type testNode struct {
	id    string
	addr  raft.ServerAddress
	dir   string
	sm    *gatedSM
	e     *Engine
	trans *raft.InmemTransport
}

// cluster is a set of engines over raft.InmemTransport with real bolt
// files in temporary directories.
type cluster struct {
	t     *testing.T
	rc    config.RaftConfig
	nodes []*testNode
	admin ed25519.PrivateKey
	seq   atomic.Uint64

	// Signed clusters: node keys, member keys, and every node's
	// attestation checks.
	signed  bool
	keys    map[string]ed25519.PrivateKey
	memKeys *evidence.Members
	checkMu sync.Mutex
	checks  map[string][]AttestationCheck

	// clock, when set, is every node's Config.Clock.
	clock func() time.Time
	// onPeer, when set, receives every node's Config.OnPeerRPC
	// observations with the observing node's ID.
	onPeer func(observer string, o PeerObservation)
}

func newCluster(t *testing.T, n int, rc config.RaftConfig) *cluster {
	return newClusterOpts(t, n, rc, false)
}

// newSignedCluster is newCluster whose nodes sign and check attestations.
func newSignedCluster(t *testing.T, n int, rc config.RaftConfig) *cluster {
	return newClusterOpts(t, n, rc, true)
}

func newClusterOpts(t *testing.T, n int, rc config.RaftConfig, signed bool) *cluster {
	t.Helper()
	return newClusterWith(t, n, rc, signed, nil)
}

// newClusterWith is newClusterOpts with every node's clock set to clock
// (nil: time.Now).
func newClusterWith(t *testing.T, n int, rc config.RaftConfig, signed bool, clock func() time.Time) *cluster {
	t.Helper()
	return newClusterFull(t, n, rc, signed, clock, nil)
}

// newClusterFull is newClusterWith whose nodes inspect the RPCs they
// receive and hand the observations to onPeer (nil: no inspection).
func newClusterFull(t *testing.T, n int, rc config.RaftConfig, signed bool, clock func() time.Time, onPeer func(string, PeerObservation)) *cluster {
	t.Helper()
	_, admin, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, rc: rc, admin: admin, signed: signed, clock: clock, onPeer: onPeer, keys: map[string]ed25519.PrivateKey{}, checks: map[string][]AttestationCheck{}}
	var ms []evidence.Member
	for i := range n {
		c.nodes = append(c.nodes, &testNode{
			id:   fmt.Sprintf("node-%d", i+1),
			addr: raft.ServerAddress(fmt.Sprintf("node-%d:700%d", i+1, i+1)),
			dir:  t.TempDir(),
		})
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("node-%d", i+1)
		c.keys[id] = k
		ms = append(ms, evidence.Member{ID: evidence.NodeID(id), PublicKey: k.Public().(ed25519.PublicKey)})
	}
	if c.memKeys, err = evidence.NewMembers(ms); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.start(i)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) members() []consensus.Member {
	var ms []consensus.Member
	for _, n := range c.nodes {
		ms = append(ms, consensus.Member{ID: n.id, Address: string(n.addr), Voter: true})
	}
	return ms
}

func (c *cluster) bootstrap() {
	c.t.Helper()
	for _, n := range c.nodes {
		if err := n.e.Bootstrap(c.members()); err != nil {
			c.t.Fatal(err)
		}
	}
}

// start (re)starts node i from its data directory with a fresh state
// machine and connects its transport to the running nodes.
func (c *cluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	sm, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{c.admin.Public().(ed25519.PublicKey)}})
	if err != nil {
		c.t.Fatal(err)
	}
	n.sm = &gatedSM{StateMachine: sm, entered: make(chan struct{}, 1)}
	_, n.trans = raft.NewInmemTransport(n.addr)
	for _, o := range c.nodes {
		if o != n && o.e != nil {
			n.trans.Connect(o.addr, o.trans)
			o.trans.Connect(n.addr, n.trans)
		}
	}
	cfg := Config{
		NodeID:    n.id,
		DataDir:   n.dir,
		Advertise: string(n.addr),
		Transport: n.trans,
		FSM:       n.sm,
		Raft:      c.rc,
		Logger:    testLogger(c.t),
		Clock:     c.clock,
	}
	if c.onPeer != nil {
		cfg.OnPeerRPC = func(o PeerObservation) { c.onPeer(n.id, o) }
	}
	if c.signed {
		cfg.Signer, cfg.Epoch, cfg.Members = c.keys[n.id], testEpoch, c.memKeys
		cfg.OnCheck = func(ac AttestationCheck) {
			c.checkMu.Lock()
			defer c.checkMu.Unlock()
			c.checks[n.id] = append(c.checks[n.id], ac)
		}
	}
	n.e, err = New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
}

// stop stops node i and disconnects it from the others.
func (c *cluster) stop(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if n.e == nil {
		return
	}
	if err := n.e.Stop(); err != nil {
		c.t.Errorf("stop %s: %v", n.id, err)
	}
	n.e = nil
	for _, o := range c.nodes {
		if o != n && o.e != nil {
			o.trans.Disconnect(n.addr)
		}
	}
}

func (c *cluster) stopAll() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// leader waits for a leader among the running nodes and returns it.
func (c *cluster) leader() *testNode {
	c.t.Helper()
	var l *testNode
	waitFor(c.t, "a leader", func() bool {
		for _, n := range c.nodes {
			if n.e != nil && n.e.Status().Role == "leader" {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

// envelope returns a signed set_config envelope with the next seq.
func (c *cluster) envelope() *smr.Envelope {
	c.t.Helper()
	seq := c.seq.Add(1)
	env, err := smr.Sign(c.admin, seq, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("key-%d", seq), Value: "v"})
	if err != nil {
		c.t.Fatal(err)
	}
	return env
}

// propose proposes k entries through the leader and checks that each
// executed. If leadership moves (possible on a loaded machine), it retries
// the same envelope on the new leader, which is safe because execution is
// exactly-once.
func (c *cluster) propose(k int) {
	c.t.Helper()
	for range k {
		env := c.envelope()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := c.leader()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := n.e.Propose(ctx, env)
			cancel()
			var nl *consensus.NotLeaderError
			if (errors.As(err, &nl) || errors.Is(err, consensus.ErrOutcomeUnknown)) && time.Now().Before(deadline) {
				c.t.Logf("retrying seq %d after: %v", env.Seq, err)
				continue
			}
			if err != nil {
				c.t.Fatalf("propose through %s: %v", n.id, err)
			}
			if res.Code != smr.CodeOK || res.Index == 0 {
				c.t.Fatalf("proposal result = %+v, want success", res)
			}
			break
		}
	}
}

// converged waits until every running node's state hash equals want's.
func (c *cluster) converged(want *testNode) {
	c.t.Helper()
	waitFor(c.t, "state hashes to converge", func() bool {
		wi, wh := want.sm.Hash()
		for _, n := range c.nodes {
			if n.e == nil {
				continue
			}
			if i, h := n.sm.Hash(); i != wi || h != wh {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parallel runs f n times concurrently and waits for all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}
