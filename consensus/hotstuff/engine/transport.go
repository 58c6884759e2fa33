package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Network is what the engine needs from the node's peer port: outbound BFT
// connections to a peer address and the listener of inbound ones. Both must
// be mutually authenticated; Config.PeerID names the verified peer of a
// connection. *transport.Mux implements Network.
type Network interface {
	DialBFT(ctx context.Context, addr string) (net.Conn, error)
	BFTListener() net.Listener
}

// Transport timing.
const (
	dialTimeout    = 5 * time.Second
	writeTimeout   = 10 * time.Second
	minBackoff     = 20 * time.Millisecond
	maxBackoff     = 500 * time.Millisecond
	readBufferSize = 64 << 10
)

// netCounters counts transport events; all fields are updated atomically.
type netCounters struct {
	framesIn, framesOut                atomic.Uint64
	droppedQueue, droppedWrite         atomic.Uint64
	malformed, unknownKind, oversize   atomic.Uint64
	rejectedPeers, dials, dialFailures atomic.Uint64
	bytesIn, bytesOut                  atomic.Uint64
	// connsEnded counts the outgoing connections that ended while the
	// transport ran: frames written to one just before it broke may be
	// lost without a write error (in the kernel's buffers, or buffered
	// when a flush failed).
	connsEnded atomic.Uint64
}

// inbound is a decoded frame and its authenticated sender.
type inbound struct {
	from types.NodeID
	f    frame
}

// sendQueue is a bounded FIFO of encoded frames for one peer. When it is
// full the oldest frames are dropped: consensus messages lose value with
// age, and the protocol recovers lost ones (timeouts are re-sent, blocks are
// fetched).
type sendQueue struct {
	mu       sync.Mutex
	frames   [][]byte
	bytes    int
	maxLen   int
	maxBytes int
	notify   chan struct{} // capacity 1: "something was queued"
}

func newSendQueue(maxLen, maxBytes int) *sendQueue {
	return &sendQueue{maxLen: maxLen, maxBytes: maxBytes, notify: make(chan struct{}, 1)}
}

// push appends f and returns how many older frames were dropped to make
// room.
func (q *sendQueue) push(f []byte) (dropped int) {
	q.mu.Lock()
	q.frames = append(q.frames, f)
	q.bytes += len(f)
	for len(q.frames) > 1 && (len(q.frames) > q.maxLen || q.bytes > q.maxBytes) {
		q.bytes -= len(q.frames[0])
		q.frames[0] = nil
		q.frames = q.frames[1:]
		dropped++
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return dropped
}

// take removes and returns every queued frame.
func (q *sendQueue) take() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.frames
	q.frames, q.bytes = nil, 0
	return out
}

// peerNet is the engine's BFT transport: one long-lived outbound connection
// per peer (redialled with backoff) fed by a bounded queue, and a reader per
// inbound connection that decodes frames and hands them to the engine's
// loop. All methods are safe for concurrent use.
type peerNet struct {
	self     types.NodeID
	network  Network
	peerID   func(net.Conn) string
	members  map[types.NodeID]bool
	maxFrame int
	log      *slog.Logger
	stats    *netCounters
	// precheck runs in the reader goroutine on every decoded frame before
	// it is queued for the loop; it returns false to drop the frame (it
	// counts what it drops). It lets signature checks run in parallel,
	// outside the loop.
	precheck func(from types.NodeID, f *frame) bool

	queues map[types.NodeID]*sendQueue
	wake   map[types.NodeID]chan struct{} // capacity 1: "retry the dial now"
	addrs  map[types.NodeID]string
	inbox  chan inbound

	stop chan struct{}
	wg   sync.WaitGroup

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

type peerNetConfig struct {
	self       types.NodeID
	network    Network
	peerID     func(net.Conn) string
	addrs      map[types.NodeID]string // every member's peer address
	maxFrame   int
	queueLen   int
	queueBytes int
	inboxLen   int
	log        *slog.Logger
	stats      *netCounters
	precheck   func(from types.NodeID, f *frame) bool
}

func newPeerNet(c peerNetConfig) *peerNet {
	p := &peerNet{
		self:     c.self,
		network:  c.network,
		peerID:   c.peerID,
		members:  map[types.NodeID]bool{},
		maxFrame: c.maxFrame,
		log:      c.log,
		stats:    c.stats,
		precheck: c.precheck,
		queues:   map[types.NodeID]*sendQueue{},
		wake:     map[types.NodeID]chan struct{}{},
		addrs:    c.addrs,
		inbox:    make(chan inbound, c.inboxLen),
		stop:     make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
	}
	for id := range c.addrs {
		p.members[id] = true
		if id != c.self {
			p.queues[id] = newSendQueue(c.queueLen, c.queueBytes)
			p.wake[id] = make(chan struct{}, 1)
		}
	}
	return p
}

// start begins accepting inbound connections on ln and dialling every peer.
func (p *peerNet) start(ln net.Listener) {
	p.wg.Add(1)
	go p.acceptLoop(ln)
	for id, q := range p.queues {
		p.wg.Add(1)
		go p.sendLoop(id, p.addrs[id], q)
	}
}

// close stops every goroutine, closes the listener's connections and the
// dialled ones, and waits. Frames still queued are discarded.
func (p *peerNet) close(ln net.Listener) {
	p.connMu.Lock()
	if p.closed {
		p.connMu.Unlock()
		return
	}
	p.closed = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.connMu.Unlock()
	close(p.stop)
	_ = ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}

// track registers c so close can close it; it reports false (and closes
// c) once the net is closed.
func (p *peerNet) track(c net.Conn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *peerNet) untrack(c net.Conn) {
	p.connMu.Lock()
	delete(p.conns, c)
	p.connMu.Unlock()
	_ = c.Close()
}

// send queues an encoded frame for peer to. Unknown peers and this node
// itself are ignored.
func (p *peerNet) send(to types.NodeID, f []byte) {
	q, ok := p.queues[to]
	if !ok {
		return
	}
	if d := q.push(f); d > 0 {
		p.stats.droppedQueue.Add(uint64(d))
	}
}

// broadcast queues an encoded frame for every peer.
func (p *peerNet) broadcast(f []byte) {
	for id := range p.queues {
		p.send(id, f)
	}
}

func (p *peerNet) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.stop:
		return false
	case <-t.C:
		return true
	}
}

// backoff waits d before the next dial of peer id, or less when the peer
// connects to this node meanwhile (it is up again). It reports false when
// the net stops.
func (p *peerNet) backoff(id types.NodeID, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.stop:
		return false
	case <-t.C:
	case <-p.wake[id]:
	}
	return true
}

// poke tells the sender of peer id that the peer is reachable now.
func (p *peerNet) poke(id types.NodeID) {
	if ch, ok := p.wake[id]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// sendLoop keeps one connection to peer id open and writes its queue.
func (p *peerNet) sendLoop(id types.NodeID, addr string, q *sendQueue) {
	defer p.wg.Done()
	backoff := minBackoff
	failures := 0
	// retry counts a failed attempt, logs the first and every 50th, and
	// waits out the backoff; false means the transport is stopping.
	retry := func(msg string, err error) bool {
		p.stats.dialFailures.Add(1)
		failures++
		if failures == 1 || failures%50 == 0 {
			p.log.Debug(msg, "peer", string(id), "addr", addr, "attempts", failures, "err", err)
		}
		if !p.backoff(id, backoff) {
			return false
		}
		backoff = min(2*backoff, maxBackoff)
		return true
	}
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		conn, err := p.dial(addr)
		if err == nil {
			if got := types.NodeID(p.peerID(conn)); got != id {
				p.stats.rejectedPeers.Add(1)
				p.log.Warn("BFT peer presented another node's certificate; disconnecting", "peer", string(id), "addr", addr, "presented", string(got))
				_ = conn.Close()
				err = errors.New("wrong peer")
			}
		}
		if err != nil {
			if !retry("cannot reach BFT peer; retrying", err) {
				return
			}
			continue
		}
		if !p.track(conn) {
			return
		}
		if err := awaitHello(conn); err != nil {
			// The peer's engine is not taking BFT connections (yet): its
			// node closed the connection. Frames written now would be lost.
			p.untrack(conn)
			if !retry("BFT peer did not accept the connection; retrying", err) {
				return
			}
			continue
		}
		if failures > 0 {
			p.log.Debug("connected to BFT peer", "peer", string(id), "addr", addr, "after_attempts", failures)
		}
		backoff, failures = minBackoff, 0
		// The peer never writes after its hello: a read returns when the
		// connection dies, and closing it then makes the writer notice at
		// once instead of at its next write.
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(io.Discard, conn)
			_ = conn.Close()
		}()
		p.writeLoop(conn, q)
		p.untrack(conn)
		select {
		case <-p.stop:
		default:
			p.stats.connsEnded.Add(1)
		}
	}
}

// hello is the byte an accepting engine writes on a new BFT connection once
// it reads from it; the dialler writes no frame before it arrives, so no
// frame is lost to a node whose engine is not running yet.
const hello byte = 0x01

// awaitHello reads the acceptor's hello byte within the dial timeout.
func awaitHello(conn net.Conn) error {
	_ = conn.SetReadDeadline(time.Now().Add(dialTimeout))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return fmt.Errorf("waiting for the peer's hello: %w", err)
	}
	if b[0] != hello {
		return fmt.Errorf("peer sent %#x instead of the hello byte", b[0])
	}
	_ = conn.SetReadDeadline(time.Time{})
	return nil
}

func (p *peerNet) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	p.stats.dials.Add(1)
	return p.network.DialBFT(ctx, addr)
}

// writeLoop writes queued frames to conn until a write fails or the net
// stops.
func (p *peerNet) writeLoop(conn net.Conn, q *sendQueue) {
	w := bufio.NewWriterSize(conn, readBufferSize)
	for {
		frames := q.take()
		if len(frames) == 0 {
			select {
			case <-p.stop:
				return
			case <-q.notify:
				continue
			}
		}
		_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		for i, f := range frames {
			if _, err := w.Write(f); err != nil {
				p.stats.droppedWrite.Add(uint64(len(frames) - i))
				return
			}
			p.stats.framesOut.Add(1)
			p.stats.bytesOut.Add(uint64(len(f)))
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func (p *peerNet) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-p.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !p.sleep(minBackoff) {
				return
			}
			continue
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.readLoop(c)
	}
}

// readLoop decodes frames from an inbound connection and hands them to the
// loop. Only members other than this node may send; anything else closes
// the connection.
func (p *peerNet) readLoop(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	from := types.NodeID(p.peerID(c))
	if from == "" || from == p.self || !p.members[from] {
		p.stats.rejectedPeers.Add(1)
		p.log.Warn("refusing BFT connection from a node outside the committee", "peer", string(from), "remote", c.RemoteAddr().String())
		return
	}
	p.poke(from)
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write([]byte{hello}); err != nil {
		p.log.Debug("cannot greet BFT peer", "peer", string(from), "err", err)
		return
	}
	r := bufio.NewReaderSize(c, readBufferSize)
	for {
		kind, payload, err := readFrame(r, p.maxFrame)
		if err != nil {
			if errors.Is(err, ErrFrameTooLarge) {
				p.stats.oversize.Add(1)
				p.log.Warn("BFT peer sent an oversized frame; closing its connection", "peer", string(from), "err", err)
			} else if !errors.Is(err, io.EOF) {
				select {
				case <-p.stop:
				default:
					p.log.Debug("BFT connection ended", "peer", string(from), "err", err)
				}
			}
			return
		}
		p.stats.framesIn.Add(1)
		p.stats.bytesIn.Add(uint64(frameHeader + 1 + len(payload)))
		f, err := decodeFrame(kind, payload)
		if err != nil {
			if errors.Is(err, ErrUnknownFrame) {
				p.stats.unknownKind.Add(1)
			} else {
				p.stats.malformed.Add(1)
			}
			p.log.Debug("dropping BFT frame", "peer", string(from), "err", err)
			continue
		}
		if p.precheck != nil && !p.precheck(from, &f) {
			continue
		}
		select {
		case p.inbox <- inbound{from: from, f: f}:
		case <-p.stop:
			return
		}
	}
}
