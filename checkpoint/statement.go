package checkpoint

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Kind is what a statement attests.
type Kind uint8

const (
	// KindCheckpoint is CHECKPOINT(epoch, index, state hash): the periodic
	// checkpoint of a running epoch.
	KindCheckpoint Kind = 1
	// KindHandoff is HANDOFF: the state that starts epoch Epoch, the
	// genesis of a new epoch.
	KindHandoff Kind = 2
)

// String returns "checkpoint", "handoff" or "kind(N)".
func (k Kind) String() string {
	switch k {
	case KindCheckpoint:
		return "checkpoint"
	case KindHandoff:
		return "handoff"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Modes a handoff statement may name.
const (
	ModeCFT = "cft"
	ModeBFT = "bft"
)

// Limits of the encodings. A decoder never accepts, and never allocates
// for, more than these.
const (
	// MaxIDLen is the longest member ID, in bytes.
	MaxIDLen = 255
	// MaxMembers is the largest member list of a handoff statement and
	// the largest committee.
	MaxMembers = 256
	// minBFTMembers is the smallest member set of a bft epoch (DESIGN
	// invariant 5: n ≥ 4).
	minBFTMembers = 4
)

// SignTag is the domain tag that starts SignBytes. It is NUL-terminated so
// that no other tag followed by data can equal it, and it names the format
// version: changing the layout means a new tag.
const SignTag = "tandem/checkpoint/v1\x00"

// ErrInvalidStatement is wrapped by every error Validate returns.
var ErrInvalidStatement = errors.New("invalid checkpoint statement")

// Statement is what members sign.
type Statement struct {
	Kind      Kind
	Epoch     uint64   // checkpoint: the epoch the state belongs to; handoff: the NEW epoch it starts
	Index     uint64   // state machine applied index of the state
	StateHash [32]byte // smr state hash at Index
	Mode      string   // handoff only: "cft" or "bft", the mode of the new epoch; "" for checkpoints
	Members   []string // handoff only: sorted member IDs of the new epoch; nil for checkpoints
}

// Validate checks the shape of a statement:
//   - Kind is KindCheckpoint or KindHandoff;
//   - a checkpoint has no Mode and no Members;
//   - a handoff names Mode "cft" or "bft" and 1..MaxMembers members (at
//     least 4 for "bft"), each a non-empty UTF-8 ID of at most MaxIDLen
//     bytes, sorted and distinct.
//
// Errors wrap ErrInvalidStatement.
func (s Statement) Validate() error {
	switch s.Kind {
	case KindCheckpoint:
		if s.Mode != "" {
			return fmt.Errorf("%w: a checkpoint has no mode, got %q", ErrInvalidStatement, s.Mode)
		}
		if len(s.Members) != 0 {
			return fmt.Errorf("%w: a checkpoint has no member list, got %d members", ErrInvalidStatement, len(s.Members))
		}
		return nil
	case KindHandoff:
	default:
		return fmt.Errorf("%w: kind %d is unknown (want %d checkpoint or %d handoff)", ErrInvalidStatement, uint8(s.Kind), KindCheckpoint, KindHandoff)
	}
	if s.Mode != ModeCFT && s.Mode != ModeBFT {
		return fmt.Errorf("%w: handoff mode %q is unknown (want %q or %q)", ErrInvalidStatement, s.Mode, ModeCFT, ModeBFT)
	}
	if err := validateMembers(s.Members); err != nil {
		return fmt.Errorf("%w: handoff members: %w", ErrInvalidStatement, err)
	}
	if s.Mode == ModeBFT && len(s.Members) < minBFTMembers {
		return fmt.Errorf("%w: a bft epoch needs at least %d members, got %d", ErrInvalidStatement, minBFTMembers, len(s.Members))
	}
	return nil
}

// validateMembers checks a sorted, distinct, non-empty list of IDs.
func validateMembers(ids []string) error {
	if len(ids) == 0 {
		return errors.New("the list is empty")
	}
	if len(ids) > MaxMembers {
		return fmt.Errorf("%d members, more than the limit of %d", len(ids), MaxMembers)
	}
	for i, id := range ids {
		if err := validateID(id); err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		if i > 0 && ids[i-1] >= id {
			if ids[i-1] == id {
				return fmt.Errorf("member %q appears twice", id)
			}
			return fmt.Errorf("not sorted: %q comes after %q", id, ids[i-1])
		}
	}
	return nil
}

// validateID checks one member ID.
func validateID(id string) error {
	switch {
	case id == "":
		return errors.New("empty member ID")
	case len(id) > MaxIDLen:
		return fmt.Errorf("member ID of %d bytes is longer than %d", len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("member ID %q is not valid UTF-8", id)
	}
	return nil
}

// SignBytes returns the bytes members sign:
//
//	"tandem/checkpoint/v1\x00" || statement body
//
// with the statement body as documented in the package comment. The
// encoding is canonical: equal statements (in the sense of Equal) give
// equal bytes. It encodes whatever s holds; signers call Validate first
// (Sign does).
func (s Statement) SignBytes() []byte {
	b := make([]byte, 0, len(SignTag)+s.bodyLen())
	b = append(b, SignTag...)
	return s.appendBody(b)
}

// Digest returns the SHA-256 of SignBytes: the identity of a statement.
func (s Statement) Digest() [32]byte { return sha256.Sum256(s.SignBytes()) }

// Equal reports whether s and o are the same statement. A nil and an empty
// member list are equal.
func (s Statement) Equal(o Statement) bool {
	return s.Kind == o.Kind && s.Epoch == o.Epoch && s.Index == o.Index &&
		s.StateHash == o.StateHash && s.Mode == o.Mode && slices.Equal(s.Members, o.Members)
}

// clone returns a copy that shares no memory with s.
func (s Statement) clone() Statement {
	if s.Members != nil {
		s.Members = slices.Clone(s.Members)
	}
	return s
}

// String is a short form for logs: "checkpoint(epoch 3, index 1200, 5f2a…)".
func (s Statement) String() string {
	out := fmt.Sprintf("%s(epoch %d, index %d, %x", s.Kind, s.Epoch, s.Index, s.StateHash[:6])
	if s.Kind == KindHandoff {
		out += fmt.Sprintf(", %s %v", s.Mode, s.Members)
	}
	return out + ")"
}

// bodyLen is the length of the statement body.
func (s Statement) bodyLen() int {
	n := 1 + 8 + 8 + 32 + 1 + len(s.Mode) + 2
	for _, m := range s.Members {
		n += 1 + len(m)
	}
	return n
}

// appendBody appends the statement body. Fields longer than their length
// prefix are truncated; Validate rejects such statements first.
func (s Statement) appendBody(b []byte) []byte {
	var w writer
	w.b = b
	w.u8(uint8(s.Kind))
	w.u64(s.Epoch)
	w.u64(s.Index)
	w.raw(s.StateHash[:])
	w.str8(s.Mode)
	w.u16(uint16(min(len(s.Members), 0xffff)))
	for _, m := range s.Members[:min(len(s.Members), 0xffff)] {
		w.str8(m)
	}
	return w.b
}

// readBody decodes a statement body and validates it.
func readBody(r *reader) (Statement, error) {
	var s Statement
	s.Kind = Kind(r.u8("kind"))
	s.Epoch = r.u64("epoch")
	s.Index = r.u64("index")
	copy(s.StateHash[:], r.bytes(32, "state hash"))
	s.Mode = r.str8("mode")
	n := int(r.u16("member count"))
	if r.err != nil {
		return Statement{}, r.err
	}
	if n > MaxMembers {
		return Statement{}, fmt.Errorf("%w: member count %d exceeds the limit of %d", ErrMalformed, n, MaxMembers)
	}
	if n > r.remaining() { // each member takes at least one byte
		return Statement{}, fmt.Errorf("%w: member count %d but only %d bytes remain", ErrMalformed, n, r.remaining())
	}
	if n > 0 {
		s.Members = make([]string, n)
		for i := range s.Members {
			s.Members[i] = r.str8("member ID")
		}
	}
	if r.err != nil {
		return Statement{}, r.err
	}
	if err := s.Validate(); err != nil {
		return Statement{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}
