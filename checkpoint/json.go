package checkpoint

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// JSON forms, for status and admin output. Hashes and signatures are
// lowercase hex; the kind is its name:
//
//	{"kind":"handoff","epoch":4,"index":1200,"state_hash":"5f2a…",
//	 "mode":"bft","members":["n1","n2","n3","n4"]}
//	{"statement":{…},"signer":"n1","sig":"…"}                     a vote
//	{"statement":{…},"form":"quorum","sigs":[{"signer":"n1","sig":"…"},…]}
//	                                                              a certificate
//
// The form is "quorum" or "fallback"; a certificate without one (written
// before forms existed) is a quorum certificate. Decoding validates the
// statement, the form and the signers' order but checks no signature.

// MarshalText returns the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	switch k {
	case KindCheckpoint, KindHandoff:
		return []byte(k.String()), nil
	}
	return nil, fmt.Errorf("checkpoint kind %d is unknown", uint8(k))
}

// UnmarshalText accepts "checkpoint" or "handoff".
func (k *Kind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "checkpoint":
		*k = KindCheckpoint
	case "handoff":
		*k = KindHandoff
	default:
		return fmt.Errorf("checkpoint kind %q is unknown (want checkpoint or handoff)", b)
	}
	return nil
}

// MarshalText returns the form's name.
func (f Form) MarshalText() ([]byte, error) {
	switch f {
	case FormQuorum, FormFallback:
		return []byte(f.String()), nil
	}
	return nil, fmt.Errorf("certificate form %d is unknown", uint8(f))
}

// UnmarshalText accepts "quorum" or "fallback".
func (f *Form) UnmarshalText(b []byte) error {
	switch string(b) {
	case "quorum":
		*f = FormQuorum
	case "fallback":
		*f = FormFallback
	default:
		return fmt.Errorf("certificate form %q is unknown (want quorum or fallback)", b)
	}
	return nil
}

// hexBytes is a byte slice in JSON hex.
type hexBytes []byte

func (h hexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexBytes) UnmarshalText(b []byte) error {
	p, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("not hex: %w", err)
	}
	*h = p
	return nil
}

type statementJSON struct {
	Kind      Kind     `json:"kind"`
	Epoch     uint64   `json:"epoch"`
	Index     uint64   `json:"index"`
	StateHash hexBytes `json:"state_hash"`
	Mode      string   `json:"mode,omitempty"`
	Members   []string `json:"members,omitempty"`
}

// MarshalJSON encodes the statement in its JSON form.
func (s Statement) MarshalJSON() ([]byte, error) {
	return json.Marshal(statementJSON{Kind: s.Kind, Epoch: s.Epoch, Index: s.Index,
		StateHash: s.StateHash[:], Mode: s.Mode, Members: s.Members})
}

// UnmarshalJSON decodes and validates a statement.
func (s *Statement) UnmarshalJSON(b []byte) error {
	var j statementJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("decoding checkpoint statement: %w", err)
	}
	if len(j.StateHash) != 32 {
		return fmt.Errorf("decoding checkpoint statement: state_hash is %d bytes, want 32", len(j.StateHash))
	}
	out := Statement{Kind: j.Kind, Epoch: j.Epoch, Index: j.Index, Mode: j.Mode, Members: j.Members}
	copy(out.StateHash[:], j.StateHash)
	if err := out.Validate(); err != nil {
		return fmt.Errorf("decoding checkpoint statement: %w", err)
	}
	*s = out
	return nil
}

type signatureJSON struct {
	Signer string   `json:"signer"`
	Sig    hexBytes `json:"sig"`
}

// MarshalJSON encodes the signature as {"signer":…,"sig":hex}.
func (s Signature) MarshalJSON() ([]byte, error) {
	return json.Marshal(signatureJSON{Signer: s.Signer, Sig: s.Sig})
}

// UnmarshalJSON decodes {"signer":…,"sig":hex}.
func (s *Signature) UnmarshalJSON(b []byte) error {
	var j signatureJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("decoding checkpoint signature: %w", err)
	}
	*s = Signature{Signer: j.Signer, Sig: j.Sig}
	return nil
}

type voteJSON struct {
	Statement Statement `json:"statement"`
	Signer    string    `json:"signer"`
	Sig       hexBytes  `json:"sig"`
}

// MarshalJSON encodes the vote in its JSON form.
func (v Vote) MarshalJSON() ([]byte, error) {
	return json.Marshal(voteJSON{Statement: v.Statement, Signer: v.Signer, Sig: v.Sig})
}

// UnmarshalJSON decodes a vote; it does not verify the signature.
func (v *Vote) UnmarshalJSON(b []byte) error {
	var j voteJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("decoding checkpoint vote: %w", err)
	}
	if err := validateID(j.Signer); err != nil {
		return fmt.Errorf("decoding checkpoint vote: signer: %w", err)
	}
	*v = Vote{Statement: j.Statement, Signer: j.Signer, Sig: j.Sig}
	return nil
}

type certificateJSON struct {
	Statement Statement   `json:"statement"`
	Form      *Form       `json:"form,omitempty"`
	Sigs      []Signature `json:"sigs"`
}

// MarshalJSON encodes the certificate in its JSON form.
func (c Certificate) MarshalJSON() ([]byte, error) {
	sigs := c.Sigs
	if sigs == nil {
		sigs = []Signature{}
	}
	form := c.Form
	return json.Marshal(certificateJSON{Statement: c.Statement, Form: &form, Sigs: sigs})
}

// UnmarshalJSON decodes a certificate; it checks the form and the
// signers' order but no signature (call Verify). A missing form is
// FormQuorum.
func (c *Certificate) UnmarshalJSON(b []byte) error {
	var j certificateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
	}
	if err := checkSigners(j.Sigs); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
	}
	out := Certificate{Statement: j.Statement, Sigs: j.Sigs}
	if j.Form != nil {
		out.Form = *j.Form
	}
	if err := out.checkForm(); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
	}
	*c = out
	return nil
}
