//go:build byzantine

package engine

import (
	"crypto/ed25519"
	"os"
	"slices"
	"strings"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Byzantine behaviours for tests of the detector. They exist only in a
// binary built with -tags byzantine and are chosen by the environment
// variable EnvByzantine (comma-separated behaviours):
//
//   - equivocate: when this node leads a view it signs two different blocks
//     for it and sends one to a single peer and the other to the rest.
//
// The peer that gets the twin block fetches the other one when the next
// proposal builds on it, so it ends up holding both signed blocks: an
// irrefutable proof (types.EquivocatingProposal).

// EnvByzantine selects the Byzantine behaviours of a byzantine build.
const EnvByzantine = "TANDEM_BYZANTINE"

var byzEquivocate = slices.Contains(strings.Split(os.Getenv(EnvByzantine), ","), "equivocate")

// misbehave sends m itself, Byzantine style, and reports whether it did.
func (e *Engine) misbehave(m core.Outbound) bool {
	if !byzEquivocate || m.To != "" {
		return false
	}
	p, ok := m.Msg.(*types.Proposal)
	if !ok || p.Block == nil || p.Block.Proposer != e.cfg.ID {
		return false
	}
	peers := make([]types.NodeID, 0, len(e.addrs))
	for id := range e.addrs {
		if id != e.cfg.ID {
			peers = append(peers, id)
		}
	}
	if len(peers) == 0 {
		return false
	}
	slices.Sort(peers)
	twin := *p.Block
	marker := newReadMarker(e.cfg.ID, e.markerBase^uint64(twin.View)<<1|1<<63)
	twin.Payload = append(slices.Clone(p.Block.Payload), marker)
	h := twin.Hash()
	twin.Sig = ed25519.Sign(e.cfg.Key, types.ProposalSignBytes(e.committee.Epoch(), twin.View, h))
	victim := peers[int(uint64(twin.View)%uint64(len(peers)))]
	e.log.Warn("byzantine: equivocating", "view", twin.View, "twin_to", string(victim), "block", p.Block.Hash().String(), "twin", h.String())
	for _, id := range peers {
		if id == victim {
			e.net.send(id, encodeMessageFrame(&types.Proposal{Block: &twin, TC: p.TC}))
		} else {
			e.net.send(id, encodeMessageFrame(p))
		}
	}
	return true
}
