package wire

import "encoding/json"

// POST /v1/submit/batch carries several signed envelopes in one request,
// for a process that writes on behalf of many clients at once (a gateway,
// a load generator): one HTTPS request, one TLS record stream and one JSON
// document instead of one of each per write. Each item is handled exactly
// as POST /v1/submit would handle its envelope alone, concurrently with
// the others, and its answer is what that request would have answered:
// the status, the Tandem-Leader and Retry-After headers, and the body. The
// batch itself answers 200 once every item has its answer; a batch that is
// malformed as a whole (no items, too many, not JSON) gets the usual error
// body and no item is handled.
const (
	// PathSubmitBatch is the path of the batch endpoint.
	PathSubmitBatch = "/v1/submit/batch"
	// MaxBatchItems is the most envelopes one batch carries.
	MaxBatchItems = 256
)

// SubmitBatchRequest is the body of POST /v1/submit/batch.
type SubmitBatchRequest struct {
	Items []SubmitBatchItem `json:"items"`
}

// SubmitBatchItem is one envelope of a batch (the body POST /v1/submit
// takes) and, in bft mode, whether this replica is asked to propose it
// (the propose query parameter of POST /v1/submit; absent means true).
type SubmitBatchItem struct {
	Envelope json.RawMessage `json:"envelope"`
	Propose  *bool           `json:"propose,omitempty"`
}

// SubmitBatchResponse is the body of a 200 answer to a batch: one answer
// per item, in the order of the request.
type SubmitBatchResponse struct {
	Items []SubmitBatchAnswer `json:"items"`
}

// SubmitBatchAnswer is what POST /v1/submit would have answered for one
// item: its status code, its Tandem-Leader and Retry-After headers, and its
// body (a SubmitResponse or an ErrorBody).
type SubmitBatchAnswer struct {
	Status     int             `json:"status"`
	Leader     string          `json:"leader,omitempty"`
	RetryAfter string          `json:"retry_after,omitempty"`
	Body       json.RawMessage `json:"body"`
}
