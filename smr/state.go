package smr

import (
	"bytes"
	"cmp"
	"container/heap"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// clientKey is a client public key as a map key.
type clientKey [32]byte

// state is the replicated content. Everything in it is covered by the
// canonical encoding (and so by the hash) except the expiry index, which is
// derived from sessions.
type state struct {
	// genesis is nil until the state is initialized; then it holds the
	// genesis in canonical form (defaults applied, admin keys sorted). It is
	// never modified in place.
	genesis *Genesis
	clock   int64 // Unix nanos; max of the times of executed commands
	// lastRestore is the signing time (unix seconds) of the newest restore
	// applied; a restore signed at or before it is refused, so a captured
	// restore cannot be applied twice.
	lastRestore int64
	acl         map[clientKey]map[Permission]Effect
	clients     map[clientKey]*clientState
	sessions    map[string]*session
	expiries    expiryHeap // sessions with a TTL, ordered by (expiry, id)
	tools       map[string]json.RawMessage
	resources   map[string]map[string]struct{}
	config      map[string]string
	datasets    map[string]*dataset

	// Derived from datasets (not encoded): refs counts, per key, the
	// datasets it is an invited agent or an admin of; datasetBytes sums
	// the storage of every dataset.
	refs         map[clientKey]int
	datasetBytes int
}

// clientState is the exactly-once record of one client: the highest
// executed seq and the results of executed seqs above highest-window.
type clientState struct {
	highest uint64
	results map[uint64]storedResult
}

type storedResult struct {
	sum [32]byte // SHA-256 of the command bytes as signed
	res Result   // Duplicate is always false here
}

// session is a registered session. ttl 0 means it never expires; then it
// is not in the expiry index (idx -1).
type session struct {
	id       string
	metadata map[string]string
	ttl      int64 // milliseconds
	expiry   int64 // Unix nanos, meaningful when ttl > 0
	idx      int   // position in state.expiries, -1 when absent
}

func newState() *state {
	return &state{
		acl:       make(map[clientKey]map[Permission]Effect),
		clients:   make(map[clientKey]*clientState),
		sessions:  make(map[string]*session),
		tools:     make(map[string]json.RawMessage),
		resources: make(map[string]map[string]struct{}),
		config:    make(map[string]string),
		datasets:  make(map[string]*dataset),
		refs:      make(map[clientKey]int),
	}
}

// initialize sets the genesis of an uninitialized (empty) state and gives
// its admin keys an admin allow rule. g must pass check.
func (st *state) initialize(g Genesis) {
	c := g.canonical()
	st.genesis = &c
	for _, k := range c.AdminKeys {
		st.acl[clientKey(k)] = map[Permission]Effect{PermAdmin: EffectAllow}
	}
}

// window returns the result window of an initialized state.
func (st *state) window() uint64 { return uint64(st.genesis.ResultWindow) }

// expiryHeap is a min-heap of sessions by (expiry, id): popping it removes
// expired sessions in a deterministic order without scanning all sessions.
type expiryHeap []*session

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	if h[i].expiry != h[j].expiry {
		return h[i].expiry < h[j].expiry
	}
	return h[i].id < h[j].id
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *expiryHeap) Push(x any) {
	s := x.(*session)
	s.idx = len(*h)
	*h = append(*h, s)
}
func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old)
	s := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	s.idx = -1
	return s
}

// putSession inserts or replaces s and keeps the expiry index in step.
func (st *state) putSession(s *session) {
	if old, ok := st.sessions[s.id]; ok && old.idx >= 0 {
		heap.Remove(&st.expiries, old.idx)
	}
	st.sessions[s.id] = s
	s.idx = -1
	if s.ttl > 0 {
		heap.Push(&st.expiries, s)
	}
}

// deleteSession removes the session id, if present.
func (st *state) deleteSession(id string) {
	s, ok := st.sessions[id]
	if !ok {
		return
	}
	if s.idx >= 0 {
		heap.Remove(&st.expiries, s.idx)
	}
	delete(st.sessions, id)
}

// advanceClock moves the clock to t unless that would move it backwards,
// then removes every session whose expiry is at or before the clock.
func (st *state) advanceClock(t int64) {
	if t > st.clock {
		st.clock = t
	}
	for len(st.expiries) > 0 && st.expiries[0].expiry <= st.clock {
		s := heap.Pop(&st.expiries).(*session)
		delete(st.sessions, s.id)
	}
}

// expiryAt returns clock + ttl milliseconds, saturating at MaxInt64.
func expiryAt(clock, ttlMillis int64) int64 {
	if ttlMillis > math.MaxInt64/int64(1e6) {
		return math.MaxInt64
	}
	d := ttlMillis * 1e6
	if clock > 0 && d > math.MaxInt64-clock {
		return math.MaxInt64
	}
	return clock + d
}

// live reports whether s has not expired at the state's clock.
func (st *state) live(s *session) bool { return s.ttl == 0 || s.expiry > st.clock }

// known reports whether the client has at least one allow rule, or is an
// invited agent or an admin of at least one dataset.
func (st *state) known(k clientKey) bool {
	for _, e := range st.acl[k] {
		if e == EffectAllow {
			return true
		}
	}
	return st.refs[k] > 0
}

// allowed applies the permission rule: an explicit deny for p refuses; else
// an allow for p or for admin grants.
func (st *state) allowed(k clientKey, p Permission) bool {
	rules := st.acl[k]
	switch rules[p] {
	case EffectDeny:
		return false
	case EffectAllow:
		return true
	}
	return rules[PermAdmin] == EffectAllow
}

// admins counts the subjects with an admin allow rule.
func (st *state) admins() int {
	n := 0
	for _, rules := range st.acl {
		if rules[PermAdmin] == EffectAllow {
			n++
		}
	}
	return n
}

// Canonical encoding.
//
// All integers are big-endian; a string or byte string is a uint32 length
// and its bytes; a collection is a uint32 count and its elements sorted by
// key (client keys bytewise, strings bytewise). Layout (format 4):
//
//	format (1 byte, 4) || initialized (1 byte, 0 or 1)
//	genesis, when initialized: count, { admin key (32) } (ascending) ||
//	           result window (uint32) || max command bytes (uint32)
//	clock (int64) || last restore (int64, unix seconds)
//	acl:       count, { subject (32) || count, { permission || effect } }
//	clients:   count, { key (32) || highest (uint64) || count, { seq (uint64) || sum (32) ||
//	                    index (uint64) || code || message || value } }
//	sessions:  count, { id || ttl_ms (int64) || expiry (int64) || count, { key || value } }
//	tools:     count, { name || definition }
//	resources: count, { uri || count, { subscriber } }
//	config:    count, { key || value }
//	datasets:  see encodeDatasets
//
// An uninitialized state has clock 0 and every collection empty. Formats 1
// (before the genesis was replicated state), 2 (before datasets) and 3
// (before the last restore time) are not read.
const stateFormat byte = 4

type encoder struct{ b []byte }

func (e *encoder) u8(v byte)      { e.b = append(e.b, v) }
func (e *encoder) u32(v int)      { e.b = binary.BigEndian.AppendUint32(e.b, uint32(v)) }
func (e *encoder) u64(v uint64)   { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)    { e.u64(uint64(v)) }
func (e *encoder) raw(v []byte)   { e.b = append(e.b, v...) }
func (e *encoder) str(v string)   { e.u32(len(v)); e.b = append(e.b, v...) }
func (e *encoder) bytes(v []byte) { e.u32(len(v)); e.b = append(e.b, v...) }

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortedClientKeys[V any](m map[clientKey]V) []clientKey {
	ks := make([]clientKey, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b clientKey) int { return bytes.Compare(a[:], b[:]) })
	return ks
}

// encode returns the canonical encoding of st.
func (st *state) encode() []byte {
	e := &encoder{}
	e.u8(stateFormat)
	st.encodeGenesis(e)
	e.i64(st.clock)
	e.i64(st.lastRestore)
	st.encodeACL(e)
	st.encodeClients(e)
	st.encodeContent(e)
	st.encodeDatasets(e)
	return e.b
}

func (st *state) encodeGenesis(e *encoder) {
	if st.genesis == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	e.u32(len(st.genesis.AdminKeys))
	for _, k := range st.genesis.AdminKeys {
		e.raw(k)
	}
	e.u32(st.genesis.ResultWindow)
	e.u32(st.genesis.MaxCommandBytes)
}

func (st *state) encodeACL(e *encoder) {
	e.u32(len(st.acl))
	for _, k := range sortedClientKeys(st.acl) {
		e.raw(k[:])
		rules := st.acl[k]
		e.u32(len(rules))
		for _, p := range sortedKeys(rules) {
			e.str(string(p))
			e.str(string(rules[p]))
		}
	}
}

func (st *state) encodeClients(e *encoder) {
	e.u32(len(st.clients))
	for _, k := range sortedClientKeys(st.clients) {
		cs := st.clients[k]
		e.raw(k[:])
		e.u64(cs.highest)
		e.u32(len(cs.results))
		for _, seq := range sortedKeys(cs.results) {
			sr := cs.results[seq]
			e.u64(seq)
			e.raw(sr.sum[:])
			e.u64(sr.res.Index)
			e.str(string(sr.res.Code))
			e.str(sr.res.Message)
			e.bytes(sr.res.Value)
		}
	}
}

// encodeContent encodes sessions, tools, resources and config.
func (st *state) encodeContent(e *encoder) {
	e.u32(len(st.sessions))
	for _, id := range sortedKeys(st.sessions) {
		s := st.sessions[id]
		e.str(id)
		e.i64(s.ttl)
		e.i64(s.expiry)
		e.u32(len(s.metadata))
		for _, k := range sortedKeys(s.metadata) {
			e.str(k)
			e.str(s.metadata[k])
		}
	}
	e.u32(len(st.tools))
	for _, name := range sortedKeys(st.tools) {
		e.str(name)
		e.bytes(st.tools[name])
	}
	e.u32(len(st.resources))
	for _, uri := range sortedKeys(st.resources) {
		e.str(uri)
		subs := st.resources[uri]
		e.u32(len(subs))
		for _, s := range sortedKeys(subs) {
			e.str(s)
		}
	}
	e.u32(len(st.config))
	for _, k := range sortedKeys(st.config) {
		e.str(k)
		e.str(st.config[k])
	}
}

// hash returns the SHA-256 of the canonical encoding.
func (st *state) hash() [32]byte { return sha256.Sum256(st.encode()) }

// decoder reads the canonical encoding. The first error sticks; every
// length is checked against the bytes left before anything is allocated.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("%s needs %d bytes, %d left", what, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8(what string) byte {
	v := d.take(1, what)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) u32(what string) uint32 {
	v := d.take(4, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (d *decoder) u64(what string) uint64 {
	v := d.take(8, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (d *decoder) i64(what string) int64 { return int64(d.u64(what)) }

// count reads a collection size; each element takes at least minElem bytes,
// so a count the remaining input cannot hold is rejected.
func (d *decoder) count(what string, minElem int) int {
	v := d.take(4, what)
	if v == nil {
		return 0
	}
	n := binary.BigEndian.Uint32(v)
	if uint64(n)*uint64(minElem) > uint64(len(d.b)) {
		d.fail("%s count %d does not fit in the %d bytes left", what, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes(what string) []byte {
	v := d.take(4, what)
	if v == nil {
		return nil
	}
	n := binary.BigEndian.Uint32(v)
	if uint64(n) > uint64(len(d.b)) {
		d.fail("%s length %d exceeds the %d bytes left", what, n, len(d.b))
		return nil
	}
	return bytes.Clone(d.take(int(n), what))
}

func (d *decoder) str(what string) string { return string(d.bytes(what)) }

func (d *decoder) key(what string) clientKey {
	var k clientKey
	copy(k[:], d.take(len(k), what))
	return k
}

// decodeState parses a canonical encoding. It checks structure and value
// domains; the caller checks canonical form by re-encoding.
func decodeState(b []byte) (*state, error) {
	d := &decoder{b: b}
	st := newState()
	if f := d.u8("format"); d.err == nil && f != stateFormat {
		return nil, fmt.Errorf("state format %d is unknown (this state machine reads format %d)", f, stateFormat)
	}
	switch init := d.u8("initialized flag"); {
	case d.err != nil:
	case init == 1:
		g := &Genesis{AdminKeys: make([]ed25519.PublicKey, d.count("genesis admin keys", ed25519.PublicKeySize))}
		for i := range g.AdminKeys {
			k := d.key("genesis admin key")
			if d.err == nil && i > 0 && bytes.Compare(g.AdminKeys[i-1], k[:]) >= 0 {
				d.fail("genesis admin key %d is out of order: keys must be ascending and distinct", i)
			}
			g.AdminKeys[i] = ed25519.PublicKey(k[:])
		}
		g.ResultWindow = int(d.u32("genesis result window"))
		g.MaxCommandBytes = int(d.u32("genesis max command bytes"))
		if d.err == nil {
			if err := g.check(); err != nil {
				return nil, fmt.Errorf("state genesis is invalid: %s", err.Message)
			}
		}
		st.genesis = g
	case init != 0:
		d.fail("initialized flag is %d, want 0 or 1", init)
	}
	st.clock = d.i64("clock")
	st.lastRestore = d.i64("last restore")

	for range d.count("acl", 32+4) {
		k := d.key("acl subject")
		rules := make(map[Permission]Effect)
		for range d.count("acl rules", 8) {
			p := Permission(d.str("acl permission"))
			eff := Effect(d.str("acl effect"))
			if d.err != nil {
				break
			}
			if !validPermission(p) {
				d.fail("acl rule of %s has unknown permission %s", FormatKey(k[:]), quote(string(p)))
			}
			if eff != EffectAllow && eff != EffectDeny {
				d.fail("acl rule of %s has effect %s, want allow or deny", FormatKey(k[:]), quote(string(eff)))
			}
			rules[p] = eff
		}
		if d.err == nil && len(rules) == 0 {
			d.fail("acl subject %s has no rules", FormatKey(k[:]))
		}
		st.acl[k] = rules
	}

	for range d.count("clients", 32+8+4) {
		k := d.key("client key")
		cs := &clientState{highest: d.u64("highest seq"), results: make(map[uint64]storedResult)}
		for range d.count("results", 8+32+8+4+4+4) {
			seq := d.u64("result seq")
			var sr storedResult
			copy(sr.sum[:], d.take(32, "result command hash"))
			sr.res = Result{
				Index:   d.u64("result index"),
				Seq:     seq,
				Code:    Code(d.str("result code")),
				Message: d.str("result message"),
			}
			if v := d.bytes("result value"); len(v) > 0 {
				sr.res.Value = v
			}
			if d.err == nil && (seq == 0 || seq > cs.highest) {
				d.fail("client %s has a result for seq %d outside 1..%d", FormatKey(k[:]), seq, cs.highest)
			}
			cs.results[seq] = sr
		}
		st.clients[k] = cs
	}

	for range d.count("sessions", 4+8+8+4) {
		s := &session{id: d.str("session id"), ttl: d.i64("session ttl"), expiry: d.i64("session expiry"), idx: -1}
		if n := d.count("session metadata", 8); n > 0 {
			s.metadata = make(map[string]string)
			for range n {
				k := d.str("metadata key")
				s.metadata[k] = d.str("metadata value")
			}
		}
		if d.err == nil && (s.ttl < 0 || (s.ttl == 0 && s.expiry != 0)) {
			d.fail("session %s has ttl_ms %d and expiry %d", quote(s.id), s.ttl, s.expiry)
		}
		if d.err != nil {
			break
		}
		st.putSession(s)
	}

	for range d.count("tools", 8) {
		name := d.str("tool name")
		st.tools[name] = d.bytes("tool definition")
	}

	for range d.count("resources", 8) {
		uri := d.str("resource uri")
		subs := make(map[string]struct{})
		for range d.count("subscribers", 4) {
			subs[d.str("subscriber")] = struct{}{}
		}
		if d.err == nil && len(subs) == 0 {
			d.fail("resource %s has no subscribers", quote(uri))
		}
		st.resources[uri] = subs
	}

	for range d.count("config", 8) {
		k := d.str("config key")
		st.config[k] = d.str("config value")
	}

	d.datasets(st)

	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the end of the state", len(d.b))
	}
	if st.genesis == nil {
		if st.clock != 0 || st.lastRestore != 0 || len(st.acl) != 0 || len(st.clients) != 0 || len(st.sessions) != 0 ||
			len(st.tools) != 0 || len(st.resources) != 0 || len(st.config) != 0 || len(st.datasets) != 0 {
			return nil, fmt.Errorf("state has no genesis but has content: an uninitialized state is empty")
		}
		return st, nil
	}
	if st.admins() == 0 {
		return nil, fmt.Errorf("no subject holds an admin allow rule")
	}
	return st, nil
}
