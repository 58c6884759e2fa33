package identity

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Certificate roles, carried in the subject's OrganizationalUnit.
const (
	// OUNode marks a node certificate (TLS server and client).
	OUNode = "tandem-node"
	// OUClient marks a client certificate (TLS client only).
	OUClient = "tandem-client"

	// URIScheme is the scheme of the URI SANs of issued certificates:
	// tandem://node/<id> and tandem://client/<name>.
	URIScheme = "tandem"

	pemCertificate = "CERTIFICATE"
)

// Default validities, used when a caller passes a validity <= 0.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 2 * 365 * 24 * time.Hour
)

// clockSkew backdates NotBefore so that peers whose clocks lag slightly
// accept a certificate issued a moment ago.
const clockSkew = 5 * time.Minute

// defaultHosts are the SANs of a node certificate issued without hosts.
var defaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// DefaultHosts returns the host SANs a node certificate gets when IssueNode
// is called without hosts.
func DefaultHosts() []string { return append([]string(nil), defaultHosts...) }

var (
	nodeIDPattern     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	clientNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// ValidateNodeID reports whether id is a valid node ID: 1 to 63 characters
// of lower-case letters, digits and '-', not starting or ending with '-'.
// Node IDs appear in certificates, URIs and file names.
func ValidateNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("node ID %q is invalid: want 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'", id)
	}
	return nil
}

// ValidateClientName reports whether name is a valid client certificate
// name: 1 to 64 characters of letters, digits, '.', '_' and '-', starting
// with a letter or digit. Client names appear in file names.
func ValidateClientName(name string) error {
	if !clientNamePattern.MatchString(name) {
		return fmt.Errorf("client name %q is invalid: want 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// CA is the cluster certificate authority: its certificate and signing key.
// A CA is safe for concurrent use by IssueNode and IssueClient.
type CA struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// CertPEM is the PEM encoding of Cert, as distributed to nodes and
	// clients in tls.ca_file.
	CertPEM []byte
	key     crypto.Signer
}

// CreateCA creates a self-signed Ed25519 CA named commonName, valid for
// validity (DefaultCAValidity if <= 0), and writes its certificate to
// certPath and its key to keyPath, both with mode 0600. It refuses to replace
// either file (ErrFileExists) and writes neither in that case.
func CreateCA(certPath, keyPath, commonName string, validity time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("create CA: common name is empty")
	}
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	if err := ensureAbsent(certPath, keyPath); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"tandem"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("create CA: sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create CA: parse certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
	keyPEM, err := encodePrivateKeyPEM(priv)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	if err := WriteCertPair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: priv}, nil
}

// LoadCA reads a CA written by CreateCA (or any CA certificate with a
// matching Ed25519, ECDSA or RSA key). The key file must not be readable by
// group or others.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	certs, err := parseCertificatesPEM(certPath, certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load CA: %s (%q) is not a CA certificate (needs basic constraint CA:true and key usage cert sign)", certPath, cert.Subject.CommonName)
	}
	key, err := loadPrivateKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: key %s does not match certificate %s", keyPath, certPath)
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw}), key: key}, nil
}

// IssueNode issues a certificate for node nodeID, valid for validity
// (DefaultCertValidity if <= 0), with a fresh Ed25519 key. The certificate
// has CommonName nodeID, OrganizationalUnit OUNode, URI SAN
// tandem://node/<nodeID>, an IP or DNS SAN per entry of hosts (DefaultHosts
// if empty), and is usable for TLS server and client authentication. It
// returns the PEM certificate and the PEM PKCS#8 key; nothing is written.
func (ca *CA) IssueNode(nodeID string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	if len(hosts) == 0 {
		hosts = defaultHosts
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{OUNode}, Organization: []string{"tandem"}},
		URIs:        []*url.URL{{Scheme: URIScheme, Host: "node", Path: "/" + nodeID}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if h == "" {
			return nil, nil, fmt.Errorf("issue node certificate for %q: empty host", nodeID)
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certPEM, keyPEM, err = ca.issue(tmpl, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate for %q: %w", nodeID, err)
	}
	return certPEM, keyPEM, nil
}

// IssueClient issues a client certificate named name, valid for validity
// (DefaultCertValidity if <= 0), with a fresh Ed25519 key: CommonName name,
// OrganizationalUnit OUClient, URI SAN tandem://client/<name>, usable for TLS
// client authentication only. Nothing is written.
func (ca *CA) IssueClient(name string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := ValidateClientName(name); err != nil {
		return nil, nil, fmt.Errorf("issue client certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, OrganizationalUnit: []string{OUClient}, Organization: []string{"tandem"}},
		URIs:        []*url.URL{{Scheme: URIScheme, Host: "client", Path: "/" + name}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certPEM, keyPEM, err = ca.issue(tmpl, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("issue client certificate for %q: %w", name, err)
	}
	return certPEM, keyPEM, nil
}

// issue fills the common fields of tmpl, signs it with a fresh Ed25519 key
// and returns the PEM certificate and key.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err = encodePrivateKeyPEM(priv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), keyPEM, nil
}

// WriteCertPair writes a certificate and its key, both with mode 0600,
// creating parent directories with mode 0700. It refuses to replace either
// file (ErrFileExists) and then writes neither. If the key cannot be
// written, the certificate is removed again.
func WriteCertPair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if certPath == keyPath {
		return fmt.Errorf("certificate and key paths are the same file %s", certPath)
	}
	if err := ensureAbsent(certPath, keyPath); err != nil {
		return err
	}
	if err := writeNewFile(certPath, certPEM); err != nil {
		return err
	}
	if err := writeNewFile(keyPath, keyPEM); err != nil {
		os.Remove(certPath)
		return err
	}
	return nil
}

// CertNodeID returns the node ID that a node certificate names. It is the
// one definition of that mapping: every place that identifies a node by
// its certificate (the configurations of this package, PeerNodeID,
// ExpectNodeID, the node-to-node transport) must use it rather than read
// the CommonName or the URIs itself.
//
// The certificate must carry OrganizationalUnit OUNode and not OUClient,
// and exactly one URI SAN with scheme URIScheme, which must be
// tandem://node/<id> with nothing else (no user, port, query, fragment or
// escaped path) and whose id is a valid node ID (ValidateNodeID) equal to
// the CommonName. CertNodeID does not verify the chain; the configurations
// of this package do that before any caller sees the certificate.
func CertNodeID(cert *x509.Certificate) (string, error) {
	name := cert.Subject.CommonName
	if !hasOU(cert, OUNode) {
		return "", fmt.Errorf("certificate %q is not a node certificate (organizational unit %v, want %q)",
			name, cert.Subject.OrganizationalUnit, OUNode)
	}
	if hasOU(cert, OUClient) {
		return "", fmt.Errorf("certificate %q claims both roles %q and %q", name, OUNode, OUClient)
	}
	var node *url.URL
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		if node != nil {
			return "", fmt.Errorf("certificate %q has more than one %s:// URI (%s, %s)", name, URIScheme, node, u)
		}
		node = u
	}
	if node == nil {
		return "", fmt.Errorf("certificate %q has no %s://node/<id> URI", name, URIScheme)
	}
	id, ok := strings.CutPrefix(node.Path, "/")
	if node.Host != "node" || !ok || node.Opaque != "" || node.User != nil || node.RawPath != "" ||
		node.RawQuery != "" || node.ForceQuery || node.Fragment != "" || node.OmitHost {
		return "", fmt.Errorf("certificate %q has URI %s, want exactly %s://node/<id>", name, node, URIScheme)
	}
	if err := ValidateNodeID(id); err != nil {
		return "", fmt.Errorf("certificate %q: URI %s: %w", name, node, err)
	}
	if id != name {
		return "", fmt.Errorf("certificate node URI names %q but its common name is %q", id, name)
	}
	return id, nil
}

func hasOU(cert *x509.Certificate, ou string) bool {
	for _, v := range cert.Subject.OrganizationalUnit {
		if v == ou {
			return true
		}
	}
	return false
}

// parseCertificatesPEM returns every CERTIFICATE block of data (read from
// path); there must be at least one.
func parseCertificatesPEM(path string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse certificate: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM %q block found", path, pemCertificate)
	}
	return certs, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
