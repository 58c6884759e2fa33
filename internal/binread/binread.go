// Package binread reads strict big-endian binary encodings: fixed-width
// integers and byte runs, bounds-checked, with the first failure sticking
// (later reads return zero values). The codecs of consensus messages and
// evidence build their decoders on it and supply their own error format.
package binread

import (
	"encoding/binary"
	"fmt"
)

// Reader reads b from the start. The zero value reads nothing.
type Reader struct {
	b      []byte
	off    int
	err    error
	format func(field string, off int, reason string) error
}

// New returns a Reader over b whose failures are built by format from the
// field, the byte offset and the reason.
func New(b []byte, format func(field string, off int, reason string) error) Reader {
	return Reader{b: b, format: format}
}

// Err is the first failure, or nil.
func (r *Reader) Err() error { return r.err }

// Off is the number of bytes consumed.
func (r *Reader) Off() int { return r.off }

// Remaining is the number of bytes left.
func (r *Reader) Remaining() int { return len(r.b) - r.off }

// Fail records a failure at the current offset unless one is recorded.
func (r *Reader) Fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = r.format(field, r.off, fmt.Sprintf(format, args...))
	}
}

// Take returns the next n bytes (aliasing the input), or nil after a
// failure or when fewer than n are left.
func (r *Reader) Take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.Remaining() {
		r.Fail(field, "needs %d bytes, %d left", n, r.Remaining())
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

// U8 reads one byte.
func (r *Reader) U8(field string) uint8 {
	if p := r.Take(field, 1); p != nil {
		return p[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (r *Reader) U16(field string) uint16 {
	if p := r.Take(field, 2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (r *Reader) U32(field string) uint32 {
	if p := r.Take(field, 4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (r *Reader) U64(field string) uint64 {
	if p := r.Take(field, 8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
