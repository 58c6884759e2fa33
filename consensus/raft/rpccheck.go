package raftengine

import (
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
//	       2. a msgpack map, framed by rpcChecker.readRequest (bounded
//	          by maxRequest; memory grows only with the bytes that
//	          arrive), whose keys are all plain field names
//	       3. its header entries (ProtocolVersion, ID, Addr, Size) decoded
//	          with the transport's codec handle into wireHeader: the server
//	          ID must be peer's
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
// what it parses as one request (msgpack values delimit themselves;
// FuzzRPCCheck compares the two framings), so no request reaches Raft,
// its heartbeat fast path or the inspector unchecked.
//
// The honest encoder writes structs as maps, with RPCHeader's fields
// inlined among the request's own, keyed by their names. The codec maps a
// key to a field by searching a packed list of the type's field names, so
// a key holding that list's separator bytes could match across names and
// pick different fields in the request's type and in wireHeader; keys
// other than plain names (letters, digits, '_'), and array-encoded
// requests (which decode by field position), are refused. The list's
// separators are bytes of 0x80 and above, which a plain name has none
// of, so a plain key matches exactly the field of its name in either
// type; the entries that are not header fields, which wireHeader's
// decoder would skip, are left out of what it decodes.

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

// Errors of a request's shape (malformed).
var (
	errNotMap        = errors.New("request is not a msgpack map")
	errKey           = errors.New("request key is not a plain field name")
	errHeaderEntries = fmt.Errorf("request repeats header fields more than %d times", maxHeaderEntries)
)

// wireHeader is what the check decodes of an InstallSnapshot request: the
// fields of RPCHeader, inlined exactly as in every request type, and
// InstallSnapshotRequest's Size. Other fields are skipped. The requests
// without a Size field are decoded into its RPCHeader alone.
type wireHeader struct {
	raft.RPCHeader
	Size int64
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
	// arrived, and the most it reads ahead of a request.
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

// Shape of a request's keys.
const (
	// maxKeyLen bounds a top-level key (the longest field name of the
	// request types is 18 bytes).
	maxKeyLen = 64
	// maxHeaderEntries bounds the header entries of a request (an honest
	// one has each of the four at most once).
	maxHeaderEntries = 8
)

// rpcChecker reads and checks the requests of one connection. It reads
// the connection in chunks into buf and scans the bytes there: buf[:end]
// is the last request checked, buf[end:] what was read after it (the
// next request's start, or snapshot data).
type rpcChecker struct {
	r     io.Reader
	peer  string // the certificate's member
	max   int64
	buf   []byte
	end   int
	pos   int    // scanning position within the request being read
	spans []span // its header entries, in buf
	hdr   []byte // the header entries as a map of their own
	dec   *codec.Decoder
	wh    wireHeader // the last header decoded; its slices are reused
}

// span is a key and its value: buf[start:end].
type span struct{ start, end int }

func newRPCChecker(r io.Reader, peer string, maxRequest int64) *rpcChecker {
	return &rpcChecker{
		r:    r,
		peer: peer,
		max:  maxRequest,
		// The handle the NetworkTransport decodes requests with.
		dec: codec.NewDecoderBytes(nil, &codec.MsgpackHandle{}),
	}
}

// next reads the next request and checks it. It returns the request's
// bytes (valid until the next call of next or read) and the length of
// the snapshot data that follows it. Errors: the reader's (io.EOF when
// the peer closed between requests), or an *rpcRejection.
func (c *rpcChecker) next() (req []byte, snapshot int64, err error) {
	c.compact()
	c.pos = 0
	if err := c.need(1); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = io.EOF // nothing of a request arrived
		}
		return nil, 0, err
	}
	t := c.buf[0]
	c.pos = 1
	if t > rpcRequestPreVote {
		return nil, 0, &rpcRejection{reason: rejectMalformed, rpcType: t, err: fmt.Errorf("unknown rpc type %d", t)}
	}
	c.spans = c.spans[:0]
	if err := c.readRequest(); err != nil {
		var rej *rpcRejection
		if errors.As(err, &rej) {
			rej.rpcType = t
		}
		return nil, 0, err
	}
	c.end = c.pos
	c.hdr = append(c.hdr[:0], 0x80|byte(len(c.spans))) // fixmap
	for _, sp := range c.spans {
		c.hdr = append(c.hdr, c.buf[sp.start:sp.end]...)
	}
	claimed, size, err := c.header(t, c.hdr)
	if err != nil {
		return nil, 0, err
	}
	if string(claimed) != c.peer {
		return nil, 0, &rpcRejection{reason: rejectForged, rpcType: t, claimed: string(claimed)}
	}
	return c.buf[:c.end], max(size, 0), nil
}

// header decodes the sender's server ID (valid until the next call) and,
// for InstallSnapshot, the snapshot's size of a request of type t from
// body, the map of its header entries, as the NetworkTransport's decoder
// sees them.
func (c *rpcChecker) header(t uint8, body []byte) (id []byte, size int64, err error) {
	malformed := func(err error) ([]byte, int64, error) {
		return nil, 0, &rpcRejection{reason: rejectMalformed, rpcType: t, err: err}
	}
	// A fresh header that reuses the last one's ID and Addr buffers: the
	// decoder fills only the fields the request holds.
	h := &c.wh
	*h = wireHeader{RPCHeader: raft.RPCHeader{ID: h.ID[:0], Addr: h.Addr[:0]}}
	c.dec.ResetBytes(body)
	if t == rpcInstallSnapshot {
		err = c.dec.Decode(h)
	} else {
		err = c.dec.Decode(&h.RPCHeader)
	}
	if err != nil {
		return malformed(fmt.Errorf("decode header: %w", err))
	}
	if n := c.dec.NumBytesRead(); n != len(body) {
		return malformed(fmt.Errorf("the codec read %d bytes of %d header bytes", n, len(body)))
	}
	return h.ID, h.Size, nil
}

// read reads what follows the last request (snapshot data): the bytes
// read ahead first, then the connection's.
func (c *rpcChecker) read(p []byte) (int, error) {
	if c.end < len(c.buf) {
		n := copy(p, c.buf[c.end:])
		c.end += n
		return n, nil
	}
	return c.r.Read(p)
}

// compact drops the last request (and what read took) from buf, keeping
// the bytes read after it, in a smaller buffer if buf grew past
// keepBuffer.
func (c *rpcChecker) compact() {
	rest := c.buf[c.end:]
	if cap(c.buf) > keepBuffer && len(rest) <= readChunk {
		c.buf = append(make([]byte, 0, readChunk), rest...)
	} else {
		c.buf = c.buf[:copy(c.buf, rest)]
	}
	c.end = 0
}

// need makes buf hold n bytes from pos, reading the connection; buf
// grows by at most readChunk beyond the bytes that arrived. The caller
// bounds pos+n (limit). An EOF before the n bytes is io.ErrUnexpectedEOF.
func (c *rpcChecker) need(n uint64) error {
	for uint64(len(c.buf)-c.pos) < n {
		if len(c.buf) == cap(c.buf) {
			want := uint64(c.pos) + n - uint64(len(c.buf))
			c.buf = slices.Grow(c.buf, int(min(max(want, 4096), readChunk)))
		}
		got, err := c.r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+got]
		if err != nil && uint64(len(c.buf)-c.pos) < n {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// limit is the most bytes a request may take in buf.
func (c *rpcChecker) limit() uint64 { return uint64(c.max) + 1 }

// oversized is the rejection of a value of n (bytes or entries) that
// does not fit in the bound after pos.
func (c *rpcChecker) oversized(what string, n uint64) error {
	return &rpcRejection{reason: rejectOversized, err: fmt.Errorf("%s of %d at byte %d passes the %d-byte bound", what, n, c.pos, c.max)}
}

// byte1 reads one byte.
func (c *rpcChecker) byte1() (byte, error) {
	if c.pos == len(c.buf) {
		if err := c.need(1); err != nil {
			return 0, err
		}
	}
	b := c.buf[c.pos]
	c.pos++
	return b, nil
}

// skip reads n bytes, which the caller checked against the bound, and
// returns them (valid until buf grows).
func (c *rpcChecker) skip(n uint64) ([]byte, error) {
	if err := c.need(n); err != nil {
		return nil, err
	}
	b := c.buf[c.pos : c.pos+int(n)]
	c.pos += int(n)
	return b, nil
}

// length reads an n-byte big-endian length.
func (c *rpcChecker) length(n int) (uint64, error) {
	b, err := c.skip(uint64(n))
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	default:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
}

// readRequest reads one msgpack map, the body of a request, noting in
// spans the entries whose keys are header fields (isHeaderKey). Every key
// must be a plain field name. The map (with the type byte) must fit in
// limit bytes: a longer one is an oversized *rpcRejection, as soon as its
// headers announce it. Memory grows with the bytes read (by at most
// readChunk ahead), never with a length a header announces. A value of
// the wrong shape is a malformed *rpcRejection; a read error
// (io.ErrUnexpectedEOF within the map) is returned as is.
func (c *rpcChecker) readRequest() error {
	m, err := c.byte1()
	if err != nil {
		return err
	}
	var n uint64
	switch {
	case m&0xf0 == 0x80:
		n = uint64(m & 0x0f)
	case m == 0xde:
		n, err = c.length(2)
	case m == 0xdf:
		n, err = c.length(4)
	default:
		return &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("%w (type byte %#x)", errNotMap, m)}
	}
	if err != nil {
		return err
	}
	if n > (c.limit()-uint64(c.pos))/2 { // an entry takes two bytes at least
		return c.oversized("a map", n)
	}
	for range n {
		start := c.pos
		header, err := c.readKey()
		if err != nil {
			return err
		}
		if err := c.readValue(); err != nil {
			return err
		}
		if header {
			if len(c.spans) == maxHeaderEntries {
				return &rpcRejection{reason: rejectMalformed, err: errHeaderEntries}
			}
			c.spans = append(c.spans, span{start, c.pos})
		}
	}
	return nil
}

// readKey reads a top-level key and reports whether it names a header
// field. It must be a msgpack str or bin of 1 to maxKeyLen letters,
// digits or '_'.
func (c *rpcChecker) readKey() (bool, error) {
	m, err := c.byte1()
	if err != nil {
		return false, err
	}
	var n uint64
	switch {
	case m&0xe0 == 0xa0:
		n = uint64(m & 0x1f)
	case m == 0xd9 || m == 0xc4: // str8, bin8
		if n, err = c.length(1); err != nil {
			return false, err
		}
	default:
		return false, &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("%w (type byte %#x)", errKey, m)}
	}
	if n == 0 || n > maxKeyLen {
		return false, &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("%w (%d bytes)", errKey, n)}
	}
	key, err := c.skip(n)
	if err != nil {
		return false, err
	}
	for _, b := range key {
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_') {
			return false, &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("%w (%q)", errKey, key)}
		}
	}
	return isHeaderKey(key), nil
}

// isHeaderKey reports whether key names a field of wireHeader.
func isHeaderKey(key []byte) bool {
	switch string(key) {
	case "ProtocolVersion", "ID", "Addr", "Size":
		return true
	}
	return false
}

// readValue reads one msgpack value (see readRequest).
func (c *rpcChecker) readValue() error {
	limit := c.limit()
	// pending counts the values still to read; each takes at least one
	// byte, so pending above the bytes left is oversized.
	pending := uint64(1)
	for pending > 0 {
		pending--
		m, err := c.byte1()
		if err != nil {
			return err
		}
		var data, items uint64 // bytes to skip, values to read
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
				data, err = c.length(1)
			case 0xc5, 0xda: // bin16, str16
				data, err = c.length(2)
			case 0xc6, 0xdb: // bin32, str32
				data, err = c.length(4)
			case 0xc7: // ext8: length, type, data
				l, err = c.length(1)
				data = l + 1
			case 0xc8: // ext16
				l, err = c.length(2)
				data = l + 1
			case 0xc9: // ext32
				l, err = c.length(4)
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
				items, err = c.length(2)
			case 0xdd: // array32
				items, err = c.length(4)
			case 0xde: // map16
				l, err = c.length(2)
				items = 2 * l
			case 0xdf: // map32
				l, err = c.length(4)
				items = 2 * l
			default: // 0xc1, never used
				return &rpcRejection{reason: rejectMalformed, err: fmt.Errorf("invalid msgpack type byte %#x at byte %d", m, c.pos-1)}
			}
			if err != nil {
				return err
			}
		}
		if uint64(c.pos) >= limit {
			return c.oversized("a value", data)
		}
		left := limit - uint64(c.pos)
		if data > left {
			return c.oversized("a value", data)
		}
		if pending += items; pending > left-data {
			return c.oversized("a container", items)
		}
		if data > 0 {
			if _, err := c.skip(data); err != nil {
				return err
			}
		}
	}
	return nil
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
// request, its data. A refused request closes the connection
// (refusingLayer.reject) and Read returns the *rpcRejection.
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
			n, err := c.chk.read(p)
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
