package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// TestTransportDropsBadFrames: a committee member's connection that sends
// an unknown frame kind and a malformed message gets them dropped and
// counted while the connection stays up (a later valid frame still
// arrives); an oversized frame closes the connection; a node outside the
// committee is refused. The cluster keeps committing throughout.
func TestTransportDropsBadFrames(t *testing.T) {
	c := newCluster(t, 4, nil)
	target := c.nodes[0]
	c.mustWrite(target, "before", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A node certificate of the same CA for a member ID, on another port.
	// (The cluster's CA issued the members' certificates: reuse it.)
	member := c.pki.mux(t, "node-2")
	conn, err := member.DialBFT(ctx, target.mux.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := awaitHello(conn); err != nil {
		t.Fatalf("member connection not greeted: %v", err)
	}
	before := target.e.Stats()
	write := func(b []byte) {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(encodeFrame(42, []byte("what is this")))
	write(encodeFrame(frameMessage, []byte{1, 99, 0}))
	write(encodeU64Frame(frameViewChange, 0)) // valid, ignored (not the current view)
	waitFor(t, 5*time.Second, "bad frames counted", func() (bool, string) {
		s := target.e.Stats()
		return s.UnknownKind > before.UnknownKind && s.Malformed > before.Malformed && s.FramesIn >= before.FramesIn+3,
			"stats " + statsString(s)
	})
	write(binary.BigEndian.AppendUint32(nil, uint32(DefaultMaxFrameBytes+1)))
	waitFor(t, 5*time.Second, "oversized frame closes the connection", func() (bool, string) {
		return target.e.Stats().Oversize > before.Oversize, statsString(target.e.Stats())
	})
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("after an oversized frame the connection should end cleanly: %v", err)
	}

	intruder := c.pki.mux(t, "intruder")
	ic, err := intruder.DialBFT(ctx, target.mux.Addr().String())
	if err == nil {
		if err := awaitHello(ic); err == nil {
			t.Fatal("a node outside the committee was greeted")
		}
		ic.Close()
	}
	waitFor(t, 5*time.Second, "intruder refused", func() (bool, string) {
		return target.e.Stats().RefusedPeers > before.RefusedPeers, statsString(target.e.Stats())
	})
	c.mustWrite(target, "after", "2")
}

func statsString(s Stats) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestRestartedPeerEndsConnections: when a peer's engine restarts, the
// others' outgoing connections to it end, and that is counted where the
// omission rule reads it (netDrops): a command written to the old
// connection just before it broke may be lost, so a vote that reached the
// peer afterwards on a new connection proves nothing about it.
func TestRestartedPeerEndsConnections(t *testing.T) {
	c := newCluster(t, 4, nil)
	observer, peer := c.nodes[0], c.nodes[1]
	c.mustWrite(observer, "before", "1")
	before, drops := observer.e.Stats().ConnsEnded, observer.e.netDrops()
	c.stop(peer)
	c.start(peer)
	c.mustWrite(observer, "after", "2")
	waitFor(t, 10*time.Second, "the connection to the restarted peer counted as ended", func() (bool, string) {
		s := observer.e.Stats()
		return s.ConnsEnded > before && observer.e.netDrops() > drops, statsString(s)
	})
}
