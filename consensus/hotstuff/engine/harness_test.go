package engine

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a cluster CA in a temporary directory.
type pki struct {
	dir string
	ca  *identity.CA
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := identity.CreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), "test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{dir: dir, ca: ca}
}

// mux opens a mutual-TLS Mux on loopback presenting a fresh node
// certificate of the CA for id.
func (p *pki) mux(t *testing.T, id string) *transport.Mux {
	t.Helper()
	sub := t.TempDir()
	cert, key := filepath.Join(sub, id+".pem"), filepath.Join(sub, id+"-key.pem")
	certPEM, keyPEM, err := p.ca.IssueNode(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteCertPair(cert, key, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	server, client, err := identity.PeerTLS(filepath.Join(p.dir, "ca.pem"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := transport.ListenConfig(transport.Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: client,
		Logger: slog.New(slog.DiscardHandler), PeerID: identity.PeerNodeID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// node is one engine of a test cluster with its Mux, data directory and
// state machine.
type node struct {
	id  types.NodeID
	key ed25519.PrivateKey
	dir string
	mux *transport.Mux
	sm  *smr.StateMachine
	e   *Engine
}

// cluster is n engines over real mutual TLS on loopback.
type cluster struct {
	t       *testing.T
	pki     *pki
	nodes   []*node
	members []Member
	genesis smr.Genesis
	admin   ed25519.PrivateKey
	seq     atomic.Uint64
	tweak   func(*Config)
}

func newCluster(t *testing.T, n int, tweak func(*Config)) *cluster {
	t.Helper()
	p := newPKI(t)
	admin, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, pki: p, admin: admin, tweak: tweak,
		genesis: smr.Genesis{AdminKeys: []ed25519.PublicKey{admin.Public().(ed25519.PublicKey)}}.WithDefaults()}
	for i := range n {
		id := types.NodeID(fmt.Sprintf("node-%d", i+1))
		key, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{id: id, key: key, dir: t.TempDir(), mux: p.mux(t, string(id))}
		c.nodes = append(c.nodes, nd)
		c.members = append(c.members, Member{ID: id, Addr: nd.mux.Addr().String(), PublicKey: key.Public().(ed25519.PublicKey)})
	}
	for _, nd := range c.nodes {
		c.start(nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd.e != nil {
				_ = nd.e.Stop()
			}
		}
	})
	return c
}

// testConfig is quick on loopback with slack for -race on a loaded machine.
func (c *cluster) config(nd *node) Config {
	cfg := Config{
		ID:                nd.id,
		Members:           c.members,
		Key:               nd.key,
		DataDir:           nd.dir,
		Network:           nd.mux,
		FSM:               nd.sm,
		Genesis:           &c.genesis,
		Tick:              5 * time.Millisecond,
		ViewChangeTimeout: 300 * time.Millisecond,
		VoteTimeout:       100 * time.Millisecond,
		IdlePropose:       50 * time.Millisecond,
		Logger:            testlog.New(c.t, slog.LevelWarn).With("node", string(nd.id)),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

// start (re)starts nd's engine from its data directory with a fresh state
// machine.
func (c *cluster) start(nd *node) {
	c.t.Helper()
	nd.sm = smr.NewUninitialized()
	e, err := New(c.config(nd))
	if err != nil {
		c.t.Fatalf("start %s: %v", nd.id, err)
	}
	nd.e = e
}

// stop stops nd's engine (its Mux stays up, like a process whose engine
// restarts).
func (c *cluster) stop(nd *node) {
	c.t.Helper()
	if err := nd.e.Stop(); err != nil {
		c.t.Fatalf("stop %s: %v", nd.id, err)
	}
	nd.e = nil
}

// write signs a set_config as the admin and proposes it on nd.
func (c *cluster) write(ctx context.Context, nd *node, key, value string) (smr.Result, error) {
	env, err := smr.Sign(c.admin, c.seq.Add(1), smr.Command{Op: smr.OpSetConfig, Key: key, Value: value})
	if err != nil {
		c.t.Fatal(err)
	}
	return nd.e.Propose(ctx, env)
}

func (c *cluster) mustWrite(nd *node, key, value string) smr.Result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.write(ctx, nd, key, value)
	if err != nil {
		c.t.Fatalf("write %s through %s: %v", key, nd.id, err)
	}
	if res.Code != smr.CodeOK {
		c.t.Fatalf("write %s through %s: %+v", key, nd.id, res)
	}
	return res
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConverged waits until the running nodes among nds have applied the
// same index, at least min, with the same state hash; it returns the hash.
func (c *cluster) waitConverged(nds []*node, min uint64, timeout time.Duration) string {
	c.t.Helper()
	var hash string
	waitFor(c.t, timeout, "convergence", func() (bool, string) {
		var idx uint64
		for i, nd := range nds {
			n, sum := nd.sm.Hash()
			h := hex.EncodeToString(sum[:])
			if i == 0 {
				idx, hash = n, h
				if n < min {
					return false, fmt.Sprintf("%s at index %d < %d", nd.id, n, min)
				}
			} else if n != idx || h != hash {
				return false, fmt.Sprintf("%s at %d/%s vs %d/%s", nd.id, n, h[:8], idx, hash[:8])
			}
		}
		return true, ""
	})
	return hash
}

func (c *cluster) running() []*node {
	var out []*node
	for _, nd := range c.nodes {
		if nd.e != nil {
			out = append(out, nd)
		}
	}
	return out
}

func (c *cluster) byID(id string) *node {
	for _, nd := range c.nodes {
		if string(nd.id) == id {
			return nd
		}
	}
	c.t.Fatalf("no node %q", id)
	return nil
}
