package checkpoint

import (
	"crypto/ed25519"
	"errors"
	"fmt"
)

// ErrInvalidCertificate is wrapped by every error Certificate.Verify
// returns.
var ErrInvalidCertificate = errors.New("invalid checkpoint certificate")

// Signature is one member's signature inside a certificate.
type Signature struct {
	Signer string
	Sig    []byte
}

// Certificate is a statement with the signatures of a quorum of distinct
// members, sorted by Signer.
type Certificate struct {
	Statement Statement
	Sigs      []Signature // sorted by Signer, distinct
}

// Verify checks the certificate against the committee that signs it:
//   - the statement is valid (Statement.Validate);
//   - the signers are sorted and distinct (a repeated signer is reported
//     as a duplicate);
//   - every signer is a member of com;
//   - every signature is its signer's over the statement's SignBytes;
//   - there are at least com.Quorum() signatures.
//
// A certificate carrying any bad signature is rejected even when the good
// ones would reach a quorum: an honest collector never produces one.
// Errors wrap ErrInvalidCertificate, and ErrBadSignature for a signature
// problem.
func (c *Certificate) Verify(com *Committee) error {
	if c == nil {
		return fmt.Errorf("%w: nil certificate", ErrInvalidCertificate)
	}
	if com == nil {
		return fmt.Errorf("%w: no committee to verify against", ErrInvalidCertificate)
	}
	if err := c.Statement.Validate(); err != nil {
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
	if q := com.Quorum(); len(c.Sigs) < q {
		return fmt.Errorf("%w: %d signatures, a quorum of this %d-member committee is %d", ErrInvalidCertificate, len(c.Sigs), com.Size(), q)
	}
	return nil
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

// Signers returns the signer IDs in order.
func (c *Certificate) Signers() []string {
	out := make([]string, len(c.Sigs))
	for i, s := range c.Sigs {
		out[i] = s.Signer
	}
	return out
}

// MarshalBinary encodes the certificate as documented in the package
// comment. It refuses a certificate that could not be decoded again
// (invalid statement, unsorted or repeated signers, a signature that is not
// ed25519.SignatureSize bytes, more than MaxMembers signatures); it does
// not check the signatures themselves.
func (c *Certificate) MarshalBinary() ([]byte, error) {
	if err := c.Statement.Validate(); err != nil {
		return nil, fmt.Errorf("encoding checkpoint certificate: %w", err)
	}
	if len(c.Sigs) > MaxMembers {
		return nil, fmt.Errorf("encoding checkpoint certificate: %d signatures, more than the limit of %d", len(c.Sigs), MaxMembers)
	}
	if err := checkSigners(c.Sigs); err != nil {
		return nil, fmt.Errorf("encoding checkpoint certificate: %w", err)
	}
	n := len(certMagic) + 1 + c.Statement.bodyLen() + 2
	for _, s := range c.Sigs {
		if len(s.Sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("encoding checkpoint certificate: signature of %q is %d bytes, want %d", s.Signer, len(s.Sig), ed25519.SignatureSize)
		}
		n += 1 + len(s.Signer) + ed25519.SignatureSize
	}
	w := writer{b: make([]byte, 0, n)}
	w.raw([]byte(certMagic))
	w.u8(codecVersion)
	w.b = c.Statement.appendBody(w.b)
	w.u16(uint16(len(c.Sigs)))
	for _, s := range c.Sigs {
		w.str8(s.Signer)
		w.raw(s.Sig)
	}
	return w.b, nil
}

// UnmarshalBinary decodes a certificate encoded by MarshalBinary, accepting
// only the canonical form, and leaves c unchanged on error. It does not
// verify the signatures: call Verify. Errors wrap ErrMalformed.
func (c *Certificate) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	if err := r.header(certMagic, codecVersion); err != nil {
		return fmt.Errorf("decoding checkpoint certificate: %w", err)
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
	*c = Certificate{Statement: s, Sigs: sigs}
	return nil
}
