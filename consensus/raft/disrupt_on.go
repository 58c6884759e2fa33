//go:build byzantine

package raftengine

import (
	"time"

	"github.com/hashicorp/raft"
)

// withoutPreVote hides the pre-vote RPC of the wrapped transport (Raft then
// campaigns with real votes only) and keeps Close.
type withoutPreVote struct{ raft.Transport }

// Close closes the wrapped transport, which Raft's shutdown expects to do.
func (t withoutPreVote) Close() error { return closeTransport(t.Transport) }

// misbehave starts the behaviours that run beside Raft.
func (e *Engine) misbehave() {
	if byzDisrupt {
		e.startDisrupting()
	}
}

// startDisrupting starts the goroutine of disrupt-elections; it ends with
// Stop.
func (e *Engine) startDisrupting() {
	e.wg.Add(1)
	go e.disrupt()
}

// disrupt asks every other voter for a real vote of an ever higher term,
// once per election timeout while this node follows a live leader. This
// node's own Raft never learns of these elections: its term stays, and
// the votes granted (by a peer that knew no leader) count for nothing.
func (e *Engine) disrupt() {
	defer e.wg.Done()
	var term uint64
	sent := 0
	timer := time.NewTimer(e.raft.ReloadableConfig().ElectionTimeout)
	defer timer.Stop()
	for {
		select {
		case <-e.stopCh:
			return
		case <-timer.C:
		}
		timer.Reset(e.raft.ReloadableConfig().ElectionTimeout)
		if _, leader := e.raft.LeaderWithID(); e.raft.State() != raft.Follower || leader == "" {
			continue
		}
		f := e.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		term = max(term, e.raft.CurrentTerm()) + 1
		lastIdx := e.raft.LastIndex()
		var last raft.Log
		_ = e.logs.GetLog(lastIdx, &last) // zero term when compacted
		self := raft.ServerID(e.cfg.NodeID)
		local := e.transport.LocalAddr()
		granted := 0
		for _, s := range f.Configuration().Servers {
			if s.ID == self || s.Suffrage != raft.Voter {
				continue
			}
			req := &raft.RequestVoteRequest{
				RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: e.transport.EncodePeer(self, local)},
				Term:         term,
				LastLogIndex: lastIdx,
				LastLogTerm:  last.Term,
			}
			var resp raft.RequestVoteResponse
			if err := e.transport.RequestVote(s.ID, s.Address, req, &resp); err == nil && resp.Granted {
				granted++
			}
		}
		sent++
		if sent == 1 || sent%10 == 0 {
			e.logger.Warn("byzantine: disrupt-elections", "term", term, "elections", sent, "granted", granted)
		}
	}
}
