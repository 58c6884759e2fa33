package checkpoint

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidCertificate is wrapped by every error Certificate.Verify
// returns.
var ErrInvalidCertificate = errors.New("invalid checkpoint certificate")

// Signature is one member's signature inside a certificate.
type Signature struct {
	Signer string
	Sig    []byte
}

// Form is the rule a certificate claims to meet; the signatures are the
// same HANDOFF or CHECKPOINT votes whatever the form.
type Form uint8

const (
	// FormQuorum is the ordinary certificate: a quorum (Committee.Quorum)
	// of distinct members that are not quarantined. The zero value.
	FormQuorum Form = 0
	// FormFallback is the hand-over fallback of DESIGN invariant 10: no
	// quorum of matching states formed in time, and at least
	// Committee.FallbackThreshold distinct members that are not
	// quarantined signed the same HANDOFF statement. Only a handoff
	// statement has this form.
	FormFallback Form = 1
)

// String returns "quorum", "fallback" or "form(N)".
func (f Form) String() string {
	switch f {
	case FormQuorum:
		return "quorum"
	case FormFallback:
		return "fallback"
	}
	return fmt.Sprintf("form(%d)", uint8(f))
}

// Certificate is a statement with the signatures of distinct members,
// sorted by Signer, enough for its Form.
type Certificate struct {
	Statement Statement
	Form      Form
	Sigs      []Signature // sorted by Signer, distinct
}

// Verify checks the certificate against the committee that signs it and
// the members the verifying node holds quarantined (IDs outside the
// committee are ignored; nil for none):
//   - the statement is valid (Statement.Validate);
//   - the form is known, and a fallback certificate is a handoff;
//   - the signers are sorted and distinct (a repeated signer is reported
//     as a duplicate);
//   - every signer is a member of com;
//   - every signature is its signer's over the statement's SignBytes;
//   - the signers that are not quarantined number at least the form's
//     threshold: com.Quorum() for FormQuorum,
//     com.FallbackThreshold(quarantined members) for FormFallback.
//
// A quarantined member's signature must still verify, but never counts.
// A certificate carrying any bad signature is rejected even when the good
// ones would reach the threshold: an honest collector never produces one.
// Why two conflicting certificates that pass Verify at correct nodes
// cannot exist is argued at Committee.FallbackThreshold.
// Errors wrap ErrInvalidCertificate, and ErrBadSignature for a signature
// problem.
func (c *Certificate) Verify(com *Committee, quarantined []string) error {
	if c == nil {
		return fmt.Errorf("%w: nil certificate", ErrInvalidCertificate)
	}
	if com == nil {
		return fmt.Errorf("%w: no committee to verify against", ErrInvalidCertificate)
	}
	if err := c.Statement.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	if err := c.checkForm(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	if err := checkSigners(c.Sigs); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	msg := c.Statement.SignBytes()
	for _, s := range c.Sigs {
		if err := verifySig(com, s.Signer, s.Sig, msg); err != nil {
			return fmt.Errorf("%w of %s: %w", ErrInvalidCertificate, c.Statement, err)
		}
	}
	q := com.quarantinedSet(quarantined)
	counted := 0
	for _, s := range c.Sigs {
		if !q[s.Signer] {
			counted++
		}
	}
	if c.Form == FormFallback {
		if t := com.FallbackThreshold(len(q)); counted < t {
			return fmt.Errorf("%w: fallback certificate with %d signatures of members not quarantined, this %d-member committee with %d quarantined needs %d",
				ErrInvalidCertificate, counted, com.Size(), len(q), t)
		}
		return nil
	}
	if qn := com.Quorum(); counted < qn {
		if counted < len(c.Sigs) {
			return fmt.Errorf("%w: %d signatures of members not quarantined (%d quarantined signers do not count), a quorum of this %d-member committee is %d",
				ErrInvalidCertificate, counted, len(c.Sigs)-counted, com.Size(), qn)
		}
		return fmt.Errorf("%w: %d signatures, a quorum of this %d-member committee is %d", ErrInvalidCertificate, counted, com.Size(), qn)
	}
	return nil
}

// checkForm checks that the form is known and fits the statement.
func (c *Certificate) checkForm() error {
	switch c.Form {
	case FormQuorum:
		return nil
	case FormFallback:
		if c.Statement.Kind != KindHandoff {
			return fmt.Errorf("a fallback certificate certifies a handoff, not a %s", c.Statement.Kind)
		}
		return nil
	}
	return fmt.Errorf("certificate form %d is unknown (want %d quorum or %d fallback)", uint8(c.Form), FormQuorum, FormFallback)
}

// checkSigners checks that signers are non-empty, sorted and distinct.
func checkSigners(sigs []Signature) error {
	for i, s := range sigs {
		if err := validateID(s.Signer); err != nil {
			return fmt.Errorf("signature %d: %w", i, err)
		}
		if i == 0 {
			continue
		}
		switch prev := sigs[i-1].Signer; {
		case prev == s.Signer:
			return fmt.Errorf("duplicate signer %q", s.Signer)
		case prev > s.Signer:
			return fmt.Errorf("signers not sorted: %q comes after %q", s.Signer, prev)
		}
	}
	return nil
}

// clone returns a copy that shares no memory with c.
func (c *Certificate) clone() *Certificate {
	out := &Certificate{Statement: c.Statement.clone(), Form: c.Form, Sigs: make([]Signature, len(c.Sigs))}
	for i, s := range c.Sigs {
		out.Sigs[i] = Signature{Signer: s.Signer, Sig: slices.Clone(s.Sig)}
	}
	return out
}

// Signers returns the signer IDs in order.
func (c *Certificate) Signers() []string {
	out := make([]string, len(c.Sigs))
	for i, s := range c.Sigs {
		out[i] = s.Signer
	}
	return out
}

// MarshalBinary encodes the certificate as documented in the package
// comment: a quorum certificate in version 1, a fallback certificate in
// version 2, which adds the form. It refuses a certificate that could not
// be decoded again (invalid statement or form, unsorted or repeated
// signers, a signature that is not ed25519.SignatureSize bytes, more than
// MaxMembers signatures); it does not check the signatures themselves.
func (c *Certificate) MarshalBinary() ([]byte, error) {
	if err := c.Statement.Validate(); err != nil {
		return nil, fmt.Errorf("encoding checkpoint certificate: %w", err)
	}
	if err := c.checkForm(); err != nil {
		return nil, fmt.Errorf("encoding checkpoint certificate: %w", err)
	}
	if len(c.Sigs) > MaxMembers {
		return nil, fmt.Errorf("encoding checkpoint certificate: %d signatures, more than the limit of %d", len(c.Sigs), MaxMembers)
	}
	if err := checkSigners(c.Sigs); err != nil {
		return nil, fmt.Errorf("encoding checkpoint certificate: %w", err)
	}
	n := len(certMagic) + 2 + c.Statement.bodyLen() + 2
	for _, s := range c.Sigs {
		if len(s.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("encoding checkpoint certificate: signature of %q is %d bytes, want %d", s.Signer, len(s.Sig), ed25519.SignatureSize)
		}
		n += 1 + len(s.Signer) + ed25519.SignatureSize
	}
	w := writer{b: make([]byte, 0, n)}
	w.raw([]byte(certMagic))
	if c.Form == FormQuorum {
		w.u8(codecVersion)
	} else {
		w.u8(certVersionForm)
		w.u8(uint8(c.Form))
	}
	w.b = c.Statement.appendBody(w.b)
	w.u16(uint16(len(c.Sigs)))
	for _, s := range c.Sigs {
		w.str8(s.Signer)
		w.raw(s.Sig)
	}
	return w.b, nil
}

// UnmarshalBinary decodes a certificate encoded by MarshalBinary, accepting
// only the canonical form (version 1 for a quorum certificate, so the
// certificates stored before version 2 existed decode unchanged; version
// 2 only for the other forms), and leaves c unchanged on error. It does
// not verify the signatures: call Verify. Errors wrap ErrMalformed.
func (c *Certificate) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	version, err := r.headerVersions(certMagic, codecVersion, certVersionForm)
	if err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
	}
	form := FormQuorum
	if version == certVersionForm {
		form = Form(r.u8("form"))
		if r.err != nil {
			return fmt.Errorf("decoding checkpoint certificate: %w", r.err)
		}
		if form == FormQuorum {
			return fmt.Errorf("decoding checkpoint certificate: %w: a quorum certificate is encoded in version %d, not %d", ErrMalformed, codecVersion, certVersionForm)
		}
	}
	s, err := readBody(&r)
	if err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
	}
	n := int(r.u16("signature count"))
	if r.err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", r.err)
	}
	const minSigLen = 1 + 1 + ed25519.SignatureSize
	if n > MaxMembers || n*minSigLen > r.remaining() {
		return fmt.Errorf("decoding checkpoint certificate: %w: %d signatures do not fit in %d bytes (limit %d)", ErrMalformed, n, r.remaining(), MaxMembers)
	}
	sigs := make([]Signature, n)
	for i := range sigs {
		sigs[i].Signer = r.str8("signer")
		sigs[i].Sig = append([]byte(nil), r.bytes(ed25519.SignatureSize, "signature")...)
	}
	if err := r.end(); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
	}
	if err := checkSigners(sigs); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w: %w", ErrMalformed, err)
	}
	out := Certificate{Statement: s, Form: form, Sigs: sigs}
	if err := out.checkForm(); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w: %w", ErrMalformed, err)
	}
	*c = out
	return nil
}
