package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/tandem-consensus/tandem/internal/identity"
)

// Loopback creates a throwaway cluster CA in dir, a node certificate for
// each of ids, and one mutual-TLS Mux per node listening on an ephemeral
// 127.0.0.1 port, in the order of ids. It is for benchmarks and tests that
// need the real peer transport without configured nodes. On error, the
// muxes already opened are closed.
func Loopback(dir string, ids []string, logger *slog.Logger) ([]*Mux, error) {
	const validity = 24 * time.Hour
	ca, err := identity.CreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), "loopback-ca", validity)
	if err != nil {
		return nil, fmt.Errorf("loopback transport: %w", err)
	}
	var muxes []*Mux
	fail := func(err error) ([]*Mux, error) {
		for _, m := range muxes {
			m.Close()
		}
		return nil, fmt.Errorf("loopback transport: %w", err)
	}
	for _, id := range ids {
		certPEM, keyPEM, err := ca.IssueNode(id, []string{"127.0.0.1"}, validity)
		if err != nil {
			return fail(err)
		}
		cert, key := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		if err := identity.WriteCertPair(cert, key, certPEM, keyPEM); err != nil {
			return fail(err)
		}
		server, client, err := identity.PeerTLS(filepath.Join(dir, "ca.pem"), cert, key)
		if err != nil {
			return fail(err)
		}
		m, err := ListenConfig(Config{Addr: "127.0.0.1:0", ServerTLS: server, ClientTLS: client, Logger: logger, PeerID: identity.PeerNodeID})
		if err != nil {
			return fail(err)
		}
		muxes = append(muxes, m)
	}
	if len(muxes) == 0 {
		return nil, errors.New("loopback transport: no node IDs")
	}
	return muxes, nil
}
