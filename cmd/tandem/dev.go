package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
The CLI reads <dir>/client.yaml through TANDEM_CLIENT_CONFIG.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	f.StringVar(&o.mode, "mode", "cft", "consensus_mode of every node: auto, cft or bft")
	return cmd
}

func (o *devOptions) validate() error {
	if o.nodes < 1 || o.nodes > 9 {
		return fmt.Errorf("--nodes: %d is out of range (1..9)", o.nodes)
	}
	if o.basePort < 1024 || o.basePort+200+o.nodes > 65535 {
		return fmt.Errorf("--base-port: %d leaves no room for %d nodes (1024..%d)", o.basePort, o.nodes, 65535-200-o.nodes)
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
	layout, err := devcluster.Prepare(devcluster.Options{Dir: o.dir, Nodes: o.nodes, BasePort: o.basePort, Mode: o.mode})
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the tandem binary: %w", err)
	}
	c := devcluster.New(layout, self, out)
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
	go reportLeader(ctx, out, layout, o.mode)
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
			return fmt.Errorf("every node has exited; see their logs above")
		}
	}
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
