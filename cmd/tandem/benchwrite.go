package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/smr"
)

// benchWriteOptions are the flags of `bench write`.
type benchWriteOptions struct {
	clients  int
	duration time.Duration
	local    int
	mode     string
	basePort int
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := e.g.format()
			if err != nil {
				return err
			}
			if o.clients < 1 || o.duration <= 0 {
				return fmt.Errorf("--clients must be at least 1 and --duration positive (got %d, %s)", o.clients, o.duration)
			}
			res, err := o.run(cmd, e)
			if err != nil {
				return err
			}
			if format == outputJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return writeFields(cmd.OutOrStdout(),
				[2]string{"Cluster", res.Cluster},
				[2]string{"Clients", fmt.Sprint(res.Clients)},
				[2]string{"Duration", fmt.Sprintf("%.1fs", res.Seconds)},
				[2]string{"Writes", fmt.Sprintf("%d (%.0f/s)", res.Writes, res.WritesPerSec)},
				[2]string{"Latency p50/p99/max", fmt.Sprintf("%.1f / %.1f / %.1f ms", res.P50Millis, res.P99Millis, res.MaxMillis)},
				[2]string{"Errors", fmt.Sprintf("%d (%d outcome unknown) %s", res.Errors, res.Unknown, res.FirstError)},
				[2]string{"Ed25519 verify", fmt.Sprintf("%.1f µs (bound ≈ %.0f verifications/s per core)", res.VerifyMicros, res.VerifyBoundPS)},
			)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.clients, "clients", 16, "concurrent clients, one key each")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to write")
	f.IntVar(&o.local, "local", 0, "start a local cluster of this many nodes for the run (0: use the connection flags)")
	f.StringVar(&o.mode, "mode", "cft", "consensus_mode of the --local cluster")
	f.IntVar(&o.basePort, "base-port", 0, "ports of the --local cluster (0: free ephemeral ports)")
	return cmd
}

func (o *benchWriteOptions) run(cmd *cobra.Command, e *clientEnv) (benchWriteResult, error) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	out := benchWriteResult{Clients: o.clients, Cluster: "endpoints"}
	var cfg client.Config
	if o.local > 0 {
		lc, err := startLocalCluster(o.local, o.mode, o.basePort, nil, cmd.ErrOrStderr(), io.Discard)
		if err != nil {
			return out, err
		}
		defer lc.stop()
		cfg = lc.cfg
		if lc.layout.Mode == config.ModeBFT {
			// Writes go through the BFT protocol: every member answers
			// with a signed reply and a write counts once f+1 of them match.
			if cfg.Committee, err = lc.layout.Committee(); err != nil {
				return out, err
			}
		}
		out.Cluster = fmt.Sprintf("local %d-node %s", o.local, o.mode)
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

	clients := make([]*client.Client, o.clients)
	for i := range clients {
		if clients[i], err = inviteWriter(ctx, admin, cfg); err != nil {
			return out, err
		}
		defer clients[i].Close()
	}

	type tally struct {
		lat            []time.Duration
		errors, unknow int
		first          error
	}
	tallies := make([]tally, o.clients)
	var written atomic.Int64
	start := time.Now()
	deadline := start.Add(o.duration)
	bar := startProgress(cmd.ErrOrStderr(), rateStatus(start, o.duration, "writes", written.Load))
	defer bar.stop()
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[i]
			for j := 0; time.Now().Before(deadline) && ctx.Err() == nil; j++ {
				wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				_, err := cl.SetConfig(wctx, fmt.Sprintf("bench/%d/%d", i, j%64), "v")
				d := time.Since(t0)
				cancel()
				if err != nil {
					t.errors++
					if client.IsOutcomeUnknown(err) {
						t.unknow++
					}
					if t.first == nil {
						t.first = err
					}
					continue
				}
				t.lat = append(t.lat, d)
				written.Add(1)
			}
		}()
	}
	wg.Wait()
	out.Seconds = time.Since(start).Seconds()
	bar.stop()
	var lat []time.Duration
	for _, t := range tallies {
		lat = append(lat, t.lat...)
		out.Errors += t.errors
		out.Unknown += t.unknow
		if t.first != nil && out.FirstError == "" {
			out.FirstError = "(first: " + t.first.Error() + ")"
		}
	}
	out.Writes = len(lat)
	out.WritesPerSec = float64(out.Writes) / out.Seconds
	slices.Sort(lat)
	out.P50Millis, out.P99Millis = millis(percentile(lat, 50)), millis(percentile(lat, 99))
	if len(lat) > 0 {
		out.MaxMillis = millis(lat[len(lat)-1])
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
