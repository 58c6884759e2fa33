package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

func frameStream(frames ...[]byte) []byte { return slices.Concat(frames...) }

// TestFrameRoundTrip: every frame kind decodes to what was encoded.
func TestFrameRoundTrip(t *testing.T) {
	vote := &types.Vote{View: 7, Block: types.Hash{1, 2, 3}, Voter: "node-1", Sig: bytes.Repeat([]byte{9}, 64)}
	cmds := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 1000), newReadMarker("node-2", 42)}
	stream := frameStream(encodeMessageFrame(vote), encodeCommandsFrame(cmds), encodeViewChangeFrame(99))
	r := bufio.NewReader(bytes.NewReader(stream))
	var got []frame
	for {
		kind, payload, err := readFrame(r, 1<<20)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f, err := decodeFrame(kind, payload)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f)
	}
	if len(got) != 3 {
		t.Fatalf("decoded %d frames, want 3", len(got))
	}
	if v, ok := got[0].msg.(*types.Vote); !ok || v.View != 7 || v.Voter != "node-1" || v.Block != vote.Block {
		t.Errorf("vote frame decoded to %#v", got[0].msg)
	}
	if !slices.EqualFunc(got[1].cmds, cmds, bytes.Equal) {
		t.Errorf("commands frame decoded to %q", got[1].cmds)
	}
	if got[2].kind != frameViewChange || got[2].view != 99 {
		t.Errorf("view-change frame decoded to %+v", got[2])
	}
}

// TestFrameRejects: each way a frame can be wrong is reported with the
// error that decides what the reader does (close the connection for
// ErrFrameTooLarge, drop the frame otherwise).
func TestFrameRejects(t *testing.T) {
	header := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	readCases := []struct {
		name string
		data []byte
		want error
	}{
		{"zero length", header(0), ErrFrameTooLarge},
		{"over the limit", header(1025), ErrFrameTooLarge},
		{"truncated payload", append(header(10), 1, 2, 3), io.ErrUnexpectedEOF},
		{"truncated header", []byte{0, 0}, io.ErrUnexpectedEOF},
	}
	for _, c := range readCases {
		_, _, err := readFrame(bufio.NewReader(bytes.NewReader(c.data)), 1024)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: readFrame error %v, want %v", c.name, err, c.want)
		}
	}
	cmd := func(n uint16, rest ...byte) []byte { return append(binary.BigEndian.AppendUint16(nil, n), rest...) }
	decodeCases := []struct {
		name    string
		kind    byte
		payload []byte
		want    error
	}{
		{"unknown kind", 77, []byte{1}, ErrUnknownFrame},
		{"garbage message", frameMessage, []byte{1, 2, 3}, ErrMalformedFrame},
		{"empty message", frameMessage, nil, ErrMalformedFrame},
		{"no count", frameCommands, []byte{1}, ErrMalformedFrame},
		{"zero commands", frameCommands, cmd(0), ErrMalformedFrame},
		{"count beyond bytes", frameCommands, cmd(4000, 0, 0, 0, 1, 'x'), ErrMalformedFrame},
		{"command length beyond bytes", frameCommands, cmd(1, 0, 0, 0, 9, 'x'), ErrMalformedFrame},
		{"empty command", frameCommands, cmd(1, 0, 0, 0, 0), ErrMalformedFrame},
		{"trailing bytes", frameCommands, cmd(1, 0, 0, 0, 1, 'x', 'y'), ErrMalformedFrame},
		{"huge command length", frameCommands, cmd(1, 0xff, 0xff, 0xff, 0xff), ErrMalformedFrame},
		{"short view", frameViewChange, []byte{1, 2}, ErrMalformedFrame},
	}
	for _, c := range decodeCases {
		if _, err := decodeFrame(c.kind, c.payload); !errors.Is(err, c.want) {
			t.Errorf("%s: decodeFrame error %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and decoder, as a
// peer could: they must never panic or allocate beyond the frame limit,
// and a frame that decodes must encode back to the same bytes (commands and
// view changes) or to a message that decodes again (HotStuff messages).
func FuzzReadFrame(f *testing.F) {
	vote := &types.Vote{View: 3, Block: types.Hash{7}, Voter: "n1", Sig: []byte{1, 2}}
	f.Add(encodeMessageFrame(vote))
	f.Add(encodeMessageFrame(&types.BlockRequest{Hash: types.Hash{1}, Count: 4}))
	f.Add(encodeCommandsFrame([][]byte{[]byte("x"), newReadMarker("n2", 1)}))
	f.Add(encodeViewChangeFrame(12))
	f.Add(frameStream(encodeViewChangeFrame(1), encodeCommandsFrame([][]byte{{1, 2, 3}})))
	f.Add([]byte{0, 0, 0, 5, 9, 1, 2, 3, 4})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			kind, payload, err := readFrame(r, limit)
			if err != nil {
				if len(payload) > limit {
					t.Fatalf("payload of %d bytes over the %d limit", len(payload), limit)
				}
				return
			}
			fr, err := decodeFrame(kind, payload)
			if err != nil {
				if !errors.Is(err, ErrUnknownFrame) && !errors.Is(err, ErrMalformedFrame) {
					t.Fatalf("decode error %v wraps neither sentinel", err)
				}
				continue
			}
			switch fr.kind {
			case frameCommands:
				if got := encodeCommandsFrame(fr.cmds); !bytes.Equal(got[frameHeader+1:], payload) {
					t.Fatalf("commands frame re-encodes to %x, was %x", got, payload)
				}
			case frameViewChange:
				if got := encodeViewChangeFrame(fr.view); !bytes.Equal(got[frameHeader+1:], payload) {
					t.Fatalf("view-change frame re-encodes to %x, was %x", got, payload)
				}
			case frameMessage:
				if _, err := types.DecodeMessage(types.EncodeMessage(fr.msg)); err != nil {
					t.Fatalf("decoded %s does not survive re-encoding: %v", fr.msg.MsgType(), err)
				}
			}
		}
	})
}
