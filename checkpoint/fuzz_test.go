package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// fuzzSeeds are the inputs committed under testdata/fuzz/<Fuzz…>/ (written
// with -update); f.Add adds nothing, so the committed corpus is the seed.
func fuzzSeeds(t testing.TB) map[string]map[string][]byte {
	vote, err := mustSign(t, 1, handoffStatement()).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := certOf(t, ckptStatement(3, 1200, "state"), 1, 2, 3).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	hcert, err := certOf(t, handoffStatement(), 1, 2, 3).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	fc := certOf(t, handoffStatement(), 2, 3)
	fc.Form = FormFallback
	fcert, err := fc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c, snap := stableCheckpoint(t, 1, 7, 10, 3)
	transfer, err := encodeTransfer(c, snap)
	if err != nil {
		t.Fatal(err)
	}
	hsnap, hsum := realSnapshot(t, 7, 10)
	hst := handoffStatement()
	hst.Index, hst.StateHash = 7, hsum
	hfc := certOf(t, hst, 2, 3)
	hfc.Form = FormFallback
	ftransfer, err := encodeTransfer(hfc, hsnap)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]map[string][]byte{
		"FuzzVoteUnmarshal": {
			"valid":     vote,
			"truncated": vote[:len(vote)-1],
			"members":   hugeMemberCount(voteMagic),
		},
		"FuzzCertificateUnmarshal": {
			"checkpoint": cert,
			"handoff":    hcert,
			"fallback":   fcert,
			"v2quorum":   append([]byte(certMagic+"\x02\x00"), hcert[len(certMagic)+1:]...),
			"sigcount":   hugeSigCount(t),
			"members":    hugeMemberCount(certMagic),
		},
		"FuzzReadTransfer": {
			"valid":    transfer,
			"fallback": ftransfer,
			"certlen":  hugeTransfer(0xffffffff, 0),
			"snaplen":  hugeTransfer(0, 1<<62),
			"trailing": append(bytes.Clone(transfer), 0),
		},
		"FuzzUnframe": {
			"cert": frame(frameCert, cert),
			"snap": frame(frameSnap, snap),
		},
	}
}

// hugeMemberCount is a statement body claiming 65535 members of which none
// follow.
func hugeMemberCount(magic string) []byte {
	w := writer{}
	w.raw([]byte(magic))
	w.u8(codecVersion)
	w.u8(uint8(KindHandoff))
	w.u64(1)
	w.u64(1)
	w.raw(make([]byte, 32))
	w.str8(ModeBFT)
	w.u16(0xffff)
	w.raw([]byte{0xff, 'a'})
	return w.b
}

// hugeSigCount is a valid statement followed by a count of 65535
// signatures of which none follow.
func hugeSigCount(t testing.TB) []byte {
	c := &Certificate{Statement: ckptStatement(1, 1, "x")}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(b[len(b)-2:], 0xffff)
	return append(b, 1, 'a')
}

// hugeTransfer is a transfer header claiming the given lengths.
func hugeTransfer(certLen uint32, snapLen uint64) []byte {
	w := writer{}
	w.raw([]byte(transferMagic))
	w.u8(codecVersion)
	w.u32(certLen)
	if certLen == 0 {
		w.u64(snapLen)
	}
	w.raw([]byte("short"))
	return w.b
}

// TestWriteFuzzSeeds writes the committed seed corpus with -update and
// otherwise checks that it is present.
func TestWriteFuzzSeeds(t *testing.T) {
	for fuzz, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		for name, b := range seeds {
			path := filepath.Join(dir, name)
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != content {
				t.Errorf("seed %s is missing or stale (run with -update): %v", path, err)
			}
		}
	}
}

// FuzzVoteUnmarshal: a decoded vote re-encodes to the same bytes
// (canonical form), and garbage is an ErrMalformed error.
func FuzzVoteUnmarshal(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Vote
		if err := v.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out, err := v.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs: %v\n%x\n%x", err, out, b)
		}
	})
}

func FuzzCertificateUnmarshal(f *testing.F) {
	com := testCommittee(f, 4)
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Certificate
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs: %v\n%x\n%x", err, out, b)
		}
		_ = c.Verify(com, nil) // must not panic
	})
}

func FuzzReadTransfer(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		cert, snap, err := readTransfer(bytes.NewReader(b), 1<<20)
		if err != nil {
			return
		}
		out, err := encodeTransfer(cert, snap)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs: %v", err)
		}
	})
}

func FuzzUnframe(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, kind := range []uint8{frameCert, frameSnap} {
			content, err := unframe(b, kind)
			if err == nil && !bytes.Equal(frame(kind, content), b) {
				t.Fatal("re-framing differs")
			}
		}
	})
}

// TestOversizedLengthsDoNotAllocate: length fields claiming far more than
// the input holds are refused without allocating for the claim.
func TestOversizedLengthsDoNotAllocate(t *testing.T) {
	inputs := map[string]func() error{
		"vote member count": func() error { var v Vote; return v.UnmarshalBinary(hugeMemberCount(voteMagic)) },
		"cert member count": func() error { var c Certificate; return c.UnmarshalBinary(hugeMemberCount(certMagic)) },
		"cert sig count":    func() error { var c Certificate; return c.UnmarshalBinary(hugeSigCount(t)) },
		"transfer cert length": func() error {
			_, _, err := readTransfer(bytes.NewReader(hugeTransfer(0xffffffff, 0)), 1<<40)
			return err
		},
		"transfer snapshot length": func() error {
			_, _, err := readTransfer(bytes.NewReader(hugeTransfer(0, 1<<38)), 1<<40)
			return err
		},
		"transfer above MaxBytes": func() error {
			_, _, err := readTransfer(bytes.NewReader(hugeTransfer(0, 1<<62)), 1<<40)
			return err
		},
	}
	for name, f := range inputs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := f()
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: allocated %d bytes for a short input", name, n)
		}
	}
}
