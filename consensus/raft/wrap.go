package raftengine

import "github.com/hashicorp/raft"

// The engine, its RPC inspector and the byzantine build's behaviours wrap
// the transport Raft gets. Raft looks for two optional interfaces on it:
// raft.WithClose (its shutdown closes the transport) and raft.WithPreVote
// (it runs pre-vote elections only when the transport offers that RPC).
// A wrapper that embeds raft.Transport hides both; these helpers keep
// them.

// closeTransport closes t if it can be closed.
func closeTransport(t raft.Transport) error {
	if c, ok := t.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// keepPreVote returns w, offering the pre-vote RPC of inner when inner
// offers it. w wraps inner; its Close (if any) stays. Hiding pre-vote
// would make this node alone campaign without pre-votes, so that each
// heartbeat it missed would depose the leader.
func keepPreVote(w, inner raft.Transport) raft.Transport {
	if pv, ok := inner.(raft.WithPreVote); ok {
		return preVoting{Transport: w, pv: pv}
	}
	return w
}

// preVoting is a wrapper w with inner's pre-vote RPC (keepPreVote).
type preVoting struct {
	raft.Transport
	pv raft.WithPreVote
}

func (p preVoting) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return p.pv.RequestPreVote(id, target, args, resp)
}

// Close closes the wrapper, which Raft's shutdown expects to do.
func (p preVoting) Close() error { return closeTransport(p.Transport) }
