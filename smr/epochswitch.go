package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"math"

	"github.com/tandem-consensus/tandem/internal/binread"
	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// Consensus modes an epoch can run in.
const (
	ModeCFT = "cft"
	ModeBFT = "bft"
)

// MaxSwitchReasonBytes bounds EpochSwitch.Reason.
const MaxSwitchReasonBytes = 1024

// maxSwitchBodyBytes bounds the signed admin request body of an operator
// switch.
const maxSwitchBodyBytes = 4096

// EpochSwitch ends the current epoch: it travels as an EntryEpochSwitch
// log entry of the engine that runs the epoch (DESIGN invariants 4 and 10),
// and once it is applied at index I every replica stops that engine, signs
// HANDOFF(Epoch, I, state hash) and starts epoch Epoch in Mode from the
// state at I.
//
// A switch is authorised in one of two ways:
//   - by an operator: Admin, Time, RequestURI, Body and Sig are the signed
//     admin HTTP request that asked for it (POST /v1/admin/mode). Body is
//     the JSON SwitchRequest, whose mode and epoch must equal Mode and Epoch,
//     and Admin must hold the admin permission.
//   - by the detector: Admin is empty, and only an escalation to bft is
//     allowed (a switch that adds Byzantine fault tolerance; Reason names
//     the evidence). No replica can switch the cluster back to cft this way.
//   - by a calm period (automatic de-escalation): Admin is empty, Mode is
//     cft, and Calm holds signed CALM statements of members for the epoch
//     that ends (Epoch-1). Apply checks their shape and that they are
//     recent by the cluster's time (CalmWindow); the node checks that at
//     least f+1 distinct members of the epoch signed them, with their
//     configured keys, so one Byzantine replica cannot force it.
//
// Apply checks the authorisation and returns CodeOK without changing the
// state: the switch itself is carried out by the node, which also checks
// that Epoch is the one after its current epoch.
type EpochSwitch struct {
	Epoch  uint64 // the epoch the switch starts
	Mode   string // ModeCFT or ModeBFT
	Reason string // why, for the record (at most MaxSwitchReasonBytes)

	Admin      ed25519.PublicKey // operator switches only
	Time       int64             // the request's Tandem-Time, unix seconds
	RequestURI string            // the request's path and query, as signed
	Body       []byte            // the request body (a SwitchRequest)
	Sig        []byte            // Ed25519 over AdminSignBytes("POST", RequestURI, Time, Body)

	Calm []CalmStatement // calm de-escalations only: sorted by Signer, distinct
}

// SwitchRequest is the JSON body of POST /v1/admin/mode.
type SwitchRequest struct {
	Mode   string `json:"mode"`
	Epoch  uint64 `json:"epoch"` // the epoch the switch starts: the current epoch + 1
	Reason string `json:"reason,omitempty"`
}

// SwitchOutcome is the JSON of Result.Value for an applied switch entry.
type SwitchOutcome struct {
	Epoch uint64 `json:"epoch"`
	Mode  string `json:"mode"`
}

// NewEpochSwitchEntry returns the switch entry of s at time t.
func NewEpochSwitchEntry(t int64, s EpochSwitch) Entry {
	return Entry{Kind: EntryEpochSwitch, Time: t, Switch: &s}
}

// Verify runs the checks of s that need no state: fields, sizes, and the
// operator's signature. Errors are *Error.
func (s *EpochSwitch) Verify() error { return s.check() }

// check runs the stateless checks of s.
func (s *EpochSwitch) check() error {
	if s.Epoch < 2 {
		return Errorf(CodeMalformed, "epoch switch: epoch %d; a switch starts epoch 2 or later", s.Epoch)
	}
	if s.Mode != ModeCFT && s.Mode != ModeBFT {
		return Errorf(CodeMalformed, "epoch switch: mode %q; want %q or %q", s.Mode, ModeCFT, ModeBFT)
	}
	if len(s.Reason) > MaxSwitchReasonBytes {
		return Errorf(CodeTooLarge, "epoch switch: reason is %d bytes, the limit is %d", len(s.Reason), MaxSwitchReasonBytes)
	}
	if len(s.Admin) == 0 {
		if len(s.Sig) != 0 || len(s.Body) != 0 || s.RequestURI != "" || s.Time != 0 {
			return Errorf(CodeMalformed, "epoch switch: a request signature without an admin key")
		}
		if s.Mode == ModeCFT && len(s.Calm) > 0 {
			return checkCalmSet(s.Epoch-1, s.Calm)
		}
		if s.Mode != ModeBFT {
			return Errorf(CodePermissionDenied, "epoch switch to %s needs an operator's signed request or members' signed calm statements; only an escalation to bft may come from the detector", s.Mode)
		}
		if len(s.Calm) != 0 {
			return Errorf(CodeMalformed, "epoch switch: an escalation to bft carries no calm statements")
		}
		return nil
	}
	if len(s.Calm) != 0 {
		return Errorf(CodeMalformed, "epoch switch: an operator's switch carries no calm statements")
	}
	if len(s.Admin) != ed25519.PublicKeySize {
		return Errorf(CodeMalformed, "epoch switch: admin key is %d bytes, an Ed25519 public key is %d", len(s.Admin), ed25519.PublicKeySize)
	}
	if len(s.Sig) != ed25519.SignatureSize {
		return Errorf(CodeBadSignature, "epoch switch: signature of admin %s is %d bytes, an Ed25519 signature is %d", FormatKey(s.Admin), len(s.Sig), ed25519.SignatureSize)
	}
	if len(s.Body) > maxSwitchBodyBytes {
		return Errorf(CodeTooLarge, "epoch switch: request body is %d bytes, the limit is %d", len(s.Body), maxSwitchBodyBytes)
	}
	if !sigverify.Verify(s.Admin, AdminSignBytes("POST", s.RequestURI, s.Time, s.Body), s.Sig) {
		return Errorf(CodeBadSignature, "epoch switch: signature does not verify for admin %s", FormatKey(s.Admin))
	}
	var req SwitchRequest
	if err := json.Unmarshal(s.Body, &req); err != nil {
		return Errorf(CodeMalformed, "epoch switch: the signed request body is not a switch request: %v", err)
	}
	if req.Mode != s.Mode || req.Epoch != s.Epoch {
		return Errorf(CodeMalformed, "epoch switch: the signed request asks for epoch %d in mode %q, the entry says epoch %d in mode %q", req.Epoch, req.Mode, s.Epoch, s.Mode)
	}
	return nil
}

// PrecheckEpochSwitch runs, against the current state, the checks Apply
// runs on a switch entry. It changes nothing; errors are *Error.
func (m *StateMachine) PrecheckEpochSwitch(s *EpochSwitch) error {
	if s == nil {
		return Errorf(CodeMalformed, "no epoch switch")
	}
	err := s.check()
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkEpochSwitch(s, err)
}

// checkEpochSwitch runs the stateful checks. The caller holds m.mu.
func (m *StateMachine) checkEpochSwitch(s *EpochSwitch, stateless error) error {
	if stateless != nil {
		return stateless
	}
	if m.st.genesis == nil {
		return notInitialized()
	}
	if len(s.Admin) == 0 {
		return nil
	}
	ck := clientKey(s.Admin)
	if !m.st.known(ck) {
		return unknownClient(s.Admin)
	}
	if !m.st.allowed(ck, PermAdmin) {
		return Errorf(CodePermissionDenied, "epoch switch needs permission admin, which client %s does not hold", FormatKey(s.Admin))
	}
	return nil
}

// applyEpochSwitch executes a switch entry. The caller holds m.mu. The
// state does not change; the window check stops a captured operator request
// from being proposed again much later.
func (m *StateMachine) applyEpochSwitch(index uint64, entryTime int64, s *EpochSwitch) Result {
	res := Result{Index: index}
	if err := m.checkEpochSwitch(s, s.check()); err != nil {
		return errResult(res, err)
	}
	if len(s.Admin) != 0 {
		if at := max(entryTime, m.st.clock) / 1e9; s.Time < at-RestoreWindow || s.Time > at+RestoreWindow {
			return errResult(res, Errorf(CodeBadSignature, "epoch switch was signed at unix time %d, more than %d seconds from the cluster's time %d; sign it again", s.Time, RestoreWindow, at))
		}
	}
	if len(s.Calm) != 0 {
		if err := checkCalmTimes(max(entryTime, m.st.clock), s.Calm); err != nil {
			return errResult(res, err)
		}
	}
	res.Value = mustJSON(SwitchOutcome{Epoch: s.Epoch, Mode: s.Mode})
	return res
}

// appendSwitchBinary encodes s:
//
//	epoch (uint64) || len(mode) (uint8) || mode || len(reason) (uint16) ||
//	reason || len(admin) (uint8: 0 or 32) || admin || time (int64) ||
//	len(sig) (uint8) || sig || len(uri) (uint32) || uri || body (the rest)
//
// A switch without an admin key has no body; its calm statements, if any,
// take the body's place (see appendCalmBinary), so entries written before
// calm statements existed decode unchanged.
func appendSwitchBinary(b []byte, s *EpochSwitch) ([]byte, error) {
	switch {
	case len(s.Mode) > math.MaxUint8:
		return nil, Errorf(CodeTooLarge, "cannot encode epoch switch: mode is %d bytes", len(s.Mode))
	case len(s.Reason) > math.MaxUint16:
		return nil, Errorf(CodeTooLarge, "cannot encode epoch switch: reason is %d bytes", len(s.Reason))
	case len(s.Admin) != 0 && len(s.Admin) != ed25519.PublicKeySize:
		return nil, Errorf(CodeMalformed, "cannot encode epoch switch: admin key is %d bytes", len(s.Admin))
	case len(s.Sig) > math.MaxUint8:
		return nil, Errorf(CodeMalformed, "cannot encode epoch switch: signature is %d bytes", len(s.Sig))
	case uint64(len(s.RequestURI)) > math.MaxUint32:
		return nil, Errorf(CodeTooLarge, "cannot encode epoch switch: request URI is %d bytes", len(s.RequestURI))
	case len(s.Calm) != 0 && (len(s.Admin) != 0 || len(s.Body) != 0):
		return nil, Errorf(CodeMalformed, "cannot encode epoch switch: calm statements and an operator's request in one switch")
	}
	b = binary.BigEndian.AppendUint64(b, s.Epoch)
	b = append(b, byte(len(s.Mode)))
	b = append(b, s.Mode...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Reason)))
	b = append(b, s.Reason...)
	b = append(b, byte(len(s.Admin)))
	b = append(b, s.Admin...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Time))
	b = append(b, byte(len(s.Sig)))
	b = append(b, s.Sig...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.RequestURI)))
	b = append(b, s.RequestURI...)
	if len(s.Calm) != 0 {
		return appendCalmBinary(b, s.Calm)
	}
	return append(b, s.Body...), nil
}

// decodeSwitchBinary decodes what appendSwitchBinary wrote. The result does
// not alias p.
func decodeSwitchBinary(p []byte) (*EpochSwitch, error) {
	d := binread.New(bytes.Clone(p), func(field string, off int, reason string) error {
		return Errorf(CodeMalformed, "epoch switch: %s at byte %d: %s", field, off, reason)
	})
	s := &EpochSwitch{}
	s.Epoch = d.U64("epoch")
	s.Mode = string(d.Take("mode", int(d.U8("mode length"))))
	s.Reason = string(d.Take("reason", int(d.U16("reason length"))))
	if n := d.U8("admin key length"); n != 0 {
		if n != ed25519.PublicKeySize {
			d.Fail("admin key length", "%d bytes, want 0 or %d", n, ed25519.PublicKeySize)
		}
		s.Admin = ed25519.PublicKey(d.Take("admin key", int(n)))
	}
	s.Time = int64(d.U64("time"))
	if n := d.U8("signature length"); n != 0 {
		s.Sig = d.Take("signature", int(n))
	}
	s.RequestURI = string(d.Take("request URI", int(d.U32("request URI length"))))
	if err := d.Err(); err != nil {
		return nil, err
	}
	if rest := d.Remaining(); rest > 0 {
		s.Body = d.Take("body", rest)
	}
	if len(s.Admin) == 0 && len(s.Body) != 0 {
		calm, err := decodeCalmBinary(s.Body)
		if err != nil {
			return nil, err
		}
		s.Calm, s.Body = calm, nil
	}
	return s, nil
}

// SignEpochSwitch returns the operator switch of req signed by priv as the
// admin request "POST requestURI" at unixSeconds.
func SignEpochSwitch(priv ed25519.PrivateKey, requestURI string, unixSeconds int64, req SwitchRequest) (*EpochSwitch, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, Errorf(CodeMalformed, "private key is %d bytes, an Ed25519 private key is %d", len(priv), ed25519.PrivateKeySize)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, Errorf(CodeMalformed, "switch request: %v", err)
	}
	s := &EpochSwitch{
		Epoch: req.Epoch, Mode: req.Mode, Reason: req.Reason,
		Admin: append(ed25519.PublicKey(nil), priv.Public().(ed25519.PublicKey)...),
		Time:  unixSeconds, RequestURI: requestURI, Body: body,
	}
	s.Sig = ed25519.Sign(priv, AdminSignBytes("POST", requestURI, unixSeconds, body))
	return s, nil
}
