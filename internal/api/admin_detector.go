package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

// The detector's admin endpoints (docs/api.md, docs/detector.md). Each
// node answers for itself: its own quarantine list and the evidence it has
// verified. They are signed admin requests like the other admin verbs.
//
//	GET  /v1/admin/quarantine                       this node's quarantine list and lift history
//	POST /v1/admin/quarantine/lift  {"node": ID}    lift ID's quarantine on this node
//	GET  /v1/admin/evidence                         every evidence record this node keeps
//	GET  /v1/admin/evidence/{id}                    one record, in its JSON form
//	GET  /v1/admin/evidence/export?format=json|git  every record (json) or the Git form (git)

// DetectorBackend is implemented by a Backend that runs the detector. A
// Backend without it answers the detector's endpoints with not_found.
type DetectorBackend interface {
	QuarantineList(ctx context.Context) (QuarantineView, error)
	// QuarantineLift lifts node's quarantine on this node; operator names
	// who did it (the admin key).
	QuarantineLift(ctx context.Context, node, operator string) (LiftEntry, error)
	EvidenceList(ctx context.Context) (EvidenceListView, error)
	// EvidenceGet returns one record's JSON form (evidence.Evidence
	// MarshalJSON), which carries its canonical encoding.
	EvidenceGet(ctx context.Context, id string) (json.RawMessage, error)
	// EvidenceExport returns every record (format "json") or the node's
	// evidence as a Git repository (format "git").
	EvidenceExport(ctx context.Context, format string) (any, error)
}

// EvidenceSummary describes one evidence record.
type EvidenceSummary struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Offender    string `json:"offender"`
	Epoch       uint64 `json:"epoch"`
	Irrefutable bool   `json:"irrefutable"`
	// Verified: the answering node re-verified the record against the
	// member keys just now.
	Verified bool   `json:"verified"`
	Summary  string `json:"summary"`
}

// EvidenceListView is the body of GET /v1/admin/evidence.
type EvidenceListView struct {
	Node     string            `json:"node"`
	Evidence []EvidenceSummary `json:"evidence"`
}

// QuarantineEntry is one quarantined member.
type QuarantineEntry struct {
	Node     string            `json:"node"`
	Since    time.Time         `json:"since"`
	Reason   string            `json:"reason"`
	Evidence []EvidenceSummary `json:"evidence"`
}

// LiftEntry is a lifted quarantine.
type LiftEntry struct {
	QuarantineEntry
	Operator string    `json:"operator"`
	LiftedAt time.Time `json:"lifted_at"`
}

// QuarantineView is the body of GET /v1/admin/quarantine.
type QuarantineView struct {
	// Node is the answering node.
	Node        string            `json:"node"`
	Quarantined []QuarantineEntry `json:"quarantined"`
	Lifted      []LiftEntry       `json:"lifted"`
}

// LiftRequest is the body of POST /v1/admin/quarantine/lift.
type LiftRequest struct {
	Node string `json:"node"`
}

// GitExport is the body of GET /v1/admin/evidence/export?format=git: a bare
// Git repository as objects (name → uncompressed object with its header,
// base64 in JSON), refs (full name → commit) and the ref HEAD points to.
type GitExport struct {
	Format  string            `json:"format"`
	Head    string            `json:"head"`
	Refs    map[string]string `json:"refs"`
	Objects map[string][]byte `json:"objects"`
}

// detectorRoutes registers the detector's admin endpoints.
func (s *Server) detectorRoutes() {
	s.adminRoute("/v1/admin/quarantine", http.MethodGet, 0, s.withDetector(s.handleQuarantineList))
	s.adminRoute("/v1/admin/quarantine/lift", http.MethodPost, s.cfg.MaxRequestBytes, s.withDetector(s.handleQuarantineLift))
	s.adminRoute("/v1/admin/evidence", http.MethodGet, 0, s.withDetector(s.handleEvidenceList))
	s.adminRoute("/v1/admin/evidence/", http.MethodGet, 0, s.withDetector(s.handleEvidenceGet))
}

type detectorHandler func(d DetectorBackend, w http.ResponseWriter, r *http.Request, body []byte) smr.Code

func (s *Server) withDetector(h detectorHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
		d, ok := s.cfg.Backend.(DetectorBackend)
		if !ok {
			return writeError(w, smr.Errorf(smr.CodeNotFound, "this node runs no detector"))
		}
		return h(d, w, r, body)
	}
}

func (s *Server) handleQuarantineList(d DetectorBackend, w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	v, err := d.QuarantineList(r.Context())
	if err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, v)
	return smr.CodeOK
}

func (s *Server) handleQuarantineLift(d DetectorBackend, w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	var req LiftRequest
	if err := decodeStrict(body, &req); err != nil {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "lift request: %v", err))
	}
	if req.Node == "" {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "lift request: node is required"))
	}
	operator := "admin " + r.Header.Get(HeaderKey)
	v, err := d.QuarantineLift(r.Context(), req.Node, operator)
	if err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, v)
	return smr.CodeOK
}

func (s *Server) handleEvidenceList(d DetectorBackend, w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	v, err := d.EvidenceList(r.Context())
	if err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, v)
	return smr.CodeOK
}

func (s *Server) handleEvidenceGet(d DetectorBackend, w http.ResponseWriter, r *http.Request, _ []byte) smr.Code {
	id := strings.TrimPrefix(r.URL.Path, "/v1/admin/evidence/")
	if id == "export" {
		format := r.URL.Query().Get("format")
		if format == "" {
			format = "json"
		}
		if format != "json" && format != "git" {
			return writeError(w, smr.Errorf(smr.CodeMalformed, "format: %q is not json or git", format))
		}
		v, err := d.EvidenceExport(r.Context(), format)
		if err != nil {
			return writeError(w, err)
		}
		writeJSON(w, http.StatusOK, v)
		return smr.CodeOK
	}
	if id == "" || strings.Contains(id, "/") {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "evidence id: %q is not an evidence id (64 hex digits)", id))
	}
	v, err := d.EvidenceGet(r.Context(), id)
	if err != nil {
		return writeError(w, err)
	}
	writeJSON(w, http.StatusOK, v)
	return smr.CodeOK
}
