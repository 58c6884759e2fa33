package raftengine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/loadgen"
	"github.com/tandem-consensus/tandem/internal/sigverify"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// benchClients are the concurrency levels of BenchmarkEngineVsRaw.
var benchClients = []int{1, 16, 64, 256}

// benchNodes is the cluster size of BenchmarkEngineVsRaw.
const benchNodes = 3

// BenchmarkEngineVsRaw measures, back to back in the same run and on the
// same machine, committed writes per second and write latency of
//
//   - raw: the Baseline, plain hashicorp/raft with a trivial FSM, unsigned
//     128-byte commands applied in-process on the leader;
//   - engine: the Engine driving smr.StateMachine, with the leader signing
//     an attestation of every entry and every replica checking it, and
//     client envelopes signed beforehand and proposed in-process on the
//     leader; every replica verifies every client signature (the
//     signature cache is off, as each node were its own process);
//
// both on 3 nodes with bolt stores on disk and the mutual-TLS transport on
// loopback TCP, at 1, 16, 64 and 256 concurrent clients, with the default
// Raft settings of a node. Each sub-benchmark runs about b.N writes on
// each cluster, alternating between them in four rounds, and reports
// writes/s and p50/p99 of both, and engine÷raw:
//
//	go test ./consensus/raft -run '^$' -bench EngineVsRaw -benchtime 4000x
func BenchmarkEngineVsRaw(b *testing.B) {
	sigverify.SetCaching(false)
	b.Cleanup(func() { sigverify.SetCaching(true) })
	rc := config.Default().Raft
	logger := slog.New(slog.DiscardHandler)
	start, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw := startBaselineBench(b, start, rc, logger)
	eng := startEngineBench(b, start, rc, logger, benchClients[len(benchClients)-1])
	ctx := context.Background()
	cmd := make([]byte, 128)
	for _, clients := range benchClients {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			b.StopTimer()
			// Alternate the two in rounds, so that a change in the
			// machine's load during the run hits both alike.
			const rounds = 4
			per := max(1, (b.N+clients*rounds-1)/(clients*rounds))
			var r, e loadgen.Result
			for range rounds {
				envs := eng.sign(b, clients, per)
				b.StartTimer()
				r = r.Add(loadgen.Run(ctx, loadgen.Options{Clients: clients, PerClient: per}, func(ctx context.Context, _, _ int) error {
					return raw.Apply(ctx, cmd)
				}))
				e = e.Add(loadgen.Run(ctx, loadgen.Options{Clients: clients, PerClient: per}, func(ctx context.Context, c, i int) error {
					return eng.propose(ctx, envs[c][i])
				}))
				b.StopTimer()
			}
			for _, res := range []loadgen.Result{r, e} {
				if res.Errors > 0 {
					b.Fatalf("%d of %d writes failed; first: %v", res.Errors, res.Errors+res.Ops, res.FirstErr)
				}
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(r.Rate(), "raw-writes/s")
			b.ReportMetric(e.Rate(), "engine-writes/s")
			b.ReportMetric(e.Rate()/r.Rate(), "engine/raw")
			b.ReportMetric(ms(r.Percentile(50)), "raw-p50-ms")
			b.ReportMetric(ms(e.Percentile(50)), "engine-p50-ms")
			b.ReportMetric(ms(r.Percentile(99)), "raw-p99-ms")
			b.ReportMetric(ms(e.Percentile(99)), "engine-p99-ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchIDs() []string {
	ids := make([]string, benchNodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i+1)
	}
	return ids
}

func startBaselineBench(b *testing.B, ctx context.Context, rc config.RaftConfig, logger *slog.Logger) *Baseline {
	b.Helper()
	ids := benchIDs()
	muxes, err := transport.Loopback(b.TempDir(), ids, logger)
	if err != nil {
		b.Fatal(err)
	}
	cfg := BaselineConfig{Dir: b.TempDir(), Raft: rc, Logger: logger}
	for i, id := range ids {
		cfg.Nodes = append(cfg.Nodes, BaselineNode{ID: id, Advertise: muxes[i].Addr().String(), Stream: muxes[i].RaftLayer()})
	}
	raw, err := StartBaseline(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		raw.Stop()
		for _, m := range muxes {
			m.Close()
		}
	})
	return raw
}

// engineBench is a 3-node engine cluster and one client key per
// concurrent client, each an admin in the genesis.
type engineBench struct {
	engines []*Engine
	leader  atomic.Pointer[Engine]
	keys    []ed25519.PrivateKey
	seqs    []uint64 // next seq of each key
}

func startEngineBench(b *testing.B, ctx context.Context, rc config.RaftConfig, logger *slog.Logger, clients int) *engineBench {
	b.Helper()
	eb := &engineBench{seqs: make([]uint64, clients)}
	var g smr.Genesis
	for range clients {
		k, err := identity.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		eb.keys = append(eb.keys, k)
		g.AdminKeys = append(g.AdminKeys, k.Public().(ed25519.PublicKey))
	}
	ids := benchIDs()
	nodeKeys := map[string]ed25519.PrivateKey{}
	var ms []evidence.Member
	for _, id := range ids {
		k, err := identity.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		nodeKeys[id] = k
		ms = append(ms, evidence.Member{ID: evidence.NodeID(id), PublicKey: k.Public().(ed25519.PublicKey)})
	}
	members, err := evidence.NewMembers(ms)
	if err != nil {
		b.Fatal(err)
	}
	muxes, err := transport.Loopback(b.TempDir(), ids, logger)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, e := range eb.engines {
			e.Stop()
		}
		for _, m := range muxes {
			m.Close()
		}
	})
	var cms []consensus.Member
	for i, id := range ids {
		cms = append(cms, consensus.Member{ID: id, Address: muxes[i].Addr().String(), Voter: true})
	}
	for i, id := range ids {
		sm, err := smr.New(g)
		if err != nil {
			b.Fatal(err)
		}
		e, err := New(Config{
			NodeID: id, DataDir: b.TempDir(), Advertise: muxes[i].Addr().String(), Stream: muxes[i].RaftLayer(),
			FSM: sm, Raft: rc, Logger: logger,
			Signer: nodeKeys[id], Epoch: 1, Members: members,
		})
		if err != nil {
			b.Fatal(err)
		}
		eb.engines = append(eb.engines, e)
		if err := e.Bootstrap(cms); err != nil {
			b.Fatal(err)
		}
	}
	for eb.findLeader() == nil {
		select {
		case <-ctx.Done():
			b.Fatal("no engine leader elected")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return eb
}

func (eb *engineBench) findLeader() *Engine {
	for _, e := range eb.engines {
		if e.Status().Role == "leader" {
			eb.leader.Store(e)
			return e
		}
	}
	return nil
}

// sign returns per envelopes for each of the first clients keys, with
// their next seqs, signed before the clock starts.
func (eb *engineBench) sign(b *testing.B, clients, per int) [][]*smr.Envelope {
	b.Helper()
	envs := make([][]*smr.Envelope, clients)
	for c := range clients {
		for i := range per {
			eb.seqs[c]++
			env, err := smr.Sign(eb.keys[c], eb.seqs[c], smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("bench/%d/%d", c, i%64), Value: "v"})
			if err != nil {
				b.Fatal(err)
			}
			envs[c] = append(envs[c], env)
		}
	}
	return envs
}

// propose orders env through the current leader, following a leadership
// change, and checks that it executed.
func (eb *engineBench) propose(ctx context.Context, env *smr.Envelope) error {
	for {
		e := eb.leader.Load()
		res, err := e.Propose(ctx, env)
		var nl *consensus.NotLeaderError
		if errors.As(err, &nl) && ctx.Err() == nil {
			eb.findLeader()
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		if res.Code != smr.CodeOK {
			return fmt.Errorf("seq %d: %s: %s", env.Seq, res.Code, res.Message)
		}
		return nil
	}
}
