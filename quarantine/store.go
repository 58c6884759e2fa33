package quarantine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// ErrCorrupt is wrapped by *CorruptionError.
var ErrCorrupt = errors.New("quarantine store is corrupt")

// CorruptionError reports a store file that cannot be read back: bad magic
// or version, a truncated frame, a checksum mismatch, an undecodable record
// or a missing trailer. Open refuses to start on it rather than silently
// forgetting quarantines; an operator restores the file from a backup or
// removes it deliberately.
type CorruptionError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("quarantine: %s at byte %d: %v: %s", e.Path, e.Offset, ErrCorrupt, e.Reason)
}

func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

// File format (all integers big-endian):
//
//	magic "TQRN" | version u8 (1)
//	frame*: length u32 | CRC-32C of payload u32 | payload
//
// Payloads start with a type byte:
//
//	1 entry:   node (u8 len) | since i64 (Unix ns) | reason (u16 len) |
//	           evidence count u16 | evidence (u32 len, evidence.Marshal)
//	2 lifted:  the entry fields | operator (u8 len) | lifted at i64 |
//	           offence count u16 | offences (u16 len each)
//	255 end:   frame count u32 (the frames before it)
//
// The whole file is rewritten on each change (a temporary file, fsync,
// rename, fsync of the directory), so a crash leaves the old or the new
// file, never a torn one; the end frame detects a file cut at a frame
// boundary.
const (
	magic        = "TQRN"
	fileVersion  = 1
	recEntry     = 1
	recLifted    = 2
	recEnd       = 255
	maxFrame     = 256 << 20
	maxReason    = 4096
	maxOperator  = 255
	maxOffenses  = 1 << 12
	maxOffenseLn = 1 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type enc struct{ b []byte }

func (e *enc) u8(v uint8)       { e.b = append(e.b, v) }
func (e *enc) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) u32(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) i64(v int64)      { e.b = binary.BigEndian.AppendUint64(e.b, uint64(v)) }
func (e *enc) str8(s string)    { e.u8(uint8(len(s))); e.b = append(e.b, s...) }
func (e *enc) str16(s string)   { e.u16(uint16(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes32(p []byte) { e.u32(uint32(len(p))); e.b = append(e.b, p...) }

type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("record truncated: needs %d bytes at %d, %d left", n, d.off, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *dec) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *dec) i64() int64 {
	if p := d.take(8); p != nil {
		return int64(binary.BigEndian.Uint64(p))
	}
	return 0
}

func (d *dec) str8() string  { return string(d.take(int(d.u8()))) }
func (d *dec) str16() string { return string(d.take(int(d.u16()))) }
func (d *dec) bytes32() []byte {
	n := d.u32()
	return d.take(int(min(n, uint32(len(d.b)+1))))
}

// checkEntry validates what the encoding needs of an entry.
func checkEntry(e Entry) error {
	switch {
	case len(e.Node) == 0 || len(e.Node) > evidence.MaxIDLen:
		return fmt.Errorf("node ID %q has %d bytes, must have 1 to %d", e.Node, len(e.Node), evidence.MaxIDLen)
	case len(e.Reason) > maxReason:
		return fmt.Errorf("reason of %q has %d bytes, at most %d allowed", e.Node, len(e.Reason), maxReason)
	case len(e.Evidence) > 1<<16-1:
		return fmt.Errorf("%q has %d evidence records, at most %d allowed", e.Node, len(e.Evidence), 1<<16-1)
	}
	return nil
}

func (w *enc) entry(e Entry) error {
	w.str8(string(e.Node))
	w.i64(e.Since.UnixNano())
	w.str16(e.Reason)
	w.u16(uint16(len(e.Evidence)))
	for _, ev := range e.Evidence {
		b, err := evidence.Marshal(ev)
		if err != nil {
			return fmt.Errorf("evidence against %q: %w", e.Node, err)
		}
		w.bytes32(b)
	}
	return nil
}

func (d *dec) entry() Entry {
	e := Entry{Node: NodeID(d.str8())}
	e.Since = time.Unix(0, d.i64())
	e.Reason = d.str16()
	n := int(d.u16())
	for i := 0; i < n && d.err == nil; i++ {
		raw := d.bytes32()
		if d.err != nil {
			break
		}
		ev, err := evidence.Unmarshal(raw)
		if err != nil {
			d.fail("evidence %d of %q: %v", i, e.Node, err)
			break
		}
		e.Evidence = append(e.Evidence, ev)
	}
	if d.err == nil && e.Node == "" {
		d.fail("entry with an empty node ID")
	}
	return e
}

// encodeFile returns the file image of the active entries and the lift
// history.
func encodeFile(active []Entry, lifted []LiftRecord) ([]byte, error) {
	out := []byte(magic)
	out = append(out, fileVersion)
	frames := 0
	frame := func(payload []byte) {
		out = binary.BigEndian.AppendUint32(out, uint32(len(payload)))
		out = binary.BigEndian.AppendUint32(out, crc32.Checksum(payload, castagnoli))
		out = append(out, payload...)
		frames++
	}
	for _, e := range active {
		w := &enc{}
		w.u8(recEntry)
		if err := w.entry(e); err != nil {
			return nil, err
		}
		frame(w.b)
	}
	for _, l := range lifted {
		w := &enc{}
		w.u8(recLifted)
		if err := w.entry(l.Entry); err != nil {
			return nil, err
		}
		w.str8(l.Operator)
		w.i64(l.LiftedAt.UnixNano())
		w.u16(uint16(len(l.Forgiveness.Offenses)))
		for _, o := range l.Forgiveness.Offenses {
			w.str16(o)
		}
		frame(w.b)
	}
	w := &enc{}
	w.u8(recEnd)
	w.u32(uint32(frames))
	frame(w.b)
	return out, nil
}

// decodeFile parses a file image. Every failure is a *CorruptionError.
func decodeFile(path string, b []byte) (active []Entry, lifted []LiftRecord, err error) {
	corrupt := func(off int, format string, args ...any) error {
		return &CorruptionError{Path: path, Offset: int64(off), Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) < len(magic)+1 || string(b[:len(magic)]) != magic {
		return nil, nil, corrupt(0, "bad magic (not a quarantine store)")
	}
	if b[len(magic)] != fileVersion {
		return nil, nil, corrupt(len(magic), "version %d, want %d", b[len(magic)], fileVersion)
	}
	off := len(magic) + 1
	frames := 0
	seen := map[NodeID]bool{}
	for {
		if len(b)-off < 8 {
			return nil, nil, corrupt(off, "truncated: no end frame")
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		sum := binary.BigEndian.Uint32(b[off+4:])
		if n == 0 || n > maxFrame || n > len(b)-off-8 {
			return nil, nil, corrupt(off, "frame length %d with %d bytes left", n, len(b)-off-8)
		}
		payload := b[off+8 : off+8+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			return nil, nil, corrupt(off, "checksum mismatch")
		}
		d := &dec{b: payload}
		switch typ := d.u8(); typ {
		case recEntry:
			e := d.entry()
			if d.err == nil && seen[e.Node] {
				d.fail("node %q has two active entries", e.Node)
			}
			seen[e.Node] = true
			active = append(active, e)
		case recLifted:
			l := LiftRecord{Entry: d.entry()}
			l.Operator = d.str8()
			l.LiftedAt = time.Unix(0, d.i64())
			l.Forgiveness = score.Forgiveness{Node: l.Entry.Node, At: l.LiftedAt}
			k := int(d.u16())
			for i := 0; i < k && d.err == nil; i++ {
				l.Forgiveness.Offenses = append(l.Forgiveness.Offenses, d.str16())
			}
			lifted = append(lifted, l)
		case recEnd:
			count := int(d.u32())
			if d.err == nil && count != frames {
				d.fail("end frame counts %d frames, file has %d", count, frames)
			}
			if d.err == nil && d.off != len(d.b) {
				d.fail("%d trailing bytes in end frame", len(d.b)-d.off)
			}
			if d.err != nil {
				return nil, nil, corrupt(off, "%v", d.err)
			}
			if end := off + 8 + n; end != len(b) {
				return nil, nil, corrupt(end, "%d bytes after the end frame", len(b)-end)
			}
			return active, lifted, nil
		default:
			d.fail("unknown record type %d", typ)
		}
		if d.err == nil && d.off != len(d.b) {
			d.fail("%d trailing bytes in record", len(d.b)-d.off)
		}
		if d.err != nil {
			return nil, nil, corrupt(off, "%v", d.err)
		}
		frames++
		off += 8 + n
	}
}
