//go:build !byzantine

package node

import "context"

// misbehave is the hook of the test-only Byzantine behaviour of the
// detector (build tag byzantine, see detector_byzantine_on.go). A correct
// build accuses no one it has not observed.
func (d *detector) misbehave(context.Context) {}
