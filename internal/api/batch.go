package api

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// batchLimit is the body limit of POST /v1/submit/batch: room for
// wire.MaxBatchItems envelopes of typical size, and at most
// maxBatchEnvelopes times the single request limit.
func (s *Server) batchLimit() int64 {
	return min(s.cfg.MaxRequestBytes*maxBatchEnvelopes, maxBatchBody)
}

const (
	maxBatchEnvelopes = 16
	maxBatchBody      = 16 << 20
)

// handleSubmitBatch answers POST /v1/submit/batch (wire.PathSubmitBatch):
// every item goes through handleSubmit as its own request would, all at
// once, and the answer lists what each would have answered. Each item
// counts in the request metrics as a /v1/submit request.
func (s *Server) handleSubmitBatch(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	var req wire.SubmitBatchRequest
	if err := decodeStrict(body, &req); err != nil {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "batch: %v", err))
	}
	switch n := len(req.Items); {
	case n == 0:
		return writeError(w, smr.Errorf(smr.CodeMalformed, "batch: no items"))
	case n > wire.MaxBatchItems:
		return writeError(w, smr.Errorf(smr.CodeTooLarge, "batch: %d items, at most %d", n, wire.MaxBatchItems))
	}
	rk := s.replyKey()
	outs := make([]submitOutcome, len(req.Items))
	envs := s.decodeBatch(req.Items, outs)
	var wg sync.WaitGroup
	for i, it := range req.Items {
		if outs[i].err != nil {
			continue
		}
		propose := it.Propose == nil || *it.Propose
		wg.Go(func() { outs[i] = s.submitEnvelope(r.Context(), envs[i], propose, rk) })
	}
	wg.Wait()
	// bft: the replies of the batch are signed once (wire.SignSubmitBatch).
	if rk != nil {
		var replies []*wire.SubmitReply
		for _, o := range outs {
			if o.reply != nil {
				replies = append(replies, o.reply)
			}
		}
		wire.SignSubmitBatch(rk.key, replies)
	}
	answers := make([]wire.SubmitBatchAnswer, len(outs))
	for i, o := range outs {
		status, v, code := o.answer()
		s.count("/v1/submit", code)
		// A body that does not encode (a Result value that is not JSON)
		// is answered as null, as the single submit answers it empty.
		raw, _ := json.Marshal(v)
		answers[i] = wire.SubmitBatchAnswer{Status: status, Leader: o.leader, RetryAfter: retryAfter(status, v), Body: raw}
	}
	writeJSON(w, http.StatusOK, wire.SubmitBatchResponse{Items: answers})
	return smr.CodeOK
}

// decodeBatch decodes the items' envelopes, setting outs[i].err for those
// that are too large or malformed, and checks the signatures of the others
// as batches (smr.VerifyAll). That leaves the verdicts to each item's own
// precheck, exactly as for a single submit, but a signature that verified
// here is remembered (package sigverify), so the precheck finds it without
// a second verification: a batch's signatures cost the leader batch
// verification instead of one verification each.
//
// The precheck refuses a command beyond the genesis limit before it
// verifies; that limit is not known here, so such an envelope (at most
// limits.max_request_bytes) is verified in the batch all the same.
func (s *Server) decodeBatch(items []wire.SubmitBatchItem, outs []submitOutcome) []*smr.Envelope {
	vals := make([]smr.Envelope, len(items))
	envs := make([]*smr.Envelope, len(items))
	decoded := 0
	for i, it := range items {
		if int64(len(it.Envelope)) > s.cfg.MaxRequestBytes {
			outs[i].err = smr.Errorf(smr.CodeTooLarge, "envelope %d has %d bytes, exceeds the limit of %d bytes", i, len(it.Envelope), s.cfg.MaxRequestBytes)
			continue
		}
		if err := decodeEnvelope(it.Envelope, &vals[i]); err != nil {
			vals[i] = smr.Envelope{} // left empty: VerifyAll refuses it by its shape, unverified
			outs[i].err = err
			continue
		}
		envs[i] = &vals[i]
		decoded++
	}
	if decoded > 1 {
		smr.VerifyAll(vals)
	}
	return envs
}
