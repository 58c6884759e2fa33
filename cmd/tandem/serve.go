package main

import (
	"fmt"
	"os"

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
servers discovered through the join addresses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(g.configPath(), cmd.Flags())
			if err != nil {
				return err
			}
			logger, err := newLogger(os.Stderr, cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return err
			}
			n, err := node.New(cfg, logger)
			if err != nil {
				return fmt.Errorf("starting node %s: %w", cfg.NodeID, err)
			}
			return n.Run(cmd.Context())
		},
	}
	bindConfigFlags(cmd.Flags())
	return cmd
}
