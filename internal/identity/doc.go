// Package identity manages Tandem's long-lived identities as files: Ed25519
// signing keys for nodes and clients, the cluster certificate authority, the
// node and client certificates it issues, and the TLS configurations built
// from them.
//
// # Keys
//
// Private keys are PEM "PRIVATE KEY" blocks holding PKCS#8. They are written
// with mode 0600 into directories created with mode 0700, and a write never
// replaces an existing file: losing a node or CA key by accident is worse
// than an error. Loading a key refuses a file that group or others can read.
// Public keys travel as 64 lowercase hex digits, the form
// operators put in bootstrap_admin_keys and ACLs; smr.FormatKey and
// smr.ParseKey are the one implementation (EncodePublicKey and
// ParsePublicKey are the same functions).
//
// # Certificates
//
// The cluster CA (CreateCA, LoadCA) issues two kinds of certificate:
//
//   - node certificates: CommonName = node ID, OrganizationalUnit
//     "tandem-node", URI SAN tandem://node/<id>, usable as TLS server and
//     client;
//   - client certificates: CommonName = client name, OrganizationalUnit
//     "tandem-client", usable as TLS client only.
//
// # TLS
//
// All configurations require TLS 1.3. Peers are identified by the node ID in
// their certificate, never by the address that was dialled (dial addresses are
// often IPs or change with rescheduling), so the client-side configurations
// disable crypto/tls's host name check and instead verify the chain against
// the cluster CA and the certificate's role in VerifyConnection. That check
// runs during every handshake, including resumed ones, so a connection made
// with a configuration from this package has always been verified before
// Handshake returns; PeerNodeID relies on that.
//
//   - PeerTLS: node-to-node mutual TLS. Both sides must hold a node
//     certificate; a client certificate is rejected.
//   - APIServerTLS: the client API. The server presents its node certificate;
//     clients present a client or node certificate when required.
//   - ClientTLS: SDK and CLI. Trusts the CA, expects a node certificate from
//     the server, optionally presents a client certificate.
package identity
