package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/internal/sigverify"
	"github.com/tandem-consensus/tandem/smr"
)

// Commands in blocks are either encoded smr.Entries or read markers.
//
// A read marker orders a linearizable read (ReadBarrier) through consensus
// without touching the state machine: it takes no log index and is skipped
// when applied, on every replica alike. Its first byte cannot start an
// smr.Entry (entry versions are 1 and 2):
//
//	0xFF 'R' | node ID length u8 | node ID | nonce u64
const (
	markerTag0 byte = 0xFF
	markerTag1 byte = 'R'
)

// commandKey identifies the request a command carries, for the core's
// queue (core.Config.CommandKey), the in-flight commands and the waiters:
// for a command entry, the SHA-256 of its envelope, so that the entries
// different replicas made of one client request (each stamped with its own
// time) are one request; for anything else, types.CommandHash. Whichever of
// them commits first completes every replica's waiter; one that commits
// anyway later is a duplicate to the state machine.
func commandKey(cmd []byte) types.Hash {
	if env, ok := smr.EnvelopeBytes(cmd); ok {
		h := sha256.New()
		h.Write([]byte("tandem/request\x00"))
		h.Write(env)
		var k types.Hash
		h.Sum(k[:0])
		return k
	}
	return types.CommandHash(cmd)
}

// isReadMarker reports whether cmd has the read marker prefix (it may still
// be malformed; see checkMarker).
func isReadMarker(cmd []byte) bool {
	return len(cmd) >= 2 && cmd[0] == markerTag0 && cmd[1] == markerTag1
}

func newReadMarker(id types.NodeID, nonce uint64) []byte {
	b := make([]byte, 0, 3+len(id)+8)
	b = append(b, markerTag0, markerTag1, byte(len(id)))
	b = append(b, id...)
	return binary.BigEndian.AppendUint64(b, nonce)
}

func checkMarker(cmd []byte) error {
	if len(cmd) < 3 || len(cmd) != 3+int(cmd[2])+8 || cmd[2] == 0 {
		return smr.Errorf(smr.CodeMalformed, "read marker of %d bytes is malformed", len(cmd))
	}
	return nil
}

// entryValidator is the core's types.Validator: the rule every replica
// applies to each command of a proposal before it votes for it (and to
// commands handed to it for ordering).
//
//   - A read marker must be well formed.
//   - Anything else must decode as an smr.Entry.
//   - A command entry's client signature must verify (smr.Envelope.Verify),
//     and so must a restore entry's admin signature: no replica, leader
//     included, can order a forged or altered request. Signatures are
//     checked by package sigverify, which remembers those that verified, so
//     a command is checked once per replica however often it is validated
//     (when handed over, when forwarded, in each proposal that carries it,
//     when applied); see also prepare.
//   - A command or restore entry's time must not be more than maxSkew ahead
//     of this replica's clock. This is where a replica bound-checks the
//     proposed timestamp (DESIGN invariant 2): the state machine's clock is
//     the maximum entry time it has executed, so a time from the future
//     would move every replica's clock (and session expiry) forward. Times
//     in the past are accepted: they cannot move that clock backwards, and
//     refusing them would make a command that waited in the queues (say,
//     through an outage) unorderable by every leader, stalling the chain.
//   - A genesis entry must equal this replica's own genesis entry byte for
//     byte (when one is configured): the genesis sets the admin keys, so a
//     leader must not be able to choose it.
//
// The verdict on the signature and shape is the same on every correct
// replica. The time bound depends on the local clock; with clocks within
// maxSkew of each other correct replicas agree. Safe for concurrent use.
type entryValidator struct {
	now     func() time.Time
	maxSkew time.Duration
	genesis []byte
}

var _ types.Validator = (*entryValidator)(nil)

// Validate implements types.Validator. Errors are *smr.Error.
func (v *entryValidator) Validate(cmd []byte) error {
	if isReadMarker(cmd) {
		return checkMarker(cmd)
	}
	var ent smr.Entry
	if err := ent.UnmarshalBinary(cmd); err != nil {
		return err
	}
	switch ent.Kind {
	case smr.EntryGenesis:
		if v.genesis != nil && !bytes.Equal(cmd, v.genesis) {
			return smr.Errorf(smr.CodeMalformed, "genesis entry differs from this replica's genesis (bootstrap_admin_keys and limits must be equal on every member)")
		}
		return nil
	case smr.EntryCommand, smr.EntryRestore, smr.EntryEpochSwitch:
		if limit := v.now().Add(v.maxSkew).UnixNano(); ent.Time > limit {
			return smr.Errorf(smr.CodeMalformed, "entry time %s is %s ahead of this replica's clock, more than the allowed %s",
				time.Unix(0, ent.Time).UTC().Format(time.RFC3339Nano), time.Duration(ent.Time-limit)+v.maxSkew, v.maxSkew)
		}
	default:
		return smr.Errorf(smr.CodeMalformed, "entry kind %s cannot be ordered", ent.Kind)
	}
	var err error
	switch ent.Kind {
	case smr.EntryCommand:
		err = ent.Env.Verify()
	case smr.EntryRestore:
		err = ent.Restore.Verify()
	default:
		err = ent.Switch.Verify()
	}
	if err != nil {
		return fmt.Errorf("%s entry: %w", ent.Kind, err)
	}
	return nil
}

// prepare verifies the signatures of the command and restore entries among
// cmds as one batch, so that validating them afterwards finds them
// verified. It judges nothing: entries that do not decode, and bad
// signatures, are left for Validate to refuse.
func (v *entryValidator) prepare(cmds [][]byte) {
	var b sigverify.Batch
	for _, cmd := range cmds {
		if isReadMarker(cmd) {
			continue
		}
		var ent smr.Entry
		if ent.UnmarshalBinary(cmd) != nil {
			continue
		}
		switch ent.Kind {
		case smr.EntryCommand:
			b.Add(ent.Env.Client, ent.Env.SignBytes(), ent.Env.Sig)
		case smr.EntryRestore:
			b.Add(ent.Restore.Admin, ent.Restore.SignBytes(), ent.Restore.Sig)
		}
	}
	if b.Len() > 0 {
		b.Verify()
	}
}
