package quarantine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptRecordWithGoodChecksum: a frame whose checksum matches but
// whose record does not decode (written by a buggy or foreign writer) is
// still a *CorruptionError.
func TestCorruptRecordWithGoodChecksum(t *testing.T) {
	frame := func(payload []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
		return append(b, payload...)
	}
	end := func(n uint32) []byte { return frame(binary.BigEndian.AppendUint32([]byte{recEnd}, n)) }
	cases := map[string][]byte{
		"unknown record":    append(frame([]byte{7, 1, 2}), end(1)...),
		"truncated entry":   append(frame([]byte{recEntry, 5, 'n'}), end(1)...),
		"empty node":        append(frame(append([]byte{recEntry, 0}, make([]byte, 12)...)), end(1)...),
		"bad evidence":      append(frame(append([]byte{recEntry, 1, 'n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2}, 9, 9)), end(1)...),
		"wrong frame count": end(3),
		"trailing in end":   frame(append(binary.BigEndian.AppendUint32([]byte{recEnd}, 0), 1)),
	}
	dir := t.TempDir()
	for name, body := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, append([]byte(magic+"\x01"), body...), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(p, Options{}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Open = %v", name, err)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
}

func TestQuarantineMethodAndAlerters(t *testing.T) {
	var buf bytes.Buffer
	var fn []AlertKind
	m := open(t, filepath.Join(t.TempDir(), "q.db"), Options{Alerters: []Alerter{
		SlogAlerter{Logger: slog.New(slog.NewTextHandler(&buf, nil))},
		AlertFunc(func(a Alert) { fn = append(fn, a.Kind) }),
	}})
	added, err := m.Quarantine(entry(t, "n1", proof(t, "n1", 1)))
	if err != nil || !added {
		t.Fatalf("Quarantine = %v, %v", added, err)
	}
	added, err = m.Quarantine(entry(t, "n1", proof(t, "n1", 2)))
	if err != nil || added {
		t.Fatalf("second Quarantine = %v, %v", added, err)
	}
	if e, _ := m.Get("n1"); len(e.Evidence) != 2 {
		t.Fatalf("evidence not merged: %d", len(e.Evidence))
	}
	if len(fn) != 2 || fn[0] != AlertQuarantined || fn[1] != AlertEvidence {
		t.Fatalf("alerts %v", fn)
	}
	if !strings.Contains(buf.String(), "quarantine quarantined") || !strings.Contains(buf.String(), "node=n1") {
		t.Fatalf("log: %s", buf.String())
	}
	if m.Path() == "" || AlertLifted.String() != "lifted" || AlertKind(9).String() != "alert(9)" || ModeBFT.String() != "bft" || Mode(9).String() != "mode(9)" {
		t.Fatal("names")
	}
}

func TestLiftValidation(t *testing.T) {
	m := open(t, filepath.Join(t.TempDir(), "q.db"), Options{MaxHistory: 1})
	for i := range 3 {
		if _, err := m.Quarantine(entry(t, "n1", proof(t, "n1", uint64(i+1)))); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Lift(LiftRequest{Node: "n1", Operator: strings.Repeat("o", 300), At: t0}); !errors.Is(err, ErrNoOperator) {
			t.Fatalf("long operator: %v", err)
		}
		if _, err := m.Lift(LiftRequest{Node: "n1", Operator: "op", At: t0, Offenses: []string{strings.Repeat("k", maxOffenseLn+1)}}); !errors.Is(err, ErrInvalidEntry) {
			t.Fatalf("long offence: %v", err)
		}
		if _, err := m.Lift(LiftRequest{Node: "n1", Operator: "op", At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	h := m.History()
	if len(h) != 3 || h[0].Entry.Evidence != nil || h[1].Entry.Evidence != nil || len(h[2].Entry.Evidence) != 1 {
		t.Fatalf("history beyond MaxHistory keeps evidence: %+v", h)
	}
	if f := m.Forgiven(); len(f) != 3 || len(f[0].Offenses) != 1 {
		t.Fatalf("old lifts lost their forgiveness: %+v", f)
	}
}
