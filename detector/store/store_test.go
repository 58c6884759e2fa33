package store

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

func accusation(t *testing.T, value int64) *evidence.Evidence {
	t.Helper()
	seed := sha256.Sum256([]byte("store test key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	a, err := evidence.SignAccusation(priv, evidence.Accusation{Accuser: "n1", Accused: "n2", Metric: evidence.MetricSignatureFailure, Value: value, Epoch: 1, At: 1_700_000_000_000_000_000})
	if err != nil {
		t.Fatal(err)
	}
	e, err := evidence.FromAccusation(a)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPutLoadRemove(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := accusation(t, 1), accusation(t, 2)
	for _, e := range []*evidence.Evidence{a, b, a} {
		if err := s.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	// A leftover temporary file is removed by Open; a damaged record is
	// reported and skipped.
	if err := os.WriteFile(filepath.Join(dir, a.ID().String()+".ev.tmp"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	bogus := accusation(t, 3)
	if err := os.WriteFile(filepath.Join(dir, bogus.ID().String()+".ev"), []byte{9, 9}, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, a.ID().String()+".ev.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
	recs, bad, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || len(bad) != 1 {
		t.Fatalf("loaded %d records and %d bad files, want 2 and 1 (%v)", len(recs), len(bad), bad)
	}
	var le *LoadError
	if !errors.As(bad[0], &le) || !errors.Is(bad[0], evidence.ErrMalformed) {
		t.Fatalf("bad file error %v: want a *LoadError wrapping ErrMalformed", bad[0])
	}
	got := map[evidence.ID]bool{recs[0].ID(): true, recs[1].ID(): true}
	if !got[a.ID()] || !got[b.ID()] {
		t.Fatalf("loaded %v, want %s and %s", got, a.ID().Short(), b.ID().Short())
	}
	if err := s.Remove(a.ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(a.ID()); err != nil {
		t.Fatalf("removing a missing record: %v", err)
	}
	recs, _, err = s.Load()
	if err != nil || len(recs) != 1 || recs[0].ID() != b.ID() {
		t.Fatalf("after remove: %v %v", recs, err)
	}
}

func TestRenamedFileIsRejected(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := accusation(t, 1), accusation(t, 2)
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, a.ID().String()+".ev"), filepath.Join(dir, b.ID().String()+".ev")); err != nil {
		t.Fatal(err)
	}
	recs, bad, err := s.Load()
	if err != nil || len(recs) != 0 || len(bad) != 1 {
		t.Fatalf("renamed file: %d records, %v, %v", len(recs), bad, err)
	}
}
