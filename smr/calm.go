package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"slices"
	"strings"
	"time"

	"github.com/tandem-consensus/tandem/internal/binread"
	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// Bounds of the calm statements of a de-escalation.
const (
	// MaxCalmStatements bounds EpochSwitch.Calm.
	MaxCalmStatements = 64
	// MaxCalmSignerBytes bounds CalmStatement.Signer (a node ID).
	MaxCalmSignerBytes = 63
	// CalmMaxAge is how much older than the cluster's time at the switch
	// entry a calm statement may be.
	CalmMaxAge = 60 * time.Second
	// CalmMaxAhead is how far ahead of the cluster's time at the switch
	// entry a calm statement may be dated (clock skew between members).
	CalmMaxAhead = 10 * time.Second
)

// calmDomain separates calm signatures from every other signature of a
// node key.
const calmDomain = "tandem calm v1\x00"

// CalmStatement is a member's signed CALM(epoch, time): while the cluster
// ran Epoch (a bft epoch reached by escalation) the member Signer held the
// offender quarantined and saw no new anomaly for its calm period, as of
// Time (Unix nanoseconds, the signer's clock). f+1 of them from distinct
// members authorise the switch back to cft (EpochSwitch).
type CalmStatement struct {
	Signer string `json:"signer"`
	Epoch  uint64 `json:"epoch"`
	Time   int64  `json:"time"`
	Sig    []byte `json:"sig"`
}

// CalmSignBytes returns the bytes a calm statement's signature covers.
func CalmSignBytes(signer string, epoch uint64, t int64) []byte {
	b := make([]byte, 0, len(calmDomain)+1+len(signer)+16)
	b = append(b, calmDomain...)
	b = append(b, byte(len(signer)))
	b = append(b, signer...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return binary.BigEndian.AppendUint64(b, uint64(t))
}

// SignCalm returns signer's calm statement for epoch at t (Unix
// nanoseconds), signed with its node key priv.
func SignCalm(priv ed25519.PrivateKey, signer string, epoch uint64, t int64) (CalmStatement, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return CalmStatement{}, Errorf(CodeMalformed, "calm statement: private key is %d bytes, an Ed25519 private key is %d", len(priv), ed25519.PrivateKeySize)
	}
	c := CalmStatement{Signer: signer, Epoch: epoch, Time: t}
	if err := c.checkShape(); err != nil {
		return CalmStatement{}, err
	}
	c.Sig = ed25519.Sign(priv, CalmSignBytes(signer, epoch, t))
	return c, nil
}

// checkShape checks the fields of c that need no key.
func (c *CalmStatement) checkShape() error {
	if c.Signer == "" || len(c.Signer) > MaxCalmSignerBytes {
		return Errorf(CodeMalformed, "calm statement: signer %q must be 1 to %d bytes", c.Signer, MaxCalmSignerBytes)
	}
	if c.Epoch == 0 {
		return Errorf(CodeMalformed, "calm statement of %s: epoch 0", c.Signer)
	}
	if c.Sig != nil && len(c.Sig) != ed25519.SignatureSize {
		return Errorf(CodeBadSignature, "calm statement of %s: signature is %d bytes, an Ed25519 signature is %d", c.Signer, len(c.Sig), ed25519.SignatureSize)
	}
	return nil
}

// Verify checks c's shape and its signature under pub, the signer's node
// key. Errors are *Error.
func (c *CalmStatement) Verify(pub ed25519.PublicKey) error {
	if err := c.checkShape(); err != nil {
		return err
	}
	if len(c.Sig) == 0 {
		return Errorf(CodeBadSignature, "calm statement of %s is not signed", c.Signer)
	}
	if len(pub) != ed25519.PublicKeySize || !sigverify.Verify(pub, CalmSignBytes(c.Signer, c.Epoch, c.Time), c.Sig) {
		return Errorf(CodeBadSignature, "calm statement of %s for epoch %d does not verify with its node key", c.Signer, c.Epoch)
	}
	return nil
}

// checkCalmSet runs the stateless checks of a de-escalation's statements:
// at most MaxCalmStatements, each well formed and signed, for epoch, from
// distinct signers sorted by ID. The signatures are checked by the node,
// which knows the members' keys.
func checkCalmSet(epoch uint64, cs []CalmStatement) error {
	if len(cs) > MaxCalmStatements {
		return Errorf(CodeTooLarge, "epoch switch: %d calm statements, the limit is %d", len(cs), MaxCalmStatements)
	}
	for i := range cs {
		c := &cs[i]
		if err := c.checkShape(); err != nil {
			return err
		}
		if len(c.Sig) == 0 {
			return Errorf(CodeBadSignature, "calm statement of %s is not signed", c.Signer)
		}
		if c.Epoch != epoch {
			return Errorf(CodeMalformed, "epoch switch to epoch %d carries a calm statement of %s for epoch %d; it needs statements for epoch %d", epoch+1, c.Signer, c.Epoch, epoch)
		}
		if i > 0 && strings.Compare(cs[i-1].Signer, c.Signer) >= 0 {
			return Errorf(CodeMalformed, "epoch switch: calm statements must have distinct signers in increasing order (%q after %q)", c.Signer, cs[i-1].Signer)
		}
	}
	return nil
}

// checkCalmTimes checks that every statement is recent at the cluster's
// time now (Unix nanoseconds): at most CalmMaxAge older, at most
// CalmMaxAhead newer.
func checkCalmTimes(now int64, cs []CalmStatement) error {
	for _, c := range cs {
		if c.Time < now-int64(CalmMaxAge) || c.Time > now+int64(CalmMaxAhead) {
			return Errorf(CodeMalformed, "calm statement of %s was signed at %s, outside [-%s, +%s] of the cluster's time %s; calm statements must be fresh",
				c.Signer, time.Unix(0, c.Time).UTC().Format(time.RFC3339Nano), CalmMaxAge, CalmMaxAhead, time.Unix(0, now).UTC().Format(time.RFC3339Nano))
		}
	}
	return nil
}

// SortCalm sorts cs by signer, the order a switch entry carries them in.
func SortCalm(cs []CalmStatement) {
	slices.SortFunc(cs, func(a, b CalmStatement) int { return strings.Compare(a.Signer, b.Signer) })
}

// appendCalmBinary encodes calm statements in a switch entry's body:
//
//	count (uint8) || per statement: len(signer) (uint8) || signer ||
//	epoch (uint64) || time (int64) || sig (64 bytes)
func appendCalmBinary(b []byte, cs []CalmStatement) ([]byte, error) {
	if len(cs) > MaxCalmStatements {
		return nil, Errorf(CodeTooLarge, "cannot encode epoch switch: %d calm statements, the limit is %d", len(cs), MaxCalmStatements)
	}
	b = append(b, byte(len(cs)))
	for _, c := range cs {
		if c.Signer == "" || len(c.Signer) > MaxCalmSignerBytes || len(c.Sig) != ed25519.SignatureSize {
			return nil, Errorf(CodeMalformed, "cannot encode calm statement of %q: signer of %d bytes, signature of %d bytes", c.Signer, len(c.Signer), len(c.Sig))
		}
		b = append(b, byte(len(c.Signer)))
		b = append(b, c.Signer...)
		b = binary.BigEndian.AppendUint64(b, c.Epoch)
		b = binary.BigEndian.AppendUint64(b, uint64(c.Time))
		b = append(b, c.Sig...)
	}
	return b, nil
}

// decodeCalmBinary decodes what appendCalmBinary wrote; it must use all of
// p. The result does not alias p.
func decodeCalmBinary(p []byte) ([]CalmStatement, error) {
	d := binread.New(bytes.Clone(p), func(field string, off int, reason string) error {
		return Errorf(CodeMalformed, "epoch switch calm statements: %s at byte %d: %s", field, off, reason)
	})
	n := int(d.U8("calm statement count"))
	if n == 0 || n > MaxCalmStatements {
		d.Fail("calm statement count", "%d, want 1 to %d", n, MaxCalmStatements)
	}
	var cs []CalmStatement
	for i := 0; i < n && d.Err() == nil; i++ {
		var c CalmStatement
		c.Signer = string(d.Take("signer", int(d.U8("signer length"))))
		c.Epoch = d.U64("epoch")
		c.Time = int64(d.U64("time"))
		c.Sig = d.Take("signature", ed25519.SignatureSize)
		cs = append(cs, c)
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	if rest := d.Remaining(); rest != 0 {
		return nil, Errorf(CodeMalformed, "epoch switch calm statements: %d bytes after the last statement", rest)
	}
	return cs, nil
}
