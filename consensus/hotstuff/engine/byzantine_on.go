//go:build byzantine

package engine

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/smr"
)

// Byzantine behaviours for tests of the detector. They exist only in a
// binary built with -tags byzantine and are chosen by the environment
// variable EnvByzantine (comma-separated behaviours). Each logs a warning
// starting with "byzantine: <behaviour>" every time it acts, so that a test
// can time detection from the first act.
//
//   - equivocate: when this node leads a view it signs two different blocks
//     for it and sends one to a single peer and the other to the rest.
//     The peer that gets the twin block fetches the other one when the
//     next proposal builds on it, so it ends up holding both signed
//     blocks: an irrefutable proof (types.EquivocatingProposal).
//   - forge-signature: when this node leads a view whose block carries a
//     client command entry, the peers get the block with one bit of that
//     entry's client signature flipped, signed by this node. Every peer's
//     validator rejects the command: an irrefutable proof
//     (types.InvalidPayload).
//   - double-vote: every vote this node casts is followed, to the same
//     collector, by a second signed vote of the same view for another
//     block hash: an irrefutable proof (types.DuplicateVote).
//   - withhold-votes: this node never sends a vote. With f = 1 the others
//     still form quorums without it.
//   - garbage: next to its messages (at most every garbageEvery), this node
//     sends every peer a message frame that does not decode, a frame of an
//     unknown kind, and a vote whose signature fails; every
//     garbageOversizeEvery it also sends a frame header announcing more
//     than any peer's frame limit. Peers drop and count them; the vote
//     whose signature fails is reported (Config.OnSignatureFailure), and
//     the detectors' signature-failure accusations, f+1 of them,
//     quarantine this node.
//   - omit-requests: this node never queues the client command entries
//     other replicas forward to it, so the blocks it proposes as leader
//     leave them out although they have room. The replicas that forwarded
//     them see proposals made after the commands reached this node without
//     them (Config.OnOmission), and their selective-omission accusations,
//     f+1 of them, make this node's score escalate.

// EnvByzantine selects the Byzantine behaviours of a byzantine build.
const EnvByzantine = "TANDEM_BYZANTINE"

// Intervals of the garbage behaviour.
const (
	garbageEvery         = 200 * time.Millisecond
	garbageOversizeEvery = 5 * time.Second
)

var (
	byzBehaviours     = strings.Split(os.Getenv(EnvByzantine), ",")
	byzEquivocate     = slices.Contains(byzBehaviours, "equivocate")
	byzForgeSignature = slices.Contains(byzBehaviours, "forge-signature")
	byzDoubleVote     = slices.Contains(byzBehaviours, "double-vote")
	byzWithholdVotes  = slices.Contains(byzBehaviours, "withhold-votes")
	byzGarbage        = slices.Contains(byzBehaviours, "garbage")
	byzOmitRequests   = slices.Contains(byzBehaviours, "omit-requests")
)

// byzState is the per-engine state of the garbage behaviour (engines are
// keyed by pointer: tests may run several in one process).
type byzState struct {
	lastGarbage, lastOversize time.Time
}

var (
	byzMu     sync.Mutex
	byzStates = map[*Engine]*byzState{}
)

// misbehave sends m itself, Byzantine style, and reports whether it did
// (false: the engine sends m as usual).
func (e *Engine) misbehave(m core.Outbound) bool {
	if byzGarbage {
		e.sendGarbage(m)
	}
	switch msg := m.Msg.(type) {
	case *types.Proposal:
		if msg.Block == nil || msg.Block.Proposer != e.cfg.ID || m.To != "" {
			return false
		}
		if byzForgeSignature && e.forgeSignature(msg) {
			return true
		}
		if byzEquivocate && e.equivocate(msg) {
			return true
		}
	case *types.Vote:
		if msg.Voter != e.cfg.ID {
			return false
		}
		if byzWithholdVotes {
			e.log.Warn("byzantine: withhold-votes", "view", msg.View, "block", msg.Block.String())
			return true
		}
		if byzDoubleVote {
			e.doubleVote(m.To, msg)
			return true
		}
	}
	return false
}

// deliver sends frame f to to, or to every peer when to is empty.
func (e *Engine) deliver(to types.NodeID, f []byte) {
	if to == "" {
		e.net.broadcast(f)
	} else {
		e.net.send(to, f)
	}
}

func (e *Engine) equivocate(p *types.Proposal) bool {
	peers := e.otherMembers()
	if len(peers) == 0 {
		return false
	}
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

// forgeSignature sends the peers p's block with the client signature of
// its first command entry corrupted — or, when it has none, with a command
// entry of a fresh client whose signature is corrupted appended — signed by
// this node.
func (e *Engine) forgeSignature(p *types.Proposal) bool {
	forged := *p.Block
	payload, i, ok := forgePayload(p.Block.Payload)
	if !ok {
		cmd, err := forgedEntry(time.Now())
		if err != nil {
			e.log.Error("byzantine build: cannot forge a command entry", "err", err)
			return false
		}
		i = len(p.Block.Payload)
		payload = append(slices.Clone(p.Block.Payload), cmd)
	}
	forged.Payload = payload
	h := forged.Hash()
	forged.Sig = ed25519.Sign(e.cfg.Key, types.ProposalSignBytes(e.committee.Epoch(), forged.View, h))
	e.log.Warn("byzantine: forge-signature", "view", forged.View, "command", i, "block", h.String())
	e.net.broadcast(encodeMessageFrame(&types.Proposal{Block: &forged, TC: p.TC}))
	return true
}

// forgePayload returns a copy of payload in which the first command entry
// has one bit of its client signature flipped, with that entry's index;
// ok is false when payload holds no command entry.
func forgePayload(payload [][]byte) (out [][]byte, index int, ok bool) {
	for i, cmd := range payload {
		if isReadMarker(cmd) {
			continue
		}
		var ent smr.Entry
		if ent.UnmarshalBinary(cmd) != nil || ent.Kind != smr.EntryCommand || len(ent.Env.Sig) == 0 {
			continue
		}
		ent.Env.Sig = slices.Clone(ent.Env.Sig)
		ent.Env.Sig[len(ent.Env.Sig)/2] ^= 0x01
		b, err := ent.MarshalBinary()
		if err != nil {
			continue
		}
		out = slices.Clone(payload)
		out[i] = b
		return out, i, true
	}
	return nil, 0, false
}

// forgedEntry returns a command entry at time now, signed by a fresh
// client key, with one bit of the signature flipped.
func forgedEntry(now time.Time) ([]byte, error) {
	_, client, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	env := smr.Envelope{Client: client.Public().(ed25519.PublicKey), Seq: 1, Command: []byte("forged")}
	env.Sig = ed25519.Sign(client, env.SignBytes())
	ent := smr.NewCommandEntry(now.UnixNano(), env)
	b, err := ent.MarshalBinary()
	if err != nil {
		return nil, err
	}
	out, _, ok := forgePayload([][]byte{b})
	if !ok {
		return nil, errors.New("the forged entry is not a command entry")
	}
	return out[0], nil
}

// doubleVote sends v to to (every peer when empty), then a second vote of
// the same view for another block.
func (e *Engine) doubleVote(to types.NodeID, v *types.Vote) {
	twin := twinVote(e.cfg.Key, e.committee.Epoch(), v)
	e.log.Warn("byzantine: double-vote", "view", v.View, "block", v.Block.String(), "twin", twin.Block.String(), "to", string(to))
	e.deliver(to, encodeMessageFrame(v))
	e.deliver(to, encodeMessageFrame(twin))
}

// twinVote returns a vote of v's voter and view for another block hash,
// signed with key.
func twinVote(key ed25519.PrivateKey, epoch uint64, v *types.Vote) *types.Vote {
	twin := &types.Vote{View: v.View, Block: v.Block, Voter: v.Voter}
	twin.Block[0] ^= 0x01
	twin.Sig = ed25519.Sign(key, types.VoteSignBytes(epoch, twin.View, twin.Block))
	return twin
}

// sendGarbage sends every peer malformed frames, at most every
// garbageEvery.
func (e *Engine) sendGarbage(m core.Outbound) {
	byzMu.Lock()
	st := byzStates[e]
	if st == nil {
		st = &byzState{}
		byzStates[e] = st
	}
	now := time.Now()
	if now.Sub(st.lastGarbage) < garbageEvery {
		byzMu.Unlock()
		return
	}
	st.lastGarbage = now
	oversize := now.Sub(st.lastOversize) >= garbageOversizeEvery
	if oversize {
		st.lastOversize = now
	}
	byzMu.Unlock()

	frames := garbageFrames(e.cfg.ID, e.core.View(), m.Msg, oversize)
	if oversize {
		e.log.Warn("byzantine: garbage", "frames", len(frames), "oversize", oversize)
	}
	for _, f := range frames {
		e.net.broadcast(f)
	}
}

// garbageFrames returns frames no peer can use: a message frame that does
// not decode, a frame of an unknown kind, a vote of self whose signature
// fails (m's vote with a bit flipped when m is a vote, else a zero
// signature in view), and, when oversize is set, a frame header announcing
// 2 GiB (the peer closes the connection).
func garbageFrames(self types.NodeID, view types.View, m types.Message, oversize bool) [][]byte {
	junk := make([]byte, 64)
	for i := range junk {
		junk[i] = byte(0xA5 ^ i)
	}
	out := [][]byte{
		encodeFrame(frameMessage, junk),
		encodeFrame(0x7F, junk),
	}
	bad := &types.Vote{View: view, Voter: self, Sig: make([]byte, ed25519.SignatureSize)}
	if v, ok := m.(*types.Vote); ok {
		bad.View, bad.Block = v.View, v.Block
		bad.Sig = slices.Clone(v.Sig)
		bad.Sig[0] ^= 0x01
	}
	out = append(out, encodeMessageFrame(bad))
	if oversize {
		hdr := make([]byte, frameHeader+1)
		binary.BigEndian.PutUint32(hdr, 1<<31)
		hdr[frameHeader] = frameMessage
		out = append(out, hdr)
	}
	return out
}

// omitCommand reports whether the omit-requests behaviour drops cmd, a
// command forwarded by a peer: every client command entry.
func (e *Engine) omitCommand(cmd []byte) bool {
	if !byzOmitRequests {
		return false
	}
	if _, ok := commandClient(cmd); !ok {
		return false
	}
	e.log.Warn("byzantine: omit-requests", "view", e.core.View(), "bytes", len(cmd))
	return true
}
