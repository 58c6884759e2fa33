package smr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestSignBytesLayout(t *testing.T) {
	env := &Envelope{Client: bytes.Repeat([]byte{0xAA}, 32), Seq: 0x0102030405060708, Command: []byte("cmd")}
	want := []byte("tandem/envelope/v1\x00")
	want = append(want, bytes.Repeat([]byte{0xAA}, 32)...)
	want = append(want, 1, 2, 3, 4, 5, 6, 7, 8)
	want = append(want, 0, 0, 0, 3)
	want = append(want, "cmd"...)
	if got := env.SignBytes(); !bytes.Equal(got, want) {
		t.Fatalf("SignBytes = %x\nwant       %x", got, want)
	}
}

func TestSignAndVerify(t *testing.T) {
	priv := testKey(1)
	env := mustSign(t, priv, 3, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	if err := env.Verify(); err != nil {
		t.Fatalf("Verify of a fresh signature: %v", err)
	}
	if _, err := Sign(priv, 0, Command{Op: OpDeleteConfig, Key: "k"}); err == nil {
		t.Fatal("Sign accepted seq 0")
	}
	if _, err := Sign(priv[:10], 1, Command{Op: OpDeleteConfig, Key: "k"}); err == nil {
		t.Fatal("Sign accepted a short private key")
	}
	if _, err := Sign(priv, 1, Command{Op: OpDeleteConfig}); err == nil {
		t.Fatal("Sign accepted an invalid command")
	}

	mutate := func(f func(e *Envelope)) *Envelope {
		c := &Envelope{
			Client:  bytes.Clone(env.Client),
			Seq:     env.Seq,
			Command: bytes.Clone(env.Command),
			Sig:     bytes.Clone(env.Sig),
		}
		f(c)
		return c
	}
	cases := []struct {
		name    string
		env     *Envelope
		code    Code
		mention string
	}{
		{"short key", mutate(func(e *Envelope) { e.Client = e.Client[:31] }), CodeMalformed, "31 bytes"},
		{"no key", mutate(func(e *Envelope) { e.Client = nil }), CodeMalformed, "0 bytes"},
		{"missing sig", mutate(func(e *Envelope) { e.Sig = nil }), CodeBadSignature, "no signature"},
		{"short sig", mutate(func(e *Envelope) { e.Sig = e.Sig[:63] }), CodeBadSignature, "63 bytes"},
		{"other seq", mutate(func(e *Envelope) { e.Seq++ }), CodeBadSignature, "does not verify"},
		{"other command", mutate(func(e *Envelope) { e.Command[len(e.Command)-2] ^= 1 }), CodeBadSignature, "does not verify"},
		{"other client", mutate(func(e *Envelope) { e.Client = pubOf(testKey(2)) }), CodeBadSignature, "does not verify"},
		{"flipped sig", mutate(func(e *Envelope) { e.Sig[0] ^= 1 }), CodeBadSignature, "does not verify"},
	}
	for _, tc := range cases {
		err := tc.env.Verify()
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.mention) {
			t.Errorf("%s: Verify = %v, want %s mentioning %q", tc.name, err, tc.code, tc.mention)
		}
	}
}

func TestEnvelopeBinary(t *testing.T) {
	env := mustSign(t, testKey(1), 9, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	b, err := env.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Envelope
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Client, env.Client) || got.Seq != env.Seq || !bytes.Equal(got.Command, env.Command) || !bytes.Equal(got.Sig, env.Sig) {
		t.Fatalf("round trip = %+v, want %+v", got, env)
	}
	// The decoded envelope does not alias the input.
	b[0] ^= 0xFF
	if got.Client[0] == b[0] {
		t.Fatal("UnmarshalBinary aliases its input")
	}
	b[0] ^= 0xFF

	bad := map[string][]byte{
		"empty":          nil,
		"short header":   b[:envelopeHeaderLen-1],
		"truncated":      b[:len(b)-1],
		"trailing bytes": append(bytes.Clone(b), 0),
		"huge length": func() []byte {
			c := bytes.Clone(b)
			binary.BigEndian.PutUint32(c[envelopeHeaderLen-4:], 0xFFFFFFFF)
			return c
		}(),
	}
	for name, in := range bad {
		var e Envelope
		if err := e.UnmarshalBinary(in); err == nil {
			t.Errorf("%s: UnmarshalBinary accepted %d bytes", name, len(in))
		}
	}
	for name, e := range map[string]*Envelope{
		"short key": {Client: env.Client[:5], Sig: env.Sig},
		"no sig":    {Client: env.Client},
	} {
		if _, err := e.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary accepted it", name)
		}
	}
}

func TestEntryBinary(t *testing.T) {
	env := mustSign(t, testKey(1), 1, Command{Op: OpDeleteConfig, Key: "k"})
	ent := Entry{Time: -42, Env: *env}
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 1 {
		t.Fatalf("version byte = %d, want 1", b[0])
	}
	var got Entry
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	again, _ := got.MarshalBinary()
	if got.Time != -42 || !bytes.Equal(again, b) {
		t.Fatalf("round trip: time %d, bytes equal %v", got.Time, bytes.Equal(again, b))
	}
	for name, in := range map[string][]byte{
		"empty":           {},
		"unknown version": append([]byte{2}, b[1:]...),
		"no time":         b[:5],
		"no envelope":     b[:9],
		"trailing":        append(bytes.Clone(b), 7),
	} {
		var e Entry
		err := e.UnmarshalBinary(in)
		var se *Error
		if !errors.As(err, &se) || se.Code != CodeMalformed {
			t.Errorf("%s: UnmarshalBinary = %v, want malformed", name, err)
		}
	}
	var e Entry
	if err := e.UnmarshalBinary(append([]byte{9}, b[1:]...)); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("unknown version error = %v, want it to name version 9", err)
	}
}
