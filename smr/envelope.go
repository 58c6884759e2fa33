package smr

import (
	"crypto/ed25519"
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// envelopeDomain separates envelope signatures from every other signature a
// client key might make.
const envelopeDomain = "tandem/envelope/v1\x00"

// SignBytes returns the bytes the client signs:
//
//	"tandem/envelope/v1\x00" || client key (32 bytes) || seq (uint64 BE) ||
//	len(command) (uint32 BE) || command
func (e *Envelope) SignBytes() []byte {
	b := make([]byte, 0, len(envelopeDomain)+len(e.Client)+8+4+len(e.Command))
	b = append(b, envelopeDomain...)
	b = append(b, e.Client...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Command)))
	return append(b, e.Command...)
}

// Sign encodes cmd with EncodeCommand and returns the envelope signed by
// priv for seq. seq must be at least 1. Errors are *Error.
func Sign(priv ed25519.PrivateKey, seq uint64, cmd Command) (*Envelope, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, Errorf(CodeMalformed, "private key is %d bytes, an Ed25519 private key is %d", len(priv), ed25519.PrivateKeySize)
	}
	if seq == 0 {
		return nil, Errorf(CodeMalformed, "seq 0 is invalid: seqs start at 1")
	}
	b, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	pub := priv.Public().(ed25519.PublicKey)
	env := &Envelope{
		Client:  append(ed25519.PublicKey(nil), pub...),
		Seq:     seq,
		Command: b,
	}
	env.Sig = ed25519.Sign(priv, env.SignBytes())
	return env, nil
}

// Verify checks the shape of e and its signature (by the sigverify rule;
// a signature verified before is not checked again). It does not look at the
// command or the seq. A client key that is not 32 bytes is CodeMalformed; a
// missing, mis-sized or wrong signature is CodeBadSignature. Errors are
// *Error.
func (e *Envelope) Verify() error {
	if err := e.checkShape(); err != nil {
		return err
	}
	if !sigverify.Verify(e.Client, e.SignBytes(), e.Sig) {
		return badEnvelopeSig(e)
	}
	return nil
}

func badEnvelopeSig(e *Envelope) error {
	return Errorf(CodeBadSignature, "signature does not verify for client %s seq %d", FormatKey(e.Client), e.Seq)
}

// VerifyAll is Verify for each of envs, with the signatures checked as
// batches (the same verdicts; see package sigverify) on up to GOMAXPROCS
// goroutines for many envelopes. errs[i] is envs[i]'s. The goroutines end
// before it returns.
func VerifyAll(envs []Envelope) []error {
	errs := make([]error, len(envs))
	check := func(lo, hi int) {
		var b sigverify.Batch
		var idx []int
		for i := lo; i < hi; i++ {
			if errs[i] = envs[i].checkShape(); errs[i] == nil {
				b.Add(envs[i].Client, envs[i].SignBytes(), envs[i].Sig)
				idx = append(idx, i)
			}
		}
		for j, ok := range b.Verify() {
			if !ok {
				errs[idx[j]] = badEnvelopeSig(&envs[idx[j]])
			}
		}
	}
	const perWorker = 32
	workers := max(1, min(runtime.GOMAXPROCS(0), len(envs)/perWorker))
	if workers == 1 {
		check(0, len(envs))
		return errs
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			check(w*len(envs)/workers, (w+1)*len(envs)/workers)
		}()
	}
	wg.Wait()
	return errs
}

// checkShape is Verify without the signature check.
func (e *Envelope) checkShape() error {
	if len(e.Client) != ed25519.PublicKeySize {
		return Errorf(CodeMalformed, "client key is %d bytes, an Ed25519 public key is %d", len(e.Client), ed25519.PublicKeySize)
	}
	if len(e.Sig) == 0 {
		return Errorf(CodeBadSignature, "envelope of client %s seq %d has no signature", FormatKey(e.Client), e.Seq)
	}
	if len(e.Sig) != ed25519.SignatureSize {
		return Errorf(CodeBadSignature, "signature of client %s seq %d is %d bytes, an Ed25519 signature is %d", FormatKey(e.Client), e.Seq, len(e.Sig), ed25519.SignatureSize)
	}
	return nil
}

// envelopeHeaderLen is the fixed part of the binary envelope encoding.
const envelopeHeaderLen = ed25519.PublicKeySize + 8 + ed25519.SignatureSize + 4

// MaxEnvelopeCommandBytes bounds the command of a binary envelope (the
// length field is a uint32). The state machine's limit is far lower.
const MaxEnvelopeCommandBytes = 1<<32 - 1

// MarshalBinary encodes e for the log:
//
//	client key (32) || seq (uint64 BE) || sig (64) || len(command) (uint32 BE) || command
//
// It fails when the key or signature has the wrong length (Verify would
// reject such an envelope anyway) or the command does not fit the length
// field.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	if err := e.checkEncodable(); err != nil {
		return nil, err
	}
	return e.appendBinary(make([]byte, 0, envelopeHeaderLen+len(e.Command))), nil
}

func (e *Envelope) checkEncodable() error {
	if len(e.Client) != ed25519.PublicKeySize {
		return Errorf(CodeMalformed, "cannot encode envelope: client key is %d bytes, want %d", len(e.Client), ed25519.PublicKeySize)
	}
	if len(e.Sig) != ed25519.SignatureSize {
		return Errorf(CodeMalformed, "cannot encode envelope: signature is %d bytes, want %d", len(e.Sig), ed25519.SignatureSize)
	}
	if uint64(len(e.Command)) > MaxEnvelopeCommandBytes {
		return Errorf(CodeTooLarge, "cannot encode envelope: command is %d bytes, at most %d", len(e.Command), uint64(MaxEnvelopeCommandBytes))
	}
	return nil
}

func (e *Envelope) appendBinary(b []byte) []byte {
	b = append(b, e.Client...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = append(b, e.Sig...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Command)))
	return append(b, e.Command...)
}

// UnmarshalBinary decodes what MarshalBinary produced. The length field must
// match the bytes that follow exactly. e does not alias data. Errors are
// *Error with CodeMalformed.
func (e *Envelope) UnmarshalBinary(data []byte) error {
	if len(data) < envelopeHeaderLen {
		return Errorf(CodeMalformed, "envelope is %d bytes, shorter than its %d-byte header", len(data), envelopeHeaderLen)
	}
	n := binary.BigEndian.Uint32(data[envelopeHeaderLen-4 : envelopeHeaderLen])
	if rest := len(data) - envelopeHeaderLen; uint64(n) != uint64(rest) {
		return Errorf(CodeMalformed, "envelope command length is %d but %d bytes follow", n, rest)
	}
	buf := make([]byte, len(data))
	copy(buf, data)
	const k, s = ed25519.PublicKeySize, ed25519.SignatureSize
	*e = Envelope{
		Client:  ed25519.PublicKey(buf[0:k:k]),
		Seq:     binary.BigEndian.Uint64(buf[k : k+8]),
		Sig:     buf[k+8 : k+8+s : k+8+s],
		Command: buf[envelopeHeaderLen:],
	}
	return nil
}
