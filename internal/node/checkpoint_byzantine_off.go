//go:build !byzantine

package node

import (
	"net/http"

	"github.com/tandem-consensus/tandem/checkpoint"
)

// misbehaveTransfer is the hook of the test-only Byzantine behaviour of
// state transfer (build tag byzantine, see checkpoint_byzantine_on.go). A
// correct build serves its checkpoints unchanged.
func (n *Node) misbehaveTransfer(h http.Handler) http.Handler { return h }

// voteGroups is the hook of the test-only checkpoint equivocation (build
// tag byzantine). A correct build sends its one vote to every peer.
func (c *checkpointer) voteGroups(v checkpoint.Vote) []voteGroup { return []voteGroup{{vote: v}} }
