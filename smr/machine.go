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

// StateMachine is Tandem's replicated state machine. It is a deterministic
// function of the entries applied to it: replicas that apply the same
// entries at the same indexes return the same Results and have the same
// Hash. All methods are safe for concurrent use; Apply and Restore exclude
// every other method, the rest share a read lock.
type StateMachine struct {
	mu      sync.RWMutex
	applied uint64
	st      *state
	// hash caches st.hash(); cleared (under mu) by Apply and Restore, set
	// by Hash under the read lock, when no writer can run.
	hash atomic.Pointer[[32]byte]
}

// NewUninitialized returns a state machine without a genesis (applied index
// 0): what every replica of a cluster starts from. Until a genesis entry is
// applied, Precheck, Query, QueryAt, Authorize and PrecheckRestore return
// CodeNotInitialized, and Apply of a command or restore entry returns a
// Result with that code (the index is still recorded as applied).
func NewUninitialized() *StateMachine {
	return &StateMachine{st: newState()}
}

// New returns a state machine initialized with g (applied index 0). Its
// state, and so its Hash, is exactly that of NewUninitialized after applying
// the genesis entry of g. It is meant for tests and tools; a cluster starts
// uninitialized and replicates its genesis through the log. An invalid g is
// an error wrapping the *Error that Validate returns.
func New(g Genesis) (*StateMachine, error) {
	g = g.WithDefaults()
	if err := g.check(); err != nil {
		return nil, fmt.Errorf("smr: %w", err)
	}
	m := NewUninitialized()
	m.st.initialize(g)
	return m, nil
}

// Initialized reports whether a genesis has been applied (or restored).
func (m *StateMachine) Initialized() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.genesis != nil
}

// Genesis returns the replicated genesis (admin keys in ascending byte
// order, defaults applied) and true, or false when there is none yet. The
// returned value is a copy.
func (m *StateMachine) Genesis() (Genesis, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.st.genesis == nil {
		return Genesis{}, false
	}
	return m.st.genesis.canonical(), true
}

// Apply executes the entry data (an Entry in its binary form) committed at
// index. It never panics on bad input and returns the Result to report to
// the client. Every Message it returns comes from this package's own
// templates (untrusted strings are escaped to ASCII), so that Results, which
// are hashed once stored, are equal on replicas built with different Go
// versions.
//
//   - index must be greater than AppliedIndex(); otherwise the Result has
//     CodeMalformed and nothing changes. Otherwise AppliedIndex() becomes
//     index, whatever the outcome.
//   - An entry that does not decode is CodeMalformed and changes nothing
//     else.
//
// A genesis entry initializes an uninitialized state machine; Result.Value
// is its GenesisInfo. An invalid genesis is CodeMalformed, and on an
// initialized machine the entry is CodeAlreadyInitialized; both change
// nothing else.
//
// A restore entry (see Restore) is checked in this order: signature
// (CodeBadSignature), initialized (CodeNotInitialized), Admin holds admin
// now (CodeUnknownClient, CodePermissionDenied), the snapshot decodes and
// verifies and is initialized (CodeMalformed). On success the state content
// becomes the snapshot's (genesis included), AppliedIndex stays index, and
// Result.Value is a RestoreOutcome. On failure nothing else changes. No
// Result of a genesis or restore entry is stored.
//
// A command entry:
//
//   - On an uninitialized machine it is CodeNotInitialized and changes
//     nothing else.
//   - An invalid signature changes nothing else. Then a retained seq with
//     the same command bytes returns the stored Result with Duplicate set
//     and changes nothing else, even if the client has since lost its
//     invitation or permission.
//   - An unknown client or a seq outside the rules (zero, too old, too far,
//     conflict) changes nothing else.
//   - Otherwise the seq is consumed: the Result, success or not, is stored
//     for retries. A command that is too large, malformed or not permitted
//     changes nothing else. A command that is executed first advances the
//     clock to the entry's time (never backwards) and removes expired
//     sessions.
//
// A batch entry executes its envelopes in order, each as a command entry
// with the batch's time at index would; Apply returns the last one's
// Result (ApplyPrepared returns them all).
func (m *StateMachine) Apply(index uint64, data []byte) Result {
	res := m.ApplyPrepared(index, m.Prepare(data))
	return res[len(res)-1]
}

// Prepared is an entry whose stateless checks are done: decoded, its
// clients' or admin's signatures checked, a sync_dataset's agent signatures
// checked. Prepare makes it; ApplyPrepared executes it.
type Prepared struct {
	data    []byte
	ent     Entry
	decErr  error
	envs    []*Envelope // the envelopes of a command or batch entry
	sigErrs []error     // per envelope
	sigs    []*syncSigs // per envelope
	restore parsedRestore
}

// Prepare runs the checks of Apply that depend on data alone (decoding and
// signatures), mostly without the state machine's lock. Entries may be
// prepared concurrently with each other and with ApplyPrepared, and ahead
// of the entries before them in the log: an engine prepares a batch of
// committed entries on several cores, then applies them in order. The
// outcome of ApplyPrepared(index, Prepare(data)) is exactly Apply's.
func (m *StateMachine) Prepare(data []byte) *Prepared {
	p := &Prepared{data: data}
	if p.decErr = p.ent.UnmarshalBinary(data); p.decErr != nil {
		return p
	}
	switch p.ent.Kind {
	case EntryCommand:
		p.envs = []*Envelope{&p.ent.Env}
		p.sigErrs = []error{p.ent.Env.Verify()}
	case EntryBatch:
		p.envs = make([]*Envelope, len(p.ent.Batch))
		for i := range p.ent.Batch {
			p.envs[i] = &p.ent.Batch[i]
		}
		p.sigErrs = VerifyAll(p.ent.Batch)
	case EntryRestore:
		p.restore = parseRestore(p.ent.Restore)
	}
	p.sigs = make([]*syncSigs, len(p.envs))
	for i, e := range p.envs {
		if p.sigErrs[i] == nil {
			p.sigs[i] = m.presync(e.Command)
		}
	}
	return p
}

// Data returns the entry's bytes as given to Prepare.
func (p *Prepared) Data() []byte { return p.data }

// Envelopes returns the client envelopes of a command or batch entry, in
// execution order (nil for other entries and undecodable ones).
func (p *Prepared) Envelopes() []*Envelope { return p.envs }

// Results returns how many Results ApplyPrepared returns for p: one per
// envelope of a batch entry, one for any other entry.
func (p *Prepared) Results() int { return max(1, len(p.envs)) }

// ClientPayloadValid reports whether the entry is one a correct leader
// proposes, by its bytes alone: it decodes, and every client signature it
// carries verifies (the verdict of evidence.ValidateClientPayload for a
// log entry).
func (p *Prepared) ClientPayloadValid() bool {
	if p.decErr != nil {
		return false
	}
	for _, err := range p.sigErrs {
		if err != nil {
			return false
		}
	}
	return true
}

// ApplyPrepared executes a prepared entry at index, as Apply does, and
// returns p.Results() Results: one per envelope of a batch entry, in
// order.
func (m *StateMachine) ApplyPrepared(index uint64, p *Prepared) []Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	one := func(r Result) []Result {
		out := make([]Result, p.Results())
		for i := range out {
			out[i] = r
			if i < len(p.envs) {
				out[i].Seq = p.envs[i].Seq
			}
		}
		return out
	}
	if index <= m.applied {
		return one(Result{Index: index, Code: CodeMalformed,
			Message: fmt.Sprintf("index %d is not after the last applied index %d", index, m.applied)})
	}
	m.applied = index
	if p.decErr != nil {
		return one(errResult(Result{Index: index}, p.decErr))
	}
	switch p.ent.Kind {
	case EntryGenesis:
		return one(m.applyGenesis(index, *p.ent.Genesis))
	case EntryRestore:
		return one(m.applyRestore(index, p.ent.Time, p.restore))
	case EntryEpochSwitch:
		return one(m.applyEpochSwitch(index, p.ent.Time, p.ent.Switch))
	}
	out := make([]Result, len(p.envs))
	for i, e := range p.envs {
		out[i] = m.applyCommand(index, p.ent.Time, e, p.sigErrs[i], p.sigs[i])
	}
	return out
}

// applyGenesis executes a genesis entry. The caller holds m.mu.
func (m *StateMachine) applyGenesis(index uint64, g Genesis) Result {
	res := Result{Index: index}
	if m.st.genesis != nil {
		return errResult(res, Errorf(CodeAlreadyInitialized, "the cluster is already initialized: a genesis entry was applied before, and the genesis is set once"))
	}
	if err := g.check(); err != nil {
		return errResult(res, err)
	}
	m.hash.Store(nil)
	m.st.initialize(g)
	res.Value = mustJSON(m.st.genesis.Info())
	return res
}

// applyCommand executes a command entry; sigs are the agent signature
// checks of a sync_dataset made before the lock (or nil). The caller holds
// m.mu.
func (m *StateMachine) applyCommand(index uint64, t int64, env *Envelope, sigErr error, sigs *syncSigs) Result {
	res := Result{Index: index, Seq: env.Seq}
	if m.st.genesis == nil {
		return errResult(res, notInitialized())
	}
	if sigErr != nil {
		return errResult(res, sigErr)
	}
	ck := clientKey(env.Client)
	sum := sha256.Sum256(env.Command)
	if dup := m.stored(ck, env.Seq, sum); dup != nil {
		return *dup
	}
	if !m.st.known(ck) {
		return errResult(res, unknownClient(env.Client))
	}
	if dup, err := m.checkSeq(ck, env.Seq, sum); err != nil {
		return errResult(res, err)
	} else if dup != nil {
		return *dup
	}

	// From here on the seq is consumed.
	m.hash.Store(nil)
	cmd, err := m.admit(ck, env.Command)
	if err == nil {
		m.st.advanceClock(t)
		res.Value, err = m.st.execute(&cmd, execEnv{index: index, client: ck, sigs: sigs})
	}
	if err != nil {
		res = errResult(res, err)
	}
	m.record(ck, env.Seq, sum, res)
	return res
}

// errResult returns r carrying err. err is an *Error in every path of this
// package; anything else is reported with a fixed message, so that no
// library text reaches a stored Result.
func errResult(r Result, err error) Result {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeMalformed, Message: "the entry was rejected for an unclassified reason"}
	}
	r.Code, r.Message, r.Value = e.Code, e.Message, nil
	return r
}

// errorText returns the message of an *Error, or err.Error() otherwise.
func errorText(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

func unknownClient(k ed25519.PublicKey) *Error {
	return Errorf(CodeUnknownClient, "client %s is not invited: it has no allow rule in the ACL and is no agent or admin of a dataset", FormatKey(k))
}

func notInitialized() *Error {
	return Errorf(CodeNotInitialized, "the cluster has not been initialized yet: no genesis entry has been applied")
}

// stored returns the stored result of (client, seq) as a duplicate when it
// was recorded for the same command bytes, and nil otherwise. It is checked
// before the invitation, so that a client revoked after executing a seq
// still gets that seq's result on a retry.
func (m *StateMachine) stored(ck clientKey, seq uint64, sum [32]byte) *Result {
	cs := m.st.clients[ck]
	if cs == nil {
		return nil
	}
	sr, ok := cs.results[seq]
	if !ok || sr.sum != sum {
		return nil
	}
	r := sr.res
	r.Value = bytes.Clone(r.Value)
	r.Duplicate = true
	return &r
}

// checkSeq applies the exactly-once rules to (client, seq, command sum). It
// returns the stored result (as a duplicate) for a retry, an *Error for a
// rejection, or (nil, nil) when seq may execute.
func (m *StateMachine) checkSeq(ck clientKey, seq uint64, sum [32]byte) (*Result, error) {
	if seq == 0 {
		return nil, Errorf(CodeMalformed, "seq 0 is invalid: seqs start at 1")
	}
	window := m.st.window()
	var highest uint64
	if cs := m.st.clients[ck]; cs != nil {
		highest = cs.highest
		if sr, ok := cs.results[seq]; ok {
			if sr.sum != sum {
				return nil, Errorf(CodeSeqConflict, "seq %d was already executed with a different command (sha256 %x, this one %x)", seq, sr.sum[:8], sum[:8])
			}
			return m.stored(ck, seq, sum), nil
		}
	}
	if highest > window && seq <= highest-window {
		return nil, Errorf(CodeSeqTooOld, "seq %d is older than the retained window (highest executed %d, window %d)", seq, highest, window)
	}
	if seq > highest && seq-highest > window {
		return nil, Errorf(CodeSeqTooFar, "seq %d is too far ahead (highest executed %d, window %d: at most %d)", seq, highest, window, highest+window)
	}
	return nil, nil
}

// admit runs the checks that consume a seq but change nothing else: size,
// decoding and permission (for the dataset ops invite_agent, revoke_agent
// and sync_dataset, the dataset's own rights: authorizeDataset).
func (m *StateMachine) admit(ck clientKey, b []byte) (Command, error) {
	if max := m.st.genesis.MaxCommandBytes; len(b) > max {
		return Command{}, Errorf(CodeTooLarge, "command is %d bytes, at most %d allowed", len(b), max)
	}
	cmd, err := DecodeCommand(b)
	if err != nil {
		return Command{}, err
	}
	perm, _ := RequiredPermission(cmd.Op)
	if perm == "" {
		if err := m.st.authorizeDataset(ck, &cmd); err != nil {
			return Command{}, err
		}
		return cmd, nil
	}
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
	window := m.st.window()
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
	if seq <= window {
		return
	}
	hi := min(seq-window, old)
	lo := uint64(1)
	if old > window {
		lo = old - window + 1
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
// proposing it: initialized, size, signature, stored result, known client,
// seq rules, command decoding and permission. It returns the stored Result
// (Duplicate set) for a retry of a retained seq with the same command (also
// for a client revoked since), (nil, *Error) for a rejection, and (nil, nil)
// when env should be proposed. It changes nothing. Apply still decides: the
// state may change between Precheck and Apply. Its messages may be richer
// than Apply's: they are not stored.
func (m *StateMachine) Precheck(env *Envelope) (*Result, error) {
	if env == nil {
		return nil, Errorf(CodeMalformed, "no envelope")
	}
	// The genesis of a state is never modified in place, so its limits can
	// be read after the lock is released; the size is checked before the
	// signature so that a huge body costs no verification.
	m.mu.RLock()
	g := m.st.genesis
	m.mu.RUnlock()
	if g == nil {
		return nil, notInitialized()
	}
	if len(env.Command) > g.MaxCommandBytes {
		return nil, Errorf(CodeTooLarge, "command is %d bytes, at most %d allowed", len(env.Command), g.MaxCommandBytes)
	}
	if err := env.Verify(); err != nil {
		return nil, err
	}
	ck := clientKey(env.Client)
	sum := sha256.Sum256(env.Command)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.st.genesis == nil {
		return nil, notInitialized()
	}
	if dup := m.stored(ck, env.Seq, sum); dup != nil {
		return dup, nil
	}
	if !m.st.known(ck) {
		return nil, unknownClient(env.Client)
	}
	if dup, err := m.checkSeq(ck, env.Seq, sum); err != nil || dup != nil {
		return dup, err
	}
	if _, err := m.admit(ck, env.Command); err != nil {
		return nil, err
	}
	return nil, nil
}

// AppliedIndex returns the index of the last applied entry (or of the
// snapshot installed by Restore), 0 for a fresh state machine.
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
// change (O(state size)) and cached until the state changes again.
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

// Restore replaces the state with a snapshot produced by Snapshot: the way
// an engine installs a snapshot from its leader. It checks the magic, the
// version, the checksum, that the state hash matches the content and that
// the content is in canonical form; on any failure it returns an error
// wrapping ErrBadSnapshot and leaves the state unchanged. Afterwards
// AppliedIndex and Hash are those of the snapshot, and the genesis is the
// snapshot's (a snapshot of an uninitialized machine is accepted and leaves
// this one uninitialized).
//
// An administrator's restore of a cluster is not this method: it is an
// EntryRestore log entry, which keeps the applied index moving forwards.
func (m *StateMachine) Restore(b []byte) error {
	p, err := parseSnapshot(b)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.st, m.applied = p.st, p.index
	sum := p.sum
	m.hash.Store(&sum)
	m.mu.Unlock()
	return nil
}

// parsedSnapshot is a snapshot that passed every check of Restore.
type parsedSnapshot struct {
	st    *state
	index uint64
	sum   [32]byte // the state hash, verified against the content
}

// parseSnapshot checks and decodes a snapshot without touching any state
// machine. Errors wrap ErrBadSnapshot; their text comes only from this
// package's templates.
func parseSnapshot(b []byte) (*parsedSnapshot, error) {
	if len(b) < snapshotHeaderLen+sha256.Size {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header and checksum", ErrBadSnapshot, len(b), snapshotHeaderLen+sha256.Size)
	}
	if string(b[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: magic is %x, want %x (%s)", ErrBadSnapshot, b[:len(snapshotMagic)], snapshotMagic, snapshotMagic)
	}
	rest := b[len(snapshotMagic):]
	if v := binary.BigEndian.Uint32(rest[:4]); v != snapshotVersion {
		return nil, fmt.Errorf("%w: version %d is unknown (this state machine reads version %d)", ErrBadSnapshot, v, snapshotVersion)
	}
	payload, trailer := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(payload); !bytes.Equal(got[:], trailer) {
		return nil, fmt.Errorf("%w: checksum mismatch: content sums to %x but the trailer says %x", ErrBadSnapshot, got, trailer)
	}
	p := &parsedSnapshot{index: binary.BigEndian.Uint64(rest[4:12])}
	copy(p.sum[:], rest[12:12+sha256.Size])
	body := payload[snapshotHeaderLen:]
	if got := sha256.Sum256(body); got != p.sum {
		return nil, fmt.Errorf("%w: state hashes to %x but the header says %x", ErrBadSnapshot, got, p.sum)
	}
	st, err := decodeState(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	if !bytes.Equal(st.encode(), body) {
		return nil, fmt.Errorf("%w: state is not in canonical form (unsorted or duplicate entries)", ErrBadSnapshot)
	}
	p.st = st
	return p, nil
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
