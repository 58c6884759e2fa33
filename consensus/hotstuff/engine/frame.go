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

// encodeViewChangeFrame frames a forced view change of view v.
func encodeViewChangeFrame(v types.View) []byte {
	return encodeFrame(frameViewChange, binary.BigEndian.AppendUint64(nil, uint64(v)))
}

// encodePrunedFrame frames the answer to a request for block h the sender
// pruned: its horizon is the lowest committed height it still stores.
func encodePrunedFrame(h types.Hash, horizon uint64) []byte {
	p := append([]byte(nil), h[:]...)
	return encodeFrame(framePruned, binary.BigEndian.AppendUint64(p, horizon))
}

// encodeAnchorRequestFrame asks for the committed block holding index.
func encodeAnchorRequestFrame(index uint64) []byte {
	return encodeFrame(frameAnchorReq, binary.BigEndian.AppendUint64(nil, index))
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

func decodeAnchor(payload []byte) (*anchorInfo, error) {
	if len(payload) < 32+4 {
		return nil, fmt.Errorf("%w: anchor frame of %d bytes", ErrMalformedFrame, len(payload))
	}
	a := &anchorInfo{
		index: binary.BigEndian.Uint64(payload), height: binary.BigEndian.Uint64(payload[8:]),
		first: binary.BigEndian.Uint64(payload[16:]), last: binary.BigEndian.Uint64(payload[24:]),
	}
	rest := payload[32:]
	part := func(what string) ([]byte, error) {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: anchor frame: %s length truncated", ErrMalformedFrame, what)
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("%w: anchor frame: %s of %d bytes, %d left", ErrMalformedFrame, what, n, len(rest)-4)
		}
		p := rest[4 : 4+n]
		rest = rest[4+n:]
		return p, nil
	}
	qc, err := part("qc")
	if err != nil {
		return nil, err
	}
	b, err := part("block")
	if err != nil {
		return nil, err
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
		off := 2
		for i := range n {
			if len(payload)-off < 4 {
				return frame{}, fmt.Errorf("%w: command %d: length field truncated", ErrMalformedFrame, i)
			}
			l := binary.BigEndian.Uint32(payload[off:])
			off += 4
			if uint64(l) > types.MaxCommandBytes || uint64(l) > uint64(len(payload)-off) {
				return frame{}, fmt.Errorf("%w: command %d: length %d, %d bytes left, limit %d", ErrMalformedFrame, i, l, len(payload)-off, types.MaxCommandBytes)
			}
			if l == 0 {
				return frame{}, fmt.Errorf("%w: command %d is empty", ErrMalformedFrame, i)
			}
			cmds = append(cmds, append([]byte(nil), payload[off:off+int(l)]...))
			off += int(l)
		}
		if off != len(payload) {
			return frame{}, fmt.Errorf("%w: %d bytes after the last command", ErrMalformedFrame, len(payload)-off)
		}
		return frame{kind: kind, cmds: cmds}, nil
	case frameViewChange:
		if len(payload) != 8 {
			return frame{}, fmt.Errorf("%w: view-change frame of %d bytes, want 8", ErrMalformedFrame, len(payload))
		}
		return frame{kind: kind, view: types.View(binary.BigEndian.Uint64(payload))}, nil
	case framePruned:
		if len(payload) != 40 {
			return frame{}, fmt.Errorf("%w: pruned frame of %d bytes, want 40", ErrMalformedFrame, len(payload))
		}
		f := frame{kind: kind, prunedHorizon: binary.BigEndian.Uint64(payload[32:])}
		copy(f.prunedHash[:], payload[:32])
		return f, nil
	case frameAnchorReq:
		if len(payload) != 8 {
			return frame{}, fmt.Errorf("%w: anchor request frame of %d bytes, want 8", ErrMalformedFrame, len(payload))
		}
		return frame{kind: kind, index: binary.BigEndian.Uint64(payload)}, nil
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
