package raftengine

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/logging"
	"github.com/tandem-consensus/tandem/internal/transport"
)

// encodeRPC frames req as a NetworkTransport client sends it: the rpc type
// byte, then req encoded with the transport's encoder handle (maps; the
// old time format, msgpackUseNewTimeFormat being off by default).
func encodeRPC(tb testing.TB, rpcType uint8, req any) []byte {
	tb.Helper()
	var b bytes.Buffer
	b.WriteByte(rpcType)
	enc := codec.NewEncoder(&b, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	if err := enc.Encode(req); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func header(id string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte("127.0.0.1:7000")}
}

// appendRequest is an AppendEntries of n batch-sized entries of size bytes
// each, as a leader replicates them.
func appendRequest(id string, n, size int) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{RPCHeader: header(id), Term: 7, PrevLogEntry: 100, PrevLogTerm: 7, LeaderCommitIndex: 99}
	for i := range n {
		data := bytes.Repeat([]byte{byte(i)}, size)
		req.Entries = append(req.Entries, &raft.Log{Index: uint64(101 + i), Term: 7, Type: raft.LogCommand,
			Data: data, Extensions: bytes.Repeat([]byte{0xa7}, 120), AppendedAt: time.Unix(1700000000, int64(i))})
	}
	return req
}

// bytesConn is a net.Conn that reads from a byte slice; writes vanish.
type bytesConn struct {
	net.Conn // nil: the methods not defined here are not called
	r        *bytes.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *bytesConn) Close() error                { return nil }

// checkStream reads data through a checkedConn of peer and returns the
// bytes the transport would get, the length of each request released
// (with its snapshot data, all of it that arrived), the read error that ended it (nil at a clean
// EOF) and the layer.
func checkStream(tb testing.TB, data []byte, peer string, maxRequest int64) (released []byte, lengths []int, err error, l *refusingLayer) {
	tb.Helper()
	l = newRefusingLayer(nil, nil, slog.New(slog.DiscardHandler), maxRequest, nil)
	tc, ok := l.admitConn(&bytesConn{r: bytes.NewReader(data)}, peer)
	if !ok {
		tb.Fatal("admit refused")
	}
	c := newCheckedConn(tc, maxRequest)
	buf := make([]byte, 4096)
	for {
		n, rerr := c.Read(buf)
		released = append(released, buf[:n]...)
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			if c.snapshot > 0 { // cut within a snapshot's data
				lengths = append(lengths, len(released)-sum(lengths))
			}
			break
		}
		// a request ends when its bytes and its snapshot data are out
		if len(c.out) == 0 && c.snapshot == 0 && len(released) > sum(lengths) {
			lengths = append(lengths, len(released)-sum(lengths))
		}
	}
	return released, lengths, err, l
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// transportParse parses data the way the NetworkTransport's handleCommand
// does (the type byte, the request decoded with a default MsgpackHandle
// into its type, InstallSnapshot's data read through and drained) and
// returns each decoded request's sender and the offset after it.
func transportParse(data []byte) (ids []string, ends []int) {
	r := bytes.NewReader(data)
	dec := codec.NewDecoder(r, &codec.MsgpackHandle{})
	for {
		t, err := r.ReadByte()
		if err != nil {
			return
		}
		var req raft.WithRPCHeader
		switch t {
		case rpcAppendEntries:
			req = &raft.AppendEntriesRequest{}
		case rpcRequestVote:
			req = &raft.RequestVoteRequest{}
		case rpcRequestPreVote:
			req = &raft.RequestPreVoteRequest{}
		case rpcInstallSnapshot:
			req = &raft.InstallSnapshotRequest{}
		case rpcTimeoutNow:
			req = &raft.TimeoutNowRequest{}
		default:
			return
		}
		if dec.Decode(req) != nil {
			return
		}
		if is, ok := req.(*raft.InstallSnapshotRequest); ok {
			if _, err := io.Copy(io.Discard, io.LimitReader(r, is.Size)); err != nil {
				return
			}
		}
		id := req.GetRPCHeader().ID
		ids = append(ids, string(id))
		ends = append(ends, len(data)-r.Len())
	}
}

// TestRPCCheckStream: requests naming the connection's member pass byte
// for byte, InstallSnapshot's data with them; the first request naming
// another sender, or malformed, or over the bound ends the stream before
// any of its bytes, and is counted under its reason.
func TestRPCCheckStream(t *testing.T) {
	snapData := bytes.Repeat([]byte{0xc1, 0x93}, 3000) // invalid msgpack: passed through unparsed
	honest := [][]byte{
		encodeRPC(t, rpcAppendEntries, appendRequest("n1", 64, 200)),
		encodeRPC(t, rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: header("n1"), Term: 7}), // heartbeat
		encodeRPC(t, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: header("n1"), Term: 8}),
		encodeRPC(t, rpcRequestPreVote, &raft.RequestPreVoteRequest{RPCHeader: header("n1"), Term: 8}),
		append(encodeRPC(t, rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: header("n1"), SnapshotVersion: 1, Term: 8, Size: int64(len(snapData))}), snapData...),
		encodeRPC(t, rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: header("n1")}),
	}
	all := bytes.Join(honest, nil)

	released, lengths, err, l := checkStream(t, all, "n1", 1<<20)
	if err != nil || !bytes.Equal(released, all) {
		t.Fatalf("honest stream: released %d of %d bytes, err %v", len(released), len(all), err)
	}
	if len(lengths) != len(honest) {
		t.Fatalf("released %d requests, want %d (%v)", len(lengths), len(honest), lengths)
	}
	for i, h := range honest {
		if lengths[i] != len(h) {
			t.Errorf("request %d released as %d bytes, want %d", i, lengths[i], len(h))
		}
	}
	if got := l.rejectedCounts(); got != [3]uint64{} {
		t.Errorf("rejected %v, want none", got)
	}

	asArray := func(rpcType uint8, req any) []byte {
		var b bytes.Buffer
		b.WriteByte(rpcType)
		h := &codec.MsgpackHandle{}
		h.StructToArray = true
		if err := codec.NewEncoder(&b, h).Encode(req); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	// a header key repeated: the codec keeps the last value
	dupID := []byte{rpcRequestVote, 0x83, 0xa2, 'I', 'D', 0xa2, 'n', '1', 0xa4, 'T', 'e', 'r', 'm', 0x05, 0xa2, 'I', 'D', 0xa2, 'n', '2'}
	dupIDok := []byte{rpcRequestVote, 0x83, 0xa2, 'I', 'D', 0xa2, 'n', '2', 0xa4, 'T', 'e', 'r', 'm', 0x05, 0xa2, 'I', 'D', 0xa2, 'n', '1'}
	for _, tc := range []struct {
		name   string
		req    []byte
		reason string
		max    int64
	}{
		{"forged vote", encodeRPC(t, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: header("n2"), Term: 9}), rejectForged, 0},
		{"forged heartbeat", encodeRPC(t, rpcAppendEntries, &raft.AppendEntriesRequest{RPCHeader: header("n2"), Term: 9}), rejectForged, 0},
		{"forged entries", encodeRPC(t, rpcAppendEntries, appendRequest("n2", 4, 10)), rejectForged, 0},
		{"forged snapshot", encodeRPC(t, rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: header("n2"), Size: 0}), rejectForged, 0},
		{"no ID", encodeRPC(t, rpcTimeoutNow, &raft.TimeoutNowRequest{}), rejectForged, 0},
		{"duplicate ID, last forged", dupID, rejectForged, 0},
		{"unknown type", []byte{5, 0x80}, rejectMalformed, 0},
		{"array-encoded", asArray(rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: header("n1"), Term: 9}), rejectMalformed, 0},
		{"nil", []byte{rpcRequestVote, 0xc0}, rejectMalformed, 0},
		{"invalid type byte", []byte{rpcRequestVote, 0x81, 0xa1, 'x', 0xc1}, rejectMalformed, 0},
		{"map key not a string", []byte{rpcRequestVote, 0x81, 0x01, 0x02}, rejectMalformed, 0},
		// a key holding the codec's name-list separators could match
		// across field names, and another field in each type
		{"key not a plain name", []byte{rpcRequestVote, 0x81, 0xa4, 'A', 0xff, 0x00, 'D', 0xa2, 'n', '1'}, rejectMalformed, 0},
		{"empty key", []byte{rpcRequestVote, 0x81, 0xa0, 0x01}, rejectMalformed, 0},
		{"long key", append([]byte{rpcRequestVote, 0x81, 0xd9, 65}, append(bytes.Repeat([]byte{'k'}, 65), 0x01)...), rejectMalformed, 0},
		{"header fields repeated", append([]byte{rpcRequestVote, 0x89}, bytes.Repeat([]byte{0xa2, 'I', 'D', 0xa2, 'n', '1'}, 9)...), rejectMalformed, 0},
		{"oversized entries", encodeRPC(t, rpcAppendEntries, appendRequest("n1", 4, 1000)), rejectOversized, 2000},
		{"oversized declared length", []byte{rpcRequestVote, 0x81, 0xa1, 'x', 0xc6, 0xff, 0xff, 0xff, 0xff}, rejectOversized, 0},
		{"oversized declared map", []byte{rpcRequestVote, 0xdf, 0x7f, 0xff, 0xff, 0xff}, rejectOversized, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 1 << 20
			}
			data := append(append(append([]byte{}, honest[2]...), tc.req...), honest[3]...)
			released, _, err, l := checkStream(t, data, "n1", max)
			var rej *rpcRejection
			if !errors.As(err, &rej) || rej.reason != tc.reason {
				t.Fatalf("err = %v, want a %s rejection", err, tc.reason)
			}
			if !bytes.Equal(released, honest[2]) {
				t.Errorf("released %d bytes, want only the %d of the request before", len(released), len(honest[2]))
			}
			want := [3]uint64{}
			for i, r := range rejectReasons {
				if r == tc.reason {
					want[i] = 1
				}
			}
			if got := l.rejectedCounts(); got != want {
				t.Errorf("rejected %v, want %v", got, want)
			}
			if tc.reason == rejectForged && rej.claimed == "n1" {
				t.Errorf("forged rejection claims the peer's own ID")
			}
		})
	}

	t.Run("duplicate ID, last the peer's", func(t *testing.T) {
		released, _, err, _ := checkStream(t, dupIDok, "n1", 1<<20)
		if err != nil || !bytes.Equal(released, dupIDok) {
			t.Fatalf("released %d of %d bytes, err %v", len(released), len(dupIDok), err)
		}
		if ids, _ := transportParse(released); len(ids) != 1 || ids[0] != "n1" {
			t.Fatalf("the transport decodes senders %q", ids)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		released, _, err, l := checkStream(t, honest[0][:len(honest[0])-3], "n1", 1<<20)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(released) != 0 {
			t.Fatalf("released %d bytes, err %v; want none and an unexpected EOF", len(released), err)
		}
		if got := l.rejectedCounts(); got != [3]uint64{} {
			t.Errorf("a cut connection counted as rejected: %v", got)
		}
	})
}

// TestMaxRequestBytes: the default bound admits a full batch of maximal
// batch entries beside a maximal snapshot.
func TestMaxRequestBytes(t *testing.T) {
	got := maxRequestBytes(64, DefaultMaxSnapshotBytes)
	if min := int64(64)*maxBatchBytes + DefaultMaxSnapshotBytes; got <= min {
		t.Errorf("maxRequestBytes = %d, not above %d", got, min)
	}
	if maxRequestBytes(0, 0) <= 0 {
		t.Error("bound not positive for zero settings")
	}
}

// FuzzRPCCheck: whatever arrives, every request the transport can parse
// from what the check releases names the connection's member, ends where
// the check ended it, and the check never alters or reorders bytes.
func FuzzRPCCheck(f *testing.F) {
	f.Add(encodeRPC(f, rpcRequestVote, &raft.RequestVoteRequest{RPCHeader: header("n1"), Term: 3}))
	f.Add(append(encodeRPC(f, rpcInstallSnapshot, &raft.InstallSnapshotRequest{RPCHeader: header("n1"), Size: 3}), 1, 2, 3))
	f.Add(encodeRPC(f, rpcAppendEntries, appendRequest("n2", 2, 5)))
	f.Fuzz(func(t *testing.T, data []byte) {
		released, lengths, _, _ := checkStream(t, data, "n1", 1<<16)
		if !bytes.HasPrefix(data, released) {
			t.Fatalf("released bytes are not a prefix of the input")
		}
		if len(released) > 0 && len(lengths) == 0 {
			t.Fatalf("released %d bytes without a whole request", len(released))
		}
		bounds := map[int]bool{}
		end := 0
		for _, n := range lengths {
			end += n
			bounds[end] = true
		}
		ids, ends := transportParse(released)
		for i, id := range ids {
			if id != "n1" {
				t.Fatalf("request %d reaches the transport naming %q", i, id)
			}
			if !bounds[ends[i]] {
				t.Fatalf("the transport ends request %d at byte %d; the check's bounds %v", i, ends[i], lengths)
			}
		}
	})
}

// mtlsPeers starts a mutual-TLS Mux on loopback for each ID, with
// certificates from one test CA.
func mtlsPeers(t *testing.T, ids ...string) map[string]*transport.Mux {
	t.Helper()
	dir := t.TempDir()
	ca, err := identity.CreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), "test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*transport.Mux{}
	for _, id := range ids {
		certPEM, keyPEM, err := ca.IssueNode(id, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		if err := identity.WriteCertPair(cert, key, certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
		server, client, err := identity.PeerTLS(filepath.Join(dir, "ca.pem"), cert, key)
		if err != nil {
			t.Fatal(err)
		}
		mux, err := transport.ListenConfig(transport.Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: client, Logger: testLogger(t), PeerID: identity.PeerNodeID})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mux.Close() })
		out[id] = mux
	}
	return out
}

// TestSenderCheckOverMutualTLS: node-3 sends node-1 Raft RPCs over mutual
// TLS through node-1's refusing layer and NetworkTransport. RPCs whose
// header names node-2 (a vote, entries, a heartbeat for the fast path, a
// snapshot) never reach node-1's consumer or heartbeat handler: their
// connection is closed, counted and reported against node-3. The same
// RPCs naming node-3 arrive intact, the snapshot's data with them.
func TestSenderCheckOverMutualTLS(t *testing.T) {
	muxes := mtlsPeers(t, "node-1", "node-3")
	obs := make(chan PeerObservation, 16)
	layer := newRefusingLayer(muxes["node-1"].RaftLayer(), transport.PeerID, testLogger(t), 1<<24, func(o PeerObservation) { obs <- o })
	hlog := logging.NewHCLog(testLogger(t), "raft")
	srv := newNetworkTransport(layer, muxes["node-1"].Addr().String(), 5*time.Second, hlog)
	defer srv.Close()
	cli := newNetworkTransport(muxes["node-3"].RaftLayer(), muxes["node-3"].Addr().String(), 5*time.Second, hlog)
	defer cli.Close()
	heartbeats := make(chan raft.RPC, 4)
	srv.SetHeartbeatHandler(func(rpc raft.RPC) {
		heartbeats <- rpc
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	})
	target := raft.ServerAddress(muxes["node-1"].Addr().String())

	// received takes the next RPC node-1's Raft would get and answers it.
	received := func() raft.RPC {
		t.Helper()
		select {
		case rpc := <-srv.Consumer():
			rpc.Respond(emptyResponse(rpc.Command), nil)
			return rpc
		case <-time.After(10 * time.Second):
			t.Fatal("no RPC reached the consumer")
			return raft.RPC{}
		}
	}
	forged := 0
	expectForged := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s naming node-2: the call succeeded", what)
		}
		forged++
		if got := layer.rejectedCounts()[0]; got != uint64(forged) {
			t.Fatalf("%s: %d forged senders counted, want %d", what, got, forged)
		}
		select {
		case o := <-obs:
			if o.Kind != ObservedForgedSender || o.From != "node-3" || o.Claimed != "node-2" {
				t.Fatalf("%s: reported %+v, want a forged sender from node-3 claiming node-2", what, o)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no forged sender reported", what)
		}
	}

	// A vote: forged, then honest; the consumer's first RPC is the honest one.
	var vresp raft.RequestVoteResponse
	expectForged("vote", cli.RequestVote("node-1", target, &raft.RequestVoteRequest{RPCHeader: header("node-2"), Term: 50}, &vresp))
	done := make(chan error, 1)
	go func() {
		done <- cli.RequestVote("node-1", target, &raft.RequestVoteRequest{RPCHeader: header("node-3"), Term: 51}, &vresp)
	}()
	if rpc := received(); rpc.Command.(*raft.RequestVoteRequest).Term != 51 {
		t.Fatalf("consumer got %+v first, want the honest vote of term 51", rpc.Command)
	}
	if err := <-done; err != nil {
		t.Fatalf("honest vote: %v", err)
	}

	// Entries: forged, then honest with a 64-entry batch that arrives intact.
	var aresp raft.AppendEntriesResponse
	expectForged("append entries", cli.AppendEntries("node-1", target, appendRequest("node-2", 64, 300), &aresp))
	want := appendRequest("node-3", 64, 300)
	go func() { done <- cli.AppendEntries("node-1", target, want, &aresp) }()
	got := received().Command.(*raft.AppendEntriesRequest)
	if string(got.ID) != "node-3" || len(got.Entries) != 64 || !bytes.Equal(got.Entries[63].Data, want.Entries[63].Data) || got.Entries[63].Index != 164 {
		t.Fatalf("append entries arrived as ID %q with %d entries", got.ID, len(got.Entries))
	}
	if err := <-done; err != nil {
		t.Fatalf("honest append entries: %v", err)
	}

	// A heartbeat (the transport's fast path past the consumer).
	hb := func(id string) *raft.AppendEntriesRequest {
		return &raft.AppendEntriesRequest{RPCHeader: header(id), Term: 51}
	}
	expectForged("heartbeat", cli.AppendEntries("node-1", target, hb("node-2"), &aresp))
	if err := cli.AppendEntries("node-1", target, hb("node-3"), &aresp); err != nil || !aresp.Success {
		t.Fatalf("honest heartbeat: %v, %+v", err, aresp)
	}
	select {
	case rpc := <-heartbeats:
		if id := string(rpc.Command.(*raft.AppendEntriesRequest).ID); id != "node-3" {
			t.Fatalf("heartbeat handler got a heartbeat naming %q", id)
		}
	default:
		t.Fatal("the honest heartbeat did not reach the heartbeat handler")
	}
	if len(heartbeats) != 0 {
		t.Fatal("a second heartbeat reached the handler")
	}

	// A snapshot with its data.
	data := make([]byte, 3<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	snap := func(id string) *raft.InstallSnapshotRequest {
		return &raft.InstallSnapshotRequest{RPCHeader: header(id), SnapshotVersion: 1, Term: 51, LastLogIndex: 9, LastLogTerm: 5, Size: int64(len(data))}
	}
	var sresp raft.InstallSnapshotResponse
	expectForged("install snapshot", cli.InstallSnapshot("node-1", target, snap("node-2"), &sresp, bytes.NewReader(data)))
	go func() { done <- cli.InstallSnapshot("node-1", target, snap("node-3"), &sresp, bytes.NewReader(data)) }()
	select {
	case rpc := <-srv.Consumer():
		gotData, err := io.ReadAll(rpc.Reader)
		rpc.Respond(&raft.InstallSnapshotResponse{Term: 51, Success: true}, err)
		if err != nil || !bytes.Equal(gotData, data) {
			t.Fatalf("snapshot data: %d of %d bytes, equal %v, err %v", len(gotData), len(data), bytes.Equal(gotData, data), err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the honest snapshot did not arrive")
	}
	if err := <-done; err != nil || !sresp.Success {
		t.Fatalf("honest snapshot: %v, %+v", err, sresp)
	}

	// Pre-vote and timeout-now pass (the type bytes agree with the transport's).
	go func() {
		var r raft.RequestPreVoteResponse
		done <- cli.RequestPreVote("node-1", target, &raft.RequestPreVoteRequest{RPCHeader: header("node-3"), Term: 52}, &r)
	}()
	if _, ok := received().Command.(*raft.RequestPreVoteRequest); !ok {
		t.Fatal("the pre-vote did not arrive as one")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	go func() {
		var r raft.TimeoutNowResponse
		done <- cli.TimeoutNow("node-1", target, &raft.TimeoutNowRequest{RPCHeader: header("node-3")}, &r)
	}()
	if _, ok := received().Command.(*raft.TimeoutNowRequest); !ok {
		t.Fatal("the timeout-now did not arrive as one")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if c := layer.rejectedCounts(); c != [3]uint64{uint64(forged), 0, 0} {
		t.Errorf("rejected %v, want %d forged senders only", c, forged)
	}
	select {
	case rpc := <-srv.Consumer():
		t.Fatalf("an extra RPC reached the consumer: %+v", rpc.Command)
	default:
	}
}

// TestSenderCheckMalformedOverMutualTLS: an unknown rpc type and an
// array-encoded request close the connection, counted as malformed and
// not reported (no sender was claimed).
func TestSenderCheckMalformedOverMutualTLS(t *testing.T) {
	muxes := mtlsPeers(t, "node-1", "node-3")
	obs := make(chan PeerObservation, 4)
	layer := newRefusingLayer(muxes["node-1"].RaftLayer(), transport.PeerID, testLogger(t), 1<<20, func(o PeerObservation) { obs <- o })
	srv := newNetworkTransport(layer, muxes["node-1"].Addr().String(), 5*time.Second, logging.NewHCLog(testLogger(t), "raft"))
	defer srv.Close()
	dialer := muxes["node-3"].RaftLayer()
	defer dialer.Close()

	arr := []byte{rpcRequestVote}
	h := &codec.MsgpackHandle{}
	h.StructToArray = true
	var b bytes.Buffer
	if err := codec.NewEncoder(&b, h).Encode(&raft.RequestVoteRequest{RPCHeader: header("node-3"), Term: 3}); err != nil {
		t.Fatal(err)
	}
	arr = append(arr, b.Bytes()...)
	for i, req := range [][]byte{{9, 0x80}, arr} {
		c, err := dialer.Dial(raft.ServerAddress(muxes["node-1"].Addr().String()), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := bufio.NewReader(c).ReadByte(); err == nil {
			t.Fatalf("request %d: got a reply byte %#x, want the connection closed", i, n)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("request %d: the connection stayed open", i)
		}
		c.Close()
		if got := layer.rejectedCounts(); got != [3]uint64{0, uint64(i + 1), 0} {
			t.Fatalf("request %d: rejected %v", i, got)
		}
	}
	select {
	case <-srv.Consumer():
		t.Fatal("a malformed request reached the consumer")
	case o := <-obs:
		t.Fatalf("a malformed request was reported: %+v", o)
	default:
	}
}

// repeatConn is a net.Conn whose reads return data over and over.
type repeatConn struct {
	net.Conn // nil: the methods not defined here are not called
	data     []byte
	off      int
}

func (c *repeatConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}
func (c *repeatConn) Close() error { return nil }

// BenchmarkAppendEntriesCheck measures what the sender check costs the
// follower's receive path: the NetworkTransport's decoding loop
// (handleCommand: type byte, then the request decoded from a 256 KiB
// bufio.Reader) reads 64-entry AppendEntries, entries of 1 KiB (batch
// entries of a few signed envelopes) with an attestation, raw and through
// a checkedConn, from an in-process net.Pipe fed by a writer goroutine
// (pipe) and from memory (mem: the check's CPU cost alone). Compare the
// checked and raw ns/op (or, on a loaded machine, cpu-ns/op) of each
// source.
func BenchmarkAppendEntriesCheck(b *testing.B) {
	req := encodeRPC(b, rpcAppendEntries, appendRequest("n1", 64, 1024))
	for _, src := range []string{"pipe", "mem"} {
		for _, checked := range []bool{false, true} {
			b.Run(fmt.Sprintf("src=%s/checked=%v", src, checked), func(b *testing.B) {
				var conn net.Conn
				switch src {
				case "pipe":
					w, r := net.Pipe()
					defer w.Close()
					go func() {
						for range b.N {
							if _, err := w.Write(req); err != nil {
								return
							}
						}
					}()
					conn = r
				default:
					conn = &repeatConn{data: req}
				}
				if checked {
					l := newRefusingLayer(nil, nil, slog.New(slog.DiscardHandler), maxRequestBytes(64, DefaultMaxSnapshotBytes), nil)
					tc, _ := l.admitConn(conn, "n1")
					conn = newCheckedConn(tc, l.maxRequest)
				}
				defer conn.Close()
				br := bufio.NewReaderSize(conn, 256<<10)
				dec := codec.NewDecoder(br, &codec.MsgpackHandle{})
				b.SetBytes(int64(len(req)))
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				for range b.N {
					if _, err := br.ReadByte(); err != nil {
						b.Fatal(err)
					}
					var a raft.AppendEntriesRequest
					if err := dec.Decode(&a); err != nil {
						b.Fatal(err)
					}
					if len(a.Entries) != 64 {
						b.Fatal("short batch")
					}
				}
				// The process's CPU time per request (both goroutines with
				// src=pipe): less sensitive than ns/op to other load.
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
