// Package store keeps a node's verified evidence records on disk, one file
// per record, so that the detector's book survives restarts.
//
// A record is stored as its canonical binary encoding (evidence.Marshal) in
// DIR/<id>.ev, where <id> is the evidence ID in hex. Every write goes to a
// temporary file that is fsynced and renamed, then the directory is fsynced:
// a record that Put returned for is durable and never half-written. Load
// re-decodes every file and checks that its name is its ID; a file that does
// not decode is reported (and left in place for the operator), never used.
// The store does not verify signatures: the caller verifies every record it
// loads (score.Book.Add does), exactly as for a record from a peer.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/fsutil"
)

// ext is the file name extension of a stored record.
const ext = ".ev"

// Store is a directory of evidence records. It is safe for concurrent use.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open creates dir if needed and removes temporary files left by an
// interrupted Put.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", dir, err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), fsutil.TempSuffix) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(id evidence.ID) string { return filepath.Join(s.dir, id.String()+ext) }

// Put stores e durably; storing a record that is already there is a no-op.
func (s *Store) Put(e *evidence.Evidence) error {
	b, err := evidence.Marshal(e)
	if err != nil {
		return fmt.Errorf("evidence store: %w", err)
	}
	id := evidence.IDOf(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.path(id)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := fsutil.WriteFile(p, b); err != nil {
		return fmt.Errorf("evidence store: %w", err)
	}
	return nil
}

// Remove deletes the record with the given ID; a missing record is not an
// error.
func (s *Store) Remove(id evidence.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("evidence store: %w", err)
	}
	return syncDir(s.dir)
}

// IDs lists the stored record IDs, sorted.
func (s *Store) IDs() ([]evidence.ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("evidence store: %w", err)
	}
	var ids []evidence.ID
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ext)
		if !ok {
			continue
		}
		id, err := evidence.ParseID(name)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.SortFunc(ids, evidence.ID.Compare)
	return ids, nil
}

// LoadError reports a stored file that cannot be used.
type LoadError struct {
	Path string
	Err  error
}

func (e *LoadError) Error() string { return fmt.Sprintf("evidence store: %s: %v", e.Path, e.Err) }
func (e *LoadError) Unwrap() error { return e.Err }

// Load decodes every stored record, sorted by ID. Files that cannot be read
// or decoded, or whose name is not their ID, are returned as *LoadError and
// skipped; err is set only when the directory cannot be read.
func (s *Store) Load() (recs []*evidence.Evidence, bad []error, err error) {
	ids, err := s.IDs()
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		p := s.path(id)
		b, err := os.ReadFile(p)
		if err != nil {
			bad = append(bad, &LoadError{Path: p, Err: err})
			continue
		}
		e, err := evidence.Unmarshal(b)
		if err != nil {
			bad = append(bad, &LoadError{Path: p, Err: err})
			continue
		}
		if got := evidence.IDOf(b); got != id {
			bad = append(bad, &LoadError{Path: p, Err: fmt.Errorf("content has ID %s, not the file name's", got)})
			continue
		}
		recs = append(recs, e)
	}
	return recs, bad, nil
}

func syncDir(dir string) error {
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("evidence store: %w", err)
	}
	return nil
}
