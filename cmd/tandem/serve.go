package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/internal/node"
)

func newServeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a Tandem node",
		Long: `serve runs one Tandem node until it receives SIGINT or SIGTERM.

The node needs its key (tandem init), a certificate from the cluster CA
(tandem cert create) and at least one bootstrap admin key (tandem keygen).
A new cluster forms from initial_members or, with bootstrap_expect, from the
servers discovered through the join addresses.

While it runs, serve re-reads the configuration when the config file's
contents change (also when an editor renames a new file over it) and on
SIGHUP. The file, the environment and the flags are combined as at start-up;
a configuration that does not validate is logged key by key and the running
values stay. Thresholds and timeouts apply at once; keys such as node_id,
addresses and TLS files need a restart and are reported as such
(docs/operations.md lists them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := g.configPath()
			cfg, _, err := loadConfig(path, cmd.Flags())
			if err != nil {
				return err
			}
			logger, level, err := newLeveledLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return err
			}
			n, err := node.New(cfg, logger)
			if err != nil {
				return fmt.Errorf("starting node %s: %w", cfg.NodeID, err)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			r := newConfigReloader(path, cmd.Flags(), n, level, logger.With("node", cfg.NodeID, "component", "config"))
			var wg sync.WaitGroup
			wg.Go(func() { r.run(ctx) })
			err = n.Run(ctx)
			cancel()
			wg.Wait()
			return err
		},
	}
	bindConfigFlags(cmd.Flags())
	return cmd
}
