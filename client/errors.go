package client

import (
	"github.com/tandem-consensus/tandem/client/wire"

	"errors"
	"fmt"
	"net/http"

	"github.com/tandem-consensus/tandem/smr"
)

// Sentinel errors. Check them with errors.Is (or IsOutcomeUnknown).
var (
	// ErrOutcomeUnknown: the call ended without a definitive answer after at
	// least one attempt may have reached a node that proposed the write
	// (timeout or connection loss after the request was sent, 503
	// outcome_unknown, or a server error after the request was accepted),
	// or a resent envelope got an answer that cannot tell whether an
	// earlier attempt executed (seq_too_old, unknown_client, a code the
	// client does not know, a proxy's error; RetryError.Last holds it).
	// The write may or may not have been applied. Resending the same
	// envelope (Resubmit with RetryError.Envelope, or the same command with
	// SubmitAt and the same seq) is safe: the cluster executes a (client,
	// seq) at most once and answers a repeat with the stored result. When
	// ErrorCode reports smr.CodeSeqTooOld the cluster no longer remembers
	// the seq, and only reading the state can tell.
	ErrOutcomeUnknown = errors.New("outcome unknown: the request may or may not have been applied")

	// ErrUnavailable: no node answered definitively and no attempt can have
	// been proposed (every dial failed, or every answer was 503 no_leader).
	// A write that ends with ErrUnavailable was not applied.
	ErrUnavailable = errors.New("cluster unavailable: no node accepted the request")

	// ErrNoKey is returned by writes and admin requests on a Client whose
	// Config.Key is nil.
	ErrNoKey = errors.New("no client key: writes and admin requests must be signed; set Config.Key")
)

// APIError is a definitive error answer of a node: a 4xx, or a 500 on a
// request that changes nothing. Code is the stable error code (empty when
// the body was not Tandem's JSON error, e.g. from a proxy). Result is set
// when the command was ordered and then rejected by the state machine: its
// Index says where, and its seq is used up.
type APIError struct {
	Status   int
	Code     smr.Code
	Message  string
	LeaderID string      // set on some 503s: the node the server believes leads
	Result   *smr.Result // set for commands rejected at apply time
	Endpoint string      // the node that answered
	// Reply is the replica's signed reply carried with Result in bft mode.
	Reply *wire.SubmitReply
}

func (e *APIError) Error() string {
	code := string(e.Code)
	if code == "" {
		code = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s answered %d %s: %s", e.Endpoint, e.Status, code, e.Message)
}

// ErrorCode returns the API code of err if it is or wraps an *APIError, and
// "" otherwise. A *RetryError wraps the *APIError of its last attempt, so a
// code alone does not make an error definitive: check IsOutcomeUnknown and
// IsUnavailable first.
func ErrorCode(err error) smr.Code {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// IsOutcomeUnknown reports whether err says that a write may or may not have
// been applied (it wraps ErrOutcomeUnknown). Such an error must be reported
// neither as success nor as failure.
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }

// IsUnavailable reports whether err wraps ErrUnavailable: nothing was
// applied and the cluster could not be reached or had no leader.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// RetryError ends a call whose attempts ran out (or whose context ended)
// without a definitive answer. It wraps Err (ErrOutcomeUnknown or
// ErrUnavailable) and Last, the last attempt's error, so errors.Is and
// errors.As see both. For writes Envelope is the signed envelope that was
// sent; Resubmit(ctx, Envelope) retries it exactly-once.
type RetryError struct {
	Op       string        // what was attempted, e.g. "submit seq 7 (register_tool)"
	Attempts int           // attempts made
	Err      error         // ErrOutcomeUnknown or ErrUnavailable
	Last     error         // the last attempt's error (or the context's)
	Envelope *smr.Envelope // writes only
}

func (e *RetryError) Error() string {
	attempts := "1 attempt"
	if e.Attempts != 1 {
		attempts = fmt.Sprintf("%d attempts", e.Attempts)
	}
	return fmt.Sprintf("%s: %v (after %s; last error: %v)", e.Op, e.Err, attempts, e.Last)
}

// Unwrap returns Err and Last.
func (e *RetryError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Last}
}
