package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tandem-consensus/tandem/client/wire"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// API-level codes that the state machine does not produce (defined with
// the wire types clients share).
const (
	CodeNoLeader         = wire.CodeNoLeader
	CodeOutcomeUnknown   = wire.CodeOutcomeUnknown
	CodeMethodNotAllowed = wire.CodeMethodNotAllowed
	CodeInternal         = wire.CodeInternal
)

// ErrorBody is the JSON body of every error response.
type ErrorBody = wire.ErrorBody

// StatusFor maps a code to its HTTP status (docs/api.md); it is
// wire.StatusFor, shared with the SDK.
func StatusFor(code smr.Code) int { return wire.StatusFor(code) }

// ErrorBodyFor classifies err into the body sent to a client or peer.
func ErrorBodyFor(err error) ErrorBody {
	var se *smr.Error
	var nl *consensus.NotLeaderError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &se):
		return ErrorBody{Code: se.Code, Message: se.Message}
	case errors.As(err, &tooBig):
		return ErrorBody{Code: smr.CodeTooLarge, Message: "request body exceeds limits.max_request_bytes (" + strconv.FormatInt(tooBig.Limit, 10) + " bytes)"}
	case errors.Is(err, consensus.ErrOutcomeUnknown):
		return ErrorBody{Code: CodeOutcomeUnknown, Message: err.Error()}
	case errors.Is(err, ErrEpochSwitching):
		return ErrorBody{Code: CodeNoLeader, Message: err.Error(), RetryAfterMillis: wire.EpochSwitchRetryMillis}
	case errors.As(err, &nl):
		return ErrorBody{Code: CodeNoLeader, Message: err.Error(), LeaderID: nl.LeaderID}
	case errors.Is(err, ErrUnavailable), errors.Is(err, consensus.ErrStopped):
		return ErrorBody{Code: CodeNoLeader, Message: err.Error()}
	default:
		return ErrorBody{Code: CodeInternal, Message: err.Error()}
	}
}

// ErrUnavailable marks errors after which nothing was proposed and the
// client may retry elsewhere (no leader reachable, node shutting down).
var ErrUnavailable = consensus.ErrUnavailable

// ErrEpochSwitching marks a request refused because an epoch switch is
// under way (auto mode): nothing was executed, and the next epoch runs in
// about 0.1 s. It is answered as no_leader with retry_after_ms instead of
// a whole-second Retry-After.
var ErrEpochSwitching = fmt.Errorf("an epoch switch is under way: %w", ErrUnavailable)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if ra := retryAfter(status, v); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing to do
}

// retryAfter is the Retry-After header of an answer with status and body
// v: one second for a 503 whose body names no retry_after_ms, else none.
func retryAfter(status int, v any) string {
	if b, ok := v.(ErrorBody); status == http.StatusServiceUnavailable && (!ok || b.RetryAfterMillis == 0) {
		return "1"
	}
	return ""
}

func writeError(w http.ResponseWriter, err error) smr.Code {
	b := ErrorBodyFor(err)
	writeJSON(w, StatusFor(b.Code), b)
	return b.Code
}
