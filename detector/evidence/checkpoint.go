package evidence

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/checkpoint"
)

// Checkpoint equivocation (KindCheckpointEquivocation): two checkpoint
// votes of one member for one (statement kind, epoch, index) with
// different state hashes. The state at an index is a pure function of the
// ordered log (DESIGN invariant 2), so a correct member signs one hash per
// index; both votes carry the member's signature over the statement
// (checkpoint.Statement.SignBytes, domain tag checkpoint.SignTag), so the
// pair proves the equivocation to anyone holding the member keys.

// NewCheckpointEquivocation returns KindCheckpointEquivocation evidence
// from two votes of one member, copied and put in canonical order (smaller
// state hash first). It checks only what the encoding needs (both votes
// encode, and their hashes differ); Verify checks the rest.
func NewCheckpointEquivocation(a, b checkpoint.Vote) (*Evidence, error) {
	x, y := a.Clone(), b.Clone()
	if compareStateHash(&x, &y) > 0 {
		x, y = y, x
	}
	return checked(&Evidence{Kind: KindCheckpointEquivocation, Offender: NodeID(x.Signer), Epoch: x.Statement.Epoch,
		Checkpoints: [2]*checkpoint.Vote{&x, &y}})
}

// FromCheckpointConflict returns KindCheckpointEquivocation evidence from
// a checkpoint collector's conflict: the vote it held and the one it
// refused.
func FromCheckpointConflict(ce *checkpoint.ConflictError) (*Evidence, error) {
	if ce == nil {
		return nil, fmt.Errorf("evidence: from checkpoint conflict: nil conflict: %w", ErrMalformed)
	}
	return NewCheckpointEquivocation(ce.First, ce.Second)
}

// compareStateHash orders two checkpoint votes by their state hashes, the
// canonical order of a checkpoint-equivocation proof.
func compareStateHash(a, b *checkpoint.Vote) int {
	return bytes.Compare(a.Statement.StateHash[:], b.Statement.StateHash[:])
}

// unmarshalVote decodes a checkpoint.Vote's binary form.
func unmarshalVote(b []byte) (*checkpoint.Vote, error) {
	var v checkpoint.Vote
	if err := v.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return &v, nil
}

// verifyCheckpointEquivocation makes the checks of Verify's
// CheckpointEquivocation bullets; e has the shape of its kind and its
// offender is a member whose key is key.
func verifyCheckpointEquivocation(e *Evidence, key ed25519.PublicKey, fail func(Check, error, string, ...any) error) error {
	a, b := e.Checkpoints[0], e.Checkpoints[1]
	sa, sb := a.Statement, b.Statement
	if NodeID(a.Signer) != e.Offender || NodeID(b.Signer) != e.Offender {
		return fail(CheckOffender, nil, "votes are signed as %q and %q", a.Signer, b.Signer)
	}
	if sa.Epoch != e.Epoch || sb.Epoch != e.Epoch {
		return fail(CheckEpoch, nil, "vote epochs %d and %d, evidence epoch %d", sa.Epoch, sb.Epoch, e.Epoch)
	}
	if err := errors.Join(sa.Validate(), sb.Validate()); err != nil {
		return fail(CheckStatement, err, "%s and %s", sa, sb)
	}
	if sa.Kind != sb.Kind || sa.Index != sb.Index {
		return fail(CheckSameSlot, nil, "%s index %d and %s index %d", sa.Kind, sa.Index, sb.Kind, sb.Index)
	}
	switch c := compareStateHash(a, b); {
	case c == 0:
		return fail(CheckConflict, nil, "both votes sign state %x at %s index %d: no equivocation", sa.StateHash[:6], sa.Kind, sa.Index)
	case c > 0:
		return fail(CheckCanonical, nil, "state hashes %x and %x are not increasing", sa.StateHash[:6], sb.StateHash[:6])
	}
	for i, v := range []*checkpoint.Vote{a, b} {
		if !verifySig(key, v.Statement.SignBytes(), v.Sig) {
			return fail(CheckSignature, nil, "vote %d (%s) is not signed by %q's key", i, v.Statement, e.Offender)
		}
	}
	return nil
}
