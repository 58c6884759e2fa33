//go:build !byzantine

package node

import "context"

// dropForwarded is the hook of the test-only omit-requests behaviour of
// a Raft leader (build tag byzantine, see forward_byzantine_on.go). A
// correct build proposes every write forwarded to it.
func (n *Node) dropForwarded(context.Context) bool { return false }
