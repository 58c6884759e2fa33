package checkpoint

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/smr"
)

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, smr.SnapshotInfo)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	return s
}

func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func mustLatest(t *testing.T, s *Store) (*Certificate, []byte) {
	t.Helper()
	cert, snap, err := s.Latest()
	if err != nil {
		t.Fatalf("Latest: %v", err)
	}
	return cert, snap
}

// TestStoreKeepsNewestTwo: Latest returns the newest save, the previous one
// is kept, older ones are deleted, and a reopened store sees the same.
func TestStoreKeepsNewestTwo(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, _, err := s.Latest(); !errors.Is(err, ErrNone) {
		t.Fatalf("empty store: Latest = %v, want ErrNone", err)
	}
	if _, err := s.LatestCertificate(); !errors.Is(err, ErrNone) {
		t.Fatalf("empty store: LatestCertificate = %v", err)
	}
	var certs []*Certificate
	for i, idx := range []uint64{10, 20, 30} {
		c, snap := stableCheckpoint(t, 1, idx, 10+i, 3)
		if err := s.Save(c, snap); err != nil {
			t.Fatalf("Save %d: %v", idx, err)
		}
		certs = append(certs, c)
		got, gotSnap := mustLatest(t, s)
		if !got.Statement.Equal(c.Statement) || string(gotSnap) != string(snap) {
			t.Fatalf("after Save %d, Latest is %s", idx, got.Statement)
		}
	}
	files := storedFiles(t, dir)
	want := []string{name(2, certSuffix), name(2, snapSuffix), name(3, certSuffix), name(3, snapSuffix)}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	// Saving the newest again changes nothing; an older one is refused.
	if err := s.Save(certs[2], mustSnap(t, 30, 12)); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(certs[0], mustSnap(t, 10, 10)); err == nil || !strings.Contains(err.Error(), "older than the stored") {
		t.Fatalf("saving an older checkpoint: %v", err)
	}
	if !slices.Equal(storedFiles(t, dir), want) {
		t.Fatal("refused or repeated saves changed the files")
	}

	// After a restart (a new Store on the same directory) nothing is lost.
	s2 := openTestStore(t, dir)
	got, err := s2.LatestCertificate()
	if err != nil || !got.Statement.Equal(certs[2].Statement) {
		t.Fatalf("reopened: %v %v", got, err)
	}
	if err := got.Verify(testCommittee(t, 4), nil); err != nil {
		t.Fatalf("reopened certificate: %v", err)
	}
}

func mustSnap(t *testing.T, idx uint64, window int) []byte {
	snap, _ := realSnapshot(t, idx, window)
	return snap
}

// TestStoreRefusesMismatch: a snapshot whose index or hash differs from the
// certificate, or that fails its own checks, is refused and nothing is
// written.
func TestStoreRefusesMismatch(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	c, snap := stableCheckpoint(t, 1, 10, 10, 3)
	otherIndex := mustSnap(t, 11, 10)
	otherState := mustSnap(t, 10, 11)
	tampered := slices.Clone(snap)
	tampered[len(tampered)/2] ^= 1
	for name, b := range map[string][]byte{"index": otherIndex, "state": otherState} {
		if err := s.Save(c, b); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Save = %v, want ErrMismatch", name, err)
		}
	}
	if err := s.Save(c, tampered); !errors.Is(err, smr.ErrBadSnapshot) {
		t.Errorf("tampered: Save = %v, want smr.ErrBadSnapshot", err)
	}
	bad := *c
	bad.Statement.Mode = "bft"
	if err := s.Save(&bad, snap); err == nil {
		t.Error("invalid statement saved")
	}
	if files := storedFiles(t, dir); len(files) != 0 {
		t.Fatalf("refused saves left files: %v", files)
	}
}

// TestStoreFallsBackFromCorruptFile: a flipped byte or a truncation in the
// newest pair makes Latest return the previous checkpoint, with a warning
// naming the corrupt file; when no pair is intact Latest fails naming them.
func TestStoreFallsBackFromCorruptFile(t *testing.T) {
	damage := map[string]func([]byte) []byte{
		"flip":     func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b },
		"truncate": func(b []byte) []byte { return b[:len(b)-7] },
		"empty":    func([]byte) []byte { return nil },
	}
	for _, suffix := range []string{certSuffix, snapSuffix} {
		for how, f := range damage {
			t.Run(how+suffix, func(t *testing.T) {
				dir := t.TempDir()
				s := openTestStore(t, dir)
				older, osnap := stableCheckpoint(t, 1, 10, 10, 3)
				newer, nsnap := stableCheckpoint(t, 1, 20, 11, 3)
				if err := s.Save(older, osnap); err != nil {
					t.Fatal(err)
				}
				if err := s.Save(newer, nsnap); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, name(2, suffix))
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, f(b), 0o600); err != nil {
					t.Fatal(err)
				}
				got, snap := mustLatest(t, s)
				if !got.Statement.Equal(older.Statement) || string(snap) != string(osnap) {
					t.Fatalf("Latest = %s, want the older checkpoint", got.Statement)
				}
				w := s.Warnings()
				if len(w) != 1 || !errors.Is(w[0], ErrCorrupt) || !strings.Contains(w[0].Error(), path) {
					t.Fatalf("warnings %v, want one naming %s", w, path)
				}
				// Reported once.
				mustLatest(t, s)
				if len(s.Warnings()) != 1 {
					t.Fatal("a corrupt file was reported twice")
				}
				// With the older pair damaged as well, nothing is returned.
				opath := filepath.Join(dir, name(1, certSuffix))
				if err := os.WriteFile(opath, []byte("junk"), 0o600); err != nil {
					t.Fatal(err)
				}
				c, snap, err := s.Latest()
				if c != nil || snap != nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), opath) || !strings.Contains(err.Error(), path) {
					t.Fatalf("all corrupt: %v %v", c, err)
				}
				// A new save replaces the corrupt pairs.
				next, nextSnap := stableCheckpoint(t, 1, 30, 12, 3)
				if err := s.Save(next, nextSnap); err != nil {
					t.Fatal(err)
				}
				if files := storedFiles(t, dir); !slices.Equal(files, []string{name(3, certSuffix), name(3, snapSuffix)}) {
					t.Fatalf("files after a save over corrupt pairs: %v", files)
				}
			})
		}
	}
}

// TestStoreCleansInterruptedSave: a temporary file, or a snapshot without
// its certificate (a crash between the renames), is removed on open and
// never served.
func TestStoreCleansInterruptedSave(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	c, snap := stableCheckpoint(t, 1, 10, 10, 3)
	if err := s.Save(c, snap); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name(2, snapSuffix), name(2, certSuffix) + tmpSuffix} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openTestStore(t, dir)
	if files := storedFiles(t, dir); !slices.Equal(files, []string{name(1, certSuffix), name(1, snapSuffix)}) {
		t.Fatalf("files after reopen: %v", files)
	}
	if got, _ := mustLatest(t, s2); !got.Statement.Equal(c.Statement) {
		t.Fatal("wrong checkpoint after reopen")
	}
	if len(s2.Warnings()) != 0 {
		t.Fatalf("warnings: %v", s2.Warnings())
	}
}

func TestOpenStoreNeedsInfo(t *testing.T) {
	if _, err := OpenStore(t.TempDir(), nil); err == nil {
		t.Fatal("OpenStore accepted a nil SnapshotInfo")
	}
}
