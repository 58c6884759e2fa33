package wire

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/internal/sigverify"

	"github.com/tandem-consensus/tandem/smr"
)

// Signed replies of consensus_mode bft (docs/api.md, "Signed replies").
//
// In bft mode every replica signs its answer to a write or a read with its
// node key (the Ed25519 key `tandem init` creates; the committee's public
// keys are listed in initial_members). A client that trusts no single
// replica sends the request to every member and accepts an answer only when
// enough distinct members sent matching signed replies (f+1 for writes and
// ordered reads, n-f at one index for fast reads).
//
// The signed bytes are defined once, here, and are domain-separated and
// versioned: a tag naming the reply kind and version, then every field
// length-prefixed (strings and byte strings with a 4-byte big-endian
// length, integers as 8-byte big-endian), so that no two different replies
// share signed bytes and a signature over one kind of message can never be
// taken for another (node keys also sign consensus messages, whose tags
// differ).

// Tags that open the signed bytes of a reply.
const (
	SubmitReplyTag = "tandem/bft-submit-reply/v1"
	QueryReplyTag  = "tandem/bft-query-reply/v1"
)

// Read modes named in a QueryReply.
const (
	// ReadOrdered: the replica answered after a read barrier ordered
	// through consensus (a linearizable read on a correct replica).
	ReadOrdered = "ordered"
	// ReadFast: the replica answered from its local state at once; Index
	// is how far it had applied.
	ReadFast = "fast"
)

// SubmitQueryPropose is the query parameter of POST /v1/submit that tells a
// replica in bft mode whether to propose the envelope itself ("true", the
// default) or only to wait for another replica's proposal to be applied
// ("false"), proposing it after a fallback delay when it is not.
const SubmitQueryPropose = "propose"

// SubmitReply is a replica's signed answer to a write in bft mode: the
// Result of the envelope as this replica applied it.
//
// Client, Seq, Index, Code, Message and Value are the outcome, which every
// correct replica reports identically (they apply the same log), so a
// client compares them across replicas (SubmitReply.Match). NodeID and
// Signature differ by construction. Duplicate is signed too but not
// compared: it says whether this replica found the seq already executed in
// its result window when it answered (a retry, or another replica's copy
// of the same envelope ordered first), which depends on when the request
// reached each replica rather than on the log.
type SubmitReply struct {
	NodeID    string          `json:"node_id"`
	Client    string          `json:"client"` // the client's public key, smr.FormatKey
	Seq       uint64          `json:"seq"`
	Index     uint64          `json:"index"`
	Code      smr.Code        `json:"code,omitempty"`
	Message   string          `json:"message,omitempty"`
	Value     json.RawMessage `json:"value,omitempty"`
	Duplicate bool            `json:"duplicate,omitempty"`
	// Signature is the unpadded base64url Ed25519 signature over
	// SignBytes, or, with Batch, over the statement of the batch the
	// reply was signed in (see SignSubmitBatch).
	Signature string      `json:"signature"`
	Batch     *BatchProof `json:"batch,omitempty"`
}

// NewSubmitReply builds the unsigned reply of node nodeID for client's
// envelope with result res.
func NewSubmitReply(nodeID string, client ed25519.PublicKey, res smr.Result) SubmitReply {
	return SubmitReply{
		NodeID:    nodeID,
		Client:    smr.FormatKey(client),
		Seq:       res.Seq,
		Index:     res.Index,
		Code:      res.Code,
		Message:   res.Message,
		Value:     CanonicalJSON(res.Value),
		Duplicate: res.Duplicate,
	}
}

// Result returns the smr.Result the reply carries.
func (r *SubmitReply) Result() smr.Result {
	return smr.Result{Index: r.Index, Seq: r.Seq, Code: r.Code, Message: r.Message, Value: r.Value, Duplicate: r.Duplicate}
}

// SignBytes returns the bytes a replica signs: the tag, then node ID,
// client key, seq, index, code, message, value (CanonicalJSON) and the
// duplicate flag.
func (r *SubmitReply) SignBytes() []byte {
	var e signEncoder
	e.str(SubmitReplyTag)
	e.str(r.NodeID)
	e.b = append(e.b, r.MatchKey()...)
	e.flag(r.Duplicate)
	return e.b
}

// Sign sets r.Signature with key.
func (r *SubmitReply) Sign(key ed25519.PrivateKey) {
	r.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, r.SignBytes()))
}

// Verify checks r.Signature against pub: over SignBytes, or with Batch,
// over the statement of the batch whose root Batch leads to.
func (r *SubmitReply) Verify(pub ed25519.PublicKey) error {
	if r.Batch == nil {
		return verify(pub, r.Signature, r.SignBytes())
	}
	root, err := r.Batch.root(r.SignBytes())
	if err != nil {
		return err
	}
	return verify(pub, r.Signature, batchStatement(r.NodeID, r.Batch.Leaves, root))
}

// Match reports whether r and o report the same outcome: equal client,
// seq, index, code, message and value (compared as CanonicalJSON).
func (r *SubmitReply) Match(o *SubmitReply) bool { return r.MatchKey() == o.MatchKey() }

// MatchKey returns a string equal for two replies exactly when they Match:
// the signed fields that must agree across replicas, encoded as SignBytes
// encodes them.
func (r *SubmitReply) MatchKey() string {
	var e signEncoder
	e.str(r.Client)
	e.u64(r.Seq)
	e.u64(r.Index)
	e.str(string(r.Code))
	e.str(r.Message)
	e.bytes(CanonicalJSON(r.Value))
	return string(e.b)
}

// QueryReply is a replica's signed answer to GET /v1/query in bft mode:
// the query, the client's nonce, the read mode, the log index the answer
// reflects and the value. Every field but NodeID and Signature is signed
// and, for a fast read, compared across replicas; for an ordered read the
// index is not compared (each replica orders its own read barrier, so
// correct replicas answer at different indexes).
type QueryReply struct {
	NodeID    string          `json:"node_id"`
	Kind      smr.QueryKind   `json:"kind"`
	Key       string          `json:"key,omitempty"`
	Nonce     string          `json:"nonce,omitempty"` // the request's nonce parameter, echoed
	Mode      string          `json:"mode"`            // ReadOrdered or ReadFast
	Index     uint64          `json:"index"`
	Value     json.RawMessage `json:"value"`
	Signature string          `json:"signature"`
}

// SignBytes returns the bytes a replica signs: the tag, then node ID, kind,
// key, nonce, mode, index and value (CanonicalJSON).
func (r *QueryReply) SignBytes() []byte {
	var e signEncoder
	e.str(QueryReplyTag)
	e.str(r.NodeID)
	e.b = append(e.b, r.MatchKey(true)...)
	return e.b
}

// Sign sets r.Signature with key.
func (r *QueryReply) Sign(key ed25519.PrivateKey) {
	r.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, r.SignBytes()))
}

// Verify checks r.Signature against pub.
func (r *QueryReply) Verify(pub ed25519.PublicKey) error {
	return verify(pub, r.Signature, r.SignBytes())
}

// MatchKey returns a string equal for two replies that answer the same
// query with the same value (and, when withIndex, at the same index).
func (r *QueryReply) MatchKey(withIndex bool) string {
	var e signEncoder
	e.str(string(r.Kind))
	e.str(r.Key)
	e.str(r.Nonce)
	e.str(r.Mode)
	if withIndex {
		e.u64(r.Index)
	}
	e.bytes(CanonicalJSON(r.Value))
	return string(e.b)
}

// CanonicalJSON returns v compacted and with <, >, &, U+2028 and U+2029
// escaped, which is how encoding/json writes a json.RawMessage; a value
// that passed through a JSON encoder and decoder therefore signs the same.
// A value that is not valid JSON is returned unchanged.
func CanonicalJSON(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return nil
	}
	var c bytes.Buffer
	if err := json.Compact(&c, v); err != nil {
		return v
	}
	var out bytes.Buffer
	json.HTMLEscape(&out, c.Bytes())
	return out.Bytes()
}

func verify(pub ed25519.PublicKey, sig string, msg []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	s, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("signature is not unpadded base64url: %w", err)
	}
	if len(s) != ed25519.SignatureSize {
		return fmt.Errorf("signature has %d bytes, want %d", len(s), ed25519.SignatureSize)
	}
	// The rule every replica checks signatures by (ZIP-215), with the
	// expanded keys sigverify keeps: a client checks f+1 replies per call.
	if !sigverify.Verify(pub, msg, s) {
		return errors.New("signature does not verify")
	}
	return nil
}

type signEncoder struct{ b []byte }

func (e *signEncoder) str(s string) {
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *signEncoder) bytes(p []byte) {
	e.b = binary.BigEndian.AppendUint32(e.b, uint32(len(p)))
	e.b = append(e.b, p...)
}

func (e *signEncoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *signEncoder) flag(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
