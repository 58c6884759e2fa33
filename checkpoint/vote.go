package checkpoint

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// ErrBadSignature is wrapped by the errors of Vote.Verify and
// Certificate.Verify that concern one signature: unknown signer, wrong
// length, or a signature that does not verify.
var ErrBadSignature = errors.New("bad checkpoint signature")

// Vote is one member's signature over a statement.
type Vote struct {
	Statement Statement
	Signer    string
	Sig       []byte
}

// Sign validates s and signs its SignBytes as signer. The vote's statement
// is a copy of s.
func Sign(key ed25519.PrivateKey, signer string, s Statement) (Vote, error) {
	if err := s.Validate(); err != nil {
		return Vote{}, fmt.Errorf("signing checkpoint vote: %w", err)
	}
	if err := validateID(signer); err != nil {
		return Vote{}, fmt.Errorf("signing checkpoint vote: signer: %w", err)
	}
	if len(key) != ed25519.PrivateKeySize {
		return Vote{}, fmt.Errorf("signing checkpoint vote: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	s = s.clone()
	return Vote{Statement: s, Signer: signer, Sig: ed25519.Sign(key, s.SignBytes())}, nil
}

// Clone returns a copy of v that shares no memory with it.
func (v Vote) Clone() Vote {
	return Vote{Statement: v.Statement.clone(), Signer: v.Signer, Sig: slices.Clone(v.Sig)}
}

// Verify checks that the statement is valid, the signer is a member of c
// and the signature is the signer's over the statement's SignBytes.
func (v Vote) Verify(c *Committee) error {
	if err := v.Statement.Validate(); err != nil {
		return fmt.Errorf("checkpoint vote of %q: %w", v.Signer, err)
	}
	return verifySig(c, v.Signer, v.Sig, v.Statement.SignBytes())
}

// verifySig checks one member's signature over msg.
func verifySig(c *Committee, signer string, sig, msg []byte) error {
	k, ok := c.Key(signer)
	if !ok {
		return fmt.Errorf("%w: signer %q is not a committee member", ErrBadSignature, signer)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature of %q is %d bytes, want %d", ErrBadSignature, signer, len(sig), ed25519.SignatureSize)
	}
	if !sigverify.Verify(k, msg, sig) {
		return fmt.Errorf("%w: signature of %q does not verify over the statement", ErrBadSignature, signer)
	}
	return nil
}

// Binary encoding magics and version.
const (
	voteMagic    = "TCKV"
	certMagic    = "TCKC"
	codecVersion = 1
	// certVersionForm is the certificate encoding that carries a Form
	// byte; a quorum certificate keeps version 1.
	certVersionForm = 2
)

// MarshalBinary encodes the vote as documented in the package comment. It
// refuses a vote that could not be decoded again: invalid statement or
// signer, or a signature that is not ed25519.SignatureSize bytes.
func (v Vote) MarshalBinary() ([]byte, error) {
	if err := v.Statement.Validate(); err != nil {
		return nil, fmt.Errorf("encoding checkpoint vote: %w", err)
	}
	if err := validateID(v.Signer); err != nil {
		return nil, fmt.Errorf("encoding checkpoint vote: signer: %w", err)
	}
	if len(v.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("encoding checkpoint vote: signature is %d bytes, want %d", len(v.Sig), ed25519.SignatureSize)
	}
	w := writer{b: make([]byte, 0, len(voteMagic)+1+v.Statement.bodyLen()+1+len(v.Signer)+ed25519.SignatureSize)}
	w.raw([]byte(voteMagic))
	w.u8(codecVersion)
	w.b = v.Statement.appendBody(w.b)
	w.str8(v.Signer)
	w.raw(v.Sig)
	return w.b, nil
}

// UnmarshalBinary decodes a vote encoded by MarshalBinary. It accepts only
// the canonical form (a valid statement, sorted members, no trailing
// bytes) and leaves v unchanged on error. It does not verify the
// signature. Errors wrap ErrMalformed.
func (v *Vote) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	if err := r.header(voteMagic, codecVersion); err != nil {
		return fmt.Errorf("decoding checkpoint vote: %w", err)
	}
	s, err := readBody(&r)
	if err != nil {
		return fmt.Errorf("decoding checkpoint vote: %w", err)
	}
	signer := r.str8("signer")
	sig := r.bytes(ed25519.SignatureSize, "signature")
	if err := r.end(); err != nil {
		return fmt.Errorf("decoding checkpoint vote: %w", err)
	}
	if err := validateID(signer); err != nil {
		return fmt.Errorf("decoding checkpoint vote: %w: signer: %w", ErrMalformed, err)
	}
	*v = Vote{Statement: s, Signer: signer, Sig: append([]byte(nil), sig...)}
	return nil
}
