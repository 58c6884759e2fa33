package evidence

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestAttestationCodecRoundTrip(t *testing.T) {
	f := newFixture(t)
	a, err := SignProposal(f.priv["n0"], "n0", 7, 3, 4, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalAttestation(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalAttestation(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Leader != a.Leader || got.Epoch != a.Epoch || got.Term != a.Term || got.Seq != a.Seq || got.PayloadHash != a.PayloadHash || !bytes.Equal(got.Sig, a.Sig) {
		t.Fatalf("round trip: got %+v, want %+v", got, a)
	}
	if err := got.VerifySignature(f.members); err != nil {
		t.Fatalf("decoded attestation does not verify: %v", err)
	}
	b[len(b)-1] ^= 1 // the input may change after decoding
	if err := got.VerifySignature(f.members); err != nil {
		t.Fatalf("decoded attestation aliases its input: %v", err)
	}
}

// TestGoldenAttestationEncoding pins the standalone encoding (carried in
// Raft log entries, so a change is a protocol change). Rewrite with
// `go test -run GoldenAttestation -rewrite`.
func TestGoldenAttestationEncoding(t *testing.T) {
	f := newFixture(t)
	a, err := SignProposal(f.priv["n0"], "n0", 7, 3, 4, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalAttestation(a)
	if err != nil {
		t.Fatal(err)
	}
	got := "attestation " + hex.EncodeToString(b) + "\n"
	checkGolden(t, "attestation.golden", got)
}

func TestAttestationCodecRejects(t *testing.T) {
	f := newFixture(t)
	a, err := SignProposal(f.priv["n0"], "n0", 7, 3, 4, []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := MarshalAttestation(a)
	if err != nil {
		t.Fatal(err)
	}
	badVersion := bytes.Clone(good)
	badVersion[0] = 9
	emptyLeader := append([]byte{AttestationVersion, 0}, good[4:]...)
	cases := map[string]struct {
		in   []byte
		want string
	}{
		"empty":        {nil, "attestation version"},
		"version":      {badVersion, "version 9"},
		"truncated":    {good[:len(good)-5], "signature"},
		"trailing":     {append(bytes.Clone(good), 0), "trailing"},
		"empty leader": {emptyLeader, "empty node ID"},
		"too long":     {make([]byte, MaxAttestationSize+1), "at most"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := UnmarshalAttestation(c.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrMalformed naming %q", err, c.want)
			}
		})
	}
	if _, err := MarshalAttestation(nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil: got %v", err)
	}
	if _, err := MarshalAttestation(&ProposalAttestation{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty leader: got %v", err)
	}
}

func FuzzUnmarshalAttestation(f *testing.F) {
	fx := newFixture(f)
	a, err := SignProposal(fx.priv["n1"], "n1", 1, 2, 3, []byte("x"))
	if err != nil {
		f.Fatal(err)
	}
	b, err := MarshalAttestation(a)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{AttestationVersion})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := UnmarshalAttestation(in)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes.
		out, err := MarshalAttestation(a)
		if err != nil {
			t.Fatalf("decoded attestation does not encode: %v", err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("re-encoding differs:\n in: %x\nout: %x", in, out)
		}
	})
}

func TestSameSlot(t *testing.T) {
	a := &ProposalAttestation{Leader: "n0", Epoch: 1, Term: 2, Seq: 3}
	b := *a
	b.PayloadHash[0] = 1
	if !a.SameSlot(&b) {
		t.Fatal("same slot, different payload: SameSlot false")
	}
	b.Seq = 4
	if a.SameSlot(&b) {
		t.Fatal("different seq: SameSlot true")
	}
}
