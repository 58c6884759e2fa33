package smr

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Defaults and bounds of Genesis.
const (
	DefaultResultWindow    = 1024
	MaxResultWindow        = 1 << 20
	DefaultMaxCommandBytes = 64 << 10
	MaxMaxCommandBytes     = 16 << 20
)

// Genesis is the initial configuration of a state machine. Every replica of
// a cluster must start from the same Genesis.
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

// Validate checks g after defaults are applied.
func (g Genesis) Validate() error {
	g = g.WithDefaults()
	if len(g.AdminKeys) == 0 {
		return errors.New("genesis needs at least one admin key")
	}
	seen := make(map[clientKey]int, len(g.AdminKeys))
	for i, k := range g.AdminKeys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("genesis admin key %d is %d bytes, an Ed25519 public key is %d", i, len(k), ed25519.PublicKeySize)
		}
		ck := clientKey(k)
		if j, dup := seen[ck]; dup {
			return fmt.Errorf("genesis admin keys %d and %d are the same key %s", j, i, FormatKey(k))
		}
		seen[ck] = i
	}
	if g.ResultWindow < 1 || g.ResultWindow > MaxResultWindow {
		return fmt.Errorf("result window is %d, must be 1..%d", g.ResultWindow, MaxResultWindow)
	}
	if g.MaxCommandBytes < 1 || g.MaxCommandBytes > MaxMaxCommandBytes {
		return fmt.Errorf("max command bytes is %d, must be 1..%d", g.MaxCommandBytes, MaxMaxCommandBytes)
	}
	return nil
}

// StateMachine is Tandem's replicated state machine. It is a deterministic
// function of the entries applied to it: replicas that apply the same
// entries at the same indexes return the same Results and have the same
// Hash. All methods are safe for concurrent use; Apply and Restore exclude
// every other method, the rest share a read lock.
type StateMachine struct {
	window uint64
	maxCmd int

	mu      sync.RWMutex
	applied uint64
	st      *state
	// hash caches st.hash(); cleared (under mu) by Apply and Restore, set
	// by Hash under the read lock, when no writer can run.
	hash atomic.Pointer[[32]byte]
}

// New returns the state machine in its genesis state (applied index 0).
func New(g Genesis) (*StateMachine, error) {
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("smr: %w", err)
	}
	g = g.WithDefaults()
	st := newState()
	for _, k := range g.AdminKeys {
		st.acl[clientKey(k)] = map[Permission]Effect{PermAdmin: EffectAllow}
	}
	return &StateMachine{window: uint64(g.ResultWindow), maxCmd: g.MaxCommandBytes, st: st}, nil
}

// Apply executes the entry data (an Entry in its binary form) committed at
// index. It never panics on bad input and returns the Result to report to
// the client.
//
//   - index must be greater than AppliedIndex(); otherwise the Result has
//     CodeMalformed and nothing changes. Otherwise AppliedIndex() becomes
//     index, whatever the outcome.
//   - An entry that does not decode, an invalid signature, an unknown
//     client or a seq outside the rules (zero, too old, too far, conflict)
//     changes nothing else. A retained seq with the same command bytes
//     returns the stored Result with Duplicate set and changes nothing else.
//   - Otherwise the seq is consumed: the Result, success or not, is stored
//     for retries. A command that is too large, malformed or not permitted
//     changes nothing else. A command that is executed first advances the
//     clock to the entry's time (never backwards) and removes expired
//     sessions.
func (m *StateMachine) Apply(index uint64, data []byte) Result {
	// The stateless checks (decoding, signature) run outside the lock.
	var ent Entry
	decErr := ent.UnmarshalBinary(data)
	var sigErr error
	if decErr == nil {
		sigErr = ent.Env.Verify()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.hash.Store(nil)
	if index <= m.applied {
		return Result{Index: index, Code: CodeMalformed,
			Message: fmt.Sprintf("index %d is not after the last applied index %d", index, m.applied)}
	}
	m.applied = index
	if decErr != nil {
		return errResult(Result{Index: index}, decErr)
	}
	res := Result{Index: index, Seq: ent.Env.Seq}
	if sigErr != nil {
		return errResult(res, sigErr)
	}
	ck := clientKey(ent.Env.Client)
	if !m.st.known(ck) {
		return errResult(res, unknownClient(ent.Env.Client))
	}
	sum := sha256.Sum256(ent.Env.Command)
	if dup, err := m.checkSeq(ck, ent.Env.Seq, sum); err != nil {
		return errResult(res, err)
	} else if dup != nil {
		return *dup
	}

	// From here on the seq is consumed.
	cmd, err := m.admit(ck, ent.Env.Command)
	if err == nil {
		m.st.advanceClock(ent.Time)
		res.Value, err = m.st.execute(&cmd)
	}
	if err != nil {
		res = errResult(res, err)
	}
	m.record(ck, ent.Env.Seq, sum, res)
	return res
}

// errResult returns r carrying err. err is an *Error in every path of this
// package; anything else is reported as malformed.
func errResult(r Result, err error) Result {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeMalformed, Message: err.Error()}
	}
	r.Code, r.Message, r.Value = e.Code, e.Message, nil
	return r
}

func unknownClient(k ed25519.PublicKey) *Error {
	return Errorf(CodeUnknownClient, "client %s is not invited: it has no allow rule in the ACL", FormatKey(k))
}

// checkSeq applies the exactly-once rules to (client, seq, command sum). It
// returns the stored result (as a duplicate) for a retry, an *Error for a
// rejection, or (nil, nil) when seq may execute.
func (m *StateMachine) checkSeq(ck clientKey, seq uint64, sum [32]byte) (*Result, error) {
	if seq == 0 {
		return nil, Errorf(CodeMalformed, "seq 0 is invalid: seqs start at 1")
	}
	var highest uint64
	if cs := m.st.clients[ck]; cs != nil {
		highest = cs.highest
		if sr, ok := cs.results[seq]; ok {
			if sr.sum != sum {
				return nil, Errorf(CodeSeqConflict, "seq %d was already executed with a different command (sha256 %x, this one %x)", seq, sr.sum[:8], sum[:8])
			}
			r := sr.res
			r.Value = bytes.Clone(r.Value)
			r.Duplicate = true
			return &r, nil
		}
	}
	if highest > m.window && seq <= highest-m.window {
		return nil, Errorf(CodeSeqTooOld, "seq %d is older than the retained window (highest executed %d, window %d)", seq, highest, m.window)
	}
	if seq > highest && seq-highest > m.window {
		return nil, Errorf(CodeSeqTooFar, "seq %d is too far ahead (highest executed %d, window %d: at most %d)", seq, highest, m.window, highest+m.window)
	}
	return nil, nil
}

// admit runs the checks that consume a seq but change nothing else: size,
// decoding and permission.
func (m *StateMachine) admit(ck clientKey, b []byte) (Command, error) {
	if len(b) > m.maxCmd {
		return Command{}, Errorf(CodeTooLarge, "command is %d bytes, at most %d allowed", len(b), m.maxCmd)
	}
	cmd, err := DecodeCommand(b)
	if err != nil {
		return Command{}, err
	}
	perm, _ := RequiredPermission(cmd.Op)
	if !m.st.allowed(ck, perm) {
		if m.st.acl[ck][perm] == EffectDeny {
			return Command{}, Errorf(CodePermissionDenied, "op %s needs permission %s, which is denied to client %s", cmd.Op, perm, FormatKey(ck[:]))
		}
		return Command{}, Errorf(CodePermissionDenied, "op %s needs permission %s (or admin), which client %s does not hold", cmd.Op, perm, FormatKey(ck[:]))
	}
	return cmd, nil
}

// record stores res for (client, seq), raises the client's highest seq and
// prunes results that fell out of the window.
func (m *StateMachine) record(ck clientKey, seq uint64, sum [32]byte, res Result) {
	cs := m.st.clients[ck]
	if cs == nil {
		cs = &clientState{results: make(map[uint64]storedResult)}
		m.st.clients[ck] = cs
	}
	res.Duplicate = false
	res.Value = bytes.Clone(res.Value) // the caller owns the returned Result
	cs.results[seq] = storedResult{sum: sum, res: res}
	if seq <= cs.highest {
		return
	}
	old := cs.highest
	cs.highest = seq
	// Retained seqs were in (old-window, old]; now they are in
	// (seq-window, seq]. Drop (old-window, min(old, seq-window)]: at most
	// window seqs.
	if seq <= m.window {
		return
	}
	hi := min(seq-m.window, old)
	lo := uint64(1)
	if old > m.window {
		lo = old - m.window + 1
	}
	if hi < lo {
		return
	}
	if hi-lo+1 > uint64(len(cs.results)) {
		for s := range cs.results {
			if s <= hi {
				delete(cs.results, s)
			}
		}
		return
	}
	for s := lo; s <= hi; s++ {
		delete(cs.results, s)
	}
}

// Precheck runs, against the current state, the checks Apply would run
// before executing env, so that the API can reject a request without
// proposing it: size, signature, known client, seq rules, command decoding
// and permission. It returns the stored Result (Duplicate set) for a retry
// of a retained seq with the same command, (nil, *Error) for a rejection,
// and (nil, nil) when env should be proposed. It changes nothing. Apply
// still decides: the state may change between Precheck and Apply.
func (m *StateMachine) Precheck(env *Envelope) (*Result, error) {
	if env == nil {
		return nil, Errorf(CodeMalformed, "no envelope")
	}
	if len(env.Command) > m.maxCmd {
		return nil, Errorf(CodeTooLarge, "command is %d bytes, at most %d allowed", len(env.Command), m.maxCmd)
	}
	if err := env.Verify(); err != nil {
		return nil, err
	}
	ck := clientKey(env.Client)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if !m.st.known(ck) {
		return nil, unknownClient(env.Client)
	}
	sum := sha256.Sum256(env.Command)
	if dup, err := m.checkSeq(ck, env.Seq, sum); err != nil || dup != nil {
		return dup, err
	}
	if _, err := m.admit(ck, env.Command); err != nil {
		return nil, err
	}
	return nil, nil
}

// AppliedIndex returns the index of the last applied entry (or of the
// restored snapshot), 0 for a fresh state machine.
func (m *StateMachine) AppliedIndex() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.applied
}

// Hash returns the applied index and the SHA-256 of the canonical encoding
// of the state. The index is not part of the hash: equal content hashes
// equal. Replicas that applied the same entries return equal hashes.
//
// The hash is computed from the full encoding on the first call after a
// change (O(state size)) and cached until the next Apply or Restore.
func (m *StateMachine) Hash() (index uint64, sum [32]byte) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if h := m.hash.Load(); h != nil {
		return m.applied, *h
	}
	sum = m.st.hash()
	m.hash.Store(&sum)
	return m.applied, sum
}

// Snapshot format.
const (
	snapshotMagic     = "TANDEMSM"
	snapshotVersion   = 1
	snapshotHeaderLen = len(snapshotMagic) + 4 + 8 + sha256.Size
)

// ErrBadSnapshot is wrapped by every error Restore returns. The state is
// unchanged after such an error.
var ErrBadSnapshot = errors.New("invalid snapshot")

// Snapshot returns the state as:
//
//	"TANDEMSM" || version (uint32 BE, 1) || applied index (uint64 BE) ||
//	state hash (32) || canonical state || checksum (32)
//
// where the state hash is what Hash returns and the checksum is the SHA-256
// of everything before it, so that the applied index is covered too. The
// returned bytes are owned by the caller.
func (m *StateMachine) Snapshot() ([]byte, error) {
	m.mu.RLock()
	body := m.st.encode()
	index := m.applied
	m.mu.RUnlock()

	sum := sha256.Sum256(body)
	b := make([]byte, 0, snapshotHeaderLen+len(body)+sha256.Size)
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint32(b, snapshotVersion)
	b = binary.BigEndian.AppendUint64(b, index)
	b = append(b, sum[:]...)
	b = append(b, body...)
	check := sha256.Sum256(b)
	return append(b, check[:]...), nil
}

// Restore replaces the state with a snapshot produced by Snapshot. It checks
// the magic, the version, the checksum, that the state hash matches the
// content and that the content is in canonical form; on any failure it
// returns an error wrapping ErrBadSnapshot and leaves the state unchanged.
// Afterwards AppliedIndex and Hash are those of the snapshot.
func (m *StateMachine) Restore(b []byte) error {
	if len(b) < snapshotHeaderLen+sha256.Size {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header and checksum", ErrBadSnapshot, len(b), snapshotHeaderLen+sha256.Size)
	}
	if string(b[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: magic is %q, want %q", ErrBadSnapshot, b[:len(snapshotMagic)], snapshotMagic)
	}
	rest := b[len(snapshotMagic):]
	if v := binary.BigEndian.Uint32(rest[:4]); v != snapshotVersion {
		return fmt.Errorf("%w: version %d is unknown (this state machine reads version %d)", ErrBadSnapshot, v, snapshotVersion)
	}
	payload, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(payload); !bytes.Equal(got[:], trailer) {
		return fmt.Errorf("%w: checksum mismatch: content sums to %x but the trailer says %x", ErrBadSnapshot, got, trailer)
	}
	index := binary.BigEndian.Uint64(rest[4:12])
	var want [32]byte
	copy(want[:], rest[12:12+sha256.Size])
	body := payload[snapshotHeaderLen:]
	if got := sha256.Sum256(body); got != want {
		return fmt.Errorf("%w: state hashes to %x but the header says %x", ErrBadSnapshot, got, want)
	}
	st, err := decodeState(body)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if !bytes.Equal(st.encode(), body) {
		return fmt.Errorf("%w: state is not in canonical form (unsorted or duplicate entries)", ErrBadSnapshot)
	}
	m.mu.Lock()
	m.st, m.applied = st, index
	m.hash.Store(nil)
	m.mu.Unlock()
	return nil
}

// SnapshotInfo returns the applied index and state hash recorded in a
// snapshot's header without checking or restoring it.
func SnapshotInfo(b []byte) (index uint64, sum [32]byte, err error) {
	if len(b) < snapshotHeaderLen || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return 0, sum, fmt.Errorf("%w: no snapshot header", ErrBadSnapshot)
	}
	rest := b[len(snapshotMagic):]
	if v := binary.BigEndian.Uint32(rest[:4]); v != snapshotVersion {
		return 0, sum, fmt.Errorf("%w: version %d is unknown (this state machine reads version %d)", ErrBadSnapshot, v, snapshotVersion)
	}
	copy(sum[:], rest[12:12+sha256.Size])
	return binary.BigEndian.Uint64(rest[4:12]), sum, nil
}

// mustJSON encodes values built by this package (strings, integers, bools,
// string maps), which cannot fail to encode.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("smr: encoding %T: %v", v, err))
	}
	return b
}
