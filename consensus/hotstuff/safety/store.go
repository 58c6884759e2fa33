package safety

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// Store persists SafetyData.
//
// Save must not return until d is durable: Rules returns a signed vote,
// timeout or proposal only after Save returned nil. If Save fails, the
// replica must not sign anything else until a later Save succeeds (Rules
// enforces this by keeping its previous state).
type Store interface {
	// Load returns the stored data, or the zero SafetyData and nil when
	// nothing was ever saved (a fresh replica). Damaged data is reported as
	// a *CorruptionError; the caller must not start voting then.
	Load() (SafetyData, error)
	// Save makes d durable, replacing what was stored.
	Save(d SafetyData) error
}

// ErrCorrupt is wrapped by every *CorruptionError.
var ErrCorrupt = errors.New("safety data corrupt")

// CorruptionError reports stored safety data that cannot be trusted: bad
// magic, a length or checksum mismatch, or an undecodable payload. A replica
// must refuse to vote until an operator restores the file (voting with lost
// safety data can double-sign).
type CorruptionError struct {
	Path   string
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("safety data %s is corrupt: %s", e.Path, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptionError) Unwrap() error { return ErrCorrupt }

// IsCorruption reports whether err is or wraps a *CorruptionError.
func IsCorruption(err error) bool {
	var c *CorruptionError
	return errors.As(err, &c)
}

// MemStore keeps SafetyData in memory (encoded, so no aliasing leaks). It is
// for tests and simulations: "durable" there means "survives the simulated
// crash of a core", because the simulation keeps the store.
//
// A MemStore is not safe for concurrent use.
type MemStore struct {
	data    []byte
	saves   int
	failErr error
}

var (
	_ Store = (*MemStore)(nil)
	_ Store = (*FileStore)(nil)
)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{} }

// Load returns the saved data.
func (m *MemStore) Load() (SafetyData, error) {
	if m.data == nil {
		return SafetyData{}, nil
	}
	d, err := UnmarshalSafetyData(m.data)
	if err != nil {
		return SafetyData{}, &CorruptionError{Path: "memory", Reason: err.Error()}
	}
	return d, nil
}

// Save stores d, or returns the error set by FailSaves.
func (m *MemStore) Save(d SafetyData) error {
	if m.failErr != nil {
		return m.failErr
	}
	m.data = MarshalSafetyData(d)
	m.saves++
	return nil
}

// Saves returns how many Saves succeeded.
func (m *MemStore) Saves() int { return m.saves }

// FailSaves makes every later Save return err (nil restores normal
// operation).
func (m *MemStore) FailSaves(err error) { m.failErr = err }

// FileStore keeps SafetyData in one file, replaced atomically: it writes
// <path>.tmp, fsyncs it, renames it over <path> and fsyncs the directory.
// The file is framed as
//
//	magic "HSSD" | payload length u32 | CRC-32C(payload) u32 | payload
//
// so truncation and bit rot are detected on Load.
type FileStore struct {
	path string
}

// NewFileStore returns a store that keeps its data at path. The directory
// must exist.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Path returns the file path.
func (s *FileStore) Path() string { return s.path }

const (
	fileMagic   = "HSSD"
	frameHeader = 4 + 4 + 4
)

// checksum is CRC-32C (Castagnoli); crc32 caches the table.
func checksum(p []byte) uint32 { return crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)) }

// Load reads and checks the file. A missing file is a fresh replica.
func (s *FileStore) Load() (SafetyData, error) {
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return SafetyData{}, nil
	}
	if err != nil {
		return SafetyData{}, fmt.Errorf("read safety data %s: %w", s.path, err)
	}
	payload, reason := unframe(raw)
	if reason != "" {
		return SafetyData{}, &CorruptionError{Path: s.path, Reason: reason}
	}
	d, err := UnmarshalSafetyData(payload)
	if err != nil {
		return SafetyData{}, &CorruptionError{Path: s.path, Reason: err.Error()}
	}
	return d, nil
}

// frame wraps payload in the file frame.
func frame(payload []byte) []byte {
	b := make([]byte, 0, frameHeader+len(payload))
	b = append(b, fileMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, checksum(payload))
	return append(b, payload...)
}

// unframe returns the payload, or a reason why raw is not a valid frame.
func unframe(raw []byte) ([]byte, string) {
	if len(raw) < frameHeader {
		return nil, fmt.Sprintf("file has %d bytes, shorter than the %d-byte header", len(raw), frameHeader)
	}
	if string(raw[:4]) != fileMagic {
		return nil, fmt.Sprintf("magic %q, want %q", raw[:4], fileMagic)
	}
	n := binary.BigEndian.Uint32(raw[4:8])
	if uint64(n) != uint64(len(raw)-frameHeader) {
		return nil, fmt.Sprintf("header says %d payload bytes, file has %d", n, len(raw)-frameHeader)
	}
	payload := raw[frameHeader:]
	if got, want := checksum(payload), binary.BigEndian.Uint32(raw[8:12]); got != want {
		return nil, fmt.Sprintf("checksum %08x, header says %08x", got, want)
	}
	return payload, ""
}

// Save writes d durably (see FileStore).
func (s *FileStore) Save(d SafetyData) error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save safety data: %w", err)
	}
	if _, err := f.Write(frame(MarshalSafetyData(d))); err != nil {
		f.Close()
		return fmt.Errorf("save safety data: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save safety data: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save safety data: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("save safety data: rename %s: %w", tmp, err)
	}
	dir, err := os.Open(filepath.Dir(s.path))
	if err != nil {
		return fmt.Errorf("save safety data: open directory: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("save safety data: fsync directory %s: %w", filepath.Dir(s.path), err)
	}
	return nil
}
