// Package wire holds the names and JSON bodies of Tandem's client HTTP API
// (docs/api.md) that both ends must spell the same way: the admin request
// headers, the error body and the codes only the API produces, and the
// bodies of successful submit, query and members answers. The Go SDK
// (package client) and the server use these definitions, and programs that
// speak the API without the SDK may import them too.
//
// The package holds types and constants only. The state machine's codes,
// the signed envelope and the admin signing bytes are defined in package
// smr; the codes below complement smr's and never collide with them.
package wire

import (
	"encoding/json"
	"net/http"

	"github.com/tandem-consensus/tandem/smr"
)

// Headers of signed admin requests. Tandem-Key is the client's Ed25519
// public key (smr.FormatKey), Tandem-Time the signing time in unix seconds
// and Tandem-Signature the unpadded base64url signature over
// smr.AdminSignBytes.
const (
	HeaderKey       = "Tandem-Key"
	HeaderTime      = "Tandem-Time"
	HeaderSignature = "Tandem-Signature"
	// HeaderSnapshotIndex carries the log index that a downloaded snapshot
	// (GET /v1/admin/snapshot) reflects.
	HeaderSnapshotIndex = "Tandem-Snapshot-Index"
	// HeaderLeader, on a write answered by a node that forwarded it to the
	// leader, names that leader's node ID: the client may send its next
	// writes there directly.
	HeaderLeader = "Tandem-Leader"
)

// Error codes produced by the API layer rather than by the state machine.
const (
	// CodeNoLeader (503): no leader is known or the node is not ready;
	// nothing was proposed, so the request may be sent anywhere again.
	CodeNoLeader smr.Code = "no_leader"
	// CodeOutcomeUnknown (503): the write was proposed but its outcome is
	// not known; resending the same envelope is safe (exactly once).
	CodeOutcomeUnknown smr.Code = "outcome_unknown"
	// CodeMethodNotAllowed (405): the path does not accept the method.
	CodeMethodNotAllowed smr.Code = "method_not_allowed"
	// CodeInternal (500): a bug on the server; the message says what failed.
	CodeInternal smr.Code = "internal"
)

// ErrorBody is the JSON body of every error answer. Code is the stable
// error code (an smr.Code or one of the codes above). LeaderID is set on
// some 503s: the node the server believes leads. Result is set when a
// command was ordered and then rejected by the state machine: its Index
// says where.
type ErrorBody struct {
	Code     smr.Code    `json:"code"`
	Message  string      `json:"message"`
	LeaderID string      `json:"leader_id,omitempty"`
	Result   *smr.Result `json:"result,omitempty"`
	// Reply is set in bft mode when Result is: the replica's signed reply.
	Reply *SubmitReply `json:"reply,omitempty"`
	// RetryAfterMillis, on a 503, says when to send the request again when
	// that is sooner than a whole second (the unit of the Retry-After
	// header, which is then left out): an epoch switch is done in about
	// 0.1 s.
	RetryAfterMillis int `json:"retry_after_ms,omitempty"`
}

// EpochSwitchRetryMillis is RetryAfterMillis of the answers given while
// an epoch switch is under way.
const EpochSwitchRetryMillis = 50

// SubmitResponse is the body of a successful POST /v1/submit.
type SubmitResponse struct {
	Result smr.Result `json:"result"`
	// Reply is the replica's signed reply (bft mode only).
	Reply *SubmitReply `json:"reply,omitempty"`
}

// QueryResponse is the body of a successful GET /v1/query: the value as the
// state machine encodes it and the log index the answer reflects.
type QueryResponse struct {
	Index uint64          `json:"index"`
	Value json.RawMessage `json:"value"`
	// Reply is the replica's signed reply (bft mode only).
	Reply *QueryReply `json:"reply,omitempty"`
}

// Member is one member of the consensus configuration as GET /v1/members
// reports it.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"` // node-to-node (peer) address, host:port
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
}

// MembersResponse is the body of a successful GET /v1/members.
type MembersResponse struct {
	Members []Member `json:"members"`
}

// TransferLeaderRequest is the body of POST /v1/admin/transfer-leader. An
// empty ID lets the cluster choose the new leader.
type TransferLeaderRequest struct {
	ID string `json:"id"`
}

// AddMemberRequest is the body of POST /v1/admin/members: the node to add
// as a voter and its peer address.
type AddMemberRequest struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// StatusFor maps a code to the HTTP status the API sends it with
// (docs/api.md). The SDK uses it for rejections it learns from signed
// replies rather than from a response status.
func StatusFor(code smr.Code) int {
	switch code {
	case smr.CodeOK:
		return http.StatusOK
	case smr.CodeMalformed, smr.CodeUnknownCommand, smr.CodeSeqTooFar:
		return http.StatusBadRequest
	case smr.CodeBadSignature:
		return http.StatusUnauthorized
	case smr.CodeUnknownClient, smr.CodePermissionDenied, smr.CodeLastAdmin:
		return http.StatusForbidden
	case smr.CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case smr.CodeAlreadyExists, smr.CodeSeqConflict, smr.CodeSeqTooOld, smr.CodeAlreadyInitialized:
		return http.StatusConflict
	case smr.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeNoLeader, CodeOutcomeUnknown, smr.CodeNotInitialized, smr.CodeEpochEnded:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
