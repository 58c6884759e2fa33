package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// ErrNotVerified is returned by PeerNodeID when the connection state carries
// no peer certificate (no handshake, or the peer sent none).
var ErrNotVerified = errors.New("peer presented no verified certificate")

// PeerTLS builds the node-to-node mutual TLS configurations from the CA
// bundle and this node's certificate and key. Both sides must present a
// certificate that chains to the CA and carries OUNode: the server side
// rejects client certificates (OUClient) and certificates of any other CA;
// the client side verifies the server's chain and role but not its host
// name, because peers are identified by node ID (PeerNodeID), not by the
// address that was dialled. To also pin the expected node ID when dialling,
// wrap the client configuration with ExpectNodeID.
//
// certFile must hold a node certificate; keyFile must not be readable by
// group or others.
func PeerTLS(caFile, certFile, keyFile string) (server, client *tls.Config, err error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS: %w", err)
	}
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("peer TLS: %w", err)
	}
	if _, err := CertNodeID(cert.Leaf); err != nil {
		return nil, nil, fmt.Errorf("peer TLS: %s: %w", certFile, err)
	}
	server = &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		VerifyConnection: verifyRole("peer", OUNode),
	}
	client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		// Host name verification is replaced, not dropped: verifyServer
		// checks the whole chain against pool and the certificate's role.
		InsecureSkipVerify: true,
		VerifyConnection:   verifyServer(pool),
	}
	return server, client, nil
}

// APIServerTLS builds the configuration of the client HTTPS API: the node
// certificate is the server certificate. When requireClientCert is true,
// every client must present a certificate that chains to the CA and carries
// OUClient or OUNode; otherwise a client certificate is optional but, when
// presented, verified the same way.
func APIServerTLS(caFile, certFile, keyFile string, requireClientCert bool) (*tls.Config, error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("API TLS: %w", err)
	}
	cert, err := loadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("API TLS: %w", err)
	}
	if _, err := CertNodeID(cert.Leaf); err != nil {
		return nil, fmt.Errorf("API TLS: %s: %w", certFile, err)
	}
	auth := tls.VerifyClientCertIfGiven
	if requireClientCert {
		auth = tls.RequireAndVerifyClientCert
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       auth,
		ClientCAs:        pool,
		VerifyConnection: verifyRole("client", OUClient, OUNode),
	}, nil
}

// ClientTLS builds the configuration the SDK and the CLI use to reach the
// client API: it trusts the CA in caFile, expects the server to present a
// node certificate from that CA (without a host name check, as in PeerTLS)
// and presents the certificate in certFile/keyFile if both are given. Give
// both or neither.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		// Replaced by verifyServer; see PeerTLS.
		InsecureSkipVerify: true,
		VerifyConnection:   verifyServer(pool),
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "" || keyFile == "":
		return nil, fmt.Errorf("client TLS: give both a certificate file and a key file or neither (certificate %q, key %q)", certFile, keyFile)
	default:
		cert, err := loadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client TLS: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ExpectNodeID pins the server's identity when dialling: it returns a copy
// of cfg, a client configuration made by PeerTLS or ClientTLS, whose
// handshake fails unless the server's leaf certificate names nodeID
// (CertNodeID, compared exactly). cfg's own VerifyConnection (chain and
// role) still runs first; cfg itself is not modified. Without the pin any
// node certificate of the cluster CA is accepted for any address, so a
// caller that knows which node an address belongs to (the Raft transport
// knows the server ID of each address) should dial through ExpectNodeID.
// The returned configuration is for that one node only; an empty or
// invalid nodeID makes every handshake fail.
func ExpectNodeID(cfg *tls.Config, nodeID string) *tls.Config {
	c := cfg.Clone()
	inner := cfg.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if inner != nil {
			if err := inner(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: server presented no certificate")
		}
		got, err := CertNodeID(cs.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("tls: server: %w", err)
		}
		if got != nodeID {
			return fmt.Errorf("tls: dialled node %q but the server's certificate names node %q", nodeID, got)
		}
		return nil
	}
	return c
}

// PeerNodeID returns the node ID in the peer's certificate (CertNodeID of
// the leaf); it is the check that identifies the node at the other end of
// an accepted or dialled node-to-node connection. cs must come from a
// connection that used a configuration of this package, which has verified
// the chain and role before the handshake completed; PeerNodeID itself only
// reads the leaf certificate. It fails when the handshake is not complete,
// no certificate was presented (ErrNotVerified), or the leaf is not a
// well-formed node certificate (a client certificate, for one).
func PeerNodeID(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return "", ErrNotVerified
	}
	return CertNodeID(cs.PeerCertificates[0])
}

// verifyRole is the server-side VerifyConnection: crypto/tls has already
// verified a presented client chain against ClientCAs; this checks the
// leaf's role. A connection without a client certificate passes only if the
// ClientAuth policy allowed it.
func verifyRole(what string, ous ...string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // ClientAuth decides whether a certificate is required.
		}
		if len(cs.VerifiedChains) == 0 {
			return fmt.Errorf("tls: %s certificate %q was not verified against the cluster CA", what, cs.PeerCertificates[0].Subject.CommonName)
		}
		return checkRole(what, cs.PeerCertificates[0], ous...)
	}
}

// verifyServer is the client-side VerifyConnection: it verifies the server
// chain against roots (with the presented intermediates) for server
// authentication, and that the leaf is a node certificate. It deliberately
// skips the host name check.
func verifyServer(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: server presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			CurrentTime:   time.Now(),
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("tls: server certificate %q does not chain to the cluster CA: %w", leaf.Subject.CommonName, err)
		}
		if _, err := CertNodeID(leaf); err != nil {
			return fmt.Errorf("tls: server: %w", err)
		}
		return nil
	}
}

func checkRole(what string, cert *x509.Certificate, ous ...string) error {
	for _, ou := range cert.Subject.OrganizationalUnit {
		if slices.Contains(ous, ou) {
			if ou == OUNode {
				if _, err := CertNodeID(cert); err != nil {
					return fmt.Errorf("tls: %s: %w", what, err)
				}
			}
			return nil
		}
	}
	return fmt.Errorf("tls: %s certificate %q has organizational unit %v, want one of %v",
		what, cert.Subject.CommonName, cert.Subject.OrganizationalUnit, ous)
}

// loadCAPool reads the PEM CA bundle in caFile.
func loadCAPool(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, errors.New("CA file path is empty")
	}
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	certs, err := parseCertificatesPEM(caFile, data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// loadKeyPair reads a PEM certificate (chain) and its private key, checking
// the key file's mode. The returned certificate has Leaf set.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" || keyFile == "" {
		return tls.Certificate{}, fmt.Errorf("certificate file (%q) and key file (%q) are both required", certFile, keyFile)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("read certificate file: %w", err)
	}
	keyPEM, err := readSecretFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("parse certificate %s: %w", certFile, err)
		}
	}
	return cert, nil
}
