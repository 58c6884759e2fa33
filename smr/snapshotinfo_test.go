package smr

import (
	"bytes"
	"errors"
	"testing"
)

// TestSnapshotInfoRunsRestoreChecks: SnapshotInfo reports the index and hash
// of a valid snapshot, and rejects every copy Restore rejects (a flipped
// byte anywhere, truncation, trailing bytes, resealed non-canonical
// content) without needing a state machine.
func TestSnapshotInfoRunsRestoreChecks(t *testing.T) {
	h := buildState(t)
	snap, err := h.sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	idx, sum := h.sm.Hash()
	gi, gs, err := SnapshotInfo(snap)
	if err != nil || gi != idx || gs != sum {
		t.Fatalf("SnapshotInfo = %d %x %v, want %d %x", gi, gs, err, idx, sum)
	}
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x01
		if _, _, err := SnapshotInfo(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("flipping byte %d: SnapshotInfo = %v, want ErrBadSnapshot", i, err)
		}
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": snap[:len(snap)-1],
		"trailing":  append(bytes.Clone(snap), 0),
		"header":    snap[:snapshotHeaderLen],
		"resealed":  resealed(snap, func(body []byte) []byte { return append(body, 0) }),
	} {
		if _, _, err := SnapshotInfo(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: SnapshotInfo = %v, want ErrBadSnapshot", name, err)
		}
	}
	// Nothing was touched: the source machine still snapshots the same bytes.
	again, _ := h.sm.Snapshot()
	if !bytes.Equal(again, snap) {
		t.Fatal("SnapshotInfo changed the state machine")
	}
}
