//go:build !byzantine

package node

import "net/http"

// misbehaveTransfer is the hook of the test-only Byzantine behaviour of
// state transfer (build tag byzantine, see checkpoint_byzantine_on.go). A
// correct build serves its checkpoints unchanged.
func (n *Node) misbehaveTransfer(h http.Handler) http.Handler { return h }
