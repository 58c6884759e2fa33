package main

import "github.com/spf13/cobra"

// addMoreCommands adds the verbs that run or talk to a cluster.
func addMoreCommands(root *cobra.Command, g *globalOptions) {
	root.AddCommand(newServeCmd(g), newDevCmd(g))
	addClientCommands(root, g)
	addDatasetCommands(root, g)
	addBenchCommands(root, g)
	for _, c := range root.Commands() {
		if c.Name() == "config" {
			addClusterConfigVerbs(c, g)
		}
	}
}
