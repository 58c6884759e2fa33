package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// portPicker hands out loopback ports that were free when picked and that
// it has not handed out before. It picks below the kernel's ephemeral
// range (32768 and up by default on Linux): a port handed out there is
// not taken by another process's outgoing connection or ":0" listener
// between the pick and the node's bind, as a port from ":0" can be when
// other test packages run at the same time.
type portPicker struct {
	mu   sync.Mutex
	used map[int]bool
}

// Ports picked are in [pickLow, pickHigh).
const pickLow, pickHigh = 20000, 32000

// pick returns a port free for TCP on 127.0.0.1 and, if udp, for UDP too
// (memberlist binds both on the gossip port).
func (p *portPicker) pick(t *testing.T, udp bool) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for range 200 {
		port := pickLow + rand.IntN(pickHigh-pickLow)
		if p.used[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ok := true
		if udp {
			pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				ok = false
			} else {
				pc.Close()
			}
		}
		l.Close()
		if ok {
			p.used[port] = true
			return port
		}
	}
	t.Fatal("no free loopback port found in 200 attempts")
	return 0
}

// testNode is one in-process node of a testCluster.
type testNode struct {
	id     string
	cfg    config.Config
	n      *Node
	cancel context.CancelFunc
	done   chan error
	key    ed25519.PrivateKey // node key
}

// testCluster is a set of real nodes (mutual TLS on loopback, bolt on
// disk, gossip) formed from initial_members.
type testCluster struct {
	t      *testing.T
	ca     *identity.CA
	caFile string
	pki    string
	admin  ed25519.PrivateKey
	nodes  []*testNode
	seqs   map[string]uint64 // next seq per client key
	seqMu  sync.Mutex
}

// fastRaftConfig keeps elections quick on loopback, with slack for the race
// detector on a loaded machine. The commit timeout stays at its default, so
// followers learn of commits a little after the leader answers a write.
func fastRaftConfig() config.RaftConfig {
	rc := config.Default().Raft
	rc.HeartbeatTimeout = 300 * time.Millisecond
	rc.ElectionTimeout = 300 * time.Millisecond
	rc.LeaderLeaseTimeout = 200 * time.Millisecond
	return rc
}

// startCluster starts size nodes and stops them (checking that Run returns
// without error) when the test ends.
func startCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	return startClusterMode(t, size, config.ModeCFT)
}

// startClusterMode is startCluster with consensus_mode mode. In bft mode
// initial_members carry every node's public key and the view timeouts are
// short.
func startClusterMode(t *testing.T, size int, mode string) *testCluster {
	t.Helper()
	return startClusterKeys(t, size, mode, mode == config.ModeBFT)
}

// startClusterKeys is startClusterMode; with keys, initial_members carry
// every node's public key in any mode.
func startClusterKeys(t *testing.T, size int, mode string, keys bool) *testCluster {
	t.Helper()
	pki := t.TempDir()
	caFile := filepath.Join(pki, "ca.pem")
	ca, err := identity.CreateCA(caFile, filepath.Join(pki, "ca-key.pem"), "tandem-test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ca: ca, caFile: caFile, pki: pki, admin: admin, seqs: map[string]uint64{}}

	var ports portPicker
	ids := make([]string, size)
	peers := make([]int, size)
	var members []string
	nodeKeys := make([]ed25519.PrivateKey, size)
	for i := range size {
		ids[i] = fmt.Sprintf("node-%d", i+1)
		peers[i] = ports.pick(t, false)
		if nodeKeys[i], err = identity.GenerateKey(); err != nil {
			t.Fatal(err)
		}
		m := fmt.Sprintf("%s=127.0.0.1:%d", ids[i], peers[i])
		if keys {
			m += "/" + smr.FormatKey(nodeKeys[i].Public().(ed25519.PublicKey))
		}
		members = append(members, m)
	}
	for i, id := range ids {
		certPEM, keyPEM, err := ca.IssueNode(id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(pki, id+".pem"), filepath.Join(pki, id+"-key.pem")
		if err := identity.WriteCertPair(certFile, keyFile, certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		dataDir := t.TempDir()
		if err := identity.WriteKeyFile(filepath.Join(dataDir, identity.NodeKeyFileName), nodeKeys[i]); err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.NodeID = id
		cfg.DataDir = dataDir
		cfg.APIAddr = "127.0.0.1:0"
		cfg.PeerAddr = fmt.Sprintf("127.0.0.1:%d", peers[i])
		cfg.GossipAddr = fmt.Sprintf("127.0.0.1:%d", ports.pick(t, true))
		cfg.InitialMembers = members
		cfg.TLS = config.TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}
		cfg.BootstrapAdminKeys = []string{identity.EncodePublicKey(admin.Public().(ed25519.PublicKey))}
		cfg.Raft = fastRaftConfig()
		cfg.ConsensusMode = mode
		if mode == config.ModeBFT {
			cfg.ViewChangeTimeout = 500 * time.Millisecond
			cfg.VoteTimeout = 150 * time.Millisecond
		}
		c.nodes = append(c.nodes, &testNode{id: id, cfg: cfg, key: nodeKeys[i]})
	}
	for _, tn := range c.nodes {
		c.start(tn)
	}
	// Ready: a leader is known and the genesis entry has been applied.
	waitFor(t, "every node to be ready", 20*time.Second, func() bool {
		for _, tn := range c.nodes {
			if tn.n.Ready() != nil {
				return false
			}
		}
		return true
	})
	return c
}

// start creates and runs tn's node; the test's cleanup stops it.
func (c *testCluster) start(tn *testNode) {
	t := c.t
	t.Helper()
	logger := testlog.New(t, slog.LevelWarn)
	n, err := New(tn.cfg, logger)
	if err != nil {
		t.Fatalf("start %s: %v", tn.id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn.n, tn.cancel, tn.done = n, cancel, make(chan error, 1)
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(func() { c.stop(tn) })
}

// stop cancels tn's node and waits for Run to return; a second call does
// nothing.
func (c *testCluster) stop(tn *testNode) {
	t := c.t
	t.Helper()
	if tn.cancel == nil {
		return
	}
	tn.cancel()
	tn.cancel = nil
	select {
	case err := <-tn.done:
		if err != nil {
			t.Errorf("%s: Run returned %v after a clean stop", tn.id, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: Run did not return within 20s of its context ending", tn.id)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leader waits until every running node agrees on one leader and returns it.
func (c *testCluster) leader(t *testing.T) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, "one leader that every node knows", 15*time.Second, func() bool {
		l = nil
		leaderID := ""
		for _, tn := range c.nodes {
			if tn.cancel == nil {
				continue
			}
			st := tn.n.engine.Status()
			if st.LeaderID == "" || (leaderID != "" && st.LeaderID != leaderID) {
				return false
			}
			leaderID = st.LeaderID
			if st.Role == "leader" {
				l = tn
			}
		}
		return l != nil && l.id == leaderID
	})
	return l
}

// followers returns the running nodes other than l.
func (c *testCluster) followers(l *testNode) []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if tn != l && tn.cancel != nil {
			out = append(out, tn)
		}
	}
	return out
}

// sign returns an envelope of cmd signed by key with the key's next seq.
func (c *testCluster) sign(t *testing.T, key ed25519.PrivateKey, cmd smr.Command) *smr.Envelope {
	t.Helper()
	k := string(key.Public().(ed25519.PublicKey))
	c.seqMu.Lock()
	c.seqs[k]++
	seq := c.seqs[k]
	c.seqMu.Unlock()
	env, err := smr.Sign(key, seq, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// submit submits cmd signed by key through tn and requires success.
func (c *testCluster) submit(t *testing.T, ctx context.Context, tn *testNode, key ed25519.PrivateKey, cmd smr.Command) smr.Result {
	t.Helper()
	// A loaded machine (the race detector, parallel packages) can cost the
	// leader its lease between two writes. Like the SDK, retry the same
	// envelope, which the state machine executes at most once.
	env := c.sign(t, key, cmd)
	var (
		res smr.Result
		err error
	)
	for attempt := 1; ; attempt++ {
		res, err = tn.n.Submit(ctx, env)
		if err == nil || ctx.Err() != nil || !retryableSubmitError(err) {
			break
		}
		t.Logf("submit %s through %s, attempt %d: %v; retrying the same envelope", cmd.Op, tn.id, attempt, err)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("submit %s through %s: %v", cmd.Op, tn.id, err)
	}
	if res.Code != smr.CodeOK {
		t.Fatalf("submit %s through %s: rejected %s: %s", cmd.Op, tn.id, res.Code, res.Message)
	}
	if res.Index == 0 {
		t.Fatalf("submit %s through %s: result without a log index: %+v", cmd.Op, tn.id, res)
	}
	return res
}

// retryableSubmitError reports whether err leaves a write to be retried
// with the same envelope: its outcome is unknown or no leader took it.
func retryableSubmitError(err error) bool {
	_, notLeader := errors.AsType[*consensus.NotLeaderError](err)
	return notLeader || errors.Is(err, consensus.ErrOutcomeUnknown) || errors.Is(err, consensus.ErrUnavailable)
}

// configValue reads config key through tn.
func configValue(ctx context.Context, tn *testNode, key string, stale bool) (string, uint64, error) {
	raw, idx, err := tn.n.Query(ctx, smr.Query{Kind: smr.QueryConfig, Key: key}, stale)
	if err != nil {
		return "", idx, err
	}
	var e smr.ConfigEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", idx, fmt.Errorf("config %q: %s does not decode: %w", key, raw, err)
	}
	return e.Value, idx, nil
}

// clientTLS issues a client certificate and returns the TLS configuration
// the SDK uses with it.
func (c *testCluster) clientTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := c.ca.IssueClient(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(c.pki, name+".pem"), filepath.Join(c.pki, name+"-key.pem")
	if err := identity.WriteCertPair(certFile, keyFile, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	cfg, err := identity.ClientTLS(c.caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// codeOf returns the smr code of err, or "".
func codeOf(err error) smr.Code {
	var se *smr.Error
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// endpoint is tn's API URL.
func (tn *testNode) endpoint() string { return "https://" + tn.n.APIAddr() }
