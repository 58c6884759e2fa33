package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata golden files")

// TestGoldenSignBytes pins the sign-bytes and the evidence encoding: a
// change here is a protocol change and needs a new domain tag or version.
// Rewrite with `go test -run Golden -rewrite` and review the diff.
func TestGoldenSignBytes(t *testing.T) {
	f := newFixture(t)
	att := &ProposalAttestation{Leader: "n0", Epoch: 7, Term: 3, Seq: 4, PayloadHash: RaftPayloadHash([]byte("payload"))}
	acc := &Accusation{Accuser: "n0", Accused: "n1", Metric: MetricVoteLatencyP99, Value: 612_000_000, Epoch: 7, At: 1_700_000_000_000_000_000, Detail: "p99 over 60s"}
	lines := []string{
		"attestation-signbytes " + hex.EncodeToString(att.SignBytes()),
		"accusation-signbytes " + hex.EncodeToString(acc.SignBytes()),
		"raft-payload-hash " + RaftPayloadHash([]byte("payload")).String(),
	}
	samples := f.samples()
	names := make([]string, 0, len(samples))
	for n := range samples {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := Marshal(samples[n])
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("evidence-id %s %s", n, IDOf(b)))
	}
	got := strings.Join(lines, "\n") + "\n"
	checkGolden(t, "golden.txt", got)
}

// TestDomainTagsDistinct: no tag is a prefix of another (so no signature
// is valid for two kinds of object).
func TestDomainTagsDistinct(t *testing.T) {
	tags := []string{TagRaftProposal, TagRaftPayload, TagAccusation, TagEvidence,
		"tandem/hotstuff/v1/vote\x00", "tandem/hotstuff/v1/proposal\x00", "tandem/envelope/v1\x00"}
	for i, a := range tags {
		for j, b := range tags {
			if i != j && strings.HasPrefix(a, b) {
				t.Errorf("tag %q has prefix %q", a, b)
			}
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	f := newFixture(t)
	samples := f.samples()
	for name, e := range samples {
		b, err := Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		// Every strict prefix fails, as does a trailing byte.
		for n := range len(b) {
			if _, err := Unmarshal(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: prefix of %d/%d bytes: err = %v", name, n, len(b), err)
			}
		}
		if _, err := Unmarshal(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: trailing byte: err = %v", name, err)
		}
	}
	good, _ := Marshal(samples["accusation"])
	mutate := func(fn func([]byte)) []byte { b := bytes.Clone(good); fn(b); return b }
	cases := map[string][]byte{
		"empty":          nil,
		"version":        mutate(func(b []byte) { b[0] = 2 }),
		"unknown kind":   mutate(func(b []byte) { b[1] = 99 }),
		"zero kind":      mutate(func(b []byte) { b[1] = 0 }),
		"empty offender": mutate(func(b []byte) { b[2] = 0 }),
		"oversized":      make([]byte, MaxEncodedSize+1),
	}
	for name, b := range cases {
		if _, err := Unmarshal(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// Non-canonical proof order is refused by Marshal and by Unmarshal.
	fork := f.logFork()
	fork.Fork.A, fork.Fork.B = fork.Fork.B, fork.Fork.A
	if _, err := Marshal(fork); !errors.Is(err, ErrMalformed) {
		t.Errorf("marshal of a non-canonical fork: err = %v", err)
	}
	raw, _ := Marshal(f.logFork())
	if _, err := Unmarshal(swapTail(t, raw, 1+1+3+8)); !errors.Is(err, ErrMalformed) {
		t.Errorf("unmarshal of a non-canonical fork: err = %v", err)
	}
	le := f.leaderEquivocation()
	le.Proposals[0], le.Proposals[1] = le.Proposals[1], le.Proposals[0]
	if _, err := Marshal(le); !errors.Is(err, ErrMalformed) {
		t.Errorf("marshal of non-canonical attestations: err = %v", err)
	}
}

// swapTail swaps the two u32-length-prefixed strings that follow offset off.
func swapTail(t *testing.T, b []byte, off int) []byte {
	t.Helper()
	d := newDecoder(b[off:])
	x := d.bytes32("x")
	y := d.bytes32("y")
	if d.Err() != nil || d.Remaining() != 0 {
		t.Fatalf("swapTail: %v", d.Err())
	}
	var e encoder
	e.raw(b[:off])
	e.bytes32(y)
	e.bytes32(x)
	return e.b
}

func TestUnmarshalJSONRejects(t *testing.T) {
	f := newFixture(t)
	j, err := json.Marshal(f.doubleVote())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ field, value string }{
		{"id", strings.Repeat("00", 32)}, {"kind", "log-fork"}, {"offender", "n0"}, {"encoding", ""},
	} {
		mm := map[string]any{}
		for k, v := range m {
			mm[k] = v
		}
		mm[c.field] = c.value
		b, _ := json.Marshal(mm)
		var e Evidence
		if err := json.Unmarshal(b, &e); !errors.Is(err, ErrMalformed) {
			t.Errorf("JSON with %s=%q: err = %v", c.field, c.value, err)
		}
	}
	// Readable fields are informational: editing them changes nothing.
	m["summary"] = "edited"
	b, _ := json.Marshal(m)
	var e Evidence
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	if e.ID() != f.doubleVote().ID() {
		t.Fatal("JSON round trip changed the evidence")
	}
}

func TestJSONReadable(t *testing.T) {
	f := newFixture(t)
	for name, e := range f.samples() {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["kind"] != e.Kind.String() || m["offender"] != string(e.Offender) || m["id"] != e.ID().String() {
			t.Errorf("%s: readable fields %v %v %v", name, m["kind"], m["offender"], m["id"])
		}
	}
}

func samplesForFuzz(f *testing.F) [][]byte {
	fx := newFixture(f)
	var out [][]byte
	for _, e := range fx.samples() {
		b, err := Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzUnmarshal: no panic; whatever decodes re-encodes to the same bytes
// (canonical encoding), survives JSON, and can be verified without panic.
func FuzzUnmarshal(f *testing.F) {
	for _, b := range samplesForFuzz(f) {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{WireVersion, byte(KindAccusation)})
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		e := decodeCanonical(t, in)
		if e == nil {
			return
		}
		_ = Verify(e, fx.members)
		_ = e.OffenseKey()
		j, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("JSON: %v", err)
		}
		var back Evidence
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatalf("JSON round trip: %v", err)
		}
		if back.ID() != e.ID() {
			t.Fatal("JSON round trip changed the evidence")
		}
	})
}

// FuzzUnmarshalJSON: no panic; accepted JSON yields encodable evidence.
func FuzzUnmarshalJSON(f *testing.F) {
	fx := newFixture(f)
	for _, e := range fx.samples() {
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"encoding":""}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var e Evidence
		if err := json.Unmarshal(in, &e); err != nil {
			return
		}
		if _, err := Marshal(&e); err != nil {
			t.Fatalf("accepted JSON gives unencodable evidence: %v", err)
		}
	})
}
