package engine

import (
	"crypto/ed25519"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// baseState returns a snapshot at index 40 of a state whose admin wrote
// key "carried" with seqs 1..3.
func baseState(t *testing.T, admin ed25519.PrivateKey) []byte {
	t.Helper()
	sm, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{admin.Public().(ed25519.PublicKey)}}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"a", "b", "carried"} {
		env, err := smr.Sign(admin, uint64(i+1), smr.Command{Op: smr.OpSetConfig, Key: "carried", Value: v})
		if err != nil {
			t.Fatal(err)
		}
		ent := smr.NewCommandEntry(time.Now().UnixNano(), *env)
		b, err := ent.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if r := sm.Apply(uint64(38+i), b); r.Code != smr.CodeOK {
			t.Fatalf("base state: %+v", r)
		}
	}
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// An epoch that starts from a handed-over state continues its log after the
// base index, keeps the base content, and keeps it across a restart.
func TestEpochStartsFromBase(t *testing.T) {
	admin, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	snap := baseState(t, admin)
	base := &Base{Index: 40, Snapshot: snap, Digest: sha256.Sum256(snap)}
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.Epoch = 2
		cfg.Genesis = nil
		cfg.Base = base
	})
	c.admin = admin
	c.seq.Store(3)

	res := c.mustWrite(c.nodes[0], "after", "switch")
	if res.Index <= 40 {
		t.Fatalf("first write of the epoch at index %d, want above the base index 40", res.Index)
	}
	for _, nd := range c.nodes {
		waitFor(t, 10*time.Second, "base content on "+string(nd.id), func() (bool, string) {
			v, err := nd.sm.Query(smr.Query{Kind: smr.QueryConfig, Key: "carried"})
			return err == nil && string(v) != "", string(v)
		})
	}
	c.stop(c.nodes[1])
	c.start(c.nodes[1])
	res2 := c.mustWrite(c.nodes[1], "after", "restart")
	if res2.Index <= res.Index {
		t.Fatalf("write after restart at index %d, want above %d", res2.Index, res.Index)
	}
	if _, err := c.nodes[1].sm.Query(smr.Query{Kind: smr.QueryConfig, Key: "carried"}); err != nil {
		t.Fatalf("base content after restart: %v", err)
	}
}

func TestBaseConfigRejected(t *testing.T) {
	cfg := Config{Base: &Base{Index: 0}, Genesis: &smr.Genesis{}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a base with a genesis and no snapshot")
	}
	for _, want := range []string{"Base and Genesis", "Base has index 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
