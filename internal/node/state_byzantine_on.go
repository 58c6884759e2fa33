//go:build byzantine

package node

import (
	"bytes"
	"os"
	"strconv"

	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/smr"
)

// Byzantine behaviour of the state machine, only in a binary built with
// -tags byzantine and chosen by TANDEM_BYZANTINE (raftengine.EnvByzantine,
// comma-separated behaviours):
//
//   - corrupt-state: this replica corrupts its own state once. The first
//     client write it applies at or after index TANDEM_BYZANTINE_CORRUPT_AT
//     (default 1) while it does not lead, it applies with one bit of the
//     client's signature flipped, so the write fails on this replica alone
//     and its state lacks it; the cluster's answer to the client comes from
//     the leader and is unaffected. Its next checkpoint signs a state hash
//     no other member has. With TANDEM_BYZANTINE_CORRUPT_REPEAT=1 it
//     corrupts its state again whenever its engine was replaced (after a
//     re-sync), so the divergence persists.
var byzCorruptState = raftengine.ByzantineBehaviour("corrupt-state")

// corruptState returns the state machine's tamper hook of the chosen
// behaviour, or nil. The hook runs on the apply goroutine.
func (n *Node) corruptState() func(index uint64, p *smr.Prepared) *smr.Prepared {
	if !byzCorruptState {
		return nil
	}
	at, err := strconv.ParseUint(os.Getenv("TANDEM_BYZANTINE_CORRUPT_AT"), 10, 64)
	if err != nil {
		at = 1
	}
	repeat := os.Getenv("TANDEM_BYZANTINE_CORRUPT_REPEAT") == "1"
	n.log.Warn("byzantine build: this replica corrupts its own state", "at_index", at, "repeat", repeat)
	done := false
	var doneBy any // the engine that applied the corrupted entry
	return func(index uint64, p *smr.Prepared) *smr.Prepared {
		if done && repeat && doneBy != any(n.eng()) {
			done = false // a new engine after a re-sync
		}
		if done || index < at || len(p.Envelopes()) == 0 || n.leads() {
			return p
		}
		var ent smr.Entry
		if err := ent.UnmarshalBinary(p.Data()); err != nil {
			return p
		}
		env := &ent.Env
		if ent.Kind == smr.EntryBatch {
			env = &ent.Batch[0]
		}
		if len(env.Sig) == 0 {
			return p
		}
		env.Sig = bytes.Clone(env.Sig)
		env.Sig[0] ^= 0x01
		b, err := ent.MarshalBinary()
		if err != nil {
			return p
		}
		done, doneBy = true, any(n.eng())
		n.log.Warn("byzantine: corrupt-state", "index", index, "client_seq", env.Seq)
		return n.fsm.Prepare(b)
	}
}

// leads reports whether this node leads, without waiting on the engine:
// the tamper hook runs on Raft's apply goroutine, and Raft's Status reads
// the configuration through Raft's main loop, which may be waiting for
// this very apply.
func (n *Node) leads() bool {
	if r, ok := n.eng().(*raftengine.Engine); ok {
		return r.Contact().Leader
	}
	return n.eng().Status().Role == "leader"
}
