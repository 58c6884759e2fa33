package raftengine

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// refusingLayer is the stream layer under the NetworkTransport. It refuses
// the connections of the members given to SetRefused (quarantined ones),
// in both directions, and closes the ones already open: their Raft RPCs
// (AppendEntries, votes, snapshots) never reach this node, and this node
// sends them none. A quarantined leader thus loses its followers, which
// elect another leader once the heartbeat timeout passes. The peer is
// identified by its verified certificate (peerID), never by what it says
// in a Raft message.
//
// Every connection it accepts checks the requests that arrive on it before
// the transport reads them (rpccheck.go): a request whose header names
// another server ID than the certificate's member, or one that is
// malformed or longer than maxRequest, closes the connection. So the
// sender Raft and the RPC inspector see is always the certificate's
// member.
type refusingLayer struct {
	raft.StreamLayer
	peerID     func(net.Conn) string
	log        *slog.Logger
	maxRequest int64
	// report, if set, receives an ObservedForgedSender for every request
	// refused for naming another sender; it must not block.
	report func(PeerObservation)
	// rejected counts the refused requests, per rejectReasons.
	rejected [len(rejectReasons)]atomic.Uint64

	mu      sync.Mutex
	refused map[string]bool
	conns   map[*trackedConn]struct{}
}

// newRefusingLayer wraps inner; requests longer than maxRequest bytes are
// refused (maxRequestBytes), forged senders go to report (may be nil).
func newRefusingLayer(inner raft.StreamLayer, peerID func(net.Conn) string, log *slog.Logger, maxRequest int64, report func(PeerObservation)) *refusingLayer {
	return &refusingLayer{StreamLayer: inner, peerID: peerID, log: log, maxRequest: maxRequest, report: report,
		refused: map[string]bool{}, conns: map[*trackedConn]struct{}{}}
}

// setRefused replaces the refused set and closes the open connections of
// its members.
func (l *refusingLayer) setRefused(ids []string) {
	l.mu.Lock()
	l.refused = make(map[string]bool, len(ids))
	for _, id := range ids {
		l.refused[id] = true
	}
	var closing []*trackedConn
	for c := range l.conns {
		if l.refused[c.peer] {
			closing = append(closing, c)
		}
	}
	l.mu.Unlock()
	for _, c := range closing {
		l.log.Warn("closing the raft connection of a refused member", "member", c.peer)
		_ = c.Close()
	}
}

// admit tracks c, or closes it and reports false if its peer is refused.
func (l *refusingLayer) admit(c net.Conn) (*trackedConn, bool) {
	return l.admitConn(c, l.peerID(c))
}

// admitConn is admit for a connection of member id.
func (l *refusingLayer) admitConn(c net.Conn, id string) (*trackedConn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refused[id] {
		_ = c.Close()
		return nil, false
	}
	tc := &trackedConn{Conn: c, peer: id, l: l}
	l.conns[tc] = struct{}{}
	return tc, true
}

func (l *refusingLayer) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// Accept returns the next connection from a member that is not refused.
func (l *refusingLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		id := l.peerID(c)
		if tc, ok := l.admitConn(c, id); ok {
			return newCheckedConn(tc, l.maxRequest), nil
		}
		l.log.Debug("refused a raft connection from a quarantined member", "member", id)
	}
}

// reject closes c, whose request the check refused, logs and counts it
// and reports a forged sender. The member blamed is c's certificate's,
// never the one the request names.
func (l *refusingLayer) reject(c *trackedConn, rej *rpcRejection) {
	for i, r := range rejectReasons {
		if r == rej.reason {
			l.rejected[i].Add(1)
		}
	}
	_ = c.Close()
	if rej.reason == rejectForged {
		l.log.Warn("closed a raft connection: its request names another sender than its certificate",
			"member", c.peer, "claimed", rej.claimed, "rpc_type", rej.rpcType)
		if l.report != nil {
			l.report(PeerObservation{Kind: ObservedForgedSender, From: c.peer, Claimed: rej.claimed, RPCType: rej.rpcType})
		}
		return
	}
	l.log.Warn("closed a raft connection: refused request", "member", c.peer, "reason", rej.reason, "error", rej)
}

// rejectedCounts returns the refused requests per rejectReasons.
func (l *refusingLayer) rejectedCounts() [len(rejectReasons)]uint64 {
	var out [len(rejectReasons)]uint64
	for i := range out {
		out[i] = l.rejected[i].Load()
	}
	return out
}

// Dial connects to address unless the peer there is refused.
func (l *refusingLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := l.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	tc, ok := l.admit(c)
	if !ok {
		return nil, fmt.Errorf("raft engine: %s is a refused (quarantined) member", address)
	}
	return tc, nil
}

// trackedConn removes itself from its layer when closed.
type trackedConn struct {
	net.Conn
	peer string
	l    *refusingLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}
