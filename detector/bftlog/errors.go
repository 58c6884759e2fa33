package bftlog

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers can classify a failure with errors.Is and reach the ids
// it names with errors.As on the typed errors below.
var (
	// ErrMalformed is returned by DecodeMessage, UnmarshalBinary, NewMessage
	// and Store.Add when bytes or fields break the encoding rules (bad
	// version, truncated or trailing bytes, deps not strictly sorted by
	// author, a zero id where an id is required, a size over the protocol
	// limit). Nothing is stored; the sender is not accused, because such
	// bytes carry no signed claim a third party could check.
	ErrMalformed = errors.New("malformed message")

	// ErrTooLarge is returned by Store.Add when a message's content exceeds
	// Config.MaxContentSize. It is a local limit, so nothing is stored and
	// the author is not accused.
	ErrTooLarge = errors.New("message content too large")

	// ErrBadSignature is returned (as *SignatureError) by Store.Add and
	// Message.VerifySignature when the signature does not verify under the
	// message's author key. Nothing is stored.
	ErrBadSignature = errors.New("bad message signature")

	// ErrMissingDeps is returned (as *MissingDepsError) by Store.Add when a
	// predecessor (prev or a dep) is not in the store. The caller fetches
	// the listed ids, adds them, then adds the message again.
	ErrMissingDeps = errors.New("missing predecessors")

	// ErrInvalid is returned (as *InvalidError) by Store.Add for a correctly
	// signed message that breaks a validity rule. The first such message of
	// each author is kept as an InvalidProof (see Store.Invalid).
	ErrInvalid = errors.New("invalid message")

	// ErrInvalidPredecessor is returned (as *InvalidPredecessorError) by
	// Store.Add when a predecessor is a message the store holds as an
	// invalid-message proof. The message is dropped; its own author is not
	// accused (the proof against the predecessor's author stands).
	ErrInvalidPredecessor = errors.New("predecessor is invalid")

	// ErrAuthorFull is returned (as *LimitError) by Store.Add when the
	// author already has Config.MaxMessagesPerAuthor valid messages.
	ErrAuthorFull = errors.New("per-author message limit reached")

	// ErrTooManyAuthors is returned (as *LimitError) by Store.Add when the
	// message's author is new and the store already tracks
	// Config.MaxAuthors authors.
	ErrTooManyAuthors = errors.New("author limit reached")

	// ErrUnknownMessage is returned (as *UnknownMessageError) by the order
	// and log operations when an id is not a valid message of the store.
	ErrUnknownMessage = errors.New("unknown message")

	// ErrAuthorMismatch is returned by the order and log operations when
	// their arguments belong to different authors, for which no order is
	// defined.
	ErrAuthorMismatch = errors.New("author mismatch")

	// ErrNotConcurrent is returned by Store.ForkProof when the two messages
	// are ordered (one is on the other's prev-chain), so there is no fork.
	ErrNotConcurrent = errors.New("messages are not concurrent")

	// ErrInvalidLog is returned by Store.CheckLog, and by the operations
	// that call it, when a Log value breaks the log validity rules (last of
	// another author, a fork proof not rooted at last, ...).
	ErrInvalidLog = errors.New("invalid log")

	// ErrInvalidProof is returned by VerifyForkProof and VerifyInvalidProof
	// when a proof does not establish the misbehaviour it claims.
	ErrInvalidProof = errors.New("proof does not verify")

	// ErrInvalidConfig is returned by Config.Validate and NewStore.
	ErrInvalidConfig = errors.New("invalid bftlog config")
)

// MissingDepsError lists the predecessors of ID that the store lacks.
type MissingDepsError struct {
	ID      ID   // the message that could not be validated yet
	Missing []ID // its prev and/or deps that are not in the store, prev first
}

func (e *MissingDepsError) Error() string {
	ids := make([]string, len(e.Missing))
	for i, id := range e.Missing {
		ids[i] = id.Short()
	}
	return fmt.Sprintf("bftlog: message %s: %v: %s", e.ID.Short(), ErrMissingDeps, strings.Join(ids, ", "))
}

func (e *MissingDepsError) Unwrap() error { return ErrMissingDeps }

// SignatureError reports a message whose signature does not verify.
type SignatureError struct {
	ID     ID
	Author Author
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("bftlog: message %s claims author %s: %v", e.ID.Short(), e.Author.Short(), ErrBadSignature)
}

func (e *SignatureError) Unwrap() error { return ErrBadSignature }

// InvalidError reports a correctly signed message that breaks a validity
// rule. Kept says whether the store kept it as its InvalidProof for Author
// (false when the author already had one, or the author limit was reached).
type InvalidError struct {
	ID     ID
	Author Author
	Reason InvalidReason
	Detail string
	Kept   bool
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("bftlog: message %s by %s: %v (%s): %s", e.ID.Short(), e.Author.Short(), ErrInvalid, e.Reason, e.Detail)
}

func (e *InvalidError) Unwrap() error { return ErrInvalid }

// InvalidPredecessorError reports a message that builds on a message known to
// be invalid.
type InvalidPredecessorError struct {
	ID          ID
	Predecessor ID
}

func (e *InvalidPredecessorError) Error() string {
	return fmt.Sprintf("bftlog: message %s: %v: %s", e.ID.Short(), ErrInvalidPredecessor, e.Predecessor.Short())
}

func (e *InvalidPredecessorError) Unwrap() error { return ErrInvalidPredecessor }

// LimitError reports a store bound that would be exceeded by adding ID.
// Err is ErrAuthorFull or ErrTooManyAuthors.
type LimitError struct {
	Err    error
	ID     ID
	Author Author
	Limit  int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("bftlog: message %s by %s: %v (limit %d)", e.ID.Short(), e.Author.Short(), e.Err, e.Limit)
}

func (e *LimitError) Unwrap() error { return e.Err }

// UnknownMessageError names an id that is not a valid message of the store.
type UnknownMessageError struct {
	ID ID
}

func (e *UnknownMessageError) Error() string {
	return fmt.Sprintf("bftlog: %v %s", ErrUnknownMessage, e.ID.Short())
}

func (e *UnknownMessageError) Unwrap() error { return ErrUnknownMessage }
