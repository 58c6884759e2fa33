package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestUninitializedRefusesEverythingButGenesis(t *testing.T) {
	a, c := testKey(1), testKey(2)
	sm := NewUninitialized()
	if sm.Initialized() {
		t.Fatal("NewUninitialized is initialized")
	}
	if g, ok := sm.Genesis(); ok {
		t.Fatalf("Genesis() = %+v, true before any genesis", g)
	}
	_, empty := sm.Hash()

	env := mustSign(t, a, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	if dup, err := sm.Precheck(env); dup != nil || !isCode(err, CodeNotInitialized) {
		t.Fatalf("Precheck = %+v, %v; want not_initialized", dup, err)
	}
	if _, idx, err := sm.QueryAt(Query{Kind: QueryConfigs}); !isCode(err, CodeNotInitialized) || idx != 0 {
		t.Fatalf("QueryAt = %d, %v; want not_initialized", idx, err)
	}
	if _, err := sm.Query(Query{Kind: QueryClient, Key: FormatKey(pubOf(a))}); !isCode(err, CodeNotInitialized) {
		t.Fatalf("Query = %v; want not_initialized", err)
	}
	if err := sm.Authorize(pubOf(a), PermAdmin); !isCode(err, CodeNotInitialized) {
		t.Fatalf("Authorize = %v; want not_initialized", err)
	}
	if err := sm.PrecheckRestore(mustSignRestore(t, a, mustSnapshot(t, buildState(t).sm))); !isCode(err, CodeNotInitialized) {
		t.Fatalf("PrecheckRestore = %v; want not_initialized", err)
	}

	// A command entry is answered, the index moves, nothing else changes.
	r := sm.Apply(3, entryBytes(t, 5, env))
	if r.Code != CodeNotInitialized || r.Index != 3 || r.Seq != 1 || r.Value != nil ||
		r.Message != "the cluster has not been initialized yet: no genesis entry has been applied" {
		t.Fatalf("Apply(command) = %+v", r)
	}
	if r := sm.Apply(4, restoreBytes(t, 5, mustSignRestore(t, a, mustSnapshot(t, buildState(t).sm)))); r.Code != CodeNotInitialized {
		t.Fatalf("Apply(restore) = %+v", r)
	}
	if idx, sum := sm.Hash(); idx != 4 || sum != empty {
		t.Fatalf("after rejected entries: index %d, hash changed %v", idx, sum != empty)
	}

	// The snapshot of an uninitialized machine installs as one.
	other := mustNew(t, genesisOf(c))
	if err := other.Restore(mustSnapshot(t, sm)); err != nil {
		t.Fatalf("Restore of an uninitialized snapshot: %v", err)
	}
	if idx, sum := other.Hash(); other.Initialized() || idx != 4 || sum != empty {
		t.Fatalf("after Restore: initialized %v, index %d", other.Initialized(), idx)
	}

	// Genesis initializes.
	g := Genesis{AdminKeys: []ed25519.PublicKey{pubOf(c), pubOf(a)}, ResultWindow: 16}
	r = sm.Apply(5, genesisBytes(t, 99, g))
	if r.Code != CodeOK || r.Index != 5 {
		t.Fatalf("Apply(genesis) = %+v", r)
	}
	var info GenesisInfo
	if err := json.Unmarshal(r.Value, &info); err != nil {
		t.Fatal(err)
	}
	lo, hi := pubOf(a), pubOf(c)
	if bytes.Compare(lo, hi) > 0 {
		lo, hi = hi, lo
	}
	if len(info.AdminKeys) != 2 || info.AdminKeys[0] != FormatKey(lo) || info.AdminKeys[1] != FormatKey(hi) ||
		info.ResultWindow != 16 || info.MaxCommandBytes != DefaultMaxCommandBytes {
		t.Fatalf("genesis value = %s, want keys %s, %s in order, window 16, default limit", r.Value, FormatKey(lo), FormatKey(hi))
	}
	if !sm.Initialized() {
		t.Fatal("not initialized after the genesis entry")
	}
	got, ok := sm.Genesis()
	if !ok || got.ResultWindow != 16 || got.MaxCommandBytes != DefaultMaxCommandBytes || len(got.AdminKeys) != 2 {
		t.Fatalf("Genesis() = %+v, %v", got, ok)
	}
	got.AdminKeys[0][0] ^= 1 // a copy: the state must not change
	if again, _ := sm.Genesis(); again.AdminKeys[0][0] == got.AdminKeys[0][0] {
		t.Fatal("Genesis() returned keys aliasing the state")
	}
	if r := sm.Apply(6, entryBytes(t, 5, env)); r.Code != CodeOK {
		t.Fatalf("command after genesis = %+v", r)
	}
	if err := sm.Authorize(pubOf(c), PermAdmin); err != nil {
		t.Fatalf("Authorize(genesis admin) = %v", err)
	}

	// A second genesis is refused and changes nothing.
	_, before := sm.Hash()
	r = sm.Apply(7, genesisBytes(t, 99, genesisOf(testKey(3))))
	if r.Code != CodeAlreadyInitialized || r.Value != nil || !strings.Contains(r.Message, "already initialized") {
		t.Fatalf("second genesis = %+v", r)
	}
	if idx, sum := sm.Hash(); idx != 7 || sum != before {
		t.Fatal("a second genesis changed the state")
	}
}

// TestNewEqualsGenesisEntry: New(g) is exactly NewUninitialized followed by
// the genesis entry of g, whatever the order of the keys and the time of
// the entry.
func TestNewEqualsGenesisEntry(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 4).Draw(t, "admins")
		perm := rapid.Permutation([]int{0, 1, 2, 3}).Draw(t, "order")
		var g Genesis
		for _, i := range perm[:n] {
			g.AdminKeys = append(g.AdminKeys, pubOf(propKeys[i]))
		}
		g.ResultWindow = rapid.SampledFrom([]int{0, 1, 7, MaxResultWindow}).Draw(t, "window")
		g.MaxCommandBytes = rapid.SampledFrom([]int{0, 1, 300, MaxMaxCommandBytes}).Draw(t, "maxcmd")

		direct := mustNew(t, g)
		viaLog := NewUninitialized()
		idx := rapid.Uint64Range(1, 1000).Draw(t, "index")
		if r := viaLog.Apply(idx, genesisBytes(t, rapid.Int64().Draw(t, "time"), g)); r.Code != CodeOK {
			t.Fatalf("genesis entry: %+v", r)
		}
		_, h1 := direct.Hash()
		_, h2 := viaLog.Hash()
		if h1 != h2 {
			t.Fatalf("New and the genesis entry give different states for %+v", g)
		}
		s1, s2 := mustSnapshot(t, direct), mustSnapshot(t, viaLog)
		if !bytes.Equal(s1[snapshotHeaderLen:len(s1)-32], s2[snapshotHeaderLen:len(s2)-32]) {
			t.Fatal("snapshot bodies differ")
		}
		g1, _ := direct.Genesis()
		g2, _ := viaLog.Genesis()
		if g1.Info().AdminKeys == nil || !equalInfo(g1.Info(), g2.Info()) {
			t.Fatalf("Genesis() differs: %+v vs %+v", g1.Info(), g2.Info())
		}
	})
}

func equalInfo(a, b GenesisInfo) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestInvalidGenesisEntry(t *testing.T) {
	k1, k2 := pubOf(testKey(1)), pubOf(testKey(2))
	cases := []struct {
		name    string
		g       Genesis
		mention string
	}{
		{"no admin", Genesis{}, "at least one admin key"},
		{"duplicate admin", Genesis{AdminKeys: []ed25519.PublicKey{k1, k2, k1}}, "are the same key"},
		{"huge window", Genesis{AdminKeys: []ed25519.PublicKey{k1}, ResultWindow: MaxResultWindow + 1}, "result window is 1048577"},
		{"huge command limit", Genesis{AdminKeys: []ed25519.PublicKey{k1}, MaxCommandBytes: MaxMaxCommandBytes + 1}, "max command bytes is"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sm := NewUninitialized()
			_, before := sm.Hash()
			r := sm.Apply(1, genesisBytes(t, 0, tc.g))
			if r.Code != CodeMalformed || !strings.Contains(r.Message, tc.mention) || r.Value != nil {
				t.Fatalf("Apply = %+v, want malformed mentioning %q", r, tc.mention)
			}
			if _, after := sm.Hash(); after != before || sm.Initialized() || sm.AppliedIndex() != 1 {
				t.Fatal("an invalid genesis changed the state")
			}
			if _, err := New(tc.g); !isCode(err, CodeMalformed) {
				t.Fatalf("New = %v, want a malformed *Error", err)
			}
		})
	}

	// Hand-made encodings that no encoder writes are rejected when decoded.
	good := genesisBytes(t, 0, Genesis{AdminKeys: []ed25519.PublicKey{k1, k2}})
	zeroWindow := bytes.Clone(good)
	binary.BigEndian.PutUint32(zeroWindow[len(zeroWindow)-8:], 0)
	swapped := bytes.Clone(good)
	copy(swapped[14:46], good[46:78])
	copy(swapped[46:78], good[14:46])
	for name, b := range map[string][]byte{"zero window": zeroWindow, "keys out of order": swapped, "truncated": good[:len(good)-1]} {
		sm := NewUninitialized()
		if r := sm.Apply(1, b); r.Code != CodeMalformed || sm.Initialized() {
			t.Errorf("%s: Apply = %+v", name, r)
		}
	}
}

// TestGenesisIsReplicatedState: the genesis limits are part of the hash,
// travel in snapshots and are enforced from the state, not from the node.
func TestGenesisIsReplicatedState(t *testing.T) {
	a := testKey(1)
	small := mustNew(t, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(a)}, ResultWindow: 4, MaxCommandBytes: 100})
	large := mustNew(t, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(a)}, ResultWindow: 5, MaxCommandBytes: 100})
	if _, h1 := small.Hash(); true {
		if _, h2 := large.Hash(); h1 == h2 {
			t.Fatal("genesis with different windows hash equal")
		}
	}
	target := mustNew(t, genesisOf(testKey(9)))
	if err := target.Restore(mustSnapshot(t, small)); err != nil {
		t.Fatal(err)
	}
	g, ok := target.Genesis()
	if !ok || g.ResultWindow != 4 || g.MaxCommandBytes != 100 || len(g.AdminKeys) != 1 || !g.AdminKeys[0].Equal(pubOf(a)) {
		t.Fatalf("restored genesis = %+v", g)
	}
	big := mustSign(t, a, 1, Command{Op: OpSetConfig, Key: "k", Value: strings.Repeat("v", 100)})
	if _, err := target.Precheck(big); !isCode(err, CodeTooLarge) {
		t.Fatalf("Precheck of a command over the restored limit = %v", err)
	}
	if r := target.Apply(1, entryBytes(t, 0, big)); r.Code != CodeTooLarge {
		t.Fatalf("Apply of a command over the restored limit = %+v", r)
	}
}
