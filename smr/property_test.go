package smr

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// propKeys are the clients of the property tests: 0 and 1 are genesis
// admins, 2..4 start uninvited (commands may invite them).
var propKeys = func() []ed25519.PrivateKey {
	ks := make([]ed25519.PrivateKey, 5)
	for i := range ks {
		ks[i] = testKey(100 + i)
	}
	return ks
}()

func propGenesis(window int) Genesis {
	return Genesis{AdminKeys: []ed25519.PublicKey{pubOf(propKeys[0]), pubOf(propKeys[1])}, ResultWindow: window}
}

// genCommand draws a command over small alphabets so that commands collide
// (same session, same rule) often.
func genCommand(t *rapid.T) Command {
	id := rapid.SampledFrom([]string{"a", "b", "c"})
	switch rapid.IntRange(0, 14).Draw(t, "op") {
	case 0:
		c := Command{Op: OpRegisterSession, SessionID: id.Draw(t, "session"),
			TTLMillis: rapid.SampledFrom([]int64{0, 1, 50, 300}).Draw(t, "ttl")}
		if rapid.Bool().Draw(t, "metadata") {
			c.Metadata = map[string]string{"x": id.Draw(t, "mv"), "y": "1"}
		}
		return c
	case 1:
		return Command{Op: OpRenewSession, SessionID: id.Draw(t, "session"), TTLMillis: rapid.SampledFrom([]int64{0, 100}).Draw(t, "ttl")}
	case 2:
		return Command{Op: OpUnregisterSession, SessionID: id.Draw(t, "session")}
	case 3:
		return Command{Op: OpRegisterTool, ToolName: id.Draw(t, "tool"),
			Definition: json.RawMessage(rapid.SampledFrom([]string{`{}`, `{"b":1,"a":[true,null]}`, `{ "x" : "y" }`}).Draw(t, "def"))}
	case 4:
		return Command{Op: OpUnregisterTool, ToolName: id.Draw(t, "tool")}
	case 5:
		return Command{Op: OpSubscribeResource, ResourceURI: id.Draw(t, "uri"), Subscriber: id.Draw(t, "sub")}
	case 6:
		return Command{Op: OpUnsubscribeResource, ResourceURI: id.Draw(t, "uri"), Subscriber: id.Draw(t, "sub")}
	case 7, 10, 11:
		return Command{
			Op:         OpUpdateACL,
			Subject:    FormatKey(pubOf(rapid.SampledFrom(propKeys).Draw(t, "subject"))),
			Permission: rapid.SampledFrom([]Permission{PermAdmin, PermSessionWrite, PermToolWrite, PermResourceWrite, PermConfigWrite, PermACLWrite}).Draw(t, "perm"),
			Effect:     rapid.SampledFrom([]Effect{EffectAllow, EffectDeny, EffectRemove}).Draw(t, "effect"),
		}
	case 8:
		return Command{Op: OpSetConfig, Key: id.Draw(t, "key"), Value: id.Draw(t, "value")}
	case 12:
		c := Command{Op: OpCreateDataset, Dataset: id.Draw(t, "dataset"), Cells: rapid.IntRange(1, 3).Draw(t, "cells"), CellSize: 1,
			StepLimit: rapid.Uint64Range(0, 2).Draw(t, "step limit")}
		if rapid.Bool().Draw(t, "agents") {
			c.Agents = []string{FormatKey(pubOf(rapid.SampledFrom(propKeys).Draw(t, "agent")))}
		}
		return c
	case 13:
		return Command{Op: rapid.SampledFrom([]Op{OpInviteAgent, OpRevokeAgent}).Draw(t, "dataset op"), Dataset: id.Draw(t, "dataset"),
			Subject: FormatKey(pubOf(rapid.SampledFrom(propKeys).Draw(t, "subject"))),
			Role:    rapid.SampledFrom([]DatasetRole{"", RoleAgent, RoleAdmin}).Draw(t, "role")}
	case 14:
		// Signed for a guessed creation index: some verify, most do not.
		name := id.Draw(t, "dataset")
		ref := DatasetRef{Name: name, Created: rapid.Uint64Range(1, 12).Draw(t, "created")}
		agent := rapid.SampledFrom(propKeys).Draw(t, "agent")
		snap := DatasetSnapshot{Statements: []SeqStatement{signedStatement(t, agent, ref, rapid.Uint64Range(0, 4).Draw(t, "max"))}}
		for l := range rapid.Uint64Range(0, 3).Draw(t, "changes") {
			snap.Changes = append(snap.Changes, signedChange(t, agent, ref, l+1, uint32(rapid.IntRange(0, 3).Draw(t, "cell")),
				rapid.Uint64Range(0, 3).Draw(t, "global seq"), []byte{rapid.Byte().Draw(t, "value")}))
		}
		return syncCommand(t, name, snap)
	default:
		return Command{Op: OpDeleteConfig, Key: id.Draw(t, "key")}
	}
}

// panicker is a fataler for fixtures built outside a test.
type panicker struct{}

func (panicker) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// restorePool holds snapshots for restore entries in the random streams:
// two initialized histories with different genesis parameters, an
// uninitialized state and a corrupt copy (the last two are rejected).
var restorePool = sync.OnceValue(func() [][]byte {
	t := panicker{}
	apply := func(sm *StateMachine, idx uint64, env *Envelope) {
		if r := sm.Apply(idx, entryBytes(t, int64(idx)*100_000_000, env)); r.Code != CodeOK {
			panic(fmt.Sprintf("restore pool fixture, entry %d: %+v", idx, r))
		}
	}
	a := mustNew(t, propGenesis(8))
	apply(a, 1, mustSign(t, propKeys[0], 1, grant(propKeys[2], PermSessionWrite, EffectAllow)))
	apply(a, 2, mustSign(t, propKeys[2], 1, Command{Op: OpRegisterSession, SessionID: "a", TTLMillis: 300}))
	apply(a, 3, mustSign(t, propKeys[0], 2, Command{Op: OpSetConfig, Key: "b", Value: "pool"}))
	apply(a, 4, mustSign(t, propKeys[1], 1, Command{Op: OpSubscribeResource, ResourceURI: "c", Subscriber: "a"}))

	b := mustNew(t, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(propKeys[1]), pubOf(propKeys[0])}, ResultWindow: 3, MaxCommandBytes: 160})
	for seq := uint64(1); seq <= 6; seq++ {
		apply(b, seq, mustSign(t, propKeys[1], seq, Command{Op: OpSetConfig, Key: "a", Value: fmt.Sprint(seq)}))
	}
	apply(b, 7, mustSign(t, propKeys[1], 7, grant(propKeys[0], PermAdmin, EffectRemove)))

	corrupt := mustSnapshot(t, a)
	corrupt[len(corrupt)-40] ^= 1
	return [][]byte{mustSnapshot(t, a), mustSnapshot(t, b), mustSnapshot(t, NewUninitialized()), corrupt}
})

// genEntries draws n log entries: the genesis of g among the first three,
// then, from several clients, fresh seqs, retries, conflicting reuses, random
// and zero seqs, malformed commands, broken signatures, undecodable
// entries, further (refused) genesis entries and restores of snapshots by
// admins and others, with times that mostly advance. Entries before the
// genesis are refused as not initialized.
func genEntries(t *rapid.T, n int, g Genesis) [][]byte {
	type sent struct {
		client int
		env    *Envelope
	}
	var history []sent
	next := make([]uint64, len(propKeys))
	now := int64(1_000_000_000)
	out := make([][]byte, 0, n)
	genesisAt := rapid.IntRange(0, 2).Draw(t, "genesisAt")
	for i := range n {
		now += rapid.Int64Range(-50_000_000, 200_000_000).Draw(t, "dt")
		if i == genesisAt {
			out = append(out, genesisBytes(t, now, g))
			continue
		}
		// Mostly the admins, so that commands get through and invite others.
		ci := rapid.SampledFrom([]int{0, 0, 0, 1, 1, 2, 2, 3, 4}).Draw(t, "client")
		priv := propKeys[ci]
		var env *Envelope
		switch kind := rapid.IntRange(0, 22).Draw(t, "kind"); {
		case kind < 11:
			next[ci]++
			env = mustSign(t, priv, next[ci], genCommand(t))
		case kind < 14 && len(history) > 0:
			env = rapid.SampledFrom(history).Draw(t, "retry").env
		case kind < 15 && len(history) > 0:
			h := rapid.SampledFrom(history).Draw(t, "conflict")
			env = signRaw(propKeys[h.client], h.env.Seq, mustEncode(t, genCommand(t)))
		case kind < 17:
			seq := rapid.Uint64Range(0, next[ci]+12).Draw(t, "seq")
			env = signRaw(priv, seq, mustEncode(t, genCommand(t)))
		case kind < 18:
			next[ci]++
			env = signRaw(priv, next[ci], []byte(rapid.SampledFrom([]string{`{"op":"nope"}`, `{"op":"set_config"}`, `[]`, ``}).Draw(t, "raw")))
		case kind < 19:
			next[ci]++
			env = mustSign(t, priv, next[ci], genCommand(t))
			env.Sig = slices.Clone(env.Sig)
			env.Sig[rapid.IntRange(0, 63).Draw(t, "sigbyte")] ^= 1
		case kind < 20:
			out = append(out, []byte{byte(i)})
			continue
		case kind < 22:
			r := mustSignRestore(t, priv, rapid.SampledFrom(restorePool()).Draw(t, "snapshot"))
			if rapid.IntRange(0, 5).Draw(t, "forge") == 0 {
				r.Sig[0] ^= 1
			}
			out = append(out, restoreBytes(t, now, r))
			continue
		default:
			if i < genesisAt {
				out = append(out, []byte{})
				continue
			}
			other := rapid.SampledFrom([]Genesis{g, propGenesis(3), {}}).Draw(t, "genesis")
			out = append(out, genesisBytes(t, now, other))
			continue
		}
		history = append(history, sent{client: ci, env: env})
		out = append(out, entryBytes(t, now, env))
	}
	return out
}

func mustEncode(t fataler, c Command) []byte {
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatalf("EncodeCommand(%+v): %v", c, err)
	}
	return b
}

func mustNew(t fataler, g Genesis) *StateMachine {
	sm, err := New(g)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return sm
}

func queryAll(t fataler, sm *StateMachine) string {
	var s string
	for _, k := range []QueryKind{QuerySessions, QueryTools, QueryResources, QueryACLs, QueryConfigs, QueryDatasets} {
		out, err := sm.Query(Query{Kind: k})
		if isCode(err, CodeNotInitialized) {
			return "not initialized"
		}
		if err != nil {
			t.Fatalf("Query(%s): %v", k, err)
		}
		s += string(out) + "\n"
	}
	return s
}

// TestPropertyDeterminism (invariant 2): the same entries (genesis and
// restores included) applied to two uninitialized state machines give
// identical Results and identical hashes after every step, and the applied
// index is always the index of the last entry.
func TestPropertyDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		window := rapid.SampledFrom([]int{3, 8, 1024}).Draw(t, "window")
		entries := genEntries(t, rapid.IntRange(1, 50).Draw(t, "n"), propGenesis(window))
		m1, m2 := NewUninitialized(), NewUninitialized()
		for i, e := range entries {
			idx := uint64(i + 1)
			r1, r2 := m1.Apply(idx, e), m2.Apply(idx, e)
			if !reflect.DeepEqual(r1, r2) {
				t.Fatalf("entry %d: results differ:\n%+v\n%+v", i, r1, r2)
			}
			i1, h1 := m1.Hash()
			i2, h2 := m2.Hash()
			if i1 != idx || i2 != idx || h1 != h2 {
				t.Fatalf("entry %d: hashes differ: %d %x vs %d %x", i, i1, h1, i2, h2)
			}
			if h1 != m1.st.hash() {
				t.Fatalf("entry %d: Hash returned a stale cached value", i)
			}
		}
		if q1, q2 := queryAll(t, m1), queryAll(t, m2); q1 != q2 {
			t.Fatalf("queries differ:\n%s\n%s", q1, q2)
		}
	})
}

// TestPropertySnapshotRestore: Restore(Snapshot()) after a random prefix
// (possibly before the genesis) gives the same hash, and then the same
// Results and hashes for the rest.
func TestPropertySnapshotRestore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		entries := genEntries(t, rapid.IntRange(1, 40).Draw(t, "n"), propGenesis(8))
		cut := rapid.IntRange(0, len(entries)).Draw(t, "cut")
		orig := NewUninitialized()
		for i, e := range entries[:cut] {
			orig.Apply(uint64(i+1), e)
		}
		snap, err := orig.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		restored := mustNew(t, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(testKey(999))}, ResultWindow: 8})
		if err := restored.Restore(snap); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		i1, h1 := orig.Hash()
		i2, h2 := restored.Hash()
		if i1 != i2 || h1 != h2 {
			t.Fatalf("after Restore: %d %x, want %d %x", i2, h2, i1, h1)
		}
		for i, e := range entries[cut:] {
			idx := uint64(cut + i + 1)
			r1, r2 := orig.Apply(idx, e), restored.Apply(idx, e)
			if !reflect.DeepEqual(r1, r2) {
				t.Fatalf("entry %d after restore: results differ:\n%+v\n%+v", cut+i, r1, r2)
			}
			if _, a := orig.Hash(); true {
				if _, b := restored.Hash(); a != b {
					t.Fatalf("entry %d after restore: hashes differ", cut+i)
				}
			}
		}
	})
}

// TestPropertyRetryExecutesOnce (invariant 1): a client pipelines commands
// out of order within the window and retries seqs at random; each seq
// executes once, a retry returns the stored Result marked Duplicate and
// changes nothing, and a retry that fell out of the window is too old.
func TestPropertyRetryExecutesOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const window = 6
		priv := propKeys[0]
		sm := mustNew(t, propGenesis(window))
		n := rapid.IntRange(1, 40).Draw(t, "n")
		envs := make([]*Envelope, n+1)
		for s := 1; s <= n; s++ {
			// Unique session IDs: executing a seq twice would fail with
			// already_exists instead of repeating the stored Result.
			envs[s] = mustSign(t, priv, uint64(s), Command{Op: OpRegisterSession, SessionID: fmt.Sprint("s", s)})
		}
		results := map[uint64]Result{}
		pending := make([]uint64, 0, n)
		for s := 1; s <= n; s++ {
			pending = append(pending, uint64(s))
		}
		var highest uint64
		idx := uint64(0)
		for len(pending) > 0 || rapid.Bool().Draw(t, "more") {
			idx++
			retry := len(results) > 0 && rapid.IntRange(0, 2).Draw(t, "retry?") == 0
			if !retry && len(pending) == 0 {
				break
			}
			if retry {
				seq := rapid.SampledFrom(sortedKeys(results)).Draw(t, "retry")
				_, before := sm.Hash()
				r := sm.Apply(idx, entryBytes(t, 0, envs[seq]))
				_, after := sm.Hash()
				if before != after {
					t.Fatalf("retry of seq %d changed the state", seq)
				}
				if highest > window && seq <= highest-window {
					if r.Code != CodeSeqTooOld {
						t.Fatalf("retry of seq %d (highest %d) = %+v, want seq_too_old", seq, highest, r)
					}
					continue
				}
				want := results[seq]
				want.Duplicate = true
				if !reflect.DeepEqual(r, want) {
					t.Fatalf("retry of seq %d = %+v, want %+v", seq, r, want)
				}
				continue
			}
			// Pipelining: any pending seq within the window may arrive next.
			var eligible []uint64
			for _, s := range pending {
				if s <= highest+window {
					eligible = append(eligible, s)
				}
			}
			seq := rapid.SampledFrom(eligible).Draw(t, "seq")
			pending = slices.DeleteFunc(pending, func(s uint64) bool { return s == seq })
			r := sm.Apply(idx, entryBytes(t, 0, envs[seq]))
			if r.Code != CodeOK || r.Duplicate {
				t.Fatalf("first execution of seq %d = %+v", seq, r)
			}
			results[seq] = r
			highest = max(highest, seq)
			// Seqs the window has left behind can no longer execute.
			pending = slices.DeleteFunc(pending, func(s uint64) bool {
				if highest <= window || s > highest-window {
					return false
				}
				idx++
				if r := sm.Apply(idx, entryBytes(t, 0, envs[s])); r.Code != CodeSeqTooOld {
					t.Fatalf("seq %d left behind by highest %d = %+v, want seq_too_old", s, highest, r)
				}
				return true
			})
		}
		var sessions []SessionInfo
		out, _ := sm.Query(Query{Kind: QuerySessions})
		if err := json.Unmarshal(out, &sessions); err != nil || len(sessions) != len(results) {
			t.Fatalf("%d sessions after %d executed seqs (%v)", len(sessions), len(results), err)
		}
	})
}
