package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tandem-consensus/tandem/internal/fsutil"
)

// SnapshotInfo returns the applied index and state hash of a state machine
// snapshot after checking it fully; the node passes smr.SnapshotInfo.
type SnapshotInfo func(snapshot []byte) (index uint64, hash [32]byte, err error)

var (
	// ErrNone is returned by Store.Latest when the store holds no
	// checkpoint.
	ErrNone = errors.New("no stable checkpoint stored")
	// ErrCorrupt is wrapped by the errors that name a stored file that
	// failed its checks.
	ErrCorrupt = errors.New("corrupt checkpoint file")
	// ErrMismatch is wrapped when a snapshot's index or state hash differs
	// from its certificate's statement.
	ErrMismatch = errors.New("snapshot does not match the certificate")
)

// File names and frame.
const (
	filePrefix  = "ckpt-"
	certSuffix  = ".cert"
	snapSuffix  = ".snap"
	tmpSuffix   = fsutil.TempSuffix
	frameMagic  = "TCKF"
	frameCert   = 1
	frameSnap   = 2
	frameHeader = len(frameMagic) + 1 + 1 + 8 // magic, version, content type, length
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Store keeps the newest two stable checkpoints, each a certificate and the
// state machine snapshot it certifies, as a pair of files in one
// directory:
//
//	ckpt-<seq>.cert   frame(certificate binary encoding)
//	ckpt-<seq>.snap   frame(snapshot)
//
// where seq (20 decimal digits) grows with every Save and a frame is
//
//	"TCKF" || version (1) || content type (1 cert, 2 snapshot) ||
//	length (uint64 BE) || content || CRC-32C (uint32 BE) of all before
//
// Save writes each file to a temporary name, fsyncs it, renames it into
// place (the snapshot first, so a certificate file is only ever present
// with its snapshot) and fsyncs the directory. The store does not verify
// signatures: callers Save only certificates they verified.
//
// Safe for concurrent use.
type Store struct {
	dir  string
	info SnapshotInfo

	mu       sync.Mutex
	log      *slog.Logger
	warnings []error
	warned   map[string]bool
}

// OpenStore opens (creating it if needed) the store in dir. info checks
// snapshots and reports their index and hash. Leftover temporary files and
// snapshot files without a certificate, the traces of an interrupted Save,
// are removed.
func OpenStore(dir string, info SnapshotInfo) (*Store, error) {
	if info == nil {
		return nil, errors.New("checkpoint store: no SnapshotInfo function")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint store: creating %s: %w", dir, err)
	}
	s := &Store{dir: dir, info: info, log: slog.Default(), warned: make(map[string]bool)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: reading %s: %w", dir, err)
	}
	certs := make(map[uint64]bool)
	for _, e := range entries {
		if seq, ok := parseName(e.Name(), certSuffix); ok {
			certs[seq] = true
		}
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, filePrefix) {
			continue
		}
		seq, isSnap := parseName(name, snapSuffix)
		if strings.HasSuffix(name, tmpSuffix) || (isSnap && !certs[seq]) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("checkpoint store: removing leftover %s: %w", name, err)
			}
		}
	}
	return s, nil
}

// SetLogger sets where the store logs the corrupt files it skips; the
// default is slog.Default().
func (s *Store) SetLogger(l *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = l
}

// Warnings returns an error for every corrupt file the store skipped since
// it was opened, each naming the file. Each file is reported once.
func (s *Store) Warnings() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.warnings)
}

// Dir returns the directory of the store.
func (s *Store) Dir() string { return s.dir }

// Save stores cert with the snapshot it certifies and keeps the previous
// stable checkpoint; older ones are deleted. It refuses, changing nothing:
// an invalid statement; a snapshot that info rejects or whose index or
// state hash differs from the statement (ErrMismatch); a certificate whose
// index is below the newest stored one. Saving the newest statement again
// is a no-op. When Save returns nil the pair is durable.
func (s *Store) Save(cert *Certificate, snapshot []byte) error {
	if cert == nil {
		return errors.New("checkpoint store: nil certificate")
	}
	cb, err := cert.MarshalBinary()
	if err != nil {
		return fmt.Errorf("checkpoint store: %w", err)
	}
	if err := s.match(cert.Statement, snapshot); err != nil {
		return fmt.Errorf("checkpoint store: refusing %s: %w", cert.Statement, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	seqs, err := s.seqs()
	if err != nil {
		return err
	}
	prevSeq, prev, _, err := s.latestLocked(seqs)
	switch {
	case errors.Is(err, ErrNone):
	case err != nil:
		// Every stored pair is corrupt: the new one replaces them.
	case prev.Statement.Equal(cert.Statement):
		return nil
	case cert.Statement.Index < prev.Statement.Index:
		return fmt.Errorf("checkpoint store: refusing %s: older than the stored %s", cert.Statement, prev.Statement)
	}
	var next uint64 = 1
	if len(seqs) > 0 {
		next = seqs[len(seqs)-1] + 1
	}
	if err := s.writeFile(name(next, snapSuffix), frame(frameSnap, snapshot)); err != nil {
		return err
	}
	if err := s.writeFile(name(next, certSuffix), frame(frameCert, cb)); err != nil {
		return err
	}
	for _, seq := range seqs {
		if prev != nil && seq == prevSeq {
			continue
		}
		for _, suffix := range []string{certSuffix, snapSuffix} {
			if err := os.Remove(filepath.Join(s.dir, name(seq, suffix))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("checkpoint store: removing old checkpoint: %w", err)
			}
		}
	}
	return s.syncDir()
}

// Latest returns the newest stored checkpoint whose files pass their checks
// (frame, certificate encoding, snapshot checked by info and matching the
// statement). A corrupt newer pair is skipped, logged and reported by
// Warnings with the file named. It returns ErrNone when the store is empty,
// and an error wrapping ErrCorrupt that names every file when no pair is
// intact. The returned values are the caller's.
func (s *Store) Latest() (*Certificate, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs, err := s.seqs()
	if err != nil {
		return nil, nil, err
	}
	_, cert, snap, err := s.latestLocked(seqs)
	return cert, snap, err
}

// LatestCertificate is Latest without the snapshot.
func (s *Store) LatestCertificate() (*Certificate, error) {
	cert, _, err := s.Latest()
	return cert, err
}

// latestLocked loads pairs from the newest down. The caller holds s.mu.
func (s *Store) latestLocked(seqs []uint64) (uint64, *Certificate, []byte, error) {
	if len(seqs) == 0 {
		return 0, nil, nil, ErrNone
	}
	var errs []error
	for _, seq := range slices.Backward(seqs) {
		cert, snap, err := s.load(seq)
		if err == nil {
			return seq, cert, snap, nil
		}
		errs = append(errs, err)
		s.warn(err, seq)
	}
	return 0, nil, nil, fmt.Errorf("checkpoint store: no intact checkpoint in %s: %w", s.dir, errors.Join(errs...))
}

// warn records and logs a corrupt pair once. The caller holds s.mu.
func (s *Store) warn(err error, seq uint64) {
	key := name(seq, "")
	if s.warned[key] {
		return
	}
	s.warned[key] = true
	s.warnings = append(s.warnings, err)
	if s.log != nil {
		s.log.Warn("skipping corrupt checkpoint", "dir", s.dir, "err", err)
	}
}

// load reads and checks one pair.
func (s *Store) load(seq uint64) (*Certificate, []byte, error) {
	certPath := filepath.Join(s.dir, name(seq, certSuffix))
	cb, err := readFrame(certPath, frameCert)
	if err != nil {
		return nil, nil, err
	}
	var cert Certificate
	if err := cert.UnmarshalBinary(cb); err != nil {
		return nil, nil, fmt.Errorf("%w %s: %w", ErrCorrupt, certPath, err)
	}
	snapPath := filepath.Join(s.dir, name(seq, snapSuffix))
	snap, err := readFrame(snapPath, frameSnap)
	if err != nil {
		return nil, nil, err
	}
	if err := s.match(cert.Statement, snap); err != nil {
		return nil, nil, fmt.Errorf("%w %s: %w", ErrCorrupt, snapPath, err)
	}
	return &cert, snap, nil
}

// match checks a snapshot against a statement.
func (s *Store) match(st Statement, snap []byte) error {
	return matchSnapshot(s.info, st, snap)
}

// matchSnapshot checks a snapshot with info and compares its index and
// state hash with the statement's.
func matchSnapshot(info SnapshotInfo, st Statement, snap []byte) error {
	idx, hash, err := info(snap)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if idx != st.Index || hash != st.StateHash {
		return fmt.Errorf("%w: snapshot is index %d state %x, certificate says index %d state %x",
			ErrMismatch, idx, hash, st.Index, st.StateHash)
	}
	return nil
}

// seqs lists the sequence numbers of the stored certificate files in
// increasing order. The caller holds s.mu.
func (s *Store) seqs() ([]uint64, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint store: reading %s: %w", s.dir, err)
	}
	var out []uint64
	for _, e := range entries {
		if seq, ok := parseName(e.Name(), certSuffix); ok {
			out = append(out, seq)
		}
	}
	slices.Sort(out)
	return out, nil
}

func name(seq uint64, suffix string) string {
	return fmt.Sprintf("%s%020d%s", filePrefix, seq, suffix)
}

func parseName(n, suffix string) (uint64, bool) {
	digits, ok := strings.CutPrefix(n, filePrefix)
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, suffix); !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// frame wraps content in the store's file frame.
func frame(kind uint8, content []byte) []byte {
	b := make([]byte, 0, frameHeader+len(content)+4)
	b = append(b, frameMagic...)
	b = append(b, codecVersion, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(len(content)))
	b = append(b, content...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// readFrame reads a framed file and returns its content.
func readFrame(path string, kind uint8) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCorrupt, path, err)
	}
	content, err := unframe(b, kind)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCorrupt, path, err)
	}
	return content, nil
}

func unframe(b []byte, kind uint8) ([]byte, error) {
	if len(b) < frameHeader+4 {
		return nil, fmt.Errorf("%d bytes, shorter than a frame", len(b))
	}
	if string(b[:4]) != frameMagic {
		return nil, fmt.Errorf("magic %q, want %q", b[:4], frameMagic)
	}
	if b[4] != codecVersion {
		return nil, fmt.Errorf("frame version %d is unknown", b[4])
	}
	if b[5] != kind {
		return nil, fmt.Errorf("content type %d, want %d", b[5], kind)
	}
	n := binary.BigEndian.Uint64(b[6:frameHeader])
	if n != uint64(len(b)-frameHeader-4) {
		return nil, fmt.Errorf("length field says %d bytes, the file holds %d (truncated or extended)", n, len(b)-frameHeader-4)
	}
	body, trailer := b[:len(b)-4], b[len(b)-4:]
	if got, want := crc32.Checksum(body, crcTable), binary.BigEndian.Uint32(trailer); got != want {
		return nil, fmt.Errorf("checksum mismatch: content sums to %08x, trailer says %08x", got, want)
	}
	return b[frameHeader : len(b)-4], nil
}

// writeFile writes b under name durably (fsutil.WriteFile).
func (s *Store) writeFile(n string, b []byte) error {
	if err := fsutil.WriteFile(filepath.Join(s.dir, n), b); err != nil {
		return fmt.Errorf("checkpoint store: %w", err)
	}
	return nil
}

func (s *Store) syncDir() error {
	if err := fsutil.SyncDir(s.dir); err != nil {
		return fmt.Errorf("checkpoint store: %w", err)
	}
	return nil
}
