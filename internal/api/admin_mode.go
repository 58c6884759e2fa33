package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/smr"
)

// ModeBackend is implemented by a Backend that can switch the cluster's
// consensus mode (consensus_mode auto).
type ModeBackend interface {
	// Epoch reports the current epoch, or nil when the node does not run
	// consensus_mode auto.
	Epoch() *EpochStatus
	// SwitchMode orders an operator's switch (its signed request is in s)
	// through the current epoch's engine and returns its Result.
	SwitchMode(ctx context.Context, s *smr.EpochSwitch) (smr.Result, error)
}

// EpochStatus is the epoch part of GET /v1/status and the body of GET
// /v1/admin/mode.
type EpochStatus struct {
	Epoch     uint64   `json:"epoch"`
	Mode      string   `json:"mode"`
	Members   []string `json:"members"`
	BaseIndex uint64   `json:"base_index,omitempty"`
	// Reason is why the last switch happened (empty in epoch 1).
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Switching is set from the end of the epoch until the next one runs.
	Switching bool `json:"switching,omitempty"`
	// Certificate is the signed hand-over that started the epoch.
	Certificate *checkpoint.Certificate `json:"certificate,omitempty"`
	// CertificateForm is how Certificate was formed: "quorum", or
	// "fallback" when no quorum of matching states formed within
	// view_change_timeout (DESIGN invariant 10). Empty in epoch 1.
	CertificateForm string `json:"certificate_form,omitempty"`
}

func (s *Server) modeRoutes() {
	s.adminRoute("/v1/admin/mode", http.MethodGet, 0, s.handleModeGet)
	s.adminRoute("/v1/admin/mode", http.MethodPost, s.cfg.MaxRequestBytes, s.handleModeSet)
}

func (s *Server) modeBackend() (ModeBackend, *EpochStatus) {
	mb, ok := s.cfg.Backend.(ModeBackend)
	if !ok {
		return nil, nil
	}
	return mb, mb.Epoch()
}

func (s *Server) handleModeGet(w http.ResponseWriter, _ *http.Request, _ []byte) smr.Code {
	_, ep := s.modeBackend()
	if ep == nil {
		return writeError(w, smr.Errorf(smr.CodeNotFound, "this node does not run consensus_mode auto: it has no epochs and cannot switch modes"))
	}
	writeJSON(w, http.StatusOK, ep)
	return smr.CodeOK
}

func (s *Server) handleModeSet(w http.ResponseWriter, r *http.Request, body []byte) smr.Code {
	mb, ep := s.modeBackend()
	if ep == nil {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "mode switch: this node does not run consensus_mode auto; a cft or bft cluster keeps its mode"))
	}
	var req smr.SwitchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return writeError(w, smr.Errorf(smr.CodeMalformed, "mode switch: body is not {\"mode\": \"cft|bft\", \"epoch\": N, \"reason\": \"...\"}: %v", err))
	}
	c, err := s.adminCredentials(r)
	if err != nil {
		return writeError(w, err)
	}
	sw := &smr.EpochSwitch{Epoch: req.Epoch, Mode: req.Mode, Reason: req.Reason,
		Admin: c.key, Time: c.unix, RequestURI: r.URL.RequestURI(), Body: body, Sig: c.sig}
	res, err := mb.SwitchMode(r.Context(), sw)
	if err != nil {
		return writeError(w, err)
	}
	return writeResult(w, res, nil)
}
