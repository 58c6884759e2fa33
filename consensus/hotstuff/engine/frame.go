package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Frames on a BFT connection. A connection carries frames in one direction
// only: the dialling node writes, the accepting node reads. The sender is the
// node ID of the connection's mutual-TLS certificate; no frame names its
// sender.
//
//	length u32 (big-endian) — the bytes that follow: kind and payload, at
//	                          least 1, at most the reader's frame limit
//	kind   u8
//	payload
//
// Kinds:
//
//	1 message      a HotStuff message, types.EncodeMessage
//	2 commands     commands handed to this replica for ordering (client
//	               entries and read markers): count u16 (1..MaxForwardBatch),
//	               then per command: length u32, bytes (at most
//	               types.MaxCommandBytes)
//	3 view-change  an operator's forced view change: view u64
//	4 pruned       the answer to a block request the sender cannot serve
//	               because it pruned the block or its ancestors: hash [32]
//	               (the block asked for) | horizon u64 (the lowest committed
//	               height the sender still stores)
//	5 anchor-req   which committed block holds log index: index u64
//	6 anchor       the committed block holding a log index, from the
//	               sender's chain: index u64 | height u64 | first u64 |
//	               last u64 (the block's log indexes) | qc (u32 length,
//	               types.MarshalQC of a QC certifying the block) | block
//	               (u32 length, types.MarshalBlock)
//
// Kinds 4 to 6 came with pruning; a build that predates them drops them as
// unknown, so a mixed committee still works where nothing was pruned.
//
// A frame of any other kind, or whose payload does not decode, is dropped
// and counted; the connection stays up. A frame longer than the limit closes
// the connection, because the stream can no longer be trusted to be framed.
const (
	frameMessage    byte = 1
	frameCommands   byte = 2
	frameViewChange byte = 3
	framePruned     byte = 4
	frameAnchorReq  byte = 5
	frameAnchor     byte = 6
)

// frameHeader is the length field.
const frameHeader = 4

// MaxForwardBatch is the most commands one commands frame carries.
const MaxForwardBatch = 4096

// Frame errors.
var (
	// ErrFrameTooLarge: a frame's length field exceeds the reader's limit
	// (or is zero). The connection is closed.
	ErrFrameTooLarge = errors.New("frame length outside the allowed range")
	// ErrUnknownFrame: a frame of a kind this build does not know. It is
	// dropped.
	ErrUnknownFrame = errors.New("unknown frame kind")
	// ErrMalformedFrame: a frame whose payload does not decode. It is
	// dropped.
	ErrMalformedFrame = errors.New("malformed frame")
)

// frame is one decoded frame: exactly the field of kind is set.
type frame struct {
	kind byte
	msg  types.Message // frameMessage
	cmds [][]byte      // frameCommands
	view types.View    // frameViewChange
	// framePruned: the block asked for and the sender's horizon.
	prunedHash    types.Hash
	prunedHorizon uint64
	index         uint64      // frameAnchorReq
	anchor        *anchorInfo // frameAnchor
}

// anchorInfo is a peer's claim that block (certified by qc) is the
// committed block at height holding log indexes first..last, among them
// index.
type anchorInfo struct {
	index, height, first, last uint64
	qc                         types.QC
	block                      *types.Block
}

// readFrame reads one frame from r. It returns ErrFrameTooLarge (wrapped,
// with the length) for a length of 0 or above max, without reading the
// payload, and io.EOF at a clean end of stream. The payload is a fresh slice.
func readFrame(r *bufio.Reader, max int) (kind byte, payload []byte, err error) {
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || uint64(n) > uint64(max) {
		return 0, nil, fmt.Errorf("frame of %d bytes, allowed 1..%d: %w", n, max, ErrFrameTooLarge)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return buf[0], buf[1:], nil
}

// encodeFrame returns the wire form of a frame of kind with payload.
func encodeFrame(kind byte, payload []byte) []byte {
	b := make([]byte, frameHeader+1, frameHeader+1+len(payload))
	binary.BigEndian.PutUint32(b, uint32(1+len(payload)))
	b[frameHeader] = kind
	return append(b, payload...)
}

// encodeMessageFrame frames a HotStuff message.
func encodeMessageFrame(m types.Message) []byte {
	return encodeFrame(frameMessage, types.EncodeMessage(m))
}

// encodeCommandsFrame frames up to MaxForwardBatch commands; the caller
// splits larger batches.
func encodeCommandsFrame(cmds [][]byte) []byte {
	size := 2
	for _, c := range cmds {
		size += 4 + len(c)
	}
	p := make([]byte, 0, size)
	p = binary.BigEndian.AppendUint16(p, uint16(len(cmds)))
	for _, c := range cmds {
		p = binary.BigEndian.AppendUint32(p, uint32(len(c)))
		p = append(p, c...)
	}
	return encodeFrame(frameCommands, p)
}

// encodeU64Frame frames a frame of kind whose payload is v: a forced view
// change (frameViewChange, the view) or an anchor request (frameAnchorReq,
// the log index).
func encodeU64Frame(kind byte, v uint64) []byte {
	return encodeFrame(kind, binary.BigEndian.AppendUint64(nil, v))
}

// encodePrunedFrame frames the answer to a request for block h the sender
// pruned: its horizon is the lowest committed height it still stores.
func encodePrunedFrame(h types.Hash, horizon uint64) []byte {
	p := append([]byte(nil), h[:]...)
	return encodeFrame(framePruned, binary.BigEndian.AppendUint64(p, horizon))
}

// encodeAnchorFrame frames a.
func encodeAnchorFrame(a *anchorInfo) []byte {
	qc, b := types.MarshalQC(a.qc), types.MarshalBlock(a.block)
	p := make([]byte, 0, 40+len(qc)+len(b))
	for _, v := range []uint64{a.index, a.height, a.first, a.last} {
		p = binary.BigEndian.AppendUint64(p, v)
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(qc)))
	p = append(p, qc...)
	p = binary.BigEndian.AppendUint32(p, uint32(len(b)))
	return encodeFrame(frameAnchor, append(p, b...))
}

// cutPrefixed splits a field of u32 length and that many bytes off the
// front of p, returning the field and what follows.
func cutPrefixed(p []byte) (field, rest []byte, err error) {
	if len(p) < 4 {
		return nil, nil, errors.New("length field truncated")
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-4) {
		return nil, nil, fmt.Errorf("length %d, %d bytes left", n, len(p)-4)
	}
	return p[4 : 4+n], p[4+n:], nil
}

func decodeAnchor(payload []byte) (*anchorInfo, error) {
	if len(payload) < 32+4 {
		return nil, fmt.Errorf("%w: anchor frame of %d bytes", ErrMalformedFrame, len(payload))
	}
	a := &anchorInfo{
		index: binary.BigEndian.Uint64(payload), height: binary.BigEndian.Uint64(payload[8:]),
		first: binary.BigEndian.Uint64(payload[16:]), last: binary.BigEndian.Uint64(payload[24:]),
	}
	qc, rest, err := cutPrefixed(payload[32:])
	if err != nil {
		return nil, fmt.Errorf("%w: anchor frame: qc: %w", ErrMalformedFrame, err)
	}
	b, rest, err := cutPrefixed(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: anchor frame: block: %w", ErrMalformedFrame, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the anchor block", ErrMalformedFrame, len(rest))
	}
	if a.qc, err = types.UnmarshalQC(qc); err != nil {
		return nil, fmt.Errorf("%w: anchor qc: %w", ErrMalformedFrame, err)
	}
	if a.block, err = types.UnmarshalBlock(b); err != nil {
		return nil, fmt.Errorf("%w: anchor block: %w", ErrMalformedFrame, err)
	}
	if a.height == 0 || a.first > a.index || a.index > a.last {
		return nil, fmt.Errorf("%w: anchor for index %d names height %d and indexes %d..%d", ErrMalformedFrame, a.index, a.height, a.first, a.last)
	}
	return a, nil
}

// u64FrameName names the frames whose payload is one u64, for errors.
var u64FrameName = map[byte]string{frameViewChange: "view-change", frameAnchorReq: "anchor request"}

// decodeFrame decodes the payload of a frame of kind. Errors wrap
// ErrUnknownFrame or ErrMalformedFrame. The result does not alias payload
// (commands are copied; HotStuff messages are decoded into fresh values).
func decodeFrame(kind byte, payload []byte) (frame, error) {
	switch kind {
	case frameMessage:
		m, err := types.DecodeMessage(payload)
		if err != nil {
			return frame{}, fmt.Errorf("%w: %w", ErrMalformedFrame, err)
		}
		return frame{kind: kind, msg: m}, nil
	case frameCommands:
		if len(payload) < 2 {
			return frame{}, fmt.Errorf("%w: commands frame of %d bytes has no count", ErrMalformedFrame, len(payload))
		}
		n := int(binary.BigEndian.Uint16(payload))
		if n == 0 || n > MaxForwardBatch {
			return frame{}, fmt.Errorf("%w: commands frame with %d commands, allowed 1..%d", ErrMalformedFrame, n, MaxForwardBatch)
		}
		// Each command takes at least its 4-byte length: reject impossible
		// counts before allocating for them.
		if rest := len(payload) - 2; n > rest/4 {
			return frame{}, fmt.Errorf("%w: commands frame claims %d commands in %d bytes", ErrMalformedFrame, n, rest)
		}
		cmds := make([][]byte, 0, n)
		rest := payload[2:]
		for i := range n {
			c, r, err := cutPrefixed(rest)
			if err != nil {
				return frame{}, fmt.Errorf("%w: command %d: %w", ErrMalformedFrame, i, err)
			}
			if uint64(len(c)) > types.MaxCommandBytes {
				return frame{}, fmt.Errorf("%w: command %d of %d bytes, limit %d", ErrMalformedFrame, i, len(c), types.MaxCommandBytes)
			}
			if len(c) == 0 {
				return frame{}, fmt.Errorf("%w: command %d is empty", ErrMalformedFrame, i)
			}
			cmds = append(cmds, append([]byte(nil), c...))
			rest = r
		}
		if len(rest) != 0 {
			return frame{}, fmt.Errorf("%w: %d bytes after the last command", ErrMalformedFrame, len(rest))
		}
		return frame{kind: kind, cmds: cmds}, nil
	case frameViewChange, frameAnchorReq:
		if len(payload) != 8 {
			return frame{}, fmt.Errorf("%w: %s frame of %d bytes, want 8", ErrMalformedFrame, u64FrameName[kind], len(payload))
		}
		v := binary.BigEndian.Uint64(payload)
		if kind == frameViewChange {
			return frame{kind: kind, view: types.View(v)}, nil
		}
		return frame{kind: kind, index: v}, nil
	case framePruned:
		if len(payload) != 40 {
			return frame{}, fmt.Errorf("%w: pruned frame of %d bytes, want 40", ErrMalformedFrame, len(payload))
		}
		f := frame{kind: kind, prunedHorizon: binary.BigEndian.Uint64(payload[32:])}
		copy(f.prunedHash[:], payload[:32])
		return f, nil
	case frameAnchor:
		a, err := decodeAnchor(payload)
		if err != nil {
			return frame{}, err
		}
		return frame{kind: kind, anchor: a}, nil
	default:
		return frame{}, fmt.Errorf("%w %d", ErrUnknownFrame, kind)
	}
}
