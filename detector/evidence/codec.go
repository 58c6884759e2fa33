package evidence

import (
	"encoding/binary"
	"fmt"

	"github.com/tandem-consensus/tandem/internal/binread"
)

// Encoding limits. They bound what a decoder allocates and what a peer can
// make a replica store.
const (
	// WireVersion is the first byte of Marshal's output.
	WireVersion byte = 1
	// MaxEncodedSize is the largest evidence encoding (16 MiB): a HotStuff
	// InvalidClientSignature proof carries a whole block.
	MaxEncodedSize = 16 << 20
	// maxSig is the longest signature the codec carries (u8 length).
	maxSig = 255
)

type encoder struct{ b []byte }

func (e *encoder) raw(p []byte) { e.b = append(e.b, p...) }
func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

// str8 writes a u8 length and s; callers keep len(s) <= 255.
func (e *encoder) str8(s string) { e.u8(uint8(len(s))); e.b = append(e.b, s...) }

// bytes8 writes a u8 length and p; callers keep len(p) <= 255.
func (e *encoder) bytes8(p []byte) { e.u8(uint8(len(p))); e.b = append(e.b, p...) }

// str16 writes a u16 length and s; callers keep len(s) <= 65535.
func (e *encoder) str16(s string) { e.u16(uint16(len(s))); e.b = append(e.b, s...) }

// bytes32 writes a u32 length and p.
func (e *encoder) bytes32(p []byte) { e.u32(uint32(len(p))); e.b = append(e.b, p...) }

// decoder reads the encoding strictly. The first failure sticks: later reads
// return zero values and err keeps the first message.
type decoder struct{ binread.Reader }

func newDecoder(b []byte) *decoder {
	return &decoder{binread.New(b, func(field string, off int, reason string) error {
		return fmt.Errorf("evidence: decode: %w: %s at byte %d: %s", ErrMalformed, field, off, reason)
	})}
}

func (d *decoder) hash(field string) Hash {
	var h Hash
	copy(h[:], d.Take(field, len(h)))
	return h
}

// id reads a u8-length node ID of 1 to MaxIDLen bytes.
func (d *decoder) id(field string) NodeID {
	n := int(d.U8(field + " length"))
	if d.Err() == nil && n == 0 {
		d.Fail(field, "empty node ID")
		return ""
	}
	return NodeID(d.Take(field, n))
}

// bytes8 reads a u8-length byte string into a new slice.
func (d *decoder) bytes8(field string) []byte {
	n := int(d.U8(field + " length"))
	p := d.Take(field, n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) str16(field string, max int) string {
	n := int(d.U16(field + " length"))
	if d.Err() == nil && n > max {
		d.Fail(field, "%d bytes, at most %d allowed", n, max)
		return ""
	}
	return string(d.Take(field, n))
}

// bytes32 reads a u32-length byte string; the result aliases the input.
func (d *decoder) bytes32(field string) []byte {
	n := d.U32(field + " length")
	if d.Err() == nil && uint64(n) > uint64(d.Remaining()) {
		d.Fail(field, "length %d, only %d bytes left", n, d.Remaining())
		return nil
	}
	return d.Take(field, int(n))
}

// marshaler is a pointer to a value of another package that has a binary
// form of its own.
type marshaler[T any] interface {
	*T
	MarshalBinary() ([]byte, error)
}

// encodeNested writes each of vs in its package's binary form, u32-length
// prefixed. what names the values in the error for a nil one.
func encodeNested[T any, P marshaler[T]](e *encoder, what string, vs ...P) error {
	for _, v := range vs {
		if v == nil {
			return fmt.Errorf("%w: nil %s", ErrMalformed, what)
		}
		b, err := v.MarshalBinary()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		e.bytes32(b)
	}
	return nil
}

// decodeNested reads a u32-length-prefixed encoding of another package and
// decodes it with parse; parse's error fails field.
func decodeNested[T any](d *decoder, field string, parse func([]byte) (T, error)) T {
	var zero T
	raw := d.bytes32(field)
	if d.Err() != nil {
		return zero
	}
	v, err := parse(raw)
	if err != nil {
		d.Fail(field, "%v", err)
		return zero
	}
	return v
}

func (d *decoder) finish() error {
	if d.Err() == nil && d.Remaining() != 0 {
		d.Fail("end", "%d trailing bytes", d.Remaining())
	}
	return d.Err()
}
