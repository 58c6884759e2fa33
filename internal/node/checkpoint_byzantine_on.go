//go:build byzantine

package node

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"

	"github.com/tandem-consensus/tandem/checkpoint"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
)

// Byzantine behaviour of state transfer, only in a binary built with -tags
// byzantine and chosen by the environment variable TANDEM_BYZANTINE
// (raftengine.EnvByzantine, comma-separated behaviours):
//
//   - tamper-checkpoint: the checkpoints this node serves for state
//     transfer carry its genuine certificate, but one byte of the snapshot
//     is flipped. A correct node must refuse it and fetch from another
//     peer.
//   - equivocate-checkpoint: this node signs two state hashes for each of
//     its checkpoints, its real one and one with the last byte flipped,
//     and sends the real vote to the peers at even positions of its
//     member list and the other to the rest (node4 of four: node1 and
//     node3 get the real one, node2 the other). Every correct node must
//     end up with both votes as evidence and quarantine it.
var (
	byzTamperCheckpoint     = raftengine.ByzantineBehaviour("tamper-checkpoint")
	byzEquivocateCheckpoint = raftengine.ByzantineBehaviour("equivocate-checkpoint")
	// byzCheckpointLogged is the last index equivocate-checkpoint logged.
	byzCheckpointLogged atomic.Uint64
)

// voteGroups returns the votes broadcast sends: with equivocate-checkpoint,
// v to the peers at even positions and a second signed vote for another
// state to the others.
func (c *checkpointer) voteGroups(v checkpoint.Vote) []voteGroup {
	if !byzEquivocateCheckpoint || len(c.peers) < 2 {
		return []voteGroup{{vote: v}}
	}
	st := v.Statement
	st.StateHash[len(st.StateHash)-1] ^= 0xff
	other, err := checkpoint.Sign(c.key, c.self, st)
	if err != nil {
		c.log.Error("byzantine: equivocate-checkpoint: second vote not signed", "err", err)
		return []voteGroup{{vote: v}}
	}
	odd := map[string]bool{}
	for i, p := range c.peers {
		odd[p.ID] = i%2 == 1
	}
	if prev := byzCheckpointLogged.Load(); prev < st.Index && byzCheckpointLogged.CompareAndSwap(prev, st.Index) {
		c.log.Warn("byzantine: equivocate-checkpoint", "index", st.Index, "state", fmt.Sprintf("%x", v.Statement.StateHash[:6]), "other", fmt.Sprintf("%x", st.StateHash[:6]))
	}
	return []voteGroup{
		{vote: v, to: func(id string) bool { return !odd[id] }},
		{vote: other, to: func(id string) bool { return odd[id] }},
	}
}

// misbehaveTransfer wraps the state transfer handler with the chosen
// behaviour.
func (n *Node) misbehaveTransfer(h http.Handler) http.Handler {
	if !byzTamperCheckpoint {
		return h
	}
	n.log.Warn("byzantine build: this node serves tampered checkpoint snapshots")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && len(body) > 64 {
			body = bytes.Clone(body)
			body[len(body)-40] ^= 0x01 // inside the snapshot, before its checksum
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}
