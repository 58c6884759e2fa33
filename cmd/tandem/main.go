// Command tandem runs a Tandem node and administers Tandem clusters: it
// writes configuration, keys and certificates, checks configuration, and
// (through the verbs added in more.go) serves and talks to a cluster.
//
// Configuration comes from, in increasing precedence: built-in defaults, the
// YAML file named by --config (or $TANDEM_CONFIG), TANDEM_* environment
// variables, and flags. `tandem config default` prints every key.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitCode(err))
	}
}
