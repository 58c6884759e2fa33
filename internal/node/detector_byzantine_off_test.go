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
