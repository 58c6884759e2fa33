package smr

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
)

// testKey returns a deterministic key pair for tests.
func testKey(i int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte{'k', 'e', 'y', byte(i), byte(i >> 8)})
	return ed25519.NewKeyFromSeed(seed[:])
}

func pubOf(priv ed25519.PrivateKey) ed25519.PublicKey { return priv.Public().(ed25519.PublicKey) }

// signRaw signs arbitrary command bytes, bypassing EncodeCommand's checks.
func signRaw(priv ed25519.PrivateKey, seq uint64, cmd []byte) *Envelope {
	env := &Envelope{Client: pubOf(priv), Seq: seq, Command: cmd}
	env.Sig = ed25519.Sign(priv, env.SignBytes())
	return env
}

// fataler is what the helpers need of *testing.T, *testing.B and *rapid.T.
type fataler interface {
	Fatalf(format string, args ...any)
}

func helper(t fataler) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
}

func mustSign(t fataler, priv ed25519.PrivateKey, seq uint64, cmd Command) *Envelope {
	helper(t)
	env, err := Sign(priv, seq, cmd)
	if err != nil {
		t.Fatalf("Sign(seq %d, %+v): %v", seq, cmd, err)
	}
	return env
}

func entryBytes(t fataler, at int64, env *Envelope) []byte {
	helper(t)
	ent := Entry{Time: at, Env: *env}
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatalf("Entry.MarshalBinary: %v", err)
	}
	return b
}

// harness applies entries at consecutive indexes.
type harness struct {
	t    testing.TB
	sm   *StateMachine
	idx  uint64
	time int64
}

func newHarness(t testing.TB, admins ...ed25519.PrivateKey) *harness {
	t.Helper()
	g := Genesis{}
	for _, a := range admins {
		g.AdminKeys = append(g.AdminKeys, pubOf(a))
	}
	sm, err := New(g)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{t: t, sm: sm, time: 1_000_000_000}
}

// apply applies env at the next index with the harness time.
func (h *harness) apply(env *Envelope) Result {
	h.t.Helper()
	h.idx++
	return h.sm.Apply(h.idx, entryBytes(h.t, h.time, env))
}

// do signs and applies cmd, and fails the test unless it succeeds.
func (h *harness) do(priv ed25519.PrivateKey, seq uint64, cmd Command) Result {
	h.t.Helper()
	r := h.apply(mustSign(h.t, priv, seq, cmd))
	if r.Code != CodeOK {
		h.t.Fatalf("%s seq %d: %s: %s", cmd.Op, seq, r.Code, r.Message)
	}
	return r
}

func (h *harness) query(kind QueryKind, key string) json.RawMessage {
	h.t.Helper()
	out, err := h.sm.Query(Query{Kind: kind, Key: key})
	if err != nil {
		h.t.Fatalf("Query(%s, %q): %v", kind, key, err)
	}
	return out
}

func (h *harness) hash() [32]byte {
	_, sum := h.sm.Hash()
	return sum
}

// domainHash hashes everything but the exactly-once records: the clock, the
// ACL, sessions, tools, resources, config and datasets.
func (h *harness) domainHash() [32]byte {
	h.sm.mu.RLock()
	defer h.sm.mu.RUnlock()
	e := &encoder{}
	e.i64(h.sm.st.clock)
	h.sm.st.encodeACL(e)
	h.sm.st.encodeContent(e)
	h.sm.st.encodeDatasets(e)
	return sha256.Sum256(e.b)
}

func (h *harness) highest(priv ed25519.PrivateKey) uint64 {
	h.sm.mu.RLock()
	defer h.sm.mu.RUnlock()
	if cs := h.sm.st.clients[clientKey(pubOf(priv))]; cs != nil {
		return cs.highest
	}
	return 0
}

func grant(subject ed25519.PrivateKey, p Permission, e Effect) Command {
	return Command{Op: OpUpdateACL, Subject: FormatKey(pubOf(subject)), Permission: p, Effect: e}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// genesisBytes encodes the genesis entry of g at time at.
func genesisBytes(t fataler, at int64, g Genesis) []byte {
	helper(t)
	ent := NewGenesisEntry(at, g)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatalf("genesis Entry.MarshalBinary: %v", err)
	}
	return b
}

// restoreBytes encodes the restore entry of r at r's signing time plus at
// nanoseconds (within RestoreWindow for small at).
func restoreBytes(t fataler, at int64, r *Restore) []byte {
	helper(t)
	ent := NewRestoreEntry(r.Time*1e9+at, *r)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatalf("restore Entry.MarshalBinary: %v", err)
	}
	return b
}

// restoreURI is the request URI restores are signed for in tests.
const restoreURI = "/v1/admin/snapshot"

func mustSignRestore(t fataler, priv ed25519.PrivateKey, snap []byte) *Restore {
	helper(t)
	r, err := SignRestore(priv, restoreURI, 1_700_000_000, snap)
	if err != nil {
		t.Fatalf("SignRestore: %v", err)
	}
	return r
}

func mustSnapshot(t fataler, sm *StateMachine) []byte {
	helper(t)
	b, err := sm.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return b
}

func genesisOf(privs ...ed25519.PrivateKey) Genesis {
	var g Genesis
	for _, p := range privs {
		g.AdminKeys = append(g.AdminKeys, pubOf(p))
	}
	return g
}
