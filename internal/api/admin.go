package api

import (
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// Admin request headers (docs/api.md).
const (
	HeaderKey       = wire.HeaderKey
	HeaderTime      = wire.HeaderTime
	HeaderSignature = wire.HeaderSignature
)

// adminCreds are the parsed admin headers of a request.
type adminCreds struct {
	key  ed25519.PublicKey
	unix int64
	sig  []byte
}

// admin wraps h with the second half of admin request authentication: the
// signature over the method, request URI, time and body hash. The first
// half (adminPreauth) ran before the body was read.
func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
		c, err := s.adminCredentials(r)
		if err != nil {
			return writeError(w, err)
		}
		if !ed25519.Verify(c.key, smr.AdminSignBytes(r.Method, r.URL.RequestURI(), c.unix, body), c.sig) {
			return writeError(w, smr.Errorf(smr.CodeBadSignature, "admin request signature does not verify for key %s", r.Header.Get(HeaderKey)))
		}
		return h(w, r, body)
	}
}

// adminPreauth checks everything about an admin request that does not need
// its body — the headers, the time, and that the key holds admin — so that
// an unauthorised caller cannot make the node buffer a large body.
func (s *Server) adminPreauth(r *http.Request) error {
	c, err := s.adminCredentials(r)
	if err != nil {
		return err
	}
	return s.cfg.Backend.Authorize(c.key, smr.PermAdmin)
}

func (s *Server) adminCredentials(r *http.Request) (adminCreds, error) {
	keyStr, tStr, sigStr := r.Header.Get(HeaderKey), r.Header.Get(HeaderTime), r.Header.Get(HeaderSignature)
	if keyStr == "" || tStr == "" || sigStr == "" {
		return adminCreds{}, smr.Errorf(smr.CodeBadSignature, "admin requests need the %s, %s and %s headers", HeaderKey, HeaderTime, HeaderSignature)
	}
	key, err := smr.ParseKey(keyStr)
	if err != nil {
		return adminCreds{}, smr.Errorf(smr.CodeBadSignature, "%s: not an Ed25519 public key (64 lowercase hex digits)", HeaderKey)
	}
	unix, err := strconv.ParseInt(tStr, 10, 64)
	if err != nil {
		return adminCreds{}, smr.Errorf(smr.CodeBadSignature, "%s: %q is not unix seconds", HeaderTime, tStr)
	}
	// Compare times, not their difference: time.Time.Sub saturates, and
	// negating the saturated minimum overflows, which would let a time
	// far in the future through.
	now, at := s.cfg.Now(), time.Unix(unix, 0)
	if at.Before(now.Add(-s.cfg.AdminClockSkew)) || at.After(now.Add(s.cfg.AdminClockSkew)) {
		return adminCreds{}, smr.Errorf(smr.CodeBadSignature, "%s %d is %s away from this node's clock (allowed %s)", HeaderTime, unix, now.Sub(at).Abs().Round(time.Second), s.cfg.AdminClockSkew)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigStr)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return adminCreds{}, smr.Errorf(smr.CodeBadSignature, "%s: not a base64url Ed25519 signature", HeaderSignature)
	}
	return adminCreds{key: key, unix: unix, sig: sig}, nil
}

func (s *Server) handleTransferLeader(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	var req wire.TransferLeaderRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := decodeStrict(body, &req); err != nil {
			return writeError(w, smr.Errorf(smr.CodeMalformed, "transfer-leader request: %v", err))
		}
	}
	if err := s.cfg.Backend.TransferLeader(r.Context(), req.ID); err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "leadership transferred"})
	return smr.CodeOK
}

func (s *Server) handleSnapshotSave(w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	// The snapshot is buffered so that an error can still be reported as
	// JSON; snapshots of this state machine are bounded by MaxSnapshotBytes.
	var buf strings.Builder
	idx, err := s.cfg.Backend.SnapshotSave(r.Context(), &buf)
	if err != nil {
		return writeError(w, err)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(wire.HeaderSnapshotIndex, strconv.FormatUint(idx, 10))
	_, _ = io.WriteString(w, buf.String())
	return smr.CodeOK
}

func (s *Server) handleSnapshotRestore(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	if len(body) == 0 {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "snapshot restore: empty body"))
	}
	// The admin's own request signature travels with the snapshot, so
	// every replica checks it (and the admin permission) at the same index.
	c, err := s.adminCredentials(r)
	if err != nil {
		return writeError(w, err)
	}
	restore := &smr.Restore{Snapshot: body, Admin: c.key, Time: c.unix, RequestURI: r.URL.RequestURI(), Sig: c.sig}
	res, err := s.cfg.Backend.SnapshotRestore(r.Context(), restore)
	if err != nil {
		return writeError(w, err)
	}
	return writeResult(w, res, nil)
}

func (s *Server) handleAddMember(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	var req wire.AddMemberRequest
	if err := decodeStrict(body, &req); err != nil {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "member: %v", err))
	}
	m := consensus.Member{ID: req.ID, Address: req.Address}
	if m.ID == "" || m.Address == "" {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "member: id and address are required"))
	}
	m.Voter = true
	if err := s.cfg.Backend.AddMember(r.Context(), m); err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "member added", "id": m.ID})
	return smr.CodeOK
}

func (s *Server) handleRemoveMember(w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	id := strings.TrimPrefix(r.URL.Path, "/v1/admin/members/")
	if id == "" || strings.Contains(id, "/") {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "member id: %q is not a node id", id))
	}
	if err := s.cfg.Backend.RemoveMember(r.Context(), id); err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "member removed", "id": id})
	return smr.CodeOK
}
