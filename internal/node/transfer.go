package node

import (
	"context"
	"strings"

	"github.com/tandem-consensus/tandem/smr"
)

// checkTransferTarget refuses, in plain words, a leadership transfer to a
// node that is not a member, or to the node that leads already. An empty
// id (any suitable node, or in bft mode the next view's leader) passes.
func (n *Node) checkTransferTarget(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	ms, err := n.eng().Members(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.ID == id {
			if !n.bftMode() && m.Leader {
				return smr.Errorf(smr.CodeMalformed, "transfer leadership to %q: it is the leader already", id)
			}
			return nil
		}
		ids = append(ids, m.ID)
	}
	return smr.Errorf(smr.CodeNotFound, "transfer leadership to %q: no such member; the members are %s", id, strings.Join(ids, ", "))
}
