package safety

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/tandem-consensus/tandem/internal/fsutil"
)

// Store persists SafetyData.
//
// Rules returns a signed vote, timeout or proposal only after Save returned
// nil, and nothing it signed may leave the replica before d is durable.
// Either Save returns only once d is durable (FileStore), or the store
// defers the write and the replica's shell makes it durable before it sends
// anything signed meanwhile (the HotStuff engine writes it with each Ready,
// before the Ready's messages). If Save fails, the replica must not sign
// anything else until a later Save succeeds (Rules enforces this by keeping
// its previous state); if a deferred write fails, the replica must stop
// with its messages unsent.
type Store interface {
	// Load returns the stored data, or the zero SafetyData and nil when
	// nothing was ever saved (a fresh replica). Damaged data is reported as
	// a *CorruptionError; the caller must not start voting then.
	Load() (SafetyData, error)
	// Save makes d durable (or hands it to a deferred write, see above),
	// replacing what was stored. Rules never changes d, nor what it points
	// to, after handing it over (it clones its data before every change),
	// so a Store may keep d without a copy.
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

// FileStore keeps SafetyData in two copies, <path> and <path>.2, each
// overwritten in place and fsynced, <path> first: whenever Save returns,
// both hold the saved data, and a crash in the middle of a Save damages at
// most the copy being written, while the other holds the data of the
// previous Save or of this one. Load takes the valid copy saved last.
// Overwriting in place of a file whose size does not change costs one data
// fsync; replacing a file by a rename costs a directory fsync and a journal
// commit, several times as much, and a Save is on the path of every vote.
//
// Each copy is framed as
//
//	magic "HSS2" | save seq u64 | payload length u32 |
//	CRC-32C(save seq | payload) u32 | payload | zero padding
//
// padded with zeros to a multiple of 4 KiB so that its size rarely
// changes; the save seq orders the copies. Truncation and bit rot are
// detected on Load. One damaged copy next to a valid one is the trace of an
// interrupted Save (nothing was signed with its data, and the valid copy
// holds the data of the last Save that returned, or of this one), or of
// damage after both were written (the other copy holds the same data): the
// valid copy is used. When no copy is valid, Load reports a
// *CorruptionError. A <path> in the earlier single-file frame
//
//	magic "HSSD" | payload length u32 | CRC-32C(payload) u32 | payload
//
// (without <path>.2) is read as save seq 0.
type FileStore struct {
	path   string
	seq    uint64 // save seq of the newest copy; valid when known
	known  bool
	exists [2]bool // the copy's file is known to exist durably
}

// NewFileStore returns a store that keeps its data at path (and path.2).
// The directory must exist.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

// Path returns the path of the first copy.
func (s *FileStore) Path() string { return s.path }

// copyPath returns the file of copy i (0 or 1).
func (s *FileStore) copyPath(i int) string {
	if i == 0 {
		return s.path
	}
	return s.path + ".2"
}

const (
	fileMagic   = "HSSD" // the single-file frame
	frameHeader = 4 + 4 + 4
	copyMagic   = "HSS2"
	copyHeader  = 4 + 8 + 4 + 4
	copyAlign   = 4096
)

// checksum is CRC-32C (Castagnoli).
func checksum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// storedCopy is one copy as read from disk.
type storedCopy struct {
	missing bool
	seq     uint64
	payload []byte
	reason  string // why it is invalid; "" when valid
}

func (s *FileStore) readCopy(i int) (storedCopy, error) {
	p := s.copyPath(i)
	raw, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return storedCopy{missing: true}, nil
	}
	if err != nil {
		return storedCopy{}, fmt.Errorf("read safety data %s: %w", p, err)
	}
	if len(raw) >= 4 && string(raw[:4]) == fileMagic {
		payload, reason := unframe(raw)
		return storedCopy{payload: payload, reason: reason}, nil
	}
	seq, payload, reason := unframeCopy(raw)
	return storedCopy{seq: seq, payload: payload, reason: reason}, nil
}

// Load reads both copies and returns the newest valid one. No copy at all
// is a fresh replica.
func (s *FileStore) Load() (SafetyData, error) {
	var c [2]storedCopy
	for i := range c {
		var err error
		if c[i], err = s.readCopy(i); err != nil {
			return SafetyData{}, err
		}
	}
	best := -1
	for i := range c {
		if !c[i].missing && c[i].reason == "" && (best < 0 || c[i].seq > c[best].seq) {
			best = i
		}
	}
	if best < 0 {
		for i := range c {
			if !c[i].missing {
				return SafetyData{}, &CorruptionError{Path: s.copyPath(i), Reason: c[i].reason}
			}
		}
		s.seq, s.known = 0, true
		return SafetyData{}, nil
	}
	d, err := UnmarshalSafetyData(c[best].payload)
	if err != nil {
		return SafetyData{}, &CorruptionError{Path: s.copyPath(best), Reason: err.Error()}
	}
	s.seq, s.known = c[best].seq, true
	for i := range c {
		s.exists[i] = !c[i].missing
	}
	return d, nil
}

// frame wraps payload in the single-file frame.
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

// frameCopy wraps payload in the copy frame, padded.
func frameCopy(seq uint64, payload []byte) []byte {
	n := copyHeader + len(payload)
	b := make([]byte, 0, (n+copyAlign-1)/copyAlign*copyAlign)
	b = append(b, copyMagic...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	crc := crc32.Update(checksum(b[4:12]), castagnoli, payload)
	b = binary.BigEndian.AppendUint32(b, crc)
	b = append(b, payload...)
	return b[:cap(b)] // the padding is zeros
}

// unframeCopy returns the save seq and payload of a copy, or a reason why
// raw is not a valid copy.
func unframeCopy(raw []byte) (uint64, []byte, string) {
	if len(raw) < copyHeader {
		return 0, nil, fmt.Sprintf("file has %d bytes, shorter than the %d-byte header", len(raw), copyHeader)
	}
	if string(raw[:4]) != copyMagic {
		return 0, nil, fmt.Sprintf("magic %q, want %q or %q", raw[:4], copyMagic, fileMagic)
	}
	seq := binary.BigEndian.Uint64(raw[4:12])
	n := binary.BigEndian.Uint32(raw[12:16])
	if uint64(n) > uint64(len(raw)-copyHeader) {
		return 0, nil, fmt.Sprintf("header says %d payload bytes, file has %d after the header", n, len(raw)-copyHeader)
	}
	if want := (copyHeader + int(n) + copyAlign - 1) / copyAlign * copyAlign; len(raw) != want {
		return 0, nil, fmt.Sprintf("file has %d bytes, a copy of %d payload bytes has %d", len(raw), n, want)
	}
	if slices.ContainsFunc(raw[copyHeader+int(n):], func(b byte) bool { return b != 0 }) {
		return 0, nil, "the padding after the payload is not zero"
	}
	payload := raw[copyHeader : copyHeader+int(n)]
	if got, want := crc32.Update(checksum(raw[4:12]), castagnoli, payload), binary.BigEndian.Uint32(raw[16:20]); got != want {
		return 0, nil, fmt.Sprintf("checksum %08x, header says %08x", got, want)
	}
	return seq, payload, ""
}

// Save writes d durably to both copies (see FileStore).
func (s *FileStore) Save(d SafetyData) error {
	if !s.known {
		// Never save below a seq already on disk.
		if _, err := s.Load(); err != nil {
			return fmt.Errorf("save safety data: %w", err)
		}
	}
	b := frameCopy(s.seq+1, MarshalSafetyData(d))
	for i := range 2 {
		if err := s.writeCopy(i, b); err != nil {
			return err
		}
	}
	s.seq++
	return nil
}

// writeCopy overwrites copy i with b and fsyncs it; when the file is new
// (or was never seen to exist), the directory is fsynced too.
func (s *FileStore) writeCopy(i int, b []byte) error {
	p := s.copyPath(i)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("save safety data: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return fmt.Errorf("save safety data: write %s: %w", p, err)
	}
	if st, err := f.Stat(); err != nil {
		f.Close()
		return fmt.Errorf("save safety data: stat %s: %w", p, err)
	} else if st.Size() > int64(len(b)) {
		if err := f.Truncate(int64(len(b))); err != nil {
			f.Close()
			return fmt.Errorf("save safety data: truncate %s: %w", p, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save safety data: fsync %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save safety data: close %s: %w", p, err)
	}
	if s.exists[i] {
		return nil
	}
	if err := fsutil.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("save safety data: %w", err)
	}
	s.exists[i] = true
	return nil
}
