//go:build byzantine

package node

import (
	"context"

	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
)

// Byzantine behaviour of the forwarding handler, only in a binary built
// with -tags byzantine and chosen by TANDEM_BYZANTINE
// (raftengine.EnvByzantine, comma-separated behaviours):
//
//   - omit-requests (cft mode; in bft mode the HotStuff engine's behaviour
//     of the same name runs): while this node is the Raft leader, it
//     neither proposes nor answers the client writes other nodes forward
//     to it; it holds each until the forwarding node gives up. Writes its
//     own clients send it are proposed as usual, so the log keeps moving.
//     The followers that forwarded the writes see them neither applied
//     nor answered while the leader commits other entries, and their
//     selective-omission accusations, f+1 of them, make this node's score
//     escalate.
var byzOmitForwarded = raftengine.ByzantineBehaviour("omit-requests")

// dropForwarded reports whether the omit-requests behaviour drops a write
// forwarded to this node; it then holds it until ctx ends.
func (n *Node) dropForwarded(ctx context.Context) bool {
	if !byzOmitForwarded {
		return false
	}
	if _, ok := n.eng().(*raftengine.Engine); !ok {
		return false
	}
	n.log.Warn("byzantine: omit-requests", "mode", "cft")
	<-ctx.Done()
	return true
}
