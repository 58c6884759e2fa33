package bftlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
)

// sampleMessages returns messages covering every field shape: no prev, prev,
// deps, empty and non-empty content.
func sampleMessages(t testing.TB) []*Message {
	t.Helper()
	a, b, c := newKey(0), newKey(1), newKey(2)
	b1, err := NewMessage(b.priv, ID{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := NewMessage(c.priv, ID{}, nil, []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	a1, err := NewMessage(a.priv, ID{}, []Dep{{Author: c.a, ID: c1.ID()}, {Author: b.a, ID: b1.ID()}}, []byte("attest: checkpoint 7"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := NewMessage(a.priv, a1.ID(), nil, bytes.Repeat([]byte{0xAB}, 300))
	if err != nil {
		t.Fatal(err)
	}
	return []*Message{b1, c1, a1, a2}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages(t) {
		enc, err := m.MarshalBinary()
		wantErr(t, err, nil)
		d, err := DecodeMessage(enc)
		wantErr(t, err, nil)
		if d.ID() != m.ID() || d.Author() != m.Author() || d.Prev() != m.Prev() ||
			!bytes.Equal(d.Content(), m.Content()) || !bytes.Equal(d.Signature(), m.Signature()) ||
			len(d.Deps()) != len(m.Deps()) {
			t.Fatalf("decoded %v differs from %v", d, m)
		}
		wantErr(t, d.VerifySignature(), nil)
		var u Message
		wantErr(t, u.UnmarshalBinary(enc), nil)
		re, _ := u.MarshalBinary()
		if !bytes.Equal(re, enc) {
			t.Fatalf("re-encoding differs")
		}
		if sha256.Sum256(m.SignedBytes()) != m.ID() {
			t.Fatalf("id is not SHA-256 of the signed bytes")
		}
		if !bytes.HasPrefix(m.SignedBytes(), append([]byte{byte(len(Domain))}, Domain...)) {
			t.Fatalf("preimage lacks the domain tag")
		}
	}
	// The decoder copies: mutating the input afterwards changes nothing.
	m := sampleMessages(t)[3]
	enc, _ := m.MarshalBinary()
	d, _ := DecodeMessage(enc)
	for i := range enc {
		enc[i] = 0
	}
	wantErr(t, d.VerifySignature(), nil)
	if d.ID() != m.ID() {
		t.Fatalf("decoded message aliases its input")
	}
}

// TestMessageIDGolden pins the encoding: a change to the layout or domain
// changes this id and must come with a new Domain and WireVersion.
func TestMessageIDGolden(t *testing.T) {
	ms := sampleMessages(t)
	const want = "a56d438218c81e15d8c7f19b946636b3d5743f5967b080ecc1d2fef676c57ff7"
	if got := ms[2].ID().String(); got != want {
		t.Fatalf("id of the sample message = %s, want %s", got, want)
	}
}

func TestMessageIDIgnoresSignature(t *testing.T) {
	m := sampleMessages(t)[2]
	enc, _ := m.MarshalBinary()
	enc[len(enc)-1] ^= 0xFF
	d, err := DecodeMessage(enc)
	wantErr(t, err, nil)
	if d.ID() != m.ID() {
		t.Fatalf("id depends on the signature")
	}
	if err := d.VerifySignature(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered signature verified: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	ms := sampleMessages(t)
	a1, _ := ms[2].MarshalBinary() // two deps, no prev
	a2, _ := ms[3].MarshalBinary() // prev, no deps
	// Offsets in a1: version 0, author 1..32, flag 33, count 34..35,
	// deps 36..163, content length 164..167, content 168...
	mut := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	cases := map[string][]byte{
		"empty":            {},
		"version":          mut(a1, func(b []byte) []byte { b[0] = 2; return b }),
		"truncated author": a1[:20],
		"no flag":          a1[:33],
		"flag 2":           mut(a1, func(b []byte) []byte { b[33] = 2; return b }),
		"zero prev": mut(a2, func(b []byte) []byte {
			copy(b[34:66], make([]byte, 32))
			return b
		}),
		"truncated prev": a2[:50],
		"too many deps": mut(a1, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[34:], HardMaxDeps+1)
			return b
		}),
		"deps beyond input": mut(a1, func(b []byte) []byte {
			binary.BigEndian.PutUint16(b[34:], 1000)
			return b
		}),
		"deps unsorted": mut(a1, func(b []byte) []byte {
			d0 := bytes.Clone(b[36:100])
			copy(b[36:100], b[100:164])
			copy(b[100:164], d0)
			return b
		}),
		"deps duplicate author": mut(a1, func(b []byte) []byte {
			copy(b[100:132], b[36:68])
			return b
		}),
		"zero dep id": mut(a1, func(b []byte) []byte {
			copy(b[68:100], make([]byte, 32))
			return b
		}),
		"content too long": mut(a1, func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[164:], HardMaxContent+1)
			return b
		}),
		"content beyond input": mut(a1, func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[164:], 1<<19)
			return b
		}),
		"short signature": a1[:len(a1)-1],
		"trailing byte":   append(bytes.Clone(a1), 0),
	}
	for name, in := range cases {
		if _, err := DecodeMessage(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeMessage = %v, want ErrMalformed", name, err)
		}
	}
	var zero Message
	if _, err := zero.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Errorf("marshal zero message: %v", err)
	}
	if err := zero.VerifySignature(); !errors.Is(err, ErrMalformed) {
		t.Errorf("verify zero message: %v", err)
	}
}

func TestNewMessageRejects(t *testing.T) {
	a, b := newKey(0), newKey(1)
	x := ID{1}
	cases := map[string]func() (*Message, error){
		"short key": func() (*Message, error) { return NewMessage(a.priv[:10], ID{}, nil, nil) },
		"self dep":  func() (*Message, error) { return NewMessage(a.priv, ID{}, []Dep{{Author: a.a, ID: x}}, nil) },
		"two deps on one author": func() (*Message, error) {
			return NewMessage(a.priv, ID{}, []Dep{{Author: b.a, ID: x}, {Author: b.a, ID: ID{2}}}, nil)
		},
		"zero dep id": func() (*Message, error) { return NewMessage(a.priv, ID{}, []Dep{{Author: b.a}}, nil) },
		"content too large": func() (*Message, error) {
			return NewMessage(a.priv, ID{}, nil, make([]byte, HardMaxContent+1))
		},
	}
	for name, f := range cases {
		if _, err := f(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: NewMessage = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := AuthorOf(make([]byte, 31)); !errors.Is(err, ErrMalformed) {
		t.Errorf("AuthorOf short key: %v", err)
	}
}

// FuzzMessageDecode checks that the decoder never panics, and that whatever
// it accepts is canonical: re-encoding gives the input back, and decoding
// that again gives the same id.
func FuzzMessageDecode(f *testing.F) {
	for _, m := range sampleMessages(f) {
		enc, _ := m.MarshalBinary()
		f.Add(enc)
	}
	f.Add([]byte{})
	f.Add([]byte{WireVersion})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeMessage(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal of a decoded message: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("non-canonical input accepted:\n in %x\nout %x", in, out)
		}
		if len(m.Content()) > HardMaxContent || len(m.Deps()) > HardMaxDeps {
			t.Fatalf("bounds exceeded")
		}
		m2, err := DecodeMessage(out)
		if err != nil || m2.ID() != m.ID() {
			t.Fatalf("second decode: %v", err)
		}
		// Signature checks must not panic on arbitrary keys.
		_ = m.VerifySignature()
	})
}
