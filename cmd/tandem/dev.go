package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
)

type devOptions struct {
	nodes    int
	dir      string
	basePort int
	fresh    bool
	mode     string
	// modeSet: --mode was given (otherwise --byzantine implies auto).
	modeSet bool
	// byzantineSpecs are the --byzantine values; byz is what they parse to:
	// node ID → behaviours.
	byzantineSpecs []string
	byz            map[string][]string
	rate           int
	nodeLog        string
}

// envByzantine is the environment variable that switches a byzantine
// build's behaviours on (raftengine.EnvByzantine, engine.EnvByzantine).
const envByzantine = "TANDEM_BYZANTINE"

// byzantineBehaviours are the behaviours of a byzantine build.
var byzantineBehaviours = map[string]string{
	"equivocate": "as Raft leader, send one follower other payloads for signed slots; as HotStuff leader, sign two blocks for one view",
}

func newDevCmd(g *globalOptions) *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster of real tandem processes on loopback",
		Long: `dev lays out a local cluster under --dir (cluster CA, node certificates and
keys, an admin client key and certificate, a gossip key and one config file
per node), starts one "tandem serve" process per node, prefixes their log
lines with [nodeN], and stops them all on Ctrl-C.

With --mode bft the nodes run the HotStuff engine: their configs list every
node's peer address and node public key in initial_members (a BFT committee is
static), and view_change_timeout is 1s. BFT needs at least 4 nodes.

A second run reuses the directory and its data; --fresh starts over.
The CLI reads <dir>/client.yaml through TANDEM_CLIENT_CONFIG.

--byzantine node3=equivocate (repeatable; only in a binary built with
-tags byzantine) makes that node misbehave and turns dev into a tour of auto
mode (--mode auto unless --mode says otherwise): a steady write load from
this process (--rate writes/s, to the correct nodes), a leadership transfer
to the equivocating node so that it proposes, and a timeline on the screen,
read from the nodes' status and quarantine APIs: cluster up, the
equivocation, each correct node's quarantine with its evidence, the switch
to bft at epoch 2 and the writes going on. The nodes' logs then go to
<dir>/nodes.log (--node-log - keeps them on the screen). It needs a new
cluster: add --fresh when --dir holds one.

  go run -tags byzantine ./cmd/tandem dev --byzantine node3=equivocate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.modeSet = cmd.Flags().Changed("mode")
			if err := o.validate(); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", 4, "number of nodes (1..9)")
	f.StringVar(&o.dir, "dir", "tandem-dev", "directory for keys, certificates, configs and data")
	f.IntVar(&o.basePort, "base-port", 7100, "node i listens on api base+i, peer base+100+i, gossip base+200+i")
	f.BoolVar(&o.fresh, "fresh", false, "delete --dir first")
	f.StringVar(&o.mode, "mode", "cft", "consensus_mode of every node: auto, cft or bft (auto with --byzantine)")
	f.StringArrayVar(&o.byzantineSpecs, "byzantine", nil, "node=behaviour[,behaviour]: make the node misbehave (repeatable; needs a binary built with -tags byzantine; behaviours: "+strings.Join(slices.Sorted(maps.Keys(byzantineBehaviours)), ", ")+")")
	f.IntVar(&o.rate, "rate", 10, "with --byzantine: writes per second of the steady load (1..1000)")
	f.StringVar(&o.nodeLog, "node-log", "", "write the nodes' logs to this file instead of the screen (\"-\": the screen; default with --byzantine: <dir>/nodes.log)")
	return cmd
}

// parseByzantine checks the --byzantine values against an n-node cluster
// and returns node ID → behaviours. tagged says whether this binary has
// the behaviours at all.
func parseByzantine(specs []string, n int, tagged bool) (map[string][]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if !tagged {
		return nil, fmt.Errorf("--byzantine: this tandem binary has no Byzantine behaviours (a correct build never does); build it with -tags byzantine: go run -tags byzantine ./cmd/tandem dev --byzantine %s", specs[0])
	}
	known := strings.Join(slices.Sorted(maps.Keys(byzantineBehaviours)), ", ")
	out := map[string][]string{}
	for _, spec := range specs {
		id, list, ok := strings.Cut(spec, "=")
		id = strings.TrimSpace(id)
		if !ok || id == "" || strings.TrimSpace(list) == "" {
			return nil, fmt.Errorf("--byzantine %q: want node=behaviour, e.g. node3=equivocate", spec)
		}
		num, err := strconv.Atoi(strings.TrimPrefix(id, "node"))
		if !strings.HasPrefix(id, "node") || err != nil || num < 1 || num > n || id != "node"+strconv.Itoa(num) {
			return nil, fmt.Errorf("--byzantine %q: there is no node %q in a %d-node cluster (node1..node%d)", spec, id, n, n)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("--byzantine %q: %s is given twice; list its behaviours in one value, separated by commas", spec, id)
		}
		var behaviours []string
		for _, b := range strings.Split(list, ",") {
			b = strings.TrimSpace(b)
			if _, ok := byzantineBehaviours[b]; !ok {
				return nil, fmt.Errorf("--byzantine %q: unknown behaviour %q (known: %s)", spec, b, known)
			}
			if !slices.Contains(behaviours, b) {
				behaviours = append(behaviours, b)
			}
		}
		out[id] = behaviours
	}
	if f := (n - 1) / 3; len(out) > f {
		return nil, fmt.Errorf("--byzantine: %d misbehaving nodes of %d is too many: BFT tolerates f of them only with n >= 3f+1, so at most %d here; the correct nodes could not outvote them", len(out), n, f)
	}
	return out, nil
}

func (o *devOptions) validate() error {
	if o.nodes < 1 || o.nodes > 9 {
		return fmt.Errorf("--nodes: %d is out of range (1..9)", o.nodes)
	}
	if o.basePort != 0 && (o.basePort < 1024 || o.basePort+200+o.nodes > 65535) {
		return fmt.Errorf("--base-port: %d leaves no room for %d nodes (1024..%d, or 0 for free ephemeral ports)", o.basePort, o.nodes, 65535-200-o.nodes)
	}
	byz, err := parseByzantine(o.byzantineSpecs, o.nodes, byzantineBuild)
	if err != nil {
		return err
	}
	o.byz = byz
	if len(byz) > 0 {
		if !o.modeSet {
			o.mode = config.ModeAuto
		}
		if o.mode == config.ModeCFT {
			return fmt.Errorf("--byzantine needs --mode auto (or bft): in cft mode the dev cluster's members have no node keys in their configs, so no detector runs and nothing would catch the misbehaviour")
		}
		if o.rate < 1 || o.rate > 1000 {
			return fmt.Errorf("--rate: %d writes/s is outside 1..1000", o.rate)
		}
		if !o.fresh && devcluster.Exists(o.dir) {
			return fmt.Errorf("--byzantine needs a new cluster, and %s holds one from an earlier run (it may have escalated already): add --fresh or use another --dir", o.dir)
		}
	}
	// Check the mode the way every node will, so that an unavailable mode
	// fails here once instead of in every process.
	cfg := config.Default()
	cfg.ConsensusMode = o.mode
	for _, p := range config.Problems(cfg.Validate()) {
		if p.Key == "consensus_mode" {
			return fmt.Errorf("--mode: %s", p.Msg)
		}
	}
	if (o.mode == config.ModeBFT || o.mode == config.ModeAuto) && o.nodes < config.MinBFTMembers {
		return fmt.Errorf("--nodes: %d is too few for --mode %s: BFT tolerates f faulty nodes only with n >= 3f+1, so it needs at least %d", o.nodes, o.mode, config.MinBFTMembers)
	}
	return nil
}

func (o *devOptions) run(ctx context.Context, out io.Writer) error {
	if o.fresh {
		if err := os.RemoveAll(o.dir); err != nil {
			return fmt.Errorf("--fresh: %w", err)
		}
	}
	var extra map[string]any
	if len(o.byz) > 0 {
		// Quicker Raft elections: the escalation includes one (the
		// quarantined leader loses its followers).
		extra = map[string]any{"raft": map[string]any{
			"heartbeat_timeout": "500ms", "election_timeout": "500ms", "leader_lease_timeout": "250ms", "commit_timeout": "20ms"}}
	}
	layout, err := devcluster.Prepare(devcluster.Options{Dir: o.dir, Nodes: o.nodes, BasePort: o.basePort, Mode: o.mode, Extra: extra})
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the tandem binary: %w", err)
	}
	logOut := out
	nodeLog := o.nodeLog
	if nodeLog == "" && len(o.byz) > 0 {
		nodeLog = filepath.Join(layout.Dir, "nodes.log")
	}
	if nodeLog != "" && nodeLog != "-" {
		f, err := os.Create(nodeLog)
		if err != nil {
			return fmt.Errorf("--node-log: %w", err)
		}
		defer f.Close()
		logOut = f
	}
	c := devcluster.New(layout, self, logOut)
	for _, n := range layout.Nodes {
		// Only the nodes named by --byzantine misbehave, whatever this
		// process inherited.
		if err := c.SetEnv(n.ID, envByzantine+"="+strings.Join(o.byz[n.ID], ",")); err != nil {
			return err
		}
	}
	if err := c.StartAll(); err != nil {
		_ = c.StopAll(5 * time.Second)
		return err
	}
	defer func() {
		fmt.Fprintln(out, "stopping the cluster…")
		if err := c.StopAll(10 * time.Second); err != nil {
			fmt.Fprintln(out, "stop:", err)
		}
		fmt.Fprintln(out, "all nodes stopped")
	}()

	printBanner(out, layout, c)
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		stopBg()
		bg.Wait()
	}()
	bg.Add(1)
	if len(o.byz) > 0 {
		fmt.Fprintf(out, "node logs: %s\n\n", nodeLog)
		go func() {
			defer bg.Done()
			o.tour(bgCtx, out, layout)
		}()
	} else {
		go func() {
			defer bg.Done()
			reportLeader(bgCtx, out, layout, o.mode)
		}()
	}
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		down := 0
		for _, n := range layout.Nodes {
			if exited, _ := c.Exited(n.ID); exited {
				down++
			}
		}
		if down == len(layout.Nodes) {
			return fmt.Errorf("every node has exited; see their logs (%s)", cmpOr(nodeLog, "above"))
		}
	}
}

func cmpOr(a, b string) string {
	if a == "" || a == "-" {
		return b
	}
	return a
}

func printBanner(out io.Writer, l *devcluster.Layout, c *devcluster.Cluster) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nTandem dev cluster: %d nodes, data in %s\n\n", len(l.Nodes), l.Dir)
	fmt.Fprintf(&b, "  %-6s %-8s %-24s %-16s %s\n", "NODE", "PID", "API", "PEER", "GOSSIP")
	for _, n := range l.Nodes {
		fmt.Fprintf(&b, "  %-6s %-8d %-24s %-16s %s\n", n.ID, c.Pid(n.ID), n.Endpoint(), n.PeerAddr, n.GossipAddr)
	}
	fmt.Fprintf(&b, "\n  admin key:     %s\n  admin pubkey:  %s\n  client config: %s\n\n", l.AdminKeyPath, l.AdminPublicKey, l.ClientConfigPath)
	fmt.Fprintf(&b, "  export TANDEM_CLIENT_CONFIG=%s\n", l.ClientConfigPath)
	fmt.Fprintf(&b, "  tandem admin status\n")
	fmt.Fprintf(&b, "  curl --cacert %s --cert %s --key %s %s/v1/status\n\n",
		rel(l.CAFile), rel(l.ClientCertFile), rel(l.ClientKeyFile), l.Nodes[0].Endpoint())
	fmt.Fprintf(&b, "Ctrl-C stops every node.\n\n")
	_, _ = io.WriteString(out, b.String())
}

func rel(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// reportLeader prints one line when the cluster has elected its first
// leader (in bft mode: has committed its genesis), so the operator knows
// when it is ready.
func reportLeader(ctx context.Context, out io.Writer, l *devcluster.Layout, mode string) {
	tlsCfg, err := identity.ClientTLS(l.CAFile, l.ClientCertFile, l.ClientKeyFile)
	if err != nil {
		return
	}
	cfg := client.DefaultConfig()
	cfg.Endpoints = l.Endpoints()
	cfg.TLS = tlsCfg
	cfg.Retry.MaxAttempts = 1
	cl, err := client.New(cfg)
	if err != nil {
		return
	}
	defer cl.Close()
	start := time.Now()
	for ctx.Err() == nil {
		for _, ep := range l.Endpoints() {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cl.Status(sctx, ep)
			cancel()
			if err == nil && st.LeaderID != "" && mode != config.ModeBFT {
				fmt.Fprintf(out, "\n>>> cluster ready after %s: leader is %s, term %d\n\n", time.Since(start).Round(time.Millisecond), st.LeaderID, st.Term)
				return
			}
			if err == nil && mode == config.ModeBFT && st.AppliedIndex > 0 {
				fmt.Fprintf(out, "\n>>> cluster ready after %s: view %d (leader %s), log index %d\n\n",
					time.Since(start).Round(time.Millisecond), st.Term, st.LeaderID, st.CommitIndex)
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// devLoad is the tour's steady write load.
type devLoad struct{ ackLog }

// run writes rate times a second to the correct nodes until ctx ends.
func (l *devLoad) run(ctx context.Context, cl *client.Client, rate int) {
	interval := time.Second / time.Duration(rate)
	for i := 0; ctx.Err() == nil; i++ {
		t0 := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := cl.SetConfig(wctx, "dev/load/"+strconv.Itoa(i%64), strconv.Itoa(i))
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.add(time.Now(), res.Index, err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(t0.Add(interval))):
		}
	}
}

// tour runs the --byzantine show: it polls the nodes' status and
// quarantine APIs and prints a timeline, starts the write load once the
// cluster is up, and moves Raft leadership to a node told to equivocate
// (it equivocates on the entries it proposes as leader).
func (o *devOptions) tour(ctx context.Context, out io.Writer, l *devcluster.Layout) {
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(out, ">>> %6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	p, err := devcluster.NewPoller(l)
	if err != nil {
		say("cannot watch the cluster: %v", err)
		return
	}
	defer p.Close()
	var correct []string
	var leaderWanted string // a node that misbehaves only while it leads
	for _, n := range l.Nodes {
		if bs, ok := o.byz[n.ID]; !ok {
			correct = append(correct, n.Endpoint())
		} else if leaderWanted == "" && slices.Contains(bs, "equivocate") {
			leaderWanted = n.ID
		}
	}
	for _, id := range slices.Sorted(maps.Keys(o.byz)) {
		say("%s is told to %s (%s)", id, strings.Join(o.byz[id], ", "), byzantineBehaviours[o.byz[id][0]])
	}
	say("waiting for the cluster (mode %s)…", o.mode)

	load := &devLoad{}
	var admin *client.Client
	defer func() {
		if admin != nil {
			admin.Close()
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	tl := &devcluster.Timeline{Byzantine: o.byz}
	mode := ""
	var upAt, transferAt, lastReport, switchAt time.Time
	var newBase uint64
	newEpoch, quarantined, reportedFirst := uint64(0), false, true
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		states := p.Poll(ctx)
		now := time.Now()
		for _, e := range tl.Observe(states) {
			say("%s", e.Text)
			switch e.Kind {
			case devcluster.EventUp:
				mode, upAt, lastReport = e.Mode, now, now
				transferAt = now.Add(2 * time.Second)
				cl, adm, err := devLoadClients(ctx, l, correct)
				if err != nil {
					say("cannot start the write load: %v", err)
					return
				}
				admin = adm
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer cl.Close()
					load.run(ctx, cl, o.rate)
				}()
				say("steady write load started: %d writes/s to %s", o.rate, strings.Join(without(l, o.byz), ", "))
			case devcluster.EventQuarantine:
				quarantined = true
			case devcluster.EventSwitching:
				switchAt = now
			case devcluster.EventEpoch:
				mode, newEpoch, reportedFirst = e.Mode, e.Epoch, false
				newBase = baseIndex(states, e.Epoch)
				if switchAt.IsZero() {
					switchAt = now
				}
			}
		}
		if !reportedFirst {
			if at, ok := load.firstAbove(time.Time{}, newBase); ok {
				reportedFirst = true
				_, total := load.since(at)
				say("writes continue in %s: the first one committed in epoch %d %s after the epoch ended; longest pause between acknowledged writes %s; %d acknowledged so far",
					mode, newEpoch, at.Sub(switchAt).Round(time.Millisecond), load.gap(switchAt.Add(-time.Second), at).Round(time.Millisecond), total)
			}
		}
		if !upAt.IsZero() && now.Sub(lastReport) >= 5*time.Second {
			n, total := load.since(lastReport)
			_, failed, _ := load.totals()
			say("writes: %d acknowledged (%.1f/s over the last %s), %d failed", total, float64(n)/now.Sub(lastReport).Seconds(), now.Sub(lastReport).Round(time.Second), failed)
			lastReport = now
		}
		if leaderWanted != "" && mode == config.ModeCFT && newEpoch == 0 && !quarantined && !transferAt.IsZero() && now.After(transferAt) {
			if leader := agreedLeader(states, o.byz); leader != "" && leader != leaderWanted {
				say("asking %s to hand Raft leadership to %s (it equivocates on the entries it proposes as leader)", leader, leaderWanted)
				tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := admin.TransferLeader(tctx, leaderWanted)
				cancel()
				if err != nil && ctx.Err() == nil {
					say("leadership transfer to %s: %v (trying again)", leaderWanted, err)
				} else if e, ok := tl.Equivocating(leaderWanted); err == nil && ok {
					say("%s leads now (leadership transfer done)", leaderWanted)
					say("%s", e.Text)
				}
			}
			transferAt = time.Now().Add(3 * time.Second)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// devLoadClients returns a client for a fresh key allowed config.write,
// talking to endpoints, and the admin client that invited it.
func devLoadClients(ctx context.Context, l *devcluster.Layout, endpoints []string) (*client.Client, *client.Client, error) {
	cfg := client.DefaultConfig()
	cfg.Endpoints = endpoints
	var err error
	if cfg.TLS, err = identity.ClientTLS(l.CAFile, l.ClientCertFile, l.ClientKeyFile); err != nil {
		return nil, nil, err
	}
	if cfg.Key, err = identity.LoadKeyFile(l.AdminKeyPath); err != nil {
		return nil, nil, err
	}
	cfg.RequestTimeout = 3 * time.Second
	cfg.Retry.MaxAttempts = 20
	admin, err := client.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	cl, err := inviteWriter(ctx, admin, cfg)
	if err != nil {
		admin.Close()
		return nil, nil, err
	}
	return cl, admin, nil
}

// without lists the IDs of l's nodes that are not in byz.
func without(l *devcluster.Layout, byz map[string][]string) []string {
	var out []string
	for _, n := range l.Nodes {
		if _, ok := byz[n.ID]; !ok {
			out = append(out, n.ID)
		}
	}
	return out
}

// agreedLeader is the leader every correct node that answers reports, or "".
func agreedLeader(states []devcluster.NodeState, byz map[string][]string) string {
	leader := ""
	for _, s := range states {
		if _, ok := byz[s.ID]; ok || s.Err != nil {
			continue
		}
		if s.Status.LeaderID == "" || (leader != "" && s.Status.LeaderID != leader) {
			return ""
		}
		leader = s.Status.LeaderID
	}
	return leader
}

// baseIndex is the index epoch started from, as a correct node reports it.
func baseIndex(states []devcluster.NodeState, epoch uint64) uint64 {
	for _, s := range states {
		if e := s.Status.Epoch; s.Err == nil && e != nil && e.Epoch == epoch {
			return e.BaseIndex
		}
	}
	return 0
}
