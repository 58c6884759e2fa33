package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/config"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/internal/loadgen"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// benchWriteOptions are the flags of `bench write`.
type benchWriteOptions struct {
	clients  int
	duration time.Duration
	local    int
	mode     string
	basePort int
	baseline bool
	// commitRule is the --local cluster's bft_commit_rule ("" = default).
	commitRule string
	// batchDelay is the --local cluster's bft_max_batch_delay (0 = default).
	batchDelay time.Duration
	// batch: the clients share one client.Batcher.
	batch bool
	// breakdown: report where the writes' time went (benchbreakdown.go).
	breakdown bool
}

// benchWriteResult is what `bench write` reports.
type benchWriteResult struct {
	Cluster       string  `json:"cluster"` // "local N-node <mode>" or "endpoints"
	Clients       int     `json:"clients"`
	Seconds       float64 `json:"seconds"`
	Writes        int     `json:"writes"`
	WritesPerSec  float64 `json:"writes_per_sec"`
	Errors        int     `json:"errors"`
	Unknown       int     `json:"unknown"`
	FirstError    string  `json:"first_error,omitempty"`
	P50Millis     float64 `json:"p50_ms"`
	P99Millis     float64 `json:"p99_ms"`
	MaxMillis     float64 `json:"max_ms"`
	VerifyMicros  float64 `json:"ed25519_verify_us"`  // one Ed25519 verification on this machine, measured in this run
	VerifyBoundPS float64 `json:"verify_bound_per_s"` // writes/s if each replica's only work were verifying (per core)
	// With --batch: the batch requests the shared Batcher sent (every
	// attempt, bft replicas counted separately) and the writes they held.
	Batches      uint64 `json:"batches,omitempty"`
	BatchedWrite uint64 `json:"batched_writes,omitempty"`
	// With --breakdown: where the writes' time went, client side then
	// engine side (benchbreakdown.go).
	Breakdown []benchStage `json:"breakdown,omitempty"`
	// CPU time per write during the load, of the bench process (clients)
	// and of the local cluster's nodes together (--local, Linux).
	ClientCPUMicros float64 `json:"client_cpu_us_per_write,omitempty"`
	NodeCPUMicros   float64 `json:"node_cpu_us_per_write,omitempty"`

	// With --baseline: plain hashicorp/raft on the same machine right
	// after, and the service's writes/s divided by its.
	Raw *benchRawResult `json:"raw,omitempty"`
}

// benchRawResult is the --baseline run.
type benchRawResult struct {
	Nodes        int     `json:"nodes"`
	Writes       int     `json:"writes"`
	WritesPerSec float64 `json:"writes_per_sec"`
	P50Millis    float64 `json:"p50_ms"`
	P99Millis    float64 `json:"p99_ms"`
	Ratio        float64 `json:"service_to_raw"` // the service's writes/s ÷ raw writes/s
}

// setLoad fills the load figures from r.
func (out *benchWriteResult) setLoad(r loadgen.Result) {
	out.Seconds = r.Elapsed.Seconds()
	out.Writes, out.Errors = r.Ops, r.Errors
	if r.FirstErr != nil {
		out.FirstError = "(first: " + r.FirstErr.Error() + ")"
	}
	out.WritesPerSec = r.Rate()
	out.P50Millis, out.P99Millis = millis(r.Percentile(50)), millis(r.Percentile(99))
	if len(r.Latencies) > 0 {
		out.MaxMillis = millis(r.Latencies[len(r.Latencies)-1])
	}
}

// runBaseline runs raw hashicorp/raft (raftengine.Baseline: the same bolt
// stores, mutual-TLS transport and Raft settings as a node, a trivial FSM,
// unsigned 128-byte commands applied in-process on the leader) on nodes
// nodes for the same clients and duration, and records it next to the
// service's figures.
func (out *benchWriteResult) runBaseline(ctx context.Context, cmd *cobra.Command, nodes, clients int, d time.Duration) error {
	dir, err := os.MkdirTemp("", "tandem-bench-raw-")
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.DiscardHandler)
	ids := make([]string, nodes)
	for i := range ids {
		ids[i] = fmt.Sprintf("raw-%d", i+1)
	}
	muxes, err := transport.Loopback(filepath.Join(dir, "pki"), ids, logger)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	defer func() {
		for _, m := range muxes {
			m.Close()
		}
	}()
	cfg := raftengine.BaselineConfig{Dir: dir, Raft: config.Default().Raft, Logger: logger}
	for i, id := range ids {
		cfg.Nodes = append(cfg.Nodes, raftengine.BaselineNode{ID: id, Advertise: muxes[i].Addr().String(), Stream: muxes[i].RaftLayer()})
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	raw, err := raftengine.StartBaseline(sctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer raw.Stop()
	fmt.Fprintf(cmd.ErrOrStderr(), "baseline: raw hashicorp/raft, %d nodes, %d clients, %s\n", nodes, clients, d)
	var written atomic.Int64
	bar := startProgress(cmd.ErrOrStderr(), rateStatus(time.Now(), d, "raw writes", written.Load))
	payload := make([]byte, 128)
	r := loadgen.Run(ctx, loadgen.Options{Clients: clients, Duration: d}, func(ctx context.Context, _, _ int) error {
		if err := raw.Apply(ctx, payload); err != nil {
			return err
		}
		written.Add(1)
		return nil
	})
	bar.stop()
	if r.Errors > 0 {
		return fmt.Errorf("baseline: %d raw writes failed; first: %w", r.Errors, r.FirstErr)
	}
	out.Raw = &benchRawResult{Nodes: nodes, Writes: r.Ops, WritesPerSec: r.Rate(),
		P50Millis: millis(r.Percentile(50)), P99Millis: millis(r.Percentile(99))}
	if r.Rate() > 0 {
		out.Raw.Ratio = out.WritesPerSec / r.Rate()
	}
	return nil
}

func newBenchWriteCmd(e *clientEnv) *cobra.Command {
	o := &benchWriteOptions{}
	cmd := &cobra.Command{
		Use:   "write",
		Short: "Write throughput and latency: concurrent clients submitting signed writes",
		Long: `bench write runs --clients concurrent clients, each with its own fresh key
(invited by the --key admin with config.write), that submit set_config writes
back to back for --duration through the SDK, and reports committed writes/s
and the latency of a write (submit to acknowledged result).

With --local N it first starts an N-node cluster of real processes on
loopback (like tandem dev, in a temporary directory, in --mode) and stops it
afterwards; otherwise it uses the cluster named by the connection flags.
It also measures one Ed25519 verification on this machine in the same run,
since every replica verifies every client signature: that cost bounds what
one core per replica can commit.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(e, o.validate, func(cmd *cobra.Command) (benchWriteResult, error) { return o.run(cmd, e) }, printBenchWrite),
	}
	f := cmd.Flags()
	f.IntVar(&o.clients, "clients", 16, "concurrent clients, one key each")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to write")
	f.IntVar(&o.local, "local", 0, "start a local cluster of this many nodes for the run (0: use the connection flags)")
	f.StringVar(&o.mode, "mode", "cft", "consensus_mode of the --local cluster")
	f.IntVar(&o.basePort, "base-port", 0, "ports of the --local cluster (0: free ephemeral ports)")
	f.BoolVar(&o.breakdown, "breakdown", false, "report where the writes' time went: the SDK's batch queue and requests, its wait for f+1 signed replies, and (--local) the engines' stage histograms read from the nodes' /metrics")
	f.BoolVar(&o.batch, "batch", false, "the clients share one SDK Batcher: their writes travel to each node in batches (POST /v1/submit/batch), as from a gateway writing for many clients")
	f.StringVar(&o.commitRule, "commit-rule", "", "bft_commit_rule of the --local cluster: chained-hotstuff or two-chain-hotstuff (default: the configuration default)")
	f.DurationVar(&o.batchDelay, "max-batch-delay", 0, "bft_max_batch_delay of the --local cluster (default: the configuration default, 0)")
	f.BoolVar(&o.baseline, "baseline", false, "then run raw hashicorp/raft (same stores, transport and Raft settings, trivial FSM, unsigned 128-byte commands) with the same clients and duration, and print the ratio")
	return cmd
}

func (o *benchWriteOptions) validate() error {
	if o.clients < 1 || o.duration <= 0 {
		return fmt.Errorf("--clients must be at least 1 and --duration positive (got %d, %s)", o.clients, o.duration)
	}
	if o.commitRule != "" && o.local == 0 {
		return fmt.Errorf("--commit-rule sets up a --local cluster; a running cluster keeps its own bft_commit_rule")
	}
	if o.batchDelay != 0 && o.local == 0 {
		return fmt.Errorf("--max-batch-delay sets up a --local cluster; a running cluster keeps its own bft_max_batch_delay")
	}
	return nil
}

// printBenchWrite writes res as the table output of bench write.
func printBenchWrite(w io.Writer, res benchWriteResult) error {
	fields := [][2]string{
		{"Cluster", res.Cluster},
		{"Clients", fmt.Sprint(res.Clients)},
		{"Duration", fmt.Sprintf("%.1fs", res.Seconds)},
		{"Writes", fmt.Sprintf("%d (%.0f/s)", res.Writes, res.WritesPerSec)},
		{"Latency p50/p99/max", fmt.Sprintf("%.1f / %.1f / %.1f ms", res.P50Millis, res.P99Millis, res.MaxMillis)},
		{"Errors", fmt.Sprintf("%d (%d outcome unknown) %s", res.Errors, res.Unknown, res.FirstError)},
		{"Ed25519 verify", fmt.Sprintf("%.1f µs (bound ≈ %.0f verifications/s per core)", res.VerifyMicros, res.VerifyBoundPS)},
	}
	if res.Batches > 0 {
		fields = append(fields, [2]string{"Batches", fmt.Sprintf("%d requests carrying %d writes (%.1f each)", res.Batches, res.BatchedWrite, float64(res.BatchedWrite)/float64(res.Batches))})
	}
	if res.NodeCPUMicros > 0 {
		fields = append(fields, [2]string{"CPU per write", fmt.Sprintf("%.0f µs in the nodes, %.0f µs in the clients", res.NodeCPUMicros, res.ClientCPUMicros)})
	}
	fields = append(fields, breakdownFields(res.Breakdown)...)
	if r := res.Raw; r != nil {
		fields = append(fields,
			[2]string{"Raw raft", fmt.Sprintf("%d nodes: %d writes (%.0f/s), p50/p99 %.1f / %.1f ms", r.Nodes, r.Writes, r.WritesPerSec, r.P50Millis, r.P99Millis)},
			[2]string{"Service ÷ raw", fmt.Sprintf("%.2f", r.Ratio)})
	}
	return writeFields(w, fields...)
}

func (o *benchWriteOptions) run(cmd *cobra.Command, e *clientEnv) (benchWriteResult, error) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	out := benchWriteResult{Clients: o.clients, Cluster: "endpoints"}
	var cfg client.Config
	var lc *localCluster
	if o.local > 0 {
		extra := map[string]any{}
		if o.commitRule != "" {
			extra["bft_commit_rule"] = o.commitRule
		}
		if o.batchDelay != 0 {
			extra["bft_max_batch_delay"] = o.batchDelay.String()
		}
		started, err := startLocalCluster(o.local, o.mode, o.basePort, extra, cmd.ErrOrStderr(), io.Discard)
		if err != nil {
			return out, err
		}
		lc = started
		defer func() {
			if lc != nil {
				lc.stop()
			}
		}()
		cfg = lc.cfg
		if lc.layout.Mode == config.ModeBFT {
			// Writes go through the BFT protocol: every member answers
			// with a signed reply and a write counts once f+1 of them match.
			if cfg.Committee, err = lc.layout.Committee(); err != nil {
				return out, err
			}
		}
		out.Cluster = fmt.Sprintf("local %d-node %s", o.local, o.mode)
		if o.commitRule != "" {
			out.Cluster += " " + o.commitRule
		}
	} else {
		c, err := e.conn.sdkConfig(cmd.Flags(), true)
		if err != nil {
			return out, err
		}
		cfg = c
	}
	admin, err := client.New(cfg)
	if err != nil {
		return out, err
	}
	defer admin.Close()

	if o.batch {
		b := client.NewBatcher(client.BatcherConfig{TLS: cfg.TLS, RequestTimeout: cfg.RequestTimeout})
		defer b.Close()
		cfg.Batcher = b
		out.Cluster += ", batched"
	}
	var timings *client.Timings
	if o.breakdown {
		timings = &client.Timings{}
		cfg.Timings = timings
	}
	clients := make([]*client.Client, o.clients)
	for i := range clients {
		if clients[i], err = inviteWriter(ctx, admin, cfg); err != nil {
			return out, err
		}
		defer clients[i].Close()
	}

	var written, unknown atomic.Int64
	cpu := newCPUMeter(lc)
	start := time.Now()
	bar := startProgress(cmd.ErrOrStderr(), rateStatus(start, o.duration, "writes", written.Load))
	defer bar.stop()
	r := loadgen.Run(ctx, loadgen.Options{Clients: o.clients, Duration: o.duration}, func(ctx context.Context, c, i int) error {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := clients[c].SetConfig(wctx, fmt.Sprintf("bench/%d/%d", c, i%64), "v"); err != nil {
			if client.IsOutcomeUnknown(err) && ctx.Err() == nil {
				unknown.Add(1)
			}
			return err
		}
		written.Add(1)
		return nil
	})
	bar.stop()
	out.setLoad(r)
	if lc != nil {
		out.ClientCPUMicros, out.NodeCPUMicros = cpu.perWrite(r.Ops)
	}
	if b := cfg.Batcher; b != nil {
		st := b.Stats()
		out.Batches, out.BatchedWrite = st.Batches, st.Writes
		if o.breakdown {
			out.Breakdown = append(out.Breakdown,
				latencyStage("client: write queued for its batch", st.QueueWait),
				latencyStage("client: batch request round trip", st.RoundTrip))
		}
	}
	if timings != nil {
		if ts := timings.Summary(); ts.FirstReply.Count > 0 { // bft clients only
			out.Breakdown = append(out.Breakdown,
				latencyStage("client: first signed reply", ts.FirstReply),
				latencyStage("client: then f+1 matching", ts.QuorumWait))
		}
	}
	if o.breakdown && lc != nil {
		stages, err := scrapeEngineStages(ctx, cfg.Endpoints, cfg.TLS)
		if err != nil {
			return out, err
		}
		out.Breakdown = append(out.Breakdown, stages...)
	}
	out.Unknown = int(unknown.Load())
	if o.baseline {
		if lc != nil {
			lc.stop() // the baseline gets the machine to itself
			lc = nil
		}
		if err := out.runBaseline(ctx, cmd, max(o.local, 3), o.clients, o.duration); err != nil {
			return out, err
		}
	}
	out.VerifyMicros = measureVerify()
	out.VerifyBoundPS = 1e6 / out.VerifyMicros
	return out, nil
}

// measureVerify times Ed25519 verifications of a signed envelope on this
// machine, now, and returns microseconds per verification.
func measureVerify() float64 {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	// Distinct envelopes: the replicas' verifier remembers signatures it
	// has checked, and so would a loop over one envelope.
	const n = 1000
	envs := make([]*smr.Envelope, 0, n)
	for seq := range uint64(n) {
		env, err := smr.Sign(priv, seq+1, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
		if err != nil {
			return 0
		}
		envs = append(envs, env)
	}
	t0 := time.Now()
	for _, env := range envs {
		_ = env.Verify()
	}
	return float64(time.Since(t0).Microseconds()) / n
}
