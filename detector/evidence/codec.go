package evidence

import (
	"encoding/binary"
	"fmt"
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
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(field, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("evidence: decode: %w: %s at byte %d: %s", ErrMalformed, field, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail(field, "needs %d bytes, %d left", n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(field string) uint8 {
	p := d.take(field, 1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) u16(field string) uint16 {
	p := d.take(field, 2)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

func (d *decoder) u32(field string) uint32 {
	p := d.take(field, 4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (d *decoder) u64(field string) uint64 {
	p := d.take(field, 8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *decoder) hash(field string) Hash {
	var h Hash
	copy(h[:], d.take(field, len(h)))
	return h
}

// id reads a u8-length node ID of 1 to MaxIDLen bytes.
func (d *decoder) id(field string) NodeID {
	n := int(d.u8(field + " length"))
	if d.err == nil && n == 0 {
		d.fail(field, "empty node ID")
		return ""
	}
	return NodeID(d.take(field, n))
}

// bytes8 reads a u8-length byte string into a new slice.
func (d *decoder) bytes8(field string) []byte {
	n := int(d.u8(field + " length"))
	p := d.take(field, n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) str16(field string, max int) string {
	n := int(d.u16(field + " length"))
	if d.err == nil && n > max {
		d.fail(field, "%d bytes, at most %d allowed", n, max)
		return ""
	}
	return string(d.take(field, n))
}

// bytes32 reads a u32-length byte string; the result aliases the input.
func (d *decoder) bytes32(field string) []byte {
	n := d.u32(field + " length")
	if d.err == nil && uint64(n) > uint64(len(d.b)-d.off) {
		d.fail(field, "length %d, only %d bytes left", n, len(d.b)-d.off)
		return nil
	}
	return d.take(field, int(n))
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("end", "%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
