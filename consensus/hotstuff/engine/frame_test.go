package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

func frameStream(frames ...[]byte) []byte { return slices.Concat(frames...) }

// TestFrameRoundTrip: every frame kind decodes to what was encoded.
func TestFrameRoundTrip(t *testing.T) {
	vote := &types.Vote{View: 7, Block: types.Hash{1, 2, 3}, Voter: "node-1", Sig: bytes.Repeat([]byte{9}, 64)}
	cmds := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 1000), newReadMarker("node-2", 42)}
	stream := frameStream(encodeMessageFrame(vote), encodeCommandsFrame(cmds), encodeU64Frame(frameViewChange, 99))
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
	f.Add(encodeU64Frame(frameViewChange, 12))
	f.Add(frameStream(encodeU64Frame(frameViewChange, 1), encodeCommandsFrame([][]byte{{1, 2, 3}})))
	f.Add([]byte{0, 0, 0, 5, 9, 1, 2, 3, 4})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(encodePrunedFrame(types.Hash{3}, 9))
	f.Add(encodeU64Frame(frameAnchorReq, 4))
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
				if got := encodeU64Frame(frameViewChange, uint64(fr.view)); !bytes.Equal(got[frameHeader+1:], payload) {
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

// TestPruningFrames: the pruned, anchor request and anchor frames decode
// to what was encoded, keep their wire form (kinds 4 to 6; an older build
// drops them as unknown), and malformed ones are refused.
func TestPruningFrames(t *testing.T) {
	h := types.Hash{0xab, 0xcd}
	if got, want := hex.EncodeToString(encodePrunedFrame(h, 0x0102)), "0000002904abcd"+strings.Repeat("00", 30)+"0000000000000102"; got != want {
		t.Errorf("pruned frame %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(encodeU64Frame(frameAnchorReq, 7)), "00000009050000000000000007"; got != want {
		t.Errorf("anchor request frame %s, want %s", got, want)
	}
	parent := types.NewGenesis([]byte("g"))
	b := &types.Block{View: 3, Height: 1, Parent: parent.Hash(), Proposer: "n1", Payload: [][]byte{[]byte("x"), []byte("y")},
		Justify: types.GenesisQC(parent.Hash())}
	qc := types.QC{View: 3, Block: b.Hash()}
	a := &anchorInfo{index: 8, height: 1, first: 7, last: 8, qc: qc, block: b}
	stream := frameStream(encodePrunedFrame(h, 5), encodeU64Frame(frameAnchorReq, 9), encodeAnchorFrame(a))
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
	if len(got) != 3 || got[0].prunedHash != h || got[0].prunedHorizon != 5 || got[1].index != 9 {
		t.Fatalf("decoded %+v", got)
	}
	ga := got[2].anchor
	if ga == nil || ga.index != 8 || ga.height != 1 || ga.first != 7 || ga.last != 8 || ga.qc.Block != b.Hash() || ga.block.Hash() != b.Hash() {
		t.Fatalf("anchor decoded to %+v", ga)
	}
	bad := encodeAnchorFrame(&anchorInfo{index: 9, height: 1, first: 7, last: 8, qc: qc, block: b})
	cases := []struct {
		name    string
		kind    byte
		payload []byte
	}{
		{"short pruned", framePruned, make([]byte, 39)},
		{"long anchor request", frameAnchorReq, make([]byte, 9)},
		{"index outside the block", frameAnchor, bad[frameHeader+1:]},
		{"truncated anchor", frameAnchor, encodeAnchorFrame(a)[frameHeader+1 : 60]},
		{"trailing bytes", frameAnchor, append(encodeAnchorFrame(a)[frameHeader+1:], 0)},
	}
	for _, c := range cases {
		if _, err := decodeFrame(c.kind, c.payload); !errors.Is(err, ErrMalformedFrame) {
			t.Errorf("%s: decodeFrame error %v, want ErrMalformedFrame", c.name, err)
		}
	}
}
