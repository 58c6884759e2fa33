package raftengine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/smr"
)

// The sender check: every connection the refusing layer accepts (refuse.go)
// is a checkedConn, and the NetworkTransport reads its requests from it.
//
//	mTLS conn, peer = the certificate's member
//	  └─ checkedConn.Read: the transport gets no byte of a request before
//	     the whole request was read and checked
//	       1. rpc type byte: one the NetworkTransport knows
//	       2. msgpack map, framed by readMsgpackObject (bounded by
//	          maxRequest; memory grows only with the bytes that arrive)
//	       3. the map decoded with the transport's codec handle into
//	          wireHeader: the server ID the header names must be peer's,
//	          and the codec must end the map where the framing did
//	       4. InstallSnapshot: the Size bytes after the request pass
//	          through unparsed
//	  otherwise: the connection is closed, counted (reason) and, for a
//	  forged sender, reported as ObservedForgedSender of peer
//
// The NetworkTransport (hashicorp/raft v1.7.3 net_transport.go handleConn)
// reads, per request, the type byte and one msgpack value decoded with a
// default codec.MsgpackHandle, then for InstallSnapshot hands Raft
// io.LimitReader(conn, Size), which Raft always drains (installSnapshot's
// deferred io.Copy to io.Discard): the bytes released here are exactly
// what it parses as one request, so no request reaches Raft, its heartbeat
// fast path or the inspector unchecked. The honest encoder writes structs
// as maps, with RPCHeader's fields (ProtocolVersion, ID, Addr) inlined
// among the request's own; an array-encoded request, which decodes by
// field position, is refused.

// The NetworkTransport's rpc type bytes (its unexported rpcAppendEntries
// ... rpcRequestPreVote).
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// Reasons a request is refused, the values of the rejected-RPCs metric's
// reason label.
const (
	rejectForged    = "forged_sender" // the header names another member
	rejectMalformed = "malformed"     // unknown rpc type, not a msgpack map, or undecodable
	rejectOversized = "oversized"     // longer than the bound
)

// rejectReasons lists the reasons, in the order of the layer's counters.
var rejectReasons = [...]string{rejectForged, rejectMalformed, rejectOversized}

// rpcRejection is a request the check refuses. It is an error of the
// sending member (the certificate's), never a failure of the network.
type rpcRejection struct {
	reason  string
	rpcType uint8
	claimed string // the header's server ID (forged sender)
	err     error  // the cause, for malformed and oversized
}

func (r *rpcRejection) Error() string {
	switch r.reason {
	case rejectForged:
		return fmt.Sprintf("raft rpc check: request (type %d) names sender %q", r.rpcType, r.claimed)
	default:
		return fmt.Sprintf("raft rpc check: %s request (type %d): %v", r.reason, r.rpcType, r.err)
	}
}

func (r *rpcRejection) Unwrap() error { return r.err }

// errNotMap: the request's top-level value is not a msgpack map.
var errNotMap = errors.New("request is not a msgpack map")

// wireHeader is what the check decodes of a request: the fields of
// RPCHeader, inlined exactly as in every request type, and
// InstallSnapshotRequest's Size. Other fields are skipped.
type wireHeader struct {
	raft.RPCHeader
	Size int64
}

// wireRPCHeader is wireHeader for the requests without a Size field.
type wireRPCHeader struct {
	raft.RPCHeader
}

// Bounds of one request.
const (
	// entryOverhead bounds what a log entry carries beside its commands:
	// the envelopes' signatures and headers (maxBatchEnvelopes of them),
	// the leader's attestation, the entry's own fields.
	entryOverhead = 1 << 20
	// maxEntryBytes bounds one entry the leader batches (propose.go): at
	// most maxBatchBytes of commands and then one more command.
	maxEntryBytes = maxBatchBytes + smr.MaxMaxCommandBytes + entryOverhead
	// readChunk is the most the check allocates ahead of the bytes that
	// arrived.
	readChunk = 256 << 10
	// keepBuffer: a request buffer larger than this is dropped once its
	// request was read, not kept for the connection's next one.
	keepBuffer = 4 << 20
)

// maxRequestBytes bounds one request a correct member sends: an
// AppendEntries of maxAppend batch entries (hashicorp/raft bounds the
// entries per request, not their bytes) plus one restore entry, which
// carries a snapshot of up to maxSnapshot bytes. InstallSnapshot's data
// follows the request and is not counted.
func maxRequestBytes(maxAppend int, maxSnapshot int64) int64 {
	return int64(max(maxAppend, 1))*maxEntryBytes + maxSnapshot + entryOverhead
}

// rpcChecker reads and checks the requests of one connection.
type rpcChecker struct {
	r    *bufio.Reader
	peer string // the certificate's member
	max  int64
	buf  []byte // the last request read: type byte, then the msgpack map
	dec  *codec.Decoder
}

func newRPCChecker(r io.Reader, peer string, maxRequest int64) *rpcChecker {
	return &rpcChecker{
		r:    bufio.NewReaderSize(r, 64<<10),
		peer: peer,
		max:  maxRequest,
		// The handle the NetworkTransport decodes requests with.
		dec: codec.NewDecoderBytes(nil, &codec.MsgpackHandle{}),
	}
}

// next reads the next request and checks it. It returns the request's
// bytes (valid until the next call) and the length of the snapshot data
// that follows it. Errors: the reader's (io.EOF before the type byte: the
// peer closed between requests), or an *rpcRejection.
func (c *rpcChecker) next() (req []byte, snapshot int64, err error) {
	if cap(c.buf) > keepBuffer {
		c.buf = nil
	}
	t, err := c.r.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	if t > rpcRequestPreVote {
		return nil, 0, &rpcRejection{reason: rejectMalformed, rpcType: t, err: fmt.Errorf("unknown rpc type %d", t)}
	}
	c.buf = append(c.buf[:0], t)
	c.buf, err = readMsgpackObject(c.r, c.buf, c.max+1)
	if err != nil {
		var rej *rpcRejection
		if errors.As(err, &rej) {
			rej.rpcType = t
		}
		return nil, 0, err
	}
	claimed, size, err := c.header(t, c.buf[1:])
	if err != nil {
		return nil, 0, err
	}
	if claimed != c.peer {
		return nil, 0, &rpcRejection{reason: rejectForged, rpcType: t, claimed: claimed}
	}
	return c.buf, max(size, 0), nil
}

// header decodes the sender's server ID (and, for InstallSnapshot, the
// snapshot's size) of a request of type t whose msgpack map is body, as
// the NetworkTransport's decoder sees them.
func (c *rpcChecker) header(t uint8, body []byte) (id string, size int64, err error) {
	malformed := func(err error) (string, int64, error) {
		return "", 0, &rpcRejection{reason: rejectMalformed, rpcType: t, err: err}
	}
	c.dec.ResetBytes(body)
	var n int
	if t == rpcInstallSnapshot {
		var h wireHeader
		err = c.dec.Decode(&h)
		id, size, n = string(h.ID), h.Size, c.dec.NumBytesRead()
	} else {
		var h wireRPCHeader
		err = c.dec.Decode(&h)
		id, n = string(h.ID), c.dec.NumBytesRead()
	}
	if err != nil {
		return malformed(fmt.Errorf("decode header: %w", err))
	}
	if n != len(body) {
		return malformed(fmt.Errorf("the codec read %d bytes of a %d-byte request", n, len(body)))
	}
	return id, size, nil
}

// readMsgpackObject appends to buf one msgpack value read from r, whose
// top level must be a map, and returns buf. The value (with what buf held
// before) must be shorter than limit bytes: a longer one is an oversized
// *rpcRejection, as soon as its headers announce it. Memory grows with the
// bytes read (by at most readChunk ahead), never with a length a header
// announces. An invalid type byte is a malformed *rpcRejection; a read
// error (io.ErrUnexpectedEOF within the value) is returned as is.
func readMsgpackObject(r *bufio.Reader, buf []byte, limit int64) ([]byte, error) {
	oversized := func(what string, n uint64) error {
		return &rpcRejection{reason: rejectOversized, err: fmt.Errorf("%s of %d at byte %d passes the %d-byte bound", what, n, len(buf), limit)}
	}
	b, err := r.Peek(1)
	if err != nil {
		return buf, unexpectedEOF(err)
	}
	if m := b[0]; m&0xf0 != 0x80 && m != 0xde && m != 0xdf {
		return buf, &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("%w (type byte %#x)", errNotMap, m)}
	}
	// pending counts the values still to read; each takes at least one
	// byte, so pending above the bytes left is oversized.
	pending := uint64(1)
	for pending > 0 {
		pending--
		m, err := r.ReadByte()
		if err != nil {
			return buf, unexpectedEOF(err)
		}
		buf = append(buf, m)
		var data, items uint64 // bytes to copy, values to read
		switch {
		case m <= 0x7f || m >= 0xe0 || m == 0xc0 || m == 0xc2 || m == 0xc3:
			// fixint, nil, bool
		case m&0xf0 == 0x80:
			items = 2 * uint64(m&0x0f)
		case m&0xf0 == 0x90:
			items = uint64(m & 0x0f)
		case m&0xe0 == 0xa0:
			data = uint64(m & 0x1f)
		default:
			var l uint64
			switch m {
			case 0xc4, 0xd9: // bin8, str8
				buf, data, err = readLength(r, buf, 1)
			case 0xc5, 0xda: // bin16, str16
				buf, data, err = readLength(r, buf, 2)
			case 0xc6, 0xdb: // bin32, str32
				buf, data, err = readLength(r, buf, 4)
			case 0xc7: // ext8: length, type, data
				buf, l, err = readLength(r, buf, 1)
				data = l + 1
			case 0xc8: // ext16
				buf, l, err = readLength(r, buf, 2)
				data = l + 1
			case 0xc9: // ext32
				buf, l, err = readLength(r, buf, 4)
				data = l + 1
			case 0xcc, 0xd0: // uint8, int8
				data = 1
			case 0xcd, 0xd1:
				data = 2
			case 0xca, 0xce, 0xd2: // float32, uint32, int32
				data = 4
			case 0xcb, 0xcf, 0xd3:
				data = 8
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 (and a type byte)
				data = 1 + 1<<(m-0xd4)
			case 0xdc: // array16
				buf, items, err = readLength(r, buf, 2)
			case 0xdd: // array32
				buf, items, err = readLength(r, buf, 4)
			case 0xde: // map16
				buf, l, err = readLength(r, buf, 2)
				items = 2 * l
			case 0xdf: // map32
				buf, l, err = readLength(r, buf, 4)
				items = 2 * l
			default: // 0xc1, never used
				return buf, &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("invalid msgpack type byte %#x at byte %d", m, len(buf)-1)}
			}
			if err != nil {
				return buf, unexpectedEOF(err)
			}
		}
		left := uint64(limit - int64(len(buf)))
		if int64(len(buf)) >= limit || data > left {
			return buf, oversized("a value", data)
		}
		if pending += items; pending > left-data {
			return buf, oversized("a container", items)
		}
		if data > 0 {
			if buf, err = readBytes(r, buf, data); err != nil {
				return buf, err
			}
		}
	}
	return buf, nil
}

// readLength appends an n-byte big-endian length read from r to buf.
func readLength(r *bufio.Reader, buf []byte, n int) ([]byte, uint64, error) {
	start := len(buf)
	buf, err := readBytes(r, buf, uint64(n))
	if err != nil {
		return buf, 0, err
	}
	b := buf[start:]
	switch n {
	case 1:
		return buf, uint64(b[0]), nil
	case 2:
		return buf, uint64(binary.BigEndian.Uint16(b)), nil
	default:
		return buf, uint64(binary.BigEndian.Uint32(b)), nil
	}
}

// readBytes appends n bytes read from r to buf, growing it by at most
// readChunk ahead of what arrived.
func readBytes(r *bufio.Reader, buf []byte, n uint64) ([]byte, error) {
	for n > 0 {
		k := int(min(n, readChunk))
		buf = slices.Grow(buf, k)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+k])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, unexpectedEOF(err)
		}
		n -= uint64(k)
	}
	return buf, nil
}

// unexpectedEOF turns an EOF within a request into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// checkedConn is an accepted connection whose reader gets only requests
// that passed the check (see the top of this file). Read is called by the
// transport's one reading goroutine; the other methods are the
// connection's.
type checkedConn struct {
	*trackedConn
	chk      *rpcChecker
	out      []byte // the checked request's bytes not read yet
	snapshot int64  // snapshot bytes still to pass through
	err      error  // sticky: the check's or the connection's error
}

func newCheckedConn(c *trackedConn, maxRequest int64) *checkedConn {
	return &checkedConn{trackedConn: c, chk: newRPCChecker(c.Conn, c.peer, maxRequest)}
}

// Read serves the bytes of checked requests and, after an InstallSnapshot
// request, its data. A refused request closes the connection (refusingLayer.reject)
// and Read returns the *rpcRejection.
func (c *checkedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.snapshot > 0 {
			if int64(len(p)) > c.snapshot {
				p = p[:c.snapshot]
			}
			n, err := c.chk.r.Read(p)
			c.snapshot -= int64(n)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if c.err != nil {
			return 0, c.err
		}
		req, snapshot, err := c.chk.next()
		if err != nil {
			c.err = err
			var rej *rpcRejection
			if errors.As(err, &rej) {
				c.l.reject(c.trackedConn, rej)
			}
			return 0, err
		}
		c.out, c.snapshot = req, snapshot
	}
}

var _ net.Conn = (*checkedConn)(nil)
