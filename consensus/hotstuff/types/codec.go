package types

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tandem-consensus/tandem/internal/binread"
)

// Structural limits enforced by the decoders. They bound what a peer can
// make us allocate; the core applies its own, usually tighter, configured
// limits (batch size) on top.
const (
	// WireVersion is the version byte of EncodeMessage.
	WireVersion = 1
	// MaxIDLen is the longest NodeID.
	MaxIDLen = 255
	// MaxSigLen is the longest signature.
	MaxSigLen = 1024
	// MaxSigners is the largest committee a certificate can be from.
	MaxSigners = 1024
	// MaxCommands is the most commands one block can carry.
	MaxCommands = 1 << 16
	// MaxCommandBytes is the largest single command.
	MaxCommandBytes = 4 << 20
	// MaxBlocksPerResponse is the most blocks one BlockResponse carries.
	MaxBlocksPerResponse = 64
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed hotstuff encoding")

// DecodeError says where and why decoding failed. It wraps ErrMalformed.
type DecodeError struct {
	What   string // the value being decoded, e.g. "block"
	Field  string // the field that failed
	Offset int    // byte offset of the field in the input
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s: field %s at offset %d: %s", e.What, e.Field, e.Offset, e.Reason)
}

// Unwrap returns ErrMalformed.
func (e *DecodeError) Unwrap() error { return ErrMalformed }

// encoder appends fixed-width big-endian fields.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) hash(h Hash)  { e.b = append(e.b, h[:]...) }
func (e *encoder) raw(p []byte) { e.b = append(e.b, p...) }

// id writes a NodeID with a one-byte length. IDs longer than MaxIDLen are
// truncated by the length byte, so callers validate IDs first (Committee
// does); the decoder would then reject the result.
func (e *encoder) id(id NodeID) {
	e.u8(uint8(len(id)))
	e.b = append(e.b, id[:min(len(id), MaxIDLen)]...)
}

func (e *encoder) bytes16(p []byte) {
	e.u16(uint16(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) bytes32(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) bool(v bool) {
	if v {
		e.u8(1)
	} else {
		e.u8(0)
	}
}

// decoder reads what encoder writes. The first error sticks; later reads
// return zero values.
type decoder struct {
	binread.Reader
	what string
	path []string // enclosing fields, for error messages
}

// newDecoder returns a decoder of what (for messages) over b.
func newDecoder(what string, b []byte) *decoder {
	d := &decoder{what: what}
	d.Reader = binread.New(b, func(field string, off int, reason string) error {
		full := strings.Join(append(slices.Clone(d.path), field), ".")
		return &DecodeError{What: d.what, Field: full, Offset: off, Reason: reason}
	})
	return d
}

func (d *decoder) push(field string) { d.path = append(d.path, field) }
func (d *decoder) pop()              { d.path = d.path[:len(d.path)-1] }

func (d *decoder) hash(field string) Hash {
	var h Hash
	if p := d.Take(field, len(h)); p != nil {
		copy(h[:], p)
	}
	return h
}

func (d *decoder) id(field string) NodeID {
	n := int(d.U8(field))
	p := d.Take(field, n)
	if d.Err() != nil {
		return ""
	}
	if n == 0 {
		d.Fail(field, "empty node ID")
		return ""
	}
	return NodeID(p)
}

// bytes16 copies a u16-length-prefixed byte string of at most max bytes.
func (d *decoder) bytes16(field string, max int) []byte {
	n := int(d.U16(field))
	if d.Err() == nil && n > max {
		d.Fail(field, "length %d exceeds limit %d", n, max)
		return nil
	}
	p := d.Take(field, n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) bytes32(field string, max int) []byte {
	n := d.U32(field)
	if d.Err() == nil && uint64(n) > uint64(max) {
		d.Fail(field, "length %d exceeds limit %d", n, max)
		return nil
	}
	p := d.Take(field, int(n))
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) bool(field string) bool {
	v := d.U8(field)
	if v > 1 {
		d.Fail(field, "boolean byte %d is not 0 or 1", v)
	}
	return v == 1
}

// count reads a u16 element count and checks it against max and against
// the bytes left (each element needs at least minElem bytes), so a forged
// count cannot make the caller allocate.
func (d *decoder) count16(field string, max, minElem int) int {
	n := int(d.U16(field))
	d.checkCount(field, n, max, minElem)
	if d.Err() != nil {
		return 0
	}
	return n
}

func (d *decoder) count32(field string, max, minElem int) int {
	n := d.U32(field)
	if d.Err() == nil && uint64(n) > uint64(max) {
		d.Fail(field, "count %d exceeds limit %d", n, max)
		return 0
	}
	d.checkCount(field, int(n), max, minElem)
	if d.Err() != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) checkCount(field string, n, max, minElem int) {
	if d.Err() != nil {
		return
	}
	if n > max {
		d.Fail(field, "count %d exceeds limit %d", n, max)
		return
	}
	if minElem > 0 && n > d.Remaining()/minElem {
		d.Fail(field, "count %d cannot fit in %d remaining bytes", n, d.Remaining())
	}
}

func (d *decoder) finish() error {
	if d.Err() == nil && d.Remaining() != 0 {
		d.Fail("end", "%d trailing bytes", d.Remaining())
	}
	return d.Err()
}

// --- QC ---

func (e *encoder) qc(qc QC) {
	e.u64(uint64(qc.View))
	e.hash(qc.Block)
	e.u16(uint16(len(qc.Sigs)))
	for _, s := range qc.Sigs {
		e.id(s.Signer)
		e.bytes16(s.Sig)
	}
}

func (d *decoder) qc(field string) QC {
	d.push(field)
	defer d.pop()
	var qc QC
	qc.View = View(d.U64("view"))
	qc.Block = d.hash("block")
	n := d.count16("sigs", MaxSigners, 1+1+2)
	if n > 0 {
		qc.Sigs = make([]PartialSig, 0, n)
	}
	for i := 0; i < n && d.Err() == nil; i++ {
		s := PartialSig{Signer: d.id("signer"), Sig: d.bytes16("sig", MaxSigLen)}
		if d.Err() == nil && i > 0 && s.Signer <= qc.Sigs[i-1].Signer {
			d.Fail("signer", "signer %q not after %q (signers must be sorted and distinct)", s.Signer, qc.Sigs[i-1].Signer)
		}
		qc.Sigs = append(qc.Sigs, s)
	}
	return qc
}

// --- TC ---

func (e *encoder) tc(tc *TC) {
	e.u64(uint64(tc.View))
	e.qc(tc.HighQC)
	e.u16(uint16(len(tc.Sigs)))
	for _, s := range tc.Sigs {
		e.id(s.Signer)
		e.u64(uint64(s.HighQCView))
		e.bytes16(s.Sig)
	}
}

func (d *decoder) tc(field string) *TC {
	d.push(field)
	defer d.pop()
	tc := &TC{View: View(d.U64("view"))}
	tc.HighQC = d.qc("high_qc")
	n := d.count16("sigs", MaxSigners, 1+1+8+2)
	if n > 0 {
		tc.Sigs = make([]TimeoutSig, 0, n)
	}
	for i := 0; i < n && d.Err() == nil; i++ {
		s := TimeoutSig{Signer: d.id("signer"), HighQCView: View(d.U64("high_qc_view")), Sig: d.bytes16("sig", MaxSigLen)}
		if d.Err() == nil && i > 0 && s.Signer <= tc.Sigs[i-1].Signer {
			d.Fail("signer", "signer %q not after %q (signers must be sorted and distinct)", s.Signer, tc.Sigs[i-1].Signer)
		}
		tc.Sigs = append(tc.Sigs, s)
	}
	return tc
}

func (e *encoder) optTC(tc *TC) {
	e.bool(tc != nil)
	if tc != nil {
		e.tc(tc)
	}
}

func (d *decoder) optTC(field string) *TC {
	if !d.bool(field + "?") {
		return nil
	}
	return d.tc(field)
}

// --- Block ---

func (e *encoder) block(b *Block) {
	e.hash(b.Parent)
	e.u64(uint64(b.View))
	e.u64(b.Height)
	e.qc(b.Justify)
	e.id(b.Proposer)
	e.u32(uint32(len(b.Payload)))
	for _, c := range b.Payload {
		e.bytes32(c)
	}
	e.bytes16(b.Sig)
}

func (d *decoder) block(field string) *Block {
	d.push(field)
	defer d.pop()
	b := &Block{}
	b.Parent = d.hash("parent")
	b.View = View(d.U64("view"))
	b.Height = d.U64("height")
	b.Justify = d.qc("justify")
	// The genesis block has no proposer; every other block has one.
	n := int(d.U8("proposer"))
	if p := d.Take("proposer", n); p != nil {
		b.Proposer = NodeID(p)
	}
	cnt := d.count32("payload", MaxCommands, 4)
	if cnt > 0 {
		b.Payload = make([][]byte, 0, cnt)
	}
	for i := 0; i < cnt && d.Err() == nil; i++ {
		b.Payload = append(b.Payload, d.bytes32("command", MaxCommandBytes))
	}
	b.Sig = d.bytes16("sig", MaxSigLen)
	if d.Err() == nil && len(b.Sig) == 0 {
		b.Sig = nil
	}
	return b
}

// --- Marshal / Unmarshal ---

// qcSize returns the length of qc's encoding.
func qcSize(qc QC) int {
	n := 8 + 32 + 2
	for _, s := range qc.Sigs {
		n += 1 + len(s.Signer) + 2 + len(s.Sig)
	}
	return n
}

// MarshalQC returns the canonical encoding of qc.
func MarshalQC(qc QC) []byte {
	e := encoder{b: make([]byte, 0, qcSize(qc))}
	e.qc(qc)
	return e.b
}

// UnmarshalQC decodes a QC written by MarshalQC.
func UnmarshalQC(b []byte) (QC, error) {
	d := newDecoder("qc", b)
	qc := d.qc("qc")
	return qc, d.finish()
}

// MarshalTC returns the canonical encoding of tc (which must not be nil).
func MarshalTC(tc *TC) []byte {
	var e encoder
	e.tc(tc)
	return e.b
}

// UnmarshalTC decodes a TC written by MarshalTC.
func UnmarshalTC(b []byte) (*TC, error) {
	d := newDecoder("tc", b)
	tc := d.tc("tc")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return tc, nil
}

// MarshalBlock returns the wire encoding of b, signature included.
func MarshalBlock(b *Block) []byte {
	var e encoder
	e.block(b)
	return e.b
}

// UnmarshalBlock decodes a block written by MarshalBlock.
func UnmarshalBlock(p []byte) (*Block, error) {
	d := newDecoder("block", p)
	b := d.block("block")
	if err := d.finish(); err != nil {
		return nil, err
	}
	return b, nil
}

// MarshalVote returns the encoding of v.
func MarshalVote(v *Vote) []byte {
	var e encoder
	e.vote(v)
	return e.b
}

// UnmarshalVote decodes a vote written by MarshalVote.
func UnmarshalVote(p []byte) (*Vote, error) {
	d := newDecoder("vote", p)
	v := d.vote()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return v, nil
}

// MarshalTimeout returns the encoding of t.
func MarshalTimeout(t *Timeout) []byte {
	var e encoder
	e.timeout(t)
	return e.b
}

// UnmarshalTimeout decodes a timeout written by MarshalTimeout.
func UnmarshalTimeout(p []byte) (*Timeout, error) {
	d := newDecoder("timeout", p)
	t := d.timeout()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return t, nil
}

func (e *encoder) vote(v *Vote) {
	e.u64(uint64(v.View))
	e.hash(v.Block)
	e.id(v.Voter)
	e.bytes16(v.Sig)
}

func (d *decoder) vote() *Vote {
	return &Vote{
		View:  View(d.U64("view")),
		Block: d.hash("block"),
		Voter: d.id("voter"),
		Sig:   d.bytes16("sig", MaxSigLen),
	}
}

func (e *encoder) timeout(t *Timeout) {
	e.u64(uint64(t.View))
	e.qc(t.HighQC)
	e.id(t.Sender)
	e.bytes16(t.Sig)
	e.optTC(t.LastTC)
}

func (d *decoder) timeout() *Timeout {
	t := &Timeout{View: View(d.U64("view"))}
	t.HighQC = d.qc("high_qc")
	t.Sender = d.id("sender")
	t.Sig = d.bytes16("sig", MaxSigLen)
	t.LastTC = d.optTC("last_tc")
	return t
}

// EncodeMessage returns the wire encoding of m: version byte, type byte,
// body. It panics on a Message type not declared in this package (a
// programming error).
func EncodeMessage(m Message) []byte {
	e := encoder{b: make([]byte, 0, 256)}
	e.u8(WireVersion)
	e.u8(uint8(m.MsgType()))
	switch m := m.(type) {
	case *Proposal:
		e.block(m.Block)
		e.optTC(m.TC)
	case *Vote:
		e.vote(m)
	case *Timeout:
		e.timeout(m)
	case *BlockRequest:
		e.hash(m.Hash)
		e.u16(m.Count)
	case *BlockResponse:
		e.u16(uint16(len(m.Blocks)))
		for _, b := range m.Blocks {
			e.bytes32(MarshalBlock(b))
		}
	case *SyncInfo:
		e.qc(m.HighQC)
		e.optTC(m.TC)
	default:
		panic(fmt.Sprintf("hotstuff: EncodeMessage: unknown message type %T", m))
	}
	return e.b
}

// maxBlockBytes bounds one encoded block inside a BlockResponse.
const maxBlockBytes = 1 << 30

// DecodeMessage decodes bytes written by EncodeMessage. Errors wrap
// ErrMalformed.
func DecodeMessage(p []byte) (Message, error) {
	d := newDecoder("message", p)
	if v := d.U8("version"); d.Err() == nil && v != WireVersion {
		d.Fail("version", "unsupported wire version %d (want %d)", v, WireVersion)
	}
	t := MsgType(d.U8("type"))
	if d.Err() != nil {
		return nil, d.Err()
	}
	d.what = t.String()
	var m Message
	switch t {
	case MsgProposal:
		m = &Proposal{Block: d.block("block"), TC: d.optTC("tc")}
	case MsgVote:
		m = d.vote()
	case MsgTimeout:
		m = d.timeout()
	case MsgBlockRequest:
		m = &BlockRequest{Hash: d.hash("hash"), Count: d.U16("count")}
	case MsgBlockResponse:
		n := d.count16("blocks", MaxBlocksPerResponse, 4)
		r := &BlockResponse{}
		for i := 0; i < n && d.Err() == nil; i++ {
			raw := d.bytes32("block", maxBlockBytes)
			if d.Err() != nil {
				break
			}
			b, err := UnmarshalBlock(raw)
			if err != nil {
				d.Fail("block", "block %d: %v", i, err)
				break
			}
			r.Blocks = append(r.Blocks, b)
		}
		m = r
	case MsgSync:
		m = &SyncInfo{HighQC: d.qc("high_qc"), TC: d.optTC("tc")}
	default:
		d.Fail("type", "unknown message type %d", uint8(t))
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return m, nil
}
