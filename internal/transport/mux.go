package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Protocol bytes: the first byte a dialler writes after the TLS handshake.
const (
	ProtoRaft byte = 'R' // Raft RPC stream (hashicorp/raft NetworkTransport)
	// ProtoRaftEpoch is a Raft RPC stream of one epoch: the byte is
	// followed by the epoch number (uint64, big-endian), and the stream is
	// delivered only to a layer of that epoch, so Raft clusters of
	// different epochs on the same nodes never exchange a message.
	ProtoRaftEpoch byte = 'E'
	ProtoRPC       byte = 'F' // forwarding RPC (HTTP/1.1 inside the TLS session)
	ProtoBFT       byte = 'H' // BFT (HotStuff) consensus messages, framed
)

// NodeOU is the certificate OrganizationalUnit that marks a node
// certificate; DefaultPeerID accepts only certificates that carry it.
const NodeOU = "tandem-node"

// DefaultHandshakeTimeout bounds the TLS handshake plus the protocol byte of
// an accepted connection, and how long it may wait to be accepted.
const DefaultHandshakeTimeout = 10 * time.Second

// Config configures a Mux. Listen fills it from its arguments.
type Config struct {
	// Addr is the TCP listen address, host:port (port 0 picks one).
	Addr string
	// ServerTLS authenticates accepted connections. It must require and
	// verify client certificates (tls.RequireAndVerifyClientCert).
	ServerTLS *tls.Config
	// ClientTLS authenticates dialled connections; it must carry this
	// node's certificate. If it sets no ServerName and does not skip host
	// verification, the host of the dialled address is used.
	ClientTLS *tls.Config
	// Logger receives connection-level warnings. Default: slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds the handshake and protocol byte of an accepted
	// connection and the handshake of a dialled one when the caller gives no
	// earlier deadline. Default: DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// PeerID returns the node ID of the verified peer of a completed
	// handshake, or an error if the peer must be refused. It runs after
	// crypto/tls has verified the chain, on both accepted and dialled
	// connections. Default: DefaultPeerID.
	PeerID func(tls.ConnectionState) (string, error)
	// ExpectedPeer, when set, names the node that should answer at a
	// dialled address (from the current membership); a server presenting
	// another node's certificate is refused. ok=false means the address is
	// not known, and any node certificate is accepted.
	ExpectedPeer func(addr string) (id string, ok bool)
}

// Validate reports the first problem of c, naming the field.
func (c *Config) Validate() error {
	if c.Addr == "" {
		return errors.New("transport: listen address is empty")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("transport: listen address %q is not host:port: %w", c.Addr, err)
	}
	if c.ServerTLS == nil {
		return errors.New("transport: server TLS configuration is nil")
	}
	if c.ServerTLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return fmt.Errorf("transport: server TLS must require and verify client certificates (ClientAuth is %v, want RequireAndVerifyClientCert)", c.ServerTLS.ClientAuth)
	}
	if c.ClientTLS == nil {
		return errors.New("transport: client TLS configuration is nil")
	}
	if len(c.ClientTLS.Certificates) == 0 && c.ClientTLS.GetClientCertificate == nil {
		return errors.New("transport: client TLS configuration has no certificate to present")
	}
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("transport: handshake timeout %s is negative", c.HandshakeTimeout)
	}
	return nil
}

// DefaultPeerID returns the CommonName of the peer's leaf certificate if the
// certificate is a node certificate (OrganizationalUnit NodeOU). It does not
// verify the chain: crypto/tls has done that before it is called.
func DefaultPeerID(cs tls.ConnectionState) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.Subject.OrganizationalUnit, NodeOU) {
		return "", fmt.Errorf("peer certificate %q is not a node certificate (organizational unit %v, want %q)",
			leaf.Subject.CommonName, leaf.Subject.OrganizationalUnit, NodeOU)
	}
	if leaf.Subject.CommonName == "" {
		return "", errors.New("peer node certificate has an empty common name")
	}
	return leaf.Subject.CommonName, nil
}

// Stats counts connection events since the Mux started. A counter is
// updated just after the event, so a consumer that has just accepted a
// connection may not see it counted yet.
type Stats struct {
	Accepted          uint64 // TCP connections accepted
	HandshakeFailures uint64 // accepted connections whose TLS handshake failed or timed out
	RejectedPeers     uint64 // handshakes that succeeded but PeerID refused the certificate
	UnknownProtocol   uint64 // connections whose first byte was not a known protocol
	Undelivered       uint64 // connections dropped because no consumer accepted them in time
	RaftConns         uint64 // connections handed to the Raft layer
	RPCConns          uint64 // connections handed to the RPC listener
	BFTConns          uint64 // connections handed to the BFT listener
}

// Mux is one mutual-TLS listener shared by Raft and forwarding RPCs. All
// methods are safe for concurrent use.
type Mux struct {
	ln        net.Listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	logger    *slog.Logger
	hsTimeout time.Duration
	peerID    func(tls.ConnectionState) (string, error)
	expected  func(addr string) (string, bool)

	conns *connSet // every live connection accepted or dialled
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup // accept loop and handshake goroutines

	mu   sync.Mutex
	raft *streamLayer // current Raft layer, nil until asked for
	rpc  *listener    // current RPC listener, nil until asked for
	bft  *listener    // current BFT listener, nil until asked for

	httpTransport *http.Transport
	httpClient    *http.Client

	accepted, hsFailures, rejected, unknown, undelivered, raftConns, rpcConns, bftConns atomic.Uint64
}

// Listen opens a Mux on addr with the given TLS configurations and the
// defaults of Config for everything else.
func Listen(addr string, serverTLS, clientTLS *tls.Config, logger *slog.Logger) (*Mux, error) {
	return ListenConfig(Config{Addr: addr, ServerTLS: serverTLS, ClientTLS: clientTLS, Logger: logger})
}

// ListenConfig opens a Mux as configured by cfg.
func ListenConfig(cfg Config) (*Mux, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.PeerID == nil {
		cfg.PeerID = DefaultPeerID
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.Addr, err)
	}
	m := &Mux{
		ln:        ln,
		serverTLS: cfg.ServerTLS.Clone(),
		clientTLS: cfg.ClientTLS.Clone(),
		logger:    cfg.Logger.With("component", "transport"),
		hsTimeout: cfg.HandshakeTimeout,
		peerID:    cfg.PeerID,
		expected:  cfg.ExpectedPeer,
		conns:     newConnSet(),
		done:      make(chan struct{}),
	}
	m.httpTransport = &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return m.DialRPC(ctx, addr)
		},
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	m.httpClient = &http.Client{Transport: m.httpTransport}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr returns the address the Mux listens on (with the chosen port).
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Stats returns a snapshot of the connection counters.
func (m *Mux) Stats() Stats {
	return Stats{
		Accepted:          m.accepted.Load(),
		HandshakeFailures: m.hsFailures.Load(),
		RejectedPeers:     m.rejected.Load(),
		UnknownProtocol:   m.unknown.Load(),
		Undelivered:       m.undelivered.Load(),
		RaftConns:         m.raftConns.Load(),
		RPCConns:          m.rpcConns.Load(),
		BFTConns:          m.bftConns.Load(),
	}
}

// Close stops the listener, closes every connection accepted or dialled
// through the Mux, unblocks Accept callers with net.ErrClosed, and waits for
// the Mux's goroutines to exit. It is idempotent.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.ln.Close()
		m.httpTransport.CloseIdleConnections()
		m.conns.closeAll()
		m.wg.Wait()
	})
	return err
}

func (m *Mux) closed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// RaftLayer returns the stream layer for Raft traffic. There is one active
// layer at a time; once it is closed (its engine stopped) the next call
// returns a fresh one, so a new engine can use the same port. Conns that
// arrive while no layer is open are dropped.
func (m *Mux) RaftLayer() raft.StreamLayer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.raft == nil || m.raft.isClosed() || m.raft.tagged {
		if m.raft != nil {
			m.raft.Close()
		}
		m.raft = &streamLayer{listener: newListener(m, true)}
	}
	return m.raft
}

// RaftLayerEpoch returns the stream layer for the Raft traffic of epoch:
// its connections carry the epoch (ProtoRaftEpoch) and it accepts only
// connections of the same epoch. A layer of another epoch, or an untagged
// one, is closed and replaced.
func (m *Mux) RaftLayerEpoch(epoch uint64) raft.StreamLayer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.raft == nil || m.raft.isClosed() || !m.raft.tagged || m.raft.epoch != epoch {
		if m.raft != nil {
			m.raft.Close()
		}
		m.raft = &streamLayer{listener: newListener(m, true), tagged: true, epoch: epoch}
	}
	return m.raft
}

// RPCListener returns the listener of forwarding-RPC connections (serve
// HTTP on it). As with RaftLayer, a closed listener is replaced on the next
// call. Closing it does not close connections already accepted.
func (m *Mux) RPCListener() net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rpc == nil || m.rpc.isClosed() {
		m.rpc = newListener(m, false)
	}
	return m.rpc
}

// BFTListener returns the listener of BFT consensus connections. As with
// RPCListener, a closed listener is replaced on the next call.
func (m *Mux) BFTListener() net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bft == nil || m.bft.isClosed() {
		m.bft = newListener(m, false)
	}
	return m.bft
}

// DialBFT dials a BFT consensus connection to the Mux at addr. The context
// bounds the dial and the handshake.
func (m *Mux) DialBFT(ctx context.Context, addr string) (net.Conn, error) {
	c, err := m.dial(ctx, addr, ProtoBFT)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialRPC dials a forwarding-RPC connection to the Mux at addr. The context
// bounds the dial and the handshake.
func (m *Mux) DialRPC(ctx context.Context, addr string) (net.Conn, error) {
	c, err := m.dial(ctx, addr, ProtoRPC)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// RPCHTTPClient returns an HTTP client whose connections are forwarding-RPC
// connections of this Mux: request URLs name the peer address
// ("http://10.0.0.2:7001/internal/..."); mutual TLS is underneath. The
// client has no overall timeout; bound requests with their context. Its idle
// connections are closed by Mux.Close.
func (m *Mux) RPCHTTPClient() *http.Client { return m.httpClient }

// dial opens a TCP connection to addr, completes the TLS handshake as a
// client, checks the server's node ID and writes the protocol byte.
func (m *Mux) dial(ctx context.Context, addr string, proto byte) (*Conn, error) {
	return m.dialHeader(ctx, addr, []byte{proto})
}

// dialHeader is dial with a longer header: the protocol byte and what that
// protocol sends before its stream.
func (m *Mux) dialHeader(ctx context.Context, addr string, header []byte) (*Conn, error) {
	if m.closed() {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, net.ErrClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.hsTimeout)
		defer cancel()
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	cfg := m.clientTLS
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		host, _, _ := net.SplitHostPort(addr)
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	c := &Conn{Conn: tc}
	if !c.join(m.conns) {
		raw.Close()
		return nil, fmt.Errorf("transport: dial %s: %w", addr, net.ErrClosed)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: TLS handshake with %s: %w", addr, err)
	}
	id, err := m.peerID(tc.ConnectionState())
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: refusing server at %s: %w", addr, err)
	}
	if m.expected != nil {
		if want, ok := m.expected(addr); ok && want != id {
			c.Close()
			return nil, fmt.Errorf("transport: %s should be node %q but presented the certificate of node %q", addr, want, id)
		}
	}
	c.peerID = id
	if dl, ok := ctx.Deadline(); ok {
		tc.SetWriteDeadline(dl)
	}
	if _, err := tc.Write(header); err != nil {
		c.Close()
		return nil, fmt.Errorf("transport: send protocol byte to %s: %w", addr, err)
	}
	tc.SetWriteDeadline(time.Time{})
	return c, nil
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			if m.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (e.g. out of file descriptors): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.logger.Warn("accept failed; retrying", "error", err, "retry_in", delay)
			select {
			case <-m.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		m.accepted.Add(1)
		m.wg.Add(1)
		go m.serveConn(raw)
	}
}

// serveConn completes the handshake of an accepted connection, reads the
// protocol byte and hands the connection to its consumer, all within the
// handshake timeout.
func (m *Mux) serveConn(raw net.Conn) {
	defer m.wg.Done()
	tc := tls.Server(raw, m.serverTLS)
	c := &Conn{Conn: tc}
	if !c.join(m.conns) {
		raw.Close()
		return
	}
	deadline := time.Now().Add(m.hsTimeout)
	raw.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	remote := raw.RemoteAddr().String()
	if err := tc.HandshakeContext(ctx); err != nil {
		m.hsFailures.Add(1)
		if !m.closed() {
			m.logger.Warn("peer TLS handshake failed", "remote", remote, "error", err)
		}
		c.Close()
		return
	}
	id, err := m.peerID(tc.ConnectionState())
	if err != nil {
		m.rejected.Add(1)
		m.logger.Warn("refusing peer", "remote", remote, "error", err)
		c.Close()
		return
	}
	c.peerID = id
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil {
		m.hsFailures.Add(1)
		if !m.closed() {
			m.logger.Warn("peer sent no protocol byte", "remote", remote, "peer", id, "error", err)
		}
		c.Close()
		return
	}
	var epoch uint64
	if b[0] == ProtoRaftEpoch {
		var e [8]byte
		if _, err := io.ReadFull(tc, e[:]); err != nil {
			m.hsFailures.Add(1)
			if !m.closed() {
				m.logger.Warn("peer sent no Raft epoch", "remote", remote, "peer", id, "error", err)
			}
			c.Close()
			return
		}
		epoch = binary.BigEndian.Uint64(e[:])
	}
	raw.SetDeadline(time.Time{})

	var l *listener
	m.mu.Lock()
	switch b[0] {
	case ProtoRaft:
		if m.raft != nil && !m.raft.tagged {
			l = m.raft.listener
		}
	case ProtoRaftEpoch:
		if m.raft != nil && m.raft.tagged && m.raft.epoch == epoch {
			l = m.raft.listener
		}
	case ProtoRPC:
		l = m.rpc
	case ProtoBFT:
		l = m.bft
	default:
		m.mu.Unlock()
		m.unknown.Add(1)
		m.logger.Warn("unknown protocol byte; closing connection", "remote", remote, "peer", id, "byte", b[0])
		c.Close()
		return
	}
	m.mu.Unlock()
	if l == nil || !l.deliver(c, deadline) {
		m.undelivered.Add(1)
		if !m.closed() {
			m.logger.Debug("no consumer for connection; closing it", "remote", remote, "peer", id, "protocol", string(b[0]))
		}
		c.Close()
		return
	}
	switch b[0] {
	case ProtoRaft, ProtoRaftEpoch:
		m.raftConns.Add(1)
	case ProtoRPC:
		m.rpcConns.Add(1)
	case ProtoBFT:
		m.bftConns.Add(1)
	}
}

// listener hands connections of one protocol to Accept callers.
type listener struct {
	m         *Mux
	ch        chan *Conn
	done      chan struct{}
	once      sync.Once
	conns     *connSet // connections accepted or dialled through this listener, when owned
	ownsConns bool
}

func newListener(m *Mux, ownsConns bool) *listener {
	return &listener{m: m, ch: make(chan *Conn), done: make(chan struct{}), conns: newConnSet(), ownsConns: ownsConns}
}

// deliver hands c to an Accept caller, waiting until the deadline. It
// reports false if nobody took c.
func (l *listener) deliver(c *Conn, deadline time.Time) bool {
	if l.ownsConns && !c.join(l.conns) {
		return false
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case l.ch <- c:
		return true
	case <-l.done:
	case <-l.m.done:
	case <-t.C:
	}
	return false
}

// Accept waits for the next connection. After Close (of the listener or of
// the Mux) it returns an error wrapping net.ErrClosed.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
	case <-l.m.done:
	}
	return nil, fmt.Errorf("transport: accept: %w", net.ErrClosed)
}

// Close stops the listener. For the Raft layer it also closes every
// connection accepted or dialled through it. Idempotent.
func (l *listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		if l.ownsConns {
			l.conns.closeAll()
		}
	})
	return nil
}

func (l *listener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Addr returns the Mux's listen address.
func (l *listener) Addr() net.Addr { return l.m.ln.Addr() }

// streamLayer is the raft.StreamLayer of a Mux.
type streamLayer struct {
	*listener
	tagged bool   // connections carry epoch (ProtoRaftEpoch)
	epoch  uint64 // the epoch, when tagged
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// Dial opens a Raft connection to the Mux at address.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, net.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	header := []byte{ProtoRaft}
	if s.tagged {
		header = binary.BigEndian.AppendUint64([]byte{ProtoRaftEpoch}, s.epoch)
	}
	c, err := s.m.dialHeader(ctx, string(address), header)
	if err != nil {
		return nil, err
	}
	if !c.join(s.conns) {
		c.Close()
		return nil, fmt.Errorf("transport: raft dial %s: %w", address, net.ErrClosed)
	}
	return c, nil
}

// Conn is a connection of the Mux: a TLS connection whose handshake is
// complete and whose peer presented a certificate accepted by Config.PeerID.
type Conn struct {
	*tls.Conn
	peerID string

	mu     sync.Mutex
	closed bool
	sets   []*connSet
	once   sync.Once
	err    error
}

// PeerID returns the verified node ID of the peer.
func (c *Conn) PeerID() string { return c.peerID }

// Read reads from the TLS connection. A read that fails because this side
// closed the connection (Close, or the layer or Mux closing it) returns
// io.EOF, so consumers treat a local shutdown as an orderly end of stream.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && errors.Is(err, net.ErrClosed) {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			err = io.EOF
		}
	}
	return n, err
}

// Close closes the connection. Idempotent.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		sets := c.sets
		c.sets = nil
		c.mu.Unlock()
		for _, s := range sets {
			s.remove(c)
		}
		c.err = c.Conn.Close()
	})
	return c.err
}

// join registers c in s so that s.closeAll closes it. It reports false if c
// or s is already closed.
func (c *Conn) join(s *connSet) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !s.add(c) {
		return false
	}
	c.sets = append(c.sets, s)
	return true
}

// PeerID returns the verified node ID of the peer of a connection obtained
// from this package, or "" for any other connection.
func PeerID(c net.Conn) string {
	if tc, ok := c.(*Conn); ok {
		return tc.peerID
	}
	return ""
}

type peerKey struct{}

// ConnContext is meant for http.Server.ConnContext on the RPC listener: it
// stores the connection's verified peer node ID in the request context
// (read it with PeerIDFromContext).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, PeerID(c))
}

// PeerIDFromContext returns the peer node ID stored by ConnContext, or "".
func PeerIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(peerKey{}).(string)
	return id
}

// connSet tracks live connections so they can be closed together.
type connSet struct {
	mu     sync.Mutex
	closed bool
	m      map[*Conn]struct{}
}

func newConnSet() *connSet { return &connSet{m: make(map[*Conn]struct{})} }

func (s *connSet) add(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c *Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// closeAll marks s closed (later adds fail) and closes its connections.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*Conn, 0, len(s.m))
	for c := range s.m {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
