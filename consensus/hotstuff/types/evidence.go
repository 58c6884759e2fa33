package types

import (
	"bytes"
	"errors"
	"fmt"
)

// EvidenceKind names a provable misbehaviour.
type EvidenceKind uint8

// Evidence kinds. The numbers are part of the encoding.
const (
	// EquivocatingProposal: two blocks for one view, both signed by the same
	// proposer, with different hashes.
	EquivocatingProposal EvidenceKind = 1
	// DuplicateVote: two votes of one member in one view for different
	// blocks.
	DuplicateVote EvidenceKind = 2
	// InvalidPayload: a block signed by its proposer that carries a command
	// the Validator rejects.
	InvalidPayload EvidenceKind = 3
)

func (k EvidenceKind) String() string {
	switch k {
	case EquivocatingProposal:
		return "equivocating-proposal"
	case DuplicateVote:
		return "duplicate-vote"
	case InvalidPayload:
		return "invalid-payload"
	default:
		return fmt.Sprintf("evidence(%d)", uint8(k))
	}
}

// ErrInvalidEvidence is wrapped by Evidence.Verify failures.
var ErrInvalidEvidence = errors.New("invalid evidence")

// Evidence is a self-contained proof that Offender misbehaved in View. It
// carries the signed messages themselves, so anyone holding the committee
// (and, for InvalidPayload, the same Validator) can check it without
// trusting the reporter.
type Evidence struct {
	Kind     EvidenceKind
	Offender NodeID
	View     View
	// Blocks: the two conflicting blocks (EquivocatingProposal) or the
	// offending block in Blocks[0] (InvalidPayload).
	Blocks [2]*Block
	// Votes: the two conflicting votes (DuplicateVote).
	Votes [2]*Vote
	// Command is the index of the invalid command in Blocks[0].Payload
	// (InvalidPayload).
	Command int
	// Reason is the validator's message (InvalidPayload). Informational:
	// Verify re-runs the validator instead of trusting it.
	Reason string
}

func (e *Evidence) String() string {
	return fmt.Sprintf("Evidence{%s offender=%s view=%d}", e.Kind, e.Offender, e.View)
}

func evidenceErr(e *Evidence, format string, args ...any) error {
	return fmt.Errorf("%s evidence against %q in view %d: %s: %w", e.Kind, e.Offender, e.View, fmt.Sprintf(format, args...), ErrInvalidEvidence)
}

// Verify checks the evidence against committee c. For each kind:
//
// EquivocatingProposal
//   - both blocks are present, have view View and proposer Offender;
//   - their hashes differ;
//   - both proposer signatures verify.
//
// DuplicateVote
//   - both votes are present, have view View and voter Offender;
//   - they vote for different blocks;
//   - both signatures verify.
//
// InvalidPayload
//   - Blocks[0] is present, has view View and proposer Offender, and its
//     proposer signature verifies;
//   - Command indexes its payload and v rejects that command.
func (e *Evidence) Verify(c *Committee, v Validator) error {
	if !c.IsMember(e.Offender) {
		return evidenceErr(e, "offender is not a member")
	}
	switch e.Kind {
	case EquivocatingProposal:
		a, b := e.Blocks[0], e.Blocks[1]
		if a == nil || b == nil {
			return evidenceErr(e, "needs two blocks")
		}
		for i, blk := range []*Block{a, b} {
			if blk.View != e.View || blk.Proposer != e.Offender {
				return evidenceErr(e, "block %d has view %d and proposer %q", i, blk.View, blk.Proposer)
			}
		}
		ha, hb := a.Hash(), b.Hash()
		if ha == hb {
			return evidenceErr(e, "both blocks have hash %s", ha)
		}
		if err := c.VerifyBlockSig(a, ha); err != nil {
			return evidenceErr(e, "first block: %v", err)
		}
		if err := c.VerifyBlockSig(b, hb); err != nil {
			return evidenceErr(e, "second block: %v", err)
		}
		return nil
	case DuplicateVote:
		a, b := e.Votes[0], e.Votes[1]
		if a == nil || b == nil {
			return evidenceErr(e, "needs two votes")
		}
		for i, vt := range []*Vote{a, b} {
			if vt.View != e.View || vt.Voter != e.Offender {
				return evidenceErr(e, "vote %d has view %d and voter %q", i, vt.View, vt.Voter)
			}
		}
		if a.Block == b.Block {
			return evidenceErr(e, "both votes are for block %s", a.Block)
		}
		if err := c.VerifyVote(a); err != nil {
			return evidenceErr(e, "first vote: %v", err)
		}
		if err := c.VerifyVote(b); err != nil {
			return evidenceErr(e, "second vote: %v", err)
		}
		return nil
	case InvalidPayload:
		blk := e.Blocks[0]
		if blk == nil {
			return evidenceErr(e, "needs the block")
		}
		if blk.View != e.View || blk.Proposer != e.Offender {
			return evidenceErr(e, "block has view %d and proposer %q", blk.View, blk.Proposer)
		}
		if err := c.VerifyBlockSig(blk, blk.Hash()); err != nil {
			return evidenceErr(e, "block: %v", err)
		}
		if e.Command < 0 || e.Command >= len(blk.Payload) {
			return evidenceErr(e, "command index %d outside payload of %d", e.Command, len(blk.Payload))
		}
		if v == nil {
			return evidenceErr(e, "no validator to check the command with")
		}
		if err := v.Validate(blk.Payload[e.Command]); err == nil {
			return evidenceErr(e, "command %d is valid", e.Command)
		}
		return nil
	default:
		return evidenceErr(e, "unknown kind")
	}
}

// Equal reports whether two evidences carry the same encoding.
func (e *Evidence) Equal(o *Evidence) bool {
	return bytes.Equal(MarshalEvidence(e), MarshalEvidence(o))
}

// MarshalEvidence encodes e for storage or gossip.
func MarshalEvidence(ev *Evidence) []byte {
	var e encoder
	e.u8(WireVersion)
	e.u8(uint8(ev.Kind))
	e.id(ev.Offender)
	e.u64(uint64(ev.View))
	for _, b := range ev.Blocks {
		e.bool(b != nil)
		if b != nil {
			e.bytes32(MarshalBlock(b))
		}
	}
	for _, v := range ev.Votes {
		e.bool(v != nil)
		if v != nil {
			e.vote(v)
		}
	}
	e.u32(uint32(max(ev.Command, 0)))
	e.bytes16([]byte(ev.Reason[:min(len(ev.Reason), 1<<15)]))
	return e.b
}

// UnmarshalEvidence decodes MarshalEvidence output. It checks the encoding
// only; call Verify to check the proof.
func UnmarshalEvidence(p []byte) (*Evidence, error) {
	d := newDecoder("evidence", p)
	if v := d.U8("version"); d.Err() == nil && v != WireVersion {
		d.Fail("version", "unsupported version %d", v)
	}
	ev := &Evidence{Kind: EvidenceKind(d.U8("kind"))}
	ev.Offender = d.id("offender")
	ev.View = View(d.U64("view"))
	for i := range ev.Blocks {
		if d.bool("block.present") {
			raw := d.bytes32("block", maxBlockBytes)
			if d.Err() != nil {
				break
			}
			b, err := UnmarshalBlock(raw)
			if err != nil {
				d.Fail("block", "%v", err)
				break
			}
			ev.Blocks[i] = b
		}
	}
	for i := range ev.Votes {
		if d.bool("vote.present") {
			ev.Votes[i] = d.vote()
		}
	}
	cmd := d.U32("command")
	if d.Err() == nil && cmd > MaxCommands {
		d.Fail("command", "index %d exceeds %d", cmd, MaxCommands)
	}
	ev.Command = int(cmd)
	ev.Reason = string(d.bytes16("reason", 1<<15))
	if err := d.finish(); err != nil {
		return nil, err
	}
	return ev, nil
}
