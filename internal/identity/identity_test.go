package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a CA plus issued certificates written into a temp dir.
type pki struct {
	dir    string
	ca     *CA
	caFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	ca, err := CreateCA(caFile, filepath.Join(dir, "ca-key.pem"), name, time.Hour)
	if err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	return &pki{dir: dir, ca: ca, caFile: caFile}
}

// node issues and writes a node certificate; returns cert and key paths.
func (p *pki) node(t *testing.T, id string) (string, string) {
	t.Helper()
	c, k, err := p.ca.IssueNode(id, nil, time.Hour)
	if err != nil {
		t.Fatalf("IssueNode(%q): %v", id, err)
	}
	return p.write(t, id, c, k)
}

func (p *pki) client(t *testing.T, name string) (string, string) {
	t.Helper()
	c, k, err := p.ca.IssueClient(name, time.Hour)
	if err != nil {
		t.Fatalf("IssueClient(%q): %v", name, err)
	}
	return p.write(t, name, c, k)
}

func (p *pki) write(t *testing.T, name string, c, k []byte) (string, string) {
	t.Helper()
	cf, kf := filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	if err := WriteCertPair(cf, kf, c, k); err != nil {
		t.Fatalf("WriteCertPair: %v", err)
	}
	return cf, kf
}

// presentAnyway returns a copy of cfg that presents cert even when the
// server's certificate request names only other CAs (crypto/tls would
// otherwise quietly send no certificate).
func presentAnyway(cfg *tls.Config, cert tls.Certificate) *tls.Config {
	c := cfg.Clone()
	c.Certificates = nil
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return c
}

type result struct {
	serverState tls.ConnectionState
	serverErr   error
	clientState tls.ConnectionState
	clientErr   error
}

// handshake runs one TLS connection over loopback TCP. The server completes
// its handshake and writes one byte; the client completes its handshake and
// reads that byte, so a rejection by either side shows up as an error on
// both (TLS 1.3 servers check client certificates after the client's
// handshake has returned).
func handshake(t *testing.T, server, client *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type srvOut struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan srvOut, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- srvOut{err: err}
			return
		}
		conn := tls.Server(raw, server)
		defer conn.Close()
		if err := conn.HandshakeContext(ctx); err != nil {
			done <- srvOut{err: err}
			return
		}
		_, err = conn.Write([]byte{1})
		done <- srvOut{state: conn.ConnectionState(), err: err}
	}()

	var r result
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn := tls.Client(raw, client)
	if err := conn.HandshakeContext(ctx); err != nil {
		r.clientErr = err
	} else {
		r.clientState = conn.ConnectionState()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			r.clientErr = err
		}
	}
	conn.Close()
	out := <-done
	r.serverState, r.serverErr = out.state, out.err
	return r
}

func TestPeerTLSNodeToNode(t *testing.T) {
	p := newPKI(t, "test-ca")
	aCert, aKey := p.node(t, "node-a")
	bCert, bKey := p.node(t, "node-b")
	srvA, _, err := PeerTLS(p.caFile, aCert, aKey)
	if err != nil {
		t.Fatal(err)
	}
	_, cliB, err := PeerTLS(p.caFile, bCert, bKey)
	if err != nil {
		t.Fatal(err)
	}
	r := handshake(t, srvA, cliB)
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake failed: server %v, client %v", r.serverErr, r.clientErr)
	}
	if r.serverState.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %#x, want TLS 1.3", r.serverState.Version)
	}
	if id, err := PeerNodeID(r.serverState); err != nil || id != "node-b" {
		t.Errorf("server PeerNodeID = %q, %v; want node-b", id, err)
	}
	if id, err := PeerNodeID(r.clientState); err != nil || id != "node-a" {
		t.Errorf("client PeerNodeID = %q, %v; want node-a", id, err)
	}

	// Pinning the expected node ID: the right one passes, another fails.
	if r := handshake(t, srvA, ExpectNodeID(cliB, "node-a")); r.clientErr != nil || r.serverErr != nil {
		t.Errorf("ExpectNodeID(node-a): server %v, client %v", r.serverErr, r.clientErr)
	}
	r = handshake(t, srvA, ExpectNodeID(cliB, "node-c"))
	if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), `"node-c"`) {
		t.Errorf("ExpectNodeID(node-c): client error %v, want a mismatch naming node-c", r.clientErr)
	}
}

func TestPeerTLSRejectsClientCertificate(t *testing.T) {
	p := newPKI(t, "test-ca")
	aCert, aKey := p.node(t, "node-a")
	cCert, cKey := p.client(t, "alice")
	srvA, _, err := PeerTLS(p.caFile, aCert, aKey)
	if err != nil {
		t.Fatal(err)
	}
	// The client-side PeerTLS refuses to load a client certificate...
	if _, _, err := PeerTLS(p.caFile, cCert, cKey); err == nil || !strings.Contains(err.Error(), "not a node certificate") {
		t.Fatalf("PeerTLS with client cert: err = %v, want 'not a node certificate'", err)
	}
	// ...and a hand-made configuration presenting it is rejected by the server.
	cli, err := ClientTLS(p.caFile, cCert, cKey)
	if err != nil {
		t.Fatal(err)
	}
	r := handshake(t, srvA, cli)
	if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), OUClient) {
		t.Errorf("server error = %v, want rejection naming %s", r.serverErr, OUClient)
	}
	if r.clientErr == nil {
		t.Error("client saw no error although the server rejected it")
	}
}

func TestPeerTLSRejectsOtherCA(t *testing.T) {
	p := newPKI(t, "ca-one")
	other := newPKI(t, "ca-two")
	aCert, aKey := p.node(t, "node-a")
	xCert, xKey := other.node(t, "node-x")
	srvA, cliA, err := PeerTLS(p.caFile, aCert, aKey)
	if err != nil {
		t.Fatal(err)
	}
	srvX, cliX, err := PeerTLS(other.caFile, xCert, xKey)
	if err != nil {
		t.Fatal(err)
	}
	// A client with a foreign certificate (but trusting our CA, so only the
	// server's check can stop it).
	cliForeign := presentAnyway(cliA, cliX.Certificates[0])
	r := handshake(t, srvA, cliForeign)
	if r.serverErr == nil || !strings.Contains(r.serverErr.Error(), "unknown authority") {
		t.Errorf("server error = %v, want a rejection of the foreign certificate", r.serverErr)
	}
	// A server with a foreign certificate: the client must refuse it.
	r = handshake(t, srvX, cliA)
	if r.clientErr == nil || !strings.Contains(r.clientErr.Error(), "does not chain to the cluster CA") {
		t.Errorf("client error = %v, want 'does not chain to the cluster CA'", r.clientErr)
	}
}

func TestAPIServerTLS(t *testing.T) {
	p := newPKI(t, "test-ca")
	aCert, aKey := p.node(t, "node-a")
	cCert, cKey := p.client(t, "alice")
	srvReq, err := APIServerTLS(p.caFile, aCert, aKey, true)
	if err != nil {
		t.Fatal(err)
	}
	srvOpt, err := APIServerTLS(p.caFile, aCert, aKey, false)
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := ClientTLS(p.caFile, cCert, cKey)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := ClientTLS(p.caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, srvReq, withCert); r.serverErr != nil || r.clientErr != nil {
		t.Errorf("required + client cert: server %v, client %v", r.serverErr, r.clientErr)
	} else if r.serverState.PeerCertificates[0].Subject.CommonName != "alice" {
		t.Errorf("server saw %q, want alice", r.serverState.PeerCertificates[0].Subject.CommonName)
	}
	if r := handshake(t, srvReq, noCert); r.serverErr == nil {
		t.Error("required: server accepted a client without certificate")
	}
	if r := handshake(t, srvOpt, noCert); r.serverErr != nil || r.clientErr != nil {
		t.Errorf("optional + no cert: server %v, client %v", r.serverErr, r.clientErr)
	}
	// A node certificate is also an acceptable client identity.
	_, nodeCli, err := PeerTLS(p.caFile, aCert, aKey)
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, srvReq, nodeCli); r.serverErr != nil || r.clientErr != nil {
		t.Errorf("required + node cert: server %v, client %v", r.serverErr, r.clientErr)
	}
	// Client certificate from another CA, even when optional, is rejected.
	other := newPKI(t, "ca-two")
	xCert, xKey := other.client(t, "mallory")
	foreign, err := ClientTLS(p.caFile, xCert, xKey)
	if err != nil {
		t.Fatal(err)
	}
	if r := handshake(t, srvOpt, presentAnyway(foreign, foreign.Certificates[0])); r.serverErr == nil {
		t.Error("optional: server accepted a client certificate from another CA")
	}
	if _, err := ClientTLS(p.caFile, cCert, ""); err == nil {
		t.Error("ClientTLS with a certificate but no key: want error")
	}
}

func TestCertificateContents(t *testing.T) {
	p := newPKI(t, "test-ca")
	certPEM, _, err := p.ca.IssueNode("node-a", []string{"10.0.0.5", "db.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := CertNodeID(c); err != nil || id != "node-a" {
		t.Errorf("CertNodeID = %q, %v", id, err)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "tandem://node/node-a" {
		t.Errorf("URIs = %v", c.URIs)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) || len(c.DNSNames) != 1 || c.DNSNames[0] != "db.example" {
		t.Errorf("SANs = %v %v", c.IPAddresses, c.DNSNames)
	}
	// Default hosts.
	certPEM, _, err = p.ca.IssueNode("node-b", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(certPEM)
	c, _ = x509.ParseCertificate(block.Bytes)
	if len(c.IPAddresses) != 2 || len(c.DNSNames) != 1 || c.DNSNames[0] != "localhost" {
		t.Errorf("default SANs = %v %v", c.IPAddresses, c.DNSNames)
	}
	if c.NotAfter.After(p.ca.Cert.NotAfter) {
		t.Errorf("leaf outlives its CA: %v > %v", c.NotAfter, p.ca.Cert.NotAfter)
	}
	if _, _, err := p.ca.IssueNode("Bad_ID", nil, 0); err == nil {
		t.Error("IssueNode accepted an invalid node ID")
	}
	if _, _, err := p.ca.IssueClient("../x", 0); err == nil {
		t.Error("IssueClient accepted a path-like name")
	}
}

func TestLoadCA(t *testing.T) {
	p := newPKI(t, "test-ca")
	ca, err := LoadCA(p.caFile, filepath.Join(p.dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(p.ca.Cert) {
		t.Error("loaded CA certificate differs")
	}
	if _, _, err := ca.IssueNode("node-z", nil, time.Hour); err != nil {
		t.Errorf("loaded CA cannot issue: %v", err)
	}
	// A key that does not match the certificate.
	other := newPKI(t, "ca-two")
	if _, err := LoadCA(p.caFile, filepath.Join(other.dir, "ca-key.pem")); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: err = %v", err)
	}
	// A leaf is not a CA.
	nc, nk := p.node(t, "node-a")
	if _, err := LoadCA(nc, nk); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: err = %v", err)
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "node.key")
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("created dir mode %#o, want 0700", di.Mode().Perm())
	}
	got, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Error("loaded key differs")
	}
}

func TestWriteRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	if err := WriteKeyFile(path, k1); err != nil {
		t.Fatal(err)
	}
	err := WriteKeyFile(path, k2)
	if !errors.Is(err, ErrFileExists) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second write: err = %v, want ErrFileExists naming %s", err, path)
	}
	got, err := LoadKeyFile(path)
	if err != nil || !got.Equal(k1) {
		t.Fatalf("the original key was changed (err %v)", err)
	}

	p := newPKI(t, "test-ca")
	if _, err := CreateCA(p.caFile, filepath.Join(p.dir, "new-key.pem"), "again", 0); !errors.Is(err, ErrFileExists) {
		t.Errorf("CreateCA over an existing cert: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "new-key.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("CreateCA wrote the key although the certificate existed")
	}
	c, kp, _ := p.ca.IssueNode("node-a", nil, 0)
	cf, kf := p.node(t, "node-b")
	if err := WriteCertPair(cf, kf, c, kp); !errors.Is(err, ErrFileExists) {
		t.Errorf("WriteCertPair over existing files: err = %v", err)
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	k, _ := GenerateKey()
	loose := filepath.Join(dir, "loose.key")
	if err := WriteKeyFile(loose, k); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPEM, _ := encodePrivateKeyPEM(ecKey)
	ecFile := filepath.Join(dir, "ec.key")
	if err := os.WriteFile(ecFile, ecPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		want       []string
		is         error
	}{
		{"missing", filepath.Join(dir, "nope.key"), []string{"does not exist"}, fs.ErrNotExist},
		{"mode 0644", loose, []string{"0644", "chmod 600 " + loose}, ErrInsecureKeyFile},
		{"not PEM", notPEM, []string{"not a PEM file"}, nil},
		{"not ed25519", ecFile, []string{"ECDSA", "want an Ed25519 key"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKeyFile(tc.path)
			if err == nil {
				t.Fatal("LoadKeyFile succeeded")
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	// TLS loading applies the same rule to certificate keys.
	p := newPKI(t, "test-ca")
	cf, kf := p.node(t, "node-a")
	if err := os.Chmod(kf, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := PeerTLS(p.caFile, cf, kf); !errors.Is(err, ErrInsecureKeyFile) {
		t.Errorf("PeerTLS with a 0640 key: err = %v", err)
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	k, _ := GenerateKey()
	pub := k.Public().(ed25519.PublicKey)
	s := EncodePublicKey(pub)
	if len(s) != 64 || strings.ToLower(s) != s || strings.HasPrefix(s, "-") {
		t.Errorf("encoding %q is not 64 lowercase hex digits", s)
	}
	if s != smr.FormatKey(pub) {
		t.Errorf("EncodePublicKey = %q, smr.FormatKey = %q", s, smr.FormatKey(pub))
	}
	got, err := ParsePublicKey(s)
	if err != nil || !pub.Equal(got) {
		t.Fatalf("round trip: %v", err)
	}
	// Hex has one spelling per key: upper case, prefixes, padding and
	// white space are refused, as smr.ParseKey refuses them.
	for _, bad := range []string{"", "not hex!", s[:62], s + "00", strings.ToUpper(s), "0x" + s[2:],
		" " + s[1:], s[:63] + " ", s[:63] + "g", base64.RawURLEncoding.EncodeToString(pub)} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) succeeded", bad)
		} else if _, serr := smr.ParseKey(bad); serr == nil {
			t.Errorf("ParsePublicKey(%q) refused what smr.ParseKey accepts", bad)
		}
	}
}

func TestValidateNodeID(t *testing.T) {
	for _, ok := range []string{"a", "node-1", "n0", strings.Repeat("a", 63)} {
		if err := ValidateNodeID(ok); err != nil {
			t.Errorf("ValidateNodeID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "Node", "a_b", "a.b", strings.Repeat("a", 64)} {
		if err := ValidateNodeID(bad); err == nil {
			t.Errorf("ValidateNodeID(%q) accepted", bad)
		}
	}
}

func TestCertNodeIDIsStrict(t *testing.T) {
	mk := func(cn string, ous []string, uris ...string) *x509.Certificate {
		c := &x509.Certificate{}
		c.Subject.CommonName = cn
		c.Subject.OrganizationalUnit = ous
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("parse %q: %v", s, err)
			}
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	node := []string{OUNode}
	if id, err := CertNodeID(mk("n1", node, "tandem://node/n1")); err != nil || id != "n1" {
		t.Fatalf("CertNodeID(well-formed) = %q, %v", id, err)
	}
	// URIs of other schemes do not matter.
	if id, err := CertNodeID(mk("n1", node, "spiffe://example.org/x", "tandem://node/n1")); err != nil || id != "n1" {
		t.Fatalf("CertNodeID(with a foreign URI) = %q, %v", id, err)
	}
	bad := []struct {
		name string
		cert *x509.Certificate
	}{
		{"client role", mk("n1", []string{OUClient}, "tandem://node/n1")},
		{"both roles", mk("n1", []string{OUNode, OUClient}, "tandem://node/n1")},
		{"no URI", mk("n1", node)},
		{"client URI", mk("n1", node, "tandem://client/n1")},
		{"two tandem URIs", mk("n1", node, "tandem://node/n1", "tandem://client/n1")},
		{"same URI twice", mk("n1", node, "tandem://node/n1", "tandem://node/n1")},
		{"query", mk("n1", node, "tandem://node/n1?x=1")},
		{"empty query", mk("n1", node, "tandem://node/n1?")},
		{"fragment", mk("n1", node, "tandem://node/n1#x")},
		{"port", mk("n1", node, "tandem://node:1/n1")},
		{"user", mk("n1", node, "tandem://u@node/n1")},
		{"extra segment", mk("n1/x", node, "tandem://node/n1/x")},
		{"escaped path", mk("n-1", node, "tandem://node/n%2D1")},
		{"empty id", mk("", node, "tandem://node/")},
		{"invalid id", mk("N1", node, "tandem://node/N1")},
		{"common name differs", mk("n2", node, "tandem://node/n1")},
	}
	for _, tc := range bad {
		if id, err := CertNodeID(tc.cert); err == nil {
			t.Errorf("%s: CertNodeID = %q, want an error", tc.name, id)
		}
		cs := tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{tc.cert}}
		if id, err := PeerNodeID(cs); err == nil {
			t.Errorf("%s: PeerNodeID = %q, want an error", tc.name, id)
		}
	}
	if _, err := PeerNodeID(tls.ConnectionState{PeerCertificates: []*x509.Certificate{mk("n1", node, "tandem://node/n1")}}); !errors.Is(err, ErrNotVerified) {
		t.Errorf("PeerNodeID before the handshake completed: %v, want ErrNotVerified", err)
	}
}
