package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// ErrMalformed is wrapped by every decoding error of this package.
var ErrMalformed = errors.New("malformed checkpoint encoding")

// writer appends big-endian fields.
type writer struct{ b []byte }

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) raw(p []byte) { w.b = append(w.b, p...) }
func (w *writer) str8(s string) {
	w.u8(uint8(min(len(s), 0xff)))
	w.b = append(w.b, s[:min(len(s), 0xff)]...)
}

// reader consumes big-endian fields. The first error sticks: later reads
// return zero values, so a decoder checks r.err once per group of fields.
// No read allocates more than the bytes that remain in the input.
type reader struct {
	b   []byte
	err error
}

func (r *reader) remaining() int { return len(r.b) }

func (r *reader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: %s needs %d bytes, %d remain", ErrMalformed, what, n, len(r.b))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8(what string) uint8 {
	if p := r.bytes(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if p := r.bytes(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if p := r.bytes(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if p := r.bytes(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) str8(what string) string {
	n := int(r.u8(what + " length"))
	return string(r.bytes(n, what))
}

// header checks a 4-byte magic and the version byte.
func (r *reader) header(magic string, version uint8) error {
	m := r.bytes(len(magic), "magic")
	v := r.u8("version")
	if r.err != nil {
		return r.err
	}
	if string(m) != magic {
		return fmt.Errorf("%w: magic %q, want %q", ErrMalformed, m, magic)
	}
	if v != version {
		return fmt.Errorf("%w: version %d is unknown (want %d)", ErrMalformed, v, version)
	}
	return nil
}

// headerVersions checks a 4-byte magic and a version byte that must be
// one of versions, and returns the version.
func (r *reader) headerVersions(magic string, versions ...uint8) (uint8, error) {
	m := r.bytes(len(magic), "magic")
	v := r.u8("version")
	if r.err != nil {
		return 0, r.err
	}
	if string(m) != magic {
		return 0, fmt.Errorf("%w: magic %q, want %q", ErrMalformed, m, magic)
	}
	if !slices.Contains(versions, v) {
		return 0, fmt.Errorf("%w: version %d is unknown (want one of %v)", ErrMalformed, v, versions)
	}
	return v, nil
}

// end checks that the input was consumed exactly.
func (r *reader) end() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	return nil
}
