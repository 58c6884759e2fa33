package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/testlog"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/internal/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a throw-away cluster CA in a temporary directory.
type pki struct {
	dir string
	ca  *identity.CA
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := identity.CreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{dir: dir, ca: ca}
}

// node returns the peer TLS configurations of a node certificate for id.
func (p *pki) node(t *testing.T, id string) (server, client *tls.Config) {
	t.Helper()
	certPEM, keyPEM, err := p.ca.IssueNode(id, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(p.dir, id+".pem"), filepath.Join(p.dir, id+"-key.pem")
	if err := identity.WriteCertPair(cert, key, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	server, client, err = identity.PeerTLS(filepath.Join(p.dir, "ca.pem"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// clientCert returns a client configuration that presents a client
// (OU tandem-client) certificate.
func (p *pki) clientCert(t *testing.T, name string) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := p.ca.IssueClient(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	if err := identity.WriteCertPair(cert, key, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	cfg, err := identity.ClientTLS(filepath.Join(p.dir, "ca.pem"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testLogger(t *testing.T) *slog.Logger { return testlog.New(t, slog.LevelDebug) }

func listen(t *testing.T, p *pki, id string) *Mux {
	t.Helper()
	server, client := p.node(t, id)
	m, err := ListenConfig(Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: client, Logger: testLogger(t), HandshakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRaftAndRPCShareOnePort: a Raft stream and HTTP forwarding RPCs reach
// the right consumers over one listener, and both sides learn the verified
// peer node ID.
func TestRaftAndRPCShareOnePort(t *testing.T) {
	p := newPKI(t, "test-ca")
	a, b := listen(t, p, "node-a"), listen(t, p, "node-b")
	addrB := b.Addr().String()

	// Forwarding RPC: an HTTP server on b's RPC listener reports who called.
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.URL.Path+" from "+PeerIDFromContext(r.Context()))
		}),
		ConnContext: ConnContext,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(b.RPCListener()) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrB+"/internal/whoami", nil)
		resp, err := a.RPCHTTPClient().Do(req)
		if err != nil {
			t.Fatalf("RPC %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := string(body), "/internal/whoami from node-a"; got != want {
			t.Fatalf("RPC %d answered %q, want %q", i, got, want)
		}
	}

	// Raft stream: echo one message back.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := b.RaftLayer().Accept()
		if err != nil {
			t.Errorf("raft accept: %v", err)
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := a.RaftLayer().Dial(raft.ServerAddress(addrB), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := PeerID(c); got != "node-b" {
		t.Errorf("dialler sees peer %q, want node-b", got)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.FailNow()
	}
	if got := PeerID(sc); got != "node-a" {
		t.Errorf("acceptor sees peer %q, want node-a", got)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("raft stream read %q, %v; want ping", buf, err)
	}

	// Counters are updated just after the hand-over, so poll.
	waitFor(t, "the raft connection to be counted", func() bool { return b.Stats().RaftConns == 1 })
	st := b.Stats()
	if st.RaftConns != 1 || st.RPCConns < 1 || st.UnknownProtocol != 0 || st.RejectedPeers != 0 {
		t.Errorf("stats of b = %+v, want 1 raft conn, >= 1 RPC conn, no rejections", st)
	}
}

// TestRefusesClientCertificate: a certificate of the cluster CA with the
// client role is refused, both by the TLS configuration of identity and, if
// that check is absent, by the Mux's own peer-ID check.
func TestRefusesClientCertificate(t *testing.T) {
	p := newPKI(t, "test-ca")
	m := listen(t, p, "node-a")
	clientCfg := p.clientCert(t, "alice")

	if err := dialAndSend(m.Addr().String(), clientCfg, ProtoRaft); err == nil {
		t.Fatal("a client certificate got a working raft connection")
	}
	waitFor(t, "handshake failure to be counted", func() bool { return m.Stats().HandshakeFailures >= 1 })

	// Without identity's VerifyConnection the handshake succeeds, and
	// DefaultPeerID must refuse the certificate.
	server, client := p.node(t, "node-b")
	server.VerifyConnection = nil
	m2, err := ListenConfig(Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: client, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := dialAndSend(m2.Addr().String(), clientCfg, ProtoRaft); err == nil {
		t.Fatal("a client certificate got a working raft connection through DefaultPeerID")
	}
	waitFor(t, "rejected peer to be counted", func() bool { return m2.Stats().RejectedPeers == 1 })
	if st := m2.Stats(); st.RaftConns != 0 {
		t.Errorf("stats = %+v, want no raft connection", st)
	}
}

// TestRefusesOtherCA: a node certificate of another CA cannot connect in
// either direction.
func TestRefusesOtherCA(t *testing.T) {
	p, other := newPKI(t, "test-ca"), newPKI(t, "other-ca")
	m := listen(t, p, "node-a")
	intruder := listen(t, other, "node-x")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := intruder.DialRPC(ctx, m.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dialling a Mux of another CA succeeded")
	}
	_, foreignClient := other.node(t, "node-y")
	if err := dialAndSend(m.Addr().String(), foreignClient, ProtoRPC); err == nil {
		t.Fatal("a certificate of another CA got a working RPC connection")
	}
	waitFor(t, "handshake failures", func() bool { return m.Stats().HandshakeFailures >= 1 })
	if st := m.Stats(); st.RPCConns != 0 || st.RaftConns != 0 {
		t.Errorf("stats = %+v, want no delivered connection", st)
	}
}

// TestUnknownProtocolByteIsDropped: an authenticated peer that sends a first
// byte other than R or F is disconnected and counted.
func TestUnknownProtocolByteIsDropped(t *testing.T) {
	p := newPKI(t, "test-ca")
	m := listen(t, p, "node-a")
	_, client := p.node(t, "node-b")
	if err := dialAndSend(m.Addr().String(), client, 'X'); err == nil {
		t.Fatal("connection with protocol byte X stayed open")
	}
	waitFor(t, "unknown protocol to be counted", func() bool { return m.Stats().UnknownProtocol == 1 })
}

// dialAndSend dials addr with cfg, sends proto and then waits for the server
// to close the connection. It returns nil only if the connection is still
// open after the server had time to decide (which the tests treat as
// failure to refuse).
func dialAndSend(addr string, cfg *tls.Config, proto byte) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{proto}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil // still open: not refused
	}
	if err == nil {
		return nil
	}
	return err
}

// TestSlowClientDoesNotBlockAccept: a TCP client that never starts TLS does
// not hold up other connections, and Close does not wait for its handshake
// deadline.
func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	p := newPKI(t, "test-ca")
	a, b := listen(t, p, "node-a"), listen(t, p, "node-b")
	idle, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	layer := b.RaftLayer()
	go func() {
		if c, err := layer.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := a.RaftLayer().Dial(raftAddr(b), time.Second)
	if err != nil {
		t.Fatalf("dial while a silent client is connected: %v", err)
	}
	c.Close()

	start := time.Now()
	b.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s with a silent client pending", d)
	}
}

func raftAddr(m *Mux) raft.ServerAddress { return raft.ServerAddress(m.Addr().String()) }

// TestCloseUnblocksAccept: Close returns net.ErrClosed to blocked Accept
// callers of both consumers, and later dials fail.
func TestCloseUnblocksAccept(t *testing.T) {
	p := newPKI(t, "test-ca")
	m := listen(t, p, "node-a")
	errs := make(chan error, 2)
	for _, l := range []net.Listener{m.RaftLayer(), m.RPCListener()} {
		go func() {
			_, err := l.Accept()
			errs <- err
		}()
	}
	m.Close()
	for range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Close returned %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Accept still blocked after Close")
		}
	}
	if _, err := m.DialRPC(context.Background(), "127.0.0.1:1"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DialRPC after Close returned %v, want net.ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRaftLayerReopens: closing the Raft layer closes its connections; the
// next RaftLayer call gives a working layer on the same port.
func TestRaftLayerReopens(t *testing.T) {
	p := newPKI(t, "test-ca")
	a, b := listen(t, p, "node-a"), listen(t, p, "node-b")

	first := b.RaftLayer()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := first.Accept()
		acc <- c
	}()
	c1, err := a.RaftLayer().Dial(raftAddr(b), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	sc := <-acc
	if sc == nil {
		t.Fatal("first layer accepted nothing")
	}
	first.Close()
	// The server side of c1 was closed with the layer: c1 sees EOF.
	c1.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c1.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection of a closed layer is still open")
	}

	second := b.RaftLayer()
	if second == first {
		t.Fatal("RaftLayer returned the closed layer")
	}
	go func() {
		c, _ := second.Accept()
		acc <- c
	}()
	c2, err := a.RaftLayer().Dial(raftAddr(b), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if sc := <-acc; sc == nil {
		t.Fatal("second layer accepted nothing")
	}
}

func TestConfigValidate(t *testing.T) {
	p := newPKI(t, "test-ca")
	server, client := p.node(t, "node-a")
	loose := server.Clone()
	loose.ClientAuth = tls.VerifyClientCertIfGiven
	noCert := client.Clone()
	noCert.Certificates = nil
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no addr", Config{ServerTLS: server, ClientTLS: client}, "listen address is empty"},
		{"bad addr", Config{Addr: "localhost", ServerTLS: server, ClientTLS: client}, "not host:port"},
		{"no server tls", Config{Addr: "127.0.0.1:0", ClientTLS: client}, "server TLS configuration is nil"},
		{"optional client certs", Config{Addr: "127.0.0.1:0", ServerTLS: loose, ClientTLS: client}, "must require and verify client certificates"},
		{"no client tls", Config{Addr: "127.0.0.1:0", ServerTLS: server}, "client TLS configuration is nil"},
		{"client without cert", Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: noCert}, "no certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ListenConfig(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ListenConfig error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestBFTConnectionsShareThePort: BFT consensus connections arrive on their
// own listener, identify the dialling node, and carry bytes both ways.
func TestBFTConnectionsShareThePort(t *testing.T) {
	p := newPKI(t, "test-ca")
	a, b := listen(t, p, "node-a"), listen(t, p, "node-b")
	ln := b.BFTListener()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("bft accept: %v", err)
			close(accepted)
			return
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.DialBFT(ctx, b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := PeerID(c); got != "node-b" {
		t.Fatalf("dialled peer = %q, want node-b", got)
	}
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	defer s.Close()
	if got := PeerID(s); got != "node-a" {
		t.Fatalf("accepted peer = %q, want node-a", got)
	}
	if _, err := c.Write([]byte("vote")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "vote" {
		t.Fatalf("read %q, %v", buf, err)
	}
	waitFor(t, "the BFT connection to be counted", func() bool { return b.Stats().BFTConns == 1 })
}

// Raft layers of different epochs never exchange a connection: a dial
// from epoch 1 is closed by a node whose layer is of epoch 2, and so is an
// untagged one, while a dial from epoch 2 is delivered.
func TestRaftLayerEpochSeparation(t *testing.T) {
	p := newPKI(t, "test-ca")
	a, b := listen(t, p, "node-a"), listen(t, p, "node-b")

	layer := b.RaftLayerEpoch(2)
	acc := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				close(acc)
				return
			}
			acc <- c
		}
	}()
	refused := func(l raft.StreamLayer, what string) {
		t.Helper()
		c, err := l.Dial(raftAddr(b), time.Second)
		if err != nil {
			t.Fatalf("%s: dial: %v", what, err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("%s: connection stayed open", what)
		}
	}
	refused(a.RaftLayerEpoch(1), "epoch 1 dial")
	refused(a.RaftLayer(), "untagged dial")
	if got := b.Stats().Undelivered; got != 2 {
		t.Fatalf("undelivered = %d, want 2", got)
	}

	c, err := a.RaftLayerEpoch(2).Dial(raftAddr(b), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	sc := <-acc
	if sc == nil {
		t.Fatal("epoch 2 layer accepted nothing")
	}
	buf := make([]byte, 1)
	sc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := sc.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read through the epoch layer: %q %v", buf, err)
	}
	layer.Close()
	for range acc {
	}
}
