package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"math"
	"slices"
)

// Defaults and bounds of Genesis.
const (
	DefaultResultWindow    = 1024
	MaxResultWindow        = 1 << 20
	DefaultMaxCommandBytes = 64 << 10
	MaxMaxCommandBytes     = 16 << 20
)

// Genesis is the initial configuration of a cluster. It is replicated
// state, not per-node configuration: it enters the state machine once,
// through an EntryGenesis entry (or New, which is equivalent), and from then
// on it is part of the canonical state, so the state hash covers it and
// snapshots carry it. Two nodes cannot disagree about it.
type Genesis struct {
	// AdminKeys hold the admin permission in the initial state (as ordinary
	// admin allow rules, so they can be revoked later). At least one.
	AdminKeys []ed25519.PublicKey
	// ResultWindow is how many seqs below a client's highest executed seq
	// keep their results for retries. 0 means DefaultResultWindow.
	ResultWindow int
	// MaxCommandBytes bounds the encoded command of an envelope. 0 means
	// DefaultMaxCommandBytes.
	MaxCommandBytes int
}

// GenesisInfo is the JSON form of a Genesis: Result.Value of an applied
// genesis entry. Admin keys are lowercase hex (as ACL subjects),
// in ascending byte order of the keys.
type GenesisInfo struct {
	AdminKeys       []string `json:"admin_keys"`
	ResultWindow    int      `json:"result_window"`
	MaxCommandBytes int      `json:"max_command_bytes"`
}

// WithDefaults returns g with zero fields set to their defaults.
func (g Genesis) WithDefaults() Genesis {
	if g.ResultWindow == 0 {
		g.ResultWindow = DefaultResultWindow
	}
	if g.MaxCommandBytes == 0 {
		g.MaxCommandBytes = DefaultMaxCommandBytes
	}
	return g
}

// Validate checks g after defaults are applied. A rejection is an *Error
// with CodeMalformed.
func (g Genesis) Validate() error {
	if err := g.WithDefaults().check(); err != nil {
		return err
	}
	return nil
}

// check validates g as it is, without defaults: the rules a genesis entry
// must meet when it is applied. Messages use only this package's templates,
// so they are equal on every replica.
func (g Genesis) check() *Error {
	if len(g.AdminKeys) == 0 {
		return Errorf(CodeMalformed, "genesis needs at least one admin key")
	}
	seen := make(map[clientKey]int, len(g.AdminKeys))
	for i, k := range g.AdminKeys {
		if len(k) != ed25519.PublicKeySize {
			return Errorf(CodeMalformed, "genesis admin key %d is %d bytes, an Ed25519 public key is %d", i, len(k), ed25519.PublicKeySize)
		}
		ck := clientKey(k)
		if j, dup := seen[ck]; dup {
			return Errorf(CodeMalformed, "genesis admin keys %d and %d are the same key %s", j, i, FormatKey(k))
		}
		seen[ck] = i
	}
	if g.ResultWindow < 1 || g.ResultWindow > MaxResultWindow {
		return Errorf(CodeMalformed, "genesis result window is %d, must be 1..%d", g.ResultWindow, MaxResultWindow)
	}
	if g.MaxCommandBytes < 1 || g.MaxCommandBytes > MaxMaxCommandBytes {
		return Errorf(CodeMalformed, "genesis max command bytes is %d, must be 1..%d", g.MaxCommandBytes, MaxMaxCommandBytes)
	}
	return nil
}

// canonical returns a deep copy of g with the admin keys in ascending byte
// order: the form the state keeps and the entry encoding uses.
func (g Genesis) canonical() Genesis {
	keys := make([]ed25519.PublicKey, len(g.AdminKeys))
	for i, k := range g.AdminKeys {
		keys[i] = bytes.Clone(k)
	}
	slices.SortStableFunc(keys, func(a, b ed25519.PublicKey) int { return bytes.Compare(a, b) })
	g.AdminKeys = keys
	return g
}

// Info returns the JSON form of g (admin keys sorted; no defaults applied).
func (g Genesis) Info() GenesisInfo {
	c := g.canonical()
	info := GenesisInfo{AdminKeys: make([]string, len(c.AdminKeys)), ResultWindow: c.ResultWindow, MaxCommandBytes: c.MaxCommandBytes}
	for i, k := range c.AdminKeys {
		info.AdminKeys[i] = FormatKey(k)
	}
	return info
}

// Binary encoding of a Genesis inside an entry:
//
//	count of admin keys (uint32 BE) || admin keys (32 bytes each, ascending
//	byte order, equal keys adjacent) || result window (uint32 BE) ||
//	max command bytes (uint32 BE)
//
// Encoding writes the values after WithDefaults, so a log never depends on
// the defaults of the binary that replays it; decoding rejects zero values
// (no encoder writes them) and keys out of order, so every Genesis has one
// encoding. Range and duplicate checks are left to Apply, which reports them
// as CodeMalformed results.

// appendGenesisBinary appends the encoding of g.WithDefaults() to b.
func appendGenesisBinary(b []byte, g Genesis) ([]byte, error) {
	g = g.WithDefaults().canonical()
	if uint64(len(g.AdminKeys)) > math.MaxUint32 {
		return nil, Errorf(CodeTooLarge, "cannot encode genesis: %d admin keys", len(g.AdminKeys))
	}
	for i, k := range g.AdminKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, Errorf(CodeMalformed, "cannot encode genesis: an admin key is %d bytes, want %d (sorted position %d)", len(k), ed25519.PublicKeySize, i)
		}
	}
	if g.ResultWindow < 0 || uint64(g.ResultWindow) > math.MaxUint32 {
		return nil, Errorf(CodeMalformed, "cannot encode genesis: result window %d does not fit 0..%d", g.ResultWindow, uint64(math.MaxUint32))
	}
	if g.MaxCommandBytes < 0 || uint64(g.MaxCommandBytes) > math.MaxUint32 {
		return nil, Errorf(CodeMalformed, "cannot encode genesis: max command bytes %d does not fit 0..%d", g.MaxCommandBytes, uint64(math.MaxUint32))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(g.AdminKeys)))
	for _, k := range g.AdminKeys {
		b = append(b, k...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(g.ResultWindow))
	return binary.BigEndian.AppendUint32(b, uint32(g.MaxCommandBytes)), nil
}

// decodeGenesisBinary parses exactly what appendGenesisBinary writes; the
// result does not alias data.
func decodeGenesisBinary(data []byte) (*Genesis, error) {
	if len(data) < 4 {
		return nil, Errorf(CodeMalformed, "genesis is %d bytes, too short for its key count", len(data))
	}
	n := uint64(binary.BigEndian.Uint32(data))
	if want := 4 + n*ed25519.PublicKeySize + 8; uint64(len(data)) != want {
		return nil, Errorf(CodeMalformed, "genesis with %d admin keys is %d bytes, want %d", n, len(data), want)
	}
	g := &Genesis{AdminKeys: make([]ed25519.PublicKey, n)}
	rest := data[4:]
	for i := range g.AdminKeys {
		k := ed25519.PublicKey(bytes.Clone(rest[:ed25519.PublicKeySize]))
		if i > 0 && bytes.Compare(g.AdminKeys[i-1], k) > 0 {
			return nil, Errorf(CodeMalformed, "genesis admin key %d is out of order: keys must be in ascending byte order", i)
		}
		g.AdminKeys[i] = k
		rest = rest[ed25519.PublicKeySize:]
	}
	g.ResultWindow = int(binary.BigEndian.Uint32(rest[0:4]))
	g.MaxCommandBytes = int(binary.BigEndian.Uint32(rest[4:8]))
	if g.ResultWindow == 0 || g.MaxCommandBytes == 0 {
		return nil, Errorf(CodeMalformed, "genesis has result window %d and max command bytes %d; an encoded genesis carries explicit non-zero values", g.ResultWindow, g.MaxCommandBytes)
	}
	return g, nil
}
