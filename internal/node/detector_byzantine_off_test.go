//go:build !byzantine

package node

import (
	"context"
	"testing"
	"time"
)

// TestDefaultDetectorIgnoresByzantine: without the byzantine build tag the
// detector's hook returns at once and signs nothing, whatever
// TANDEM_BYZANTINE says (a byzantine build would run until ctx ends).
func TestDefaultDetectorIgnoresByzantine(t *testing.T) {
	t.Setenv("TANDEM_BYZANTINE", "false-accuse")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	(&detector{}).misbehave(ctx)
	if ctx.Err() != nil {
		t.Fatal("the default build's detector hook ran until its context ended")
	}
}

// TestDefaultLeaderIgnoresOmitRequests: without the byzantine build tag a
// leader never drops a forwarded write, whatever TANDEM_BYZANTINE says (a
// byzantine build would hold it until ctx ends).
func TestDefaultLeaderIgnoresOmitRequests(t *testing.T) {
	t.Setenv("TANDEM_BYZANTINE", "omit-requests")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if (&Node{}).dropForwarded(ctx) || ctx.Err() != nil {
		t.Fatal("the default build's forwarding handler dropped a write")
	}
}
