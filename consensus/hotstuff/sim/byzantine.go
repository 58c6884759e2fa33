package sim

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Behavior makes a member Byzantine: it rewrites what the member's (honest)
// core sends. It has the member's raw signer, so it can sign anything the
// safety kernel would refuse to.
type Behavior interface {
	Outgoing(ctx *ByzContext, out []core.Outbound) []core.Outbound
}

// ByzContext gives a Behavior what it needs.
type ByzContext struct {
	Sim    *Sim
	Inst   *Instance
	Signer types.Signer
}

// SignBlock signs b as its proposer.
func (c *ByzContext) SignBlock(b *types.Block) {
	sig, err := c.Signer.Sign(types.ProposalSignBytes(c.Sim.Committee.Epoch(), b.View, b.Hash()))
	if err != nil {
		panic(err)
	}
	b.Sig = sig
}

// SignVote returns a vote by this member for block in view.
func (c *ByzContext) SignVote(view types.View, block types.Hash) *types.Vote {
	sig, err := c.Signer.Sign(types.VoteSignBytes(c.Sim.Committee.Epoch(), view, block))
	if err != nil {
		panic(err)
	}
	return &types.Vote{View: view, Block: block, Voter: c.Signer.ID(), Sig: sig}
}

// Others returns the other members' IDs in order.
func (c *ByzContext) Others() []types.NodeID {
	var out []types.NodeID
	for _, id := range c.Sim.IDs {
		if id != c.Signer.ID() {
			out = append(out, id)
		}
	}
	return out
}

func ownProposal(c *ByzContext, m types.Message) (*types.Proposal, bool) {
	p, ok := m.(*types.Proposal)
	return p, ok && p.Block.Proposer == c.Signer.ID()
}

// Silent never sends its own proposals (a silent leader).
type Silent struct{}

// Outgoing implements Behavior.
func (Silent) Outgoing(c *ByzContext, out []core.Outbound) []core.Outbound {
	return slices.DeleteFunc(out, func(o core.Outbound) bool { _, own := ownProposal(c, o.Msg); return own })
}

// WithholdVotes never sends votes.
type WithholdVotes struct{}

// Outgoing implements Behavior.
func (WithholdVotes) Outgoing(_ *ByzContext, out []core.Outbound) []core.Outbound {
	return slices.DeleteFunc(out, func(o core.Outbound) bool { _, v := o.Msg.(*types.Vote); return v })
}

// Equivocate sends its proposal to the first half of the other members and
// a second, conflicting block for the same view (an extra command) to the
// rest.
type Equivocate struct{}

// Outgoing implements Behavior.
func (Equivocate) Outgoing(c *ByzContext, out []core.Outbound) []core.Outbound {
	var res []core.Outbound
	for _, o := range out {
		p, own := ownProposal(c, o.Msg)
		if !own || o.To != "" {
			res = append(res, o)
			continue
		}
		alt := *p.Block
		alt.Payload = append(slices.Clone(alt.Payload), []byte(fmt.Sprintf("equivocation/%s/%d", c.Signer.ID(), alt.View)))
		c.SignBlock(&alt)
		others := c.Others()
		for i, id := range others {
			m := types.Message(p)
			if i >= len(others)/2 {
				m = &types.Proposal{Block: &alt, TC: p.TC}
			}
			res = append(res, core.Outbound{To: id, Msg: m})
		}
	}
	return res
}

// InvalidPayload puts a command the Validator rejects into every block it
// proposes.
type InvalidPayload struct{}

// Outgoing implements Behavior.
func (InvalidPayload) Outgoing(c *ByzContext, out []core.Outbound) []core.Outbound {
	for i, o := range out {
		p, own := ownProposal(c, o.Msg)
		if !own {
			continue
		}
		bad := *p.Block
		bad.Payload = append([][]byte{[]byte(fmt.Sprintf("bad:%s/%d", c.Signer.ID(), bad.View))}, bad.Payload...)
		c.SignBlock(&bad)
		out[i] = core.Outbound{To: o.To, Msg: &types.Proposal{Block: &bad, TC: p.TC}}
	}
	return out
}

// DoubleVote sends, next to each of its votes, a second vote for a made-up
// block in the same view.
type DoubleVote struct{}

// Outgoing implements Behavior.
func (DoubleVote) Outgoing(c *ByzContext, out []core.Outbound) []core.Outbound {
	var res []core.Outbound
	for _, o := range out {
		res = append(res, o)
		v, ok := o.Msg.(*types.Vote)
		if !ok || v.Voter != c.Signer.ID() {
			continue
		}
		fake := sha256.Sum256([]byte(fmt.Sprintf("fake/%s/%d", v.Voter, v.View)))
		res = append(res, core.Outbound{To: o.To, Msg: c.SignVote(v.View, fake)})
	}
	return res
}

var (
	_ Behavior = Silent{}
	_ Behavior = WithholdVotes{}
	_ Behavior = Equivocate{}
	_ Behavior = InvalidPayload{}
	_ Behavior = DoubleVote{}
)
