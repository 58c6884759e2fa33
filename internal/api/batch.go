package api

import (
	"bytes"
	"cmp"
	"net/http"
	"net/url"
	"strconv"
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
	outs := make([]submitOutcome, len(req.Items))
	envs := s.decodeBatch(req.Items, outs)
	var wg sync.WaitGroup
	for i, it := range req.Items {
		if outs[i].err != nil {
			continue
		}
		wg.Go(func() { outs[i] = s.submitEnvelope(itemRequest(r, it), envs[i], false) })
	}
	wg.Wait()
	// bft: the replies of the batch are signed once (wire.SignSubmitBatch).
	if _, key, _, ok := s.replyKey(); ok {
		var replies []*wire.SubmitReply
		for _, o := range outs {
			if o.err == nil && o.reply != nil {
				replies = append(replies, o.reply)
			}
		}
		wire.SignSubmitBatch(key, replies)
	}
	answers := make([]wire.SubmitBatchAnswer, len(outs))
	for i, o := range outs {
		rec := &recorder{header: http.Header{}}
		s.count("/v1/submit", o.write(rec))
		answers[i] = rec.answer()
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
func (s *Server) decodeBatch(items []wire.SubmitBatchItem, outs []submitOutcome) []*smr.Envelope {
	envs := make([]*smr.Envelope, len(items))
	var decoded []smr.Envelope
	for i, it := range items {
		if int64(len(it.Envelope)) > s.cfg.MaxRequestBytes {
			outs[i].err = smr.Errorf(smr.CodeTooLarge, "envelope %d has %d bytes, exceeds the limit of %d bytes", i, len(it.Envelope), s.cfg.MaxRequestBytes)
			continue
		}
		env, err := decodeEnvelope(it.Envelope)
		if err != nil {
			outs[i].err = err
			continue
		}
		envs[i] = env
		decoded = append(decoded, *env)
	}
	if len(decoded) > 1 {
		smr.VerifyAll(decoded)
	}
	return envs
}

// itemRequest is the request POST /v1/submit would have received for it:
// r's context and connection state, with the item's propose flag.
func itemRequest(r *http.Request, it wire.SubmitBatchItem) *http.Request {
	sub := r.Clone(r.Context())
	u := *r.URL
	u.Path = "/v1/submit"
	q := url.Values{}
	if it.Propose != nil {
		q.Set(wire.SubmitQueryPropose, strconv.FormatBool(*it.Propose))
	}
	u.RawQuery = q.Encode()
	sub.URL = &u
	sub.Body = http.NoBody
	return sub
}

// recorder is the http.ResponseWriter one batch item is answered into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rc *recorder) Header() http.Header { return rc.header }

func (rc *recorder) WriteHeader(status int) {
	if rc.status == 0 {
		rc.status = status
	}
}

func (rc *recorder) Write(p []byte) (int, error) {
	if rc.status == 0 {
		rc.status = http.StatusOK
	}
	return rc.body.Write(p)
}

// answer is what was written, as a batch answer.
func (rc *recorder) answer() wire.SubmitBatchAnswer {
	body := bytes.TrimSpace(rc.body.Bytes())
	if len(body) == 0 {
		body = []byte("null")
	}
	return wire.SubmitBatchAnswer{
		Status:     cmp.Or(rc.status, http.StatusOK),
		Leader:     rc.header.Get(wire.HeaderLeader),
		RetryAfter: rc.header.Get("Retry-After"),
		Body:       body,
	}
}
