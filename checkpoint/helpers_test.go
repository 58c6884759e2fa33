package checkpoint

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/smr"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current encoders")

// testKey returns a deterministic key for member i.
func testKey(i int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(fmt.Sprintf("checkpoint test key %d", i)))
	return ed25519.NewKeyFromSeed(seed[:])
}

func memberID(i int) string { return fmt.Sprintf("n%d", i) }

// testCommittee returns members n1..nN with keys testKey(1..N).
func testCommittee(t testing.TB, n int) *Committee {
	t.Helper()
	m := make(map[string]ed25519.PublicKey, n)
	for i := 1; i <= n; i++ {
		m[memberID(i)] = testKey(i).Public().(ed25519.PublicKey)
	}
	c, err := NewCommittee(m)
	if err != nil {
		t.Fatalf("NewCommittee(%d): %v", n, err)
	}
	return c
}

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func ckptStatement(epoch, index uint64, state string) Statement {
	return Statement{Kind: KindCheckpoint, Epoch: epoch, Index: index, StateHash: hashOf(state)}
}

func handoffStatement() Statement {
	return Statement{Kind: KindHandoff, Epoch: 2, Index: 1200, StateHash: hashOf("handoff"),
		Mode: ModeBFT, Members: []string{"n1", "n2", "n3", "n4"}}
}

func mustSign(t testing.TB, i int, s Statement) Vote {
	t.Helper()
	v, err := Sign(testKey(i), memberID(i), s)
	if err != nil {
		t.Fatalf("Sign(%d, %s): %v", i, s, err)
	}
	return v
}

// certOf builds a certificate for s signed by members ids, in any order;
// the signatures are sorted by signer.
func certOf(t testing.TB, s Statement, ids ...int) *Certificate {
	t.Helper()
	c := &Certificate{Statement: s}
	for _, i := range ids {
		c.Sigs = append(c.Sigs, Signature{Signer: memberID(i), Sig: mustSign(t, i, s).Sig})
	}
	sortSigs(c.Sigs)
	return c
}

func sortSigs(s []Signature) {
	slices.SortFunc(s, func(a, b Signature) int { return strings.Compare(a.Signer, b.Signer) })
}

// realSnapshot returns a state machine snapshot at index whose content
// depends on window (the genesis result window), with its state hash.
func realSnapshot(t testing.TB, index uint64, window int) ([]byte, [32]byte) {
	t.Helper()
	sm := smr.NewUninitialized()
	ent := smr.NewGenesisEntry(1_000_000_000, smr.Genesis{
		AdminKeys:    []ed25519.PublicKey{testKey(100).Public().(ed25519.PublicKey)},
		ResultWindow: window,
	}.WithDefaults())
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatalf("genesis entry: %v", err)
	}
	if res := sm.Apply(index, b); res.Code != smr.CodeOK {
		t.Fatalf("applying genesis at %d: %+v", index, res)
	}
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	idx, sum := sm.Hash()
	if idx != index {
		t.Fatalf("snapshot index %d, want %d", idx, index)
	}
	return snap, sum
}

// stableCheckpoint returns a real snapshot at index and its certificate
// signed by members 1..signers.
func stableCheckpoint(t testing.TB, epoch, index uint64, window, signers int) (*Certificate, []byte) {
	t.Helper()
	snap, sum := realSnapshot(t, index, window)
	s := Statement{Kind: KindCheckpoint, Epoch: epoch, Index: index, StateHash: sum}
	ids := make([]int, signers)
	for i := range ids {
		ids[i] = i + 1
	}
	return certOf(t, s, ids...), snap
}

// golden compares got with testdata/name, as hex in 32-byte lines, or
// rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var sb strings.Builder
	for len(got) > 0 {
		n := min(32, len(got))
		sb.WriteString(hex.EncodeToString(got[:n]))
		sb.WriteByte('\n')
		got = got[n:]
	}
	goldenText(t, name, sb.String())
}

func goldenText(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		t.Errorf("%s changed: a changed encoding is a protocol version change.\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
