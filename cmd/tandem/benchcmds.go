package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// addBenchCommands adds `tandem bench` to root.
func addBenchCommands(root *cobra.Command, g *globalOptions) {
	root.AddCommand(group(newClientEnv(g), "bench", "Measure a cluster's throughput", newBenchDatasetCmd, newBenchWriteCmd, newBenchFailoverCmd, newBenchPlotCmd, newBenchSwitchCmd))
}

// benchDatasetOptions are the flags of `bench dataset`.
type benchDatasetOptions struct {
	clients        int
	duration       time.Duration
	changesPerSync int
	cellSize       int
	name           string
}

// benchDatasetResult is what `bench dataset` reports.
type benchDatasetResult struct {
	Dataset        string  `json:"dataset"`
	Cells          int     `json:"cells"`
	CellSize       int     `json:"cell_size"`
	Clients        int     `json:"clients"`
	ChangesPerSync int     `json:"changes_per_sync"`
	Seconds        float64 `json:"seconds"`
	Syncs          int     `json:"syncs"`
	SyncsPerSec    float64 `json:"syncs_per_sec"`
	Changes        int     `json:"changes"`
	ChangesPerSec  float64 `json:"changes_per_sec"`
	Accepted       int     `json:"accepted"`
	Lost           int     `json:"lost"`
	Rejected       int     `json:"rejected"`
	Errors         int     `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
	P50Millis      float64 `json:"p50_ms"`
	P99Millis      float64 `json:"p99_ms"`
	MaxMillis      float64 `json:"max_ms"`
	Version        uint64  `json:"version"` // the dataset's version read afterwards: equals accepted
}

func newBenchDatasetCmd(e *clientEnv) *cobra.Command {
	o := &benchDatasetOptions{}
	cmd := &cobra.Command{
		Use:   "dataset",
		Short: "Sync throughput of a shared dataset: concurrent agents pushing N-change snapshots",
		Long: `bench dataset creates a new dataset (the --key client needs dataset.create or
admin), invites --clients fresh agent keys and lets each agent sync snapshots
of --changes-per-sync signed changes of its own cells, back to back, for
--duration. Every sync goes through consensus. It reports syncs/s, changes/s
and the latency of a sync (submit to acknowledged verdicts; signing the
changes happens before the clock starts). The agents run in this process,
so on a small machine they compete with the nodes for CPU.`,
		Args: cobra.NoArgs,
		RunE: benchRunE(e, o.validate, func(cmd *cobra.Command) (benchDatasetResult, error) { return o.run(cmd, e) }, printBenchDataset),
	}
	f := cmd.Flags()
	f.IntVar(&o.clients, "clients", 4, "concurrent agents")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to sync")
	f.IntVar(&o.changesPerSync, "changes-per-sync", 100, "changes in each sync snapshot")
	f.IntVar(&o.cellSize, "cell-size", 32, "bytes per cell")
	f.StringVar(&o.name, "name", "", "name of the dataset to create (default bench-<random>)")
	return cmd
}

func (o *benchDatasetOptions) validate() error {
	switch {
	case o.clients < 1:
		return fmt.Errorf("--clients: %d must be at least 1", o.clients)
	case o.duration <= 0:
		return fmt.Errorf("--duration: %s must be positive", o.duration)
	case o.changesPerSync < 1 || o.changesPerSync > smr.MaxSyncChanges:
		return fmt.Errorf("--changes-per-sync: %d is outside 1..%d", o.changesPerSync, smr.MaxSyncChanges)
	case o.cellSize < 1 || o.cellSize > smr.MaxCellSize:
		return fmt.Errorf("--cell-size: %d is outside 1..%d", o.cellSize, smr.MaxCellSize)
	case o.clients*o.changesPerSync > smr.MaxDatasetCells:
		return fmt.Errorf("--clients x --changes-per-sync is %d cells, at most %d: each agent writes its own cells", o.clients*o.changesPerSync, smr.MaxDatasetCells)
	case o.clients*o.changesPerSync*o.cellSize > smr.MaxDatasetBytes:
		return fmt.Errorf("--clients x --changes-per-sync x --cell-size is %d bytes, at most %d", o.clients*o.changesPerSync*o.cellSize, smr.MaxDatasetBytes)
	}
	return nil
}

// benchWorker is one agent's tally.
type benchWorker struct {
	latencies                []time.Duration
	accepted, lost, rejected int
	errors                   int
	firstErr                 error
	syncs, changes           int
	lastDone                 time.Time
	key                      ed25519.PrivateKey
	cl                       *client.Client
	firstCell                int
	// done counts the syncs of every agent, for the progress line.
	done *atomic.Int64
}

func (o *benchDatasetOptions) run(cmd *cobra.Command, e *clientEnv) (benchDatasetResult, error) {
	cfg, err := e.conn.sdkConfig(cmd.Flags(), true)
	if err != nil {
		return benchDatasetResult{}, err
	}
	admin, err := client.New(cfg)
	if err != nil {
		return benchDatasetResult{}, err
	}
	defer admin.Close()
	if o.name == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return benchDatasetResult{}, err
		}
		o.name = "bench-" + hex.EncodeToString(b[:])
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	workers := make([]*benchWorker, o.clients)
	var synced atomic.Int64
	spec := client.DatasetSpec{Name: o.name, Cells: o.clients * o.changesPerSync, CellSize: o.cellSize}
	for i := range workers {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return benchDatasetResult{}, err
		}
		workers[i] = &benchWorker{key: priv, firstCell: i * o.changesPerSync, done: &synced}
		spec.Agents = append(spec.Agents, smr.FormatKey(priv.Public().(ed25519.PublicKey)))
	}
	setupCtx, cancel := e.conn.context(cmd)
	res, err := admin.CreateDataset(setupCtx, spec)
	cancel()
	if err != nil {
		return benchDatasetResult{}, explain("create_dataset "+o.name, err)
	}
	var created smr.Outcome
	if err := json.Unmarshal(res.Value, &created); err != nil || created.Created == 0 {
		return benchDatasetResult{}, fmt.Errorf("create_dataset %s: the outcome %s names no creation index", o.name, res.Value)
	}
	ref := smr.DatasetRef{Name: o.name, Created: created.Created}
	for _, w := range workers {
		wc := cfg
		wc.Key = w.key
		wc.StartSeq = 1 // a fresh key: no need to ask the cluster
		if w.cl, err = client.New(wc); err != nil {
			return benchDatasetResult{}, err
		}
		defer w.cl.Close()
	}

	start := time.Now()
	deadline := start.Add(o.duration)
	bar := startProgress(cmd.ErrOrStderr(), rateStatus(start, o.duration, "syncs", synced.Load))
	defer bar.stop()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.work(ctx, e, cmd, w, ref, deadline)
		}()
	}
	wg.Wait()
	bar.stop()

	out := benchDatasetResult{Dataset: o.name, Cells: spec.Cells, CellSize: o.cellSize, Clients: o.clients, ChangesPerSync: o.changesPerSync}
	var lat []time.Duration
	end := start
	for _, w := range workers {
		lat = append(lat, w.latencies...)
		out.Syncs += w.syncs
		out.Changes += w.changes
		out.Accepted += w.accepted
		out.Lost += w.lost
		out.Rejected += w.rejected
		out.Errors += w.errors
		if w.firstErr != nil && out.FirstError == "" {
			out.FirstError = "(first: " + w.firstErr.Error() + ")"
		}
		if w.lastDone.After(end) {
			end = w.lastDone
		}
	}
	out.Seconds = end.Sub(start).Seconds()
	if out.Seconds > 0 {
		out.SyncsPerSec = float64(out.Syncs) / out.Seconds
		out.ChangesPerSec = float64(out.Changes) / out.Seconds
	}
	slices.Sort(lat)
	out.P50Millis, out.P99Millis = millis(percentile(lat, 50)), millis(percentile(lat, 99))
	if len(lat) > 0 {
		out.MaxMillis = millis(lat[len(lat)-1])
	}
	readCtx, cancel := e.conn.context(cmd)
	defer cancel()
	if list, _, err := admin.ListDatasets(readCtx); err == nil {
		for _, d := range list {
			if d.Name == o.name {
				out.Version = d.Version
			}
		}
	}
	if out.Syncs == 0 && out.Errors > 0 {
		return out, fmt.Errorf("bench dataset: every sync failed %s", out.FirstError)
	}
	return out, nil
}

// work runs one agent's syncs until deadline: round r sets each of the
// agent's cells to global seq r+1, so every change wins and costs one
// local seq. The first sync carries the agent's signed maximum (the cap).
func (o *benchDatasetOptions) work(ctx context.Context, e *clientEnv, cmd *cobra.Command, w *benchWorker, ref smr.DatasetRef, deadline time.Time) {
	value := make([]byte, o.cellSize)
	var local uint64
	for round := uint64(0); time.Now().Before(deadline) && ctx.Err() == nil; round++ {
		var snap smr.DatasetSnapshot
		if round == 0 {
			st, err := smr.SignSeqStatement(w.key, ref, smr.DefaultMaxAgentSeqs)
			if err != nil {
				w.fail(err)
				return
			}
			snap.Statements = []smr.SeqStatement{st}
		}
		for j := range o.changesPerSync {
			local++
			binary.BigEndian.PutUint64(value[:min(8, len(value))], round)
			c, err := smr.SignChange(w.key, ref, smr.DatasetChange{LocalSeq: local, Cell: uint32(w.firstCell + j), GlobalSeq: round + 1, Value: value})
			if err != nil {
				w.fail(err)
				return
			}
			snap.Changes = append(snap.Changes, c)
		}
		callCtx, cancel := e.conn.context(cmd)
		t0 := time.Now()
		out, _, err := w.cl.SyncDataset(callCtx, ref.Name, &snap)
		d := time.Since(t0)
		cancel()
		if err != nil {
			w.fail(err)
			if errors.Is(err, context.Canceled) {
				return
			}
			continue
		}
		w.latencies = append(w.latencies, d)
		w.syncs++
		w.done.Add(1)
		w.changes += len(snap.Changes)
		w.accepted += len(out.Accepted)
		w.lost += len(out.Lost)
		w.rejected += len(out.Rejected)
		w.lastDone = time.Now()
	}
}

func (w *benchWorker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// percentile returns the p-th percentile (nearest rank) of sorted d.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[max(0, min(len(d)-1, i-1))]
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// localCluster is a cluster of real `tandem serve` processes started for a
// benchmark run in a temporary directory.
type localCluster struct {
	*devcluster.Cluster
	layout *devcluster.Layout
	dir    string
	// cfg is an SDK config for every node's endpoint with the admin key.
	cfg client.Config
}

// startLocalCluster lays out and starts an n-node cluster in mode, with
// extra config keys for every node, in a new temporary directory; the
// nodes' output goes to nodeLogs and a note where the cluster is to logs.
// Call stop when done: it stops the nodes and removes the directory.
func startLocalCluster(n int, mode string, basePort int, extra map[string]any, logs, nodeLogs io.Writer) (*localCluster, error) {
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, err
	}
	layout, err := devcluster.Prepare(devcluster.Options{Dir: dir, Nodes: n, BasePort: basePort, Mode: mode, Extra: extra})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("locating the tandem binary: %w", err)
	}
	lc := &localCluster{Cluster: devcluster.New(layout, self, nodeLogs), layout: layout, dir: dir}
	if err := lc.StartAll(); err != nil {
		lc.stop()
		return nil, err
	}
	cfg := client.DefaultConfig()
	cfg.Endpoints = layout.Endpoints()
	if cfg.TLS, err = identity.ClientTLS(layout.CAFile, layout.ClientCertFile, layout.ClientKeyFile); err != nil {
		lc.stop()
		return nil, err
	}
	if cfg.Key, err = identity.LoadKeyFile(layout.AdminKeyPath); err != nil {
		lc.stop()
		return nil, err
	}
	cfg.Retry.MaxAttempts = 50
	lc.cfg = cfg
	fmt.Fprintf(logs, "started a local %d-node %s cluster in %s\n", n, mode, dir)
	return lc, nil
}

// stop stops every node and removes the cluster's directory.
func (lc *localCluster) stop() {
	_ = lc.StopAll(10 * time.Second)
	_ = os.RemoveAll(lc.dir)
}

// inviteWriter makes a fresh key allowed config.write (inviteKey) and
// returns an SDK client for it, based on cfg.
func inviteWriter(ctx context.Context, admin *client.Client, cfg client.Config) (*client.Client, error) {
	priv, err := inviteKey(ctx, admin)
	if err != nil {
		return nil, err
	}
	cfg.Key, cfg.StartSeq = priv, 1
	return client.New(cfg)
}

// inviteKey makes a fresh key and allows it config.write through admin.
func inviteKey(ctx context.Context, admin *client.Client) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = admin.UpdateACL(sctx, smr.FormatKey(priv.Public().(ed25519.PublicKey)), smr.PermConfigWrite, smr.EffectAllow)
	cancel()
	if err != nil {
		return nil, explain("inviting a bench client", err)
	}
	return priv, nil
}

// printBenchDataset writes res as the table output of bench dataset.
func printBenchDataset(w io.Writer, res benchDatasetResult) error {
	return writeFields(w,
		[2]string{"Dataset", fmt.Sprintf("%s (%d cells of %d bytes)", res.Dataset, res.Cells, res.CellSize)},
		[2]string{"Clients", fmt.Sprint(res.Clients)},
		[2]string{"Changes per sync", fmt.Sprint(res.ChangesPerSync)},
		[2]string{"Duration", fmt.Sprintf("%.1fs", res.Seconds)},
		[2]string{"Syncs", fmt.Sprintf("%d (%.1f/s)", res.Syncs, res.SyncsPerSec)},
		[2]string{"Changes", fmt.Sprintf("%d (%.0f/s): %d accepted, %d lost, %d rejected", res.Changes, res.ChangesPerSec, res.Accepted, res.Lost, res.Rejected)},
		[2]string{"Latency p50/p99/max", fmt.Sprintf("%.1f / %.1f / %.1f ms", res.P50Millis, res.P99Millis, res.MaxMillis)},
		[2]string{"Errors", fmt.Sprintf("%d %s", res.Errors, res.FirstError)},
		[2]string{"Dataset version after", fmt.Sprint(res.Version)},
	)
}

// benchRunE is the RunE of a bench command: it checks the output format
// and the flags (validate), runs the benchmark and writes its result as
// JSON with -o json, else with print.
func benchRunE[T any](e *clientEnv, validate func() error, run func(*cobra.Command) (T, error), print func(io.Writer, T) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		format, err := e.g.format()
		if err != nil {
			return err
		}
		if err := validate(); err != nil {
			return err
		}
		res, err := run(cmd)
		if err != nil {
			return err
		}
		if format == outputJSON {
			return writeJSON(cmd.OutOrStdout(), res)
		}
		return print(cmd.OutOrStdout(), res)
	}
}

// setViewTimeout sets view_change_timeout to d and vote_timeout to a third
// of it in the extra node configuration of a bench cluster.
func setViewTimeout(extra map[string]any, d time.Duration) {
	extra["view_change_timeout"] = d.String()
	extra["vote_timeout"] = (d / 3).String()
}

// setRaftTimeouts sets the raft timeouts that are not zero in the extra
// node configuration of a bench cluster.
func setRaftTimeouts(extra map[string]any, heartbeat, election, lease time.Duration) {
	raft := map[string]any{}
	for key, d := range map[string]time.Duration{"heartbeat_timeout": heartbeat, "election_timeout": election, "leader_lease_timeout": lease} {
		if d > 0 {
			raft[key] = d.String()
		}
	}
	if len(raft) > 0 {
		extra["raft"] = raft
	}
}
