package raftengine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// tlsNode is an engine on a real mutual-TLS Mux over loopback TCP.
type tlsNode struct {
	id  string
	dir string
	mux *transport.Mux
	sm  *smr.StateMachine
	e   *Engine
}

// TestClusterOverMutualTLS: three engines on the real mTLS transport elect
// a leader and replicate; a node stopped and restarted on the same Mux
// (a fresh Raft layer on the same port) catches up, every request passing
// the sender check; raft's go-metrics and the engine collector reach
// Prometheus.
func TestClusterOverMutualTLS(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := SetupMetrics(reg); err != nil {
		t.Fatal(err)
	}

	pkiDir := t.TempDir()
	ca, err := identity.CreateCA(filepath.Join(pkiDir, "ca.pem"), filepath.Join(pkiDir, "ca-key.pem"), "test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, admin, _ := ed25519.GenerateKey(rand.Reader)
	genesis := smr.Genesis{AdminKeys: []ed25519.PublicKey{admin.Public().(ed25519.PublicKey)}}

	nodes := make([]*tlsNode, 3)
	for i := range nodes {
		id := fmt.Sprintf("node-%d", i+1)
		certPEM, keyPEM, err := ca.IssueNode(id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(pkiDir, id+".pem"), filepath.Join(pkiDir, id+"-key.pem")
		if err := identity.WriteCertPair(cert, key, certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		server, client, err := identity.PeerTLS(filepath.Join(pkiDir, "ca.pem"), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		mux, err := transport.ListenConfig(transport.Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: client, Logger: testLogger(t), PeerID: identity.PeerNodeID})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &tlsNode{id: id, dir: t.TempDir(), mux: mux}
	}
	start := func(n *tlsNode) {
		t.Helper()
		sm, err := smr.New(genesis)
		if err != nil {
			t.Fatal(err)
		}
		n.sm = sm
		n.e, err = New(Config{
			NodeID:    n.id,
			DataDir:   n.dir,
			Advertise: n.mux.Addr().String(),
			Stream:    n.mux.RaftLayer(),
			FSM:       sm,
			Raft:      fastRaft(),
			Logger:    testLogger(t),
			PeerID:    transport.PeerID, // every request's sender checked (rpccheck.go)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		start(n)
	}
	defer func() {
		for _, n := range nodes {
			if n.e != nil {
				n.e.Stop()
			}
			n.mux.Close()
		}
	}()

	var members []consensus.Member
	for _, n := range nodes {
		members = append(members, consensus.Member{ID: n.id, Address: n.mux.Addr().String(), Voter: true})
	}
	for _, n := range nodes {
		if err := n.e.Bootstrap(members); err != nil {
			t.Fatal(err)
		}
	}
	leader := func() *tlsNode {
		var l *tlsNode
		waitFor(t, "a leader", func() bool {
			for _, n := range nodes {
				if n.e != nil && n.e.Status().Role == "leader" {
					l = n
					return true
				}
			}
			return false
		})
		return l
	}
	seq := uint64(0)
	propose := func(k int) {
		t.Helper()
		for range k {
			seq++
			env, err := smr.Sign(admin, seq, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("k%d", seq), Value: "v"})
			if err != nil {
				t.Fatal(err)
			}
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := leader().e.Propose(ctx, env)
				cancel()
				var nl *consensus.NotLeaderError
				if (errors.As(err, &nl) || errors.Is(err, consensus.ErrOutcomeUnknown)) && attempt < 20 {
					continue
				}
				if err != nil || res.Code != smr.CodeOK {
					t.Fatalf("propose seq %d: %+v, %v", seq, res, err)
				}
				break
			}
		}
	}
	converged := func() {
		t.Helper()
		waitFor(t, "hashes to converge", func() bool {
			i0, h0 := nodes[0].sm.Hash()
			for _, n := range nodes[1:] {
				if i, h := n.sm.Hash(); i != i0 || h != h0 {
					return false
				}
			}
			return true
		})
	}

	propose(5)
	converged()
	l := leader()
	for _, n := range nodes {
		if n == l {
			continue
		}
		_, err := n.e.Propose(context.Background(), &smr.Envelope{})
		var nl *consensus.NotLeaderError
		if errors.As(err, &nl) && (nl.LeaderID != l.id || nl.LeaderAddr != l.mux.Addr().String()) {
			t.Errorf("leader hint = %+v, want %s at %s", nl, l.id, l.mux.Addr())
		}
	}

	// Restart a follower on the same Mux.
	var f *tlsNode
	for _, n := range nodes {
		if n != l {
			f = n
			break
		}
	}
	if err := f.e.Stop(); err != nil {
		t.Fatal(err)
	}
	f.e = nil
	propose(3)
	start(f)
	propose(1)
	converged()

	if err := reg.Register(l.e.Collector()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sawRaft, sawEngine, sawRejected bool
	for _, mf := range families {
		name := mf.GetName()
		if name == "tandem_raft_engine_rejected_rpcs_total" {
			sawRejected = len(mf.GetMetric()) == len(rejectReasons)
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("honest cluster: %v requests refused (%v)", v, m.GetLabel())
				}
			}
		}
		sawRaft = sawRaft || (strings.HasPrefix(name, "tandem_raft_") && !strings.HasPrefix(name, "tandem_raft_engine_"))
		if name == "tandem_raft_engine_is_leader" {
			sawEngine = true
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 && l.e.Status().Role == "leader" {
				t.Errorf("is_leader gauge = %v on the leader", v)
			}
		}
	}
	if !sawRaft || !sawEngine || !sawRejected {
		t.Errorf("gathered raft metrics %v, engine metrics %v, refused requests per reason %v; want all", sawRaft, sawEngine, sawRejected)
	}
	if st := f.mux.Stats(); st.RaftConns == 0 || st.RejectedPeers != 0 {
		t.Errorf("transport stats of %s = %+v", f.id, st)
	}
}
