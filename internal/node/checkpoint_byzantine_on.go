//go:build byzantine

package node

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"

	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
)

// Byzantine behaviour of state transfer, only in a binary built with -tags
// byzantine and chosen by the environment variable TANDEM_BYZANTINE
// (raftengine.EnvByzantine, comma-separated behaviours):
//
//   - tamper-checkpoint: the checkpoints this node serves for state
//     transfer carry its genuine certificate, but one byte of the snapshot
//     is flipped. A correct node must refuse it and fetch from another
//     peer.
var byzTamperCheckpoint = slices.Contains(strings.Split(os.Getenv(raftengine.EnvByzantine), ","), "tamper-checkpoint")

// misbehaveTransfer wraps the state transfer handler with the chosen
// behaviour.
func (n *Node) misbehaveTransfer(h http.Handler) http.Handler {
	if !byzTamperCheckpoint {
		return h
	}
	n.log.Warn("byzantine build: this node serves tampered checkpoint snapshots")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK && len(body) > 64 {
			body = bytes.Clone(body)
			body[len(body)-40] ^= 0x01 // inside the snapshot, before its checksum
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}
