package checkpoint

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

// TestFallbackThreshold pins the fallback threshold of DESIGN invariant 10:
// max(f+1, ⌈(n+f+1)/2⌉ − min(k, f)) for k quarantined members. For
// n = 3f+1 it falls from q (nobody quarantined) to f+1 (f quarantined).
func TestFallbackThreshold(t *testing.T) {
	cases := []struct{ n, k, want int }{
		{4, 0, 3}, {4, 1, 2}, {4, 2, 2}, {4, 4, 2},
		{5, 0, 4}, {5, 1, 3},
		{6, 0, 4}, {6, 1, 3},
		{7, 0, 5}, {7, 1, 4}, {7, 2, 3}, {7, 3, 3},
		{10, 0, 7}, {10, 1, 6}, {10, 2, 5}, {10, 3, 4},
		{3, 0, 2}, {3, 1, 2}, {1, 0, 1},
	}
	for _, c := range cases {
		if got := testCommittee(t, c.n).FallbackThreshold(c.k); got != c.want {
			t.Errorf("n=%d, %d quarantined: FallbackThreshold = %d, want %d", c.n, c.k, got, c.want)
		}
	}
	for n := 4; n <= 40; n += 3 { // n = 3f+1
		com := testCommittee(t, n)
		f := com.Faulty()
		if got := com.FallbackThreshold(0); got != com.Quorum() {
			t.Errorf("n=%d, none quarantined: %d, want q = %d", n, got, com.Quorum())
		}
		if got := com.FallbackThreshold(f); got != f+1 {
			t.Errorf("n=%d, f=%d quarantined: %d, want f+1 = %d", n, f, got, f+1)
		}
	}
}

// TestFallbackThresholdArithmetic checks, for every committee size up to
// MaxMembers and every pair of quarantined counts, the inequalities the
// safety argument at Committee.FallbackThreshold rests on: a threshold T
// with k quarantined exceeds the f − k faulty members that may still
// count, and any two certificates (quorum or fallback, each under its
// own quarantined count) have more correct signers together than there
// are correct members, whatever the number of faulty members.
func TestFallbackThresholdArithmetic(t *testing.T) {
	for n := 1; n <= MaxMembers; n++ {
		f := faulty(n)
		for ka := 0; ka <= f; ka++ {
			ta := fallbackThreshold(n, ka)
			if ta <= f-ka {
				t.Fatalf("n=%d k=%d: threshold %d may be all faulty", n, ka, ta)
			}
			for kb := 0; kb <= f; kb++ {
				for _, pair := range [][2]int{{ta, fallbackThreshold(n, kb)}, {ta, quorum(n)}, {quorum(n), quorum(n)}} {
					// Correct signers of both: ≥ Ta+ka−|F| + Tb+kb−|F|
					// against n−|F| correct members, for every |F| ≤ f
					// with |F| ≥ k.
					for bad := max(ka, kb); bad <= f; bad++ {
						if pair[0]+ka-bad+pair[1]+kb-bad <= n-bad {
							t.Fatalf("n=%d f=%d k=%d,%d, %d faulty: thresholds %v need not share a correct signer", n, f, ka, kb, bad, pair)
						}
					}
				}
			}
		}
	}
}

// TestCertificateVerifyFallback gives each fallback rule a case: with n4
// quarantined in a 4-member committee, 2 matching signatures of others
// make a fallback certificate; n4's signature never counts, in either
// form; with nobody quarantined the fallback needs a quorum.
func TestCertificateVerifyFallback(t *testing.T) {
	com := testCommittee(t, 4)
	s := handoffStatement()
	fallback := func(ids ...int) *Certificate {
		c := certOf(t, s, ids...)
		c.Form = FormFallback
		return c
	}
	q4 := []string{"n4"}
	cases := []struct {
		name        string
		cert        *Certificate
		quarantined []string
		want        string // "" = verifies
	}{
		{"f+1 of the others", fallback(2, 3), q4, ""},
		{"all three others", fallback(1, 2, 3), q4, ""},
		{"f+1 counting the quarantined", fallback(3, 4), q4, "1 signatures of members not quarantined, this 4-member committee with 1 quarantined needs 2"},
		{"f+1 with nobody quarantined", fallback(2, 3), nil, "needs 3"},
		{"non-members in the quarantined list do not lower the threshold", fallback(2, 3), []string{"n9", "n8"}, "with 0 quarantined needs 3"},
		{"one signer", fallback(2), q4, "needs 2"},
		{"quorum counting the quarantined", certOf(t, s, 1, 2, 4), q4, "2 signatures of members not quarantined (1 quarantined signers do not count)"},
		{"quorum beside the quarantined", certOf(t, s, 1, 2, 3, 4), q4, ""},
		{"quorum form needs a quorum even with a quarantine", certOf(t, s, 2, 3), q4, "a quorum of this 4-member committee is 3"},
		{"fallback of a checkpoint", func() *Certificate {
			c := certOf(t, ckptStatement(1, 100, "state"), 1, 2, 3)
			c.Form = FormFallback
			return c
		}(), q4, "a fallback certificate certifies a handoff"},
		{"unknown form", func() *Certificate { c := fallback(1, 2, 3); c.Form = 7; return c }(), q4, "form 7 is unknown"},
		{"bad quarantined signature", func() *Certificate {
			c := fallback(2, 3, 4)
			c.Sigs[2].Sig[0] ^= 1
			return c
		}(), q4, `signature of "n4" does not verify`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cert.Verify(com, c.quarantined)
			if c.want == "" {
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCertificate) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify = %v, want ErrInvalidCertificate containing %q", err, c.want)
			}
		})
	}
}

// TestConflictingCertificatesNeverBothVerify defends the safety argument
// at Committee.FallbackThreshold by brute force, through Verify itself:
// for n = 4 and 5, every set F of at most f faulty members (which sign
// both statements), every split of the correct members between two
// conflicting hand-over statements A and B, every two quarantined sets
// inside F (one per verifying node) and every pair of forms, the
// certificates of A and of B with every signature available never both
// verify.
func TestConflictingCertificatesNeverBothVerify(t *testing.T) {
	for _, n := range []int{4, 5} {
		com := testCommittee(t, n)
		f := com.Faulty()
		a := handoffStatement()
		a.Members = com.Members()
		b := a
		b.StateHash = hashOf("diverged")
		sigA, sigB := map[string][]byte{}, map[string][]byte{}
		for i := 1; i <= n; i++ {
			sigA[memberID(i)] = mustSign(t, i, a).Sig
			sigB[memberID(i)] = mustSign(t, i, b).Sig
		}
		build := func(s Statement, sigs map[string][]byte, signers []string, form Form) *Certificate {
			c := &Certificate{Statement: s, Form: form}
			for _, id := range signers {
				c.Sigs = append(c.Sigs, Signature{Signer: id, Sig: sigs[id]})
			}
			sortSigs(c.Sigs)
			return c
		}
		ids := com.Members()
		checked := 0
		for fMask := 0; fMask < 1<<n; fMask++ {
			faultyIDs := subset(ids, fMask)
			if len(faultyIDs) > f {
				continue
			}
			for split := 0; split < 1<<n; split++ {
				if split&fMask != 0 {
					continue // faulty members sign both
				}
				signA, signB := slices.Clone(faultyIDs), slices.Clone(faultyIDs)
				for i, id := range ids {
					switch {
					case fMask&(1<<i) != 0:
					case split&(1<<i) != 0:
						signA = append(signA, id)
					default:
						signB = append(signB, id)
					}
				}
				for qa := 0; qa < 1<<n; qa++ {
					if qa&^fMask != 0 {
						continue
					}
					for qb := 0; qb < 1<<n; qb++ {
						if qb&^fMask != 0 {
							continue
						}
						for _, forms := range [][2]Form{{FormQuorum, FormQuorum}, {FormQuorum, FormFallback}, {FormFallback, FormQuorum}, {FormFallback, FormFallback}} {
							ca := build(a, sigA, signA, forms[0])
							cb := build(b, sigB, signB, forms[1])
							if ca.Verify(com, subset(ids, qa)) == nil && cb.Verify(com, subset(ids, qb)) == nil {
								t.Fatalf("n=%d faulty %v, quarantined %v and %v: %s certificate %v and %s certificate %v both verify",
									n, faultyIDs, subset(ids, qa), subset(ids, qb), forms[0], signA, forms[1], signB)
							}
							checked++
						}
					}
				}
			}
		}
		if checked == 0 {
			t.Fatalf("n=%d: nothing checked", n)
		}
	}
}

// subset returns the ids whose bit is set in mask.
func subset(ids []string, mask int) []string {
	var out []string
	for i, id := range ids {
		if mask&(1<<i) != 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestCollectorFallback: the scenario of DESIGN invariant 10's fallback.
// n4 (quarantined) led Raft and made n1 diverge; n2 and n3 sign the
// state Y, n1 signs X, n4 signs Y as well. No quorum certificate forms
// (n4 does not count); with the fallback allowed the collector certifies
// Y with n2 and n3 only, and that certificate verifies at a node that
// holds n4 quarantined, never at one that does not.
func TestCollectorFallback(t *testing.T) {
	com := testCommittee(t, 4)
	col := NewCollector(com)
	col.SetQuarantined([]string{"n4", "n9"})
	y := handoffStatement()
	x := y
	x.StateHash = hashOf("diverged")
	for _, v := range []Vote{mustSign(t, 1, x), mustSign(t, 4, y), mustSign(t, 2, y), mustSign(t, 3, y)} {
		if cert, err := col.Add(v); cert != nil || err != nil {
			t.Fatalf("Add(%s by %s) = %v, %v; want no certificate", v.Statement, v.Signer, cert, err)
		}
	}
	if got := col.Support(y); got != 2 {
		t.Fatalf("Support(y) = %d, want 2 (n4 does not count)", got)
	}
	if cert, err := col.Certify(KindHandoff, y.Epoch, false); cert != nil || err != nil {
		t.Fatalf("Certify without the fallback = %v, %v", cert, err)
	}
	if cert, err := col.Certify(KindHandoff, y.Epoch+1, true); cert != nil || err != nil {
		t.Fatalf("Certify of another epoch = %v, %v", cert, err)
	}
	cert, err := col.Certify(KindHandoff, y.Epoch, true)
	if err != nil || cert == nil {
		t.Fatalf("Certify with the fallback = %v, %v", cert, err)
	}
	if cert.Form != FormFallback || !cert.Statement.Equal(y) || !slices.Equal(cert.Signers(), []string{"n2", "n3"}) {
		t.Fatalf("fallback certificate %s %s by %v", cert.Form, cert.Statement, cert.Signers())
	}
	if err := cert.Verify(com, []string{"n4"}); err != nil {
		t.Fatal(err)
	}
	if err := cert.Verify(com, nil); err == nil {
		t.Fatal("a fallback certificate of 2 verified with nobody quarantined")
	}
	// Periodic checkpoints have no fallback.
	for i := 2; i <= 3; i++ {
		if _, err := col.Add(mustSign(t, i, ckptStatement(1, 50, "c"))); err != nil {
			t.Fatal(err)
		}
	}
	if cert, err := col.Certify(KindCheckpoint, 1, true); cert != nil || err != nil {
		t.Fatalf("Certify of checkpoints with 2 votes = %v, %v", cert, err)
	}
	// Lifting the quarantine makes n4 count again: Y has a quorum.
	col.SetQuarantined(nil)
	cert, err = col.Certify(KindHandoff, y.Epoch, false)
	if err != nil || cert == nil || cert.Form != FormQuorum || len(cert.Sigs) != 3 {
		t.Fatalf("Certify after the lift = %+v, %v", cert, err)
	}
}

// TestCollectorQuorumExcludesQuarantined: the quorum certificate Add
// returns waits for a quorum of members not quarantined and carries no
// quarantined signature.
func TestCollectorQuorumExcludesQuarantined(t *testing.T) {
	com := testCommittee(t, 4)
	col := NewCollector(com)
	col.SetQuarantined([]string{"n2"})
	s := handoffStatement()
	for _, i := range []int{2, 1, 3} {
		if cert, err := col.Add(mustSign(t, i, s)); cert != nil || err != nil {
			t.Fatalf("vote of n%d: %v %v", i, cert, err)
		}
	}
	cert, err := col.Add(mustSign(t, 4, s))
	if err != nil || cert == nil {
		t.Fatalf("third vote not quarantined: %v %v", cert, err)
	}
	if cert.Form != FormQuorum || !slices.Equal(cert.Signers(), []string{"n1", "n3", "n4"}) {
		t.Fatalf("certificate %s by %v", cert.Form, cert.Signers())
	}
	if err := cert.Verify(com, []string{"n2"}); err != nil {
		t.Fatal(err)
	}
}

// TestCollectorAmbiguous: two statements of one epoch reaching the
// threshold (a member signed both, at different indexes, and the
// quarantine missed it) make no certificate but an error naming both.
func TestCollectorAmbiguous(t *testing.T) {
	com := testCommittee(t, 7)
	col := NewCollector(com)
	col.SetQuarantined([]string{"n6", "n7"}) // threshold 3
	a := handoffStatement()
	a.Members = com.Members()
	b := a
	b.Index++
	for _, v := range []Vote{mustSign(t, 1, a), mustSign(t, 2, a), mustSign(t, 3, a), mustSign(t, 3, b), mustSign(t, 4, b), mustSign(t, 5, b)} {
		if _, err := col.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := col.Certify(KindHandoff, a.Epoch, true)
	if !errors.Is(err, ErrAmbiguous) || cert != nil {
		t.Fatalf("Certify = %v, %v; want ErrAmbiguous", cert, err)
	}
}

// TestCertificateCompatibility: the certificates stored before forms
// existed (binary version 1 in the store's files, JSON without "form" in
// data_dir/epochs/current.json) decode as quorum certificates; a version
// 2 encoding of a quorum certificate, an unknown form or version, and a
// fallback checkpoint are refused.
func TestCertificateCompatibility(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "certificate_handoff.golden"))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := hex.DecodeString(strings.ReplaceAll(string(raw), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	var c Certificate
	if err := c.UnmarshalBinary(v1); err != nil || c.Form != FormQuorum {
		t.Fatalf("version 1 certificate: %v, form %s", err, c.Form)
	}
	if err := c.Verify(testCommittee(t, 4), nil); err != nil {
		t.Fatal(err)
	}
	old := `{"statement":{"kind":"handoff","epoch":2,"index":1200,"state_hash":"` + strings.Repeat("00", 32) +
		`","mode":"bft","members":["n1","n2","n3","n4"]},"sigs":[]}`
	var j Certificate
	if err := json.Unmarshal([]byte(old), &j); err != nil || j.Form != FormQuorum {
		t.Fatalf("JSON certificate without a form: %v, form %s", err, j.Form)
	}

	withForm := func(version, form byte) []byte {
		b := append([]byte(certMagic), version, form)
		return append(b, v1[len(certMagic)+1:]...)
	}
	for name, b := range map[string][]byte{
		"version 2 quorum":    withForm(certVersionForm, byte(FormQuorum)),
		"version 2 form 9":    withForm(certVersionForm, 9),
		"version 3":           withForm(3, byte(FormFallback)),
		"fallback checkpoint": fallbackCheckpointBytes(t),
	} {
		var c Certificate
		if err := c.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := (&Certificate{Statement: ckptStatement(1, 1, "x"), Form: FormFallback}).MarshalBinary(); err == nil {
		t.Error("a fallback checkpoint certificate was encoded")
	}
}

// fallbackCheckpointBytes is a version 2 fallback encoding of a
// checkpoint statement, which no encoder writes.
func fallbackCheckpointBytes(t *testing.T) []byte {
	t.Helper()
	c := certOf(t, ckptStatement(1, 1, "x"), 1, 2)
	w := writer{}
	w.raw([]byte(certMagic))
	w.u8(certVersionForm)
	w.u8(uint8(FormFallback))
	w.b = c.Statement.appendBody(w.b)
	w.u16(uint16(len(c.Sigs)))
	for _, s := range c.Sigs {
		w.str8(s.Signer)
		w.raw(s.Sig)
	}
	return w.b
}

// TestFetchFallbackCertificate: state transfer serves and accepts a
// fallback certificate, checks it against the fetching node's quarantined
// set, and still checks the snapshot against the certified state hash.
func TestFetchFallbackCertificate(t *testing.T) {
	snap, sum := realSnapshot(t, 10, 10)
	st := handoffStatement()
	st.Index, st.StateHash = 10, sum
	cert := certOf(t, st, 2, 3)
	cert.Form = FormFallback
	srv := honestPeer(t, cert, snap)
	cfg := FetchConfig{Peers: []Peer{{ID: "n2", URL: srv.URL}}, Committee: testCommittee(t, 4), Info: smr.SnapshotInfo,
		MinIndex: 10, Timeout: 5 * time.Second, MaxBytes: 1 << 20, Quarantined: []string{"n4"}}
	got, gotSnap, rejected, err := Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Fetch = %v (rejected %v)", err, rejected)
	}
	if got.Form != FormFallback || !got.Statement.Equal(st) || string(gotSnap) != string(snap) {
		t.Fatalf("fetched %s %s", got.Form, got.Statement)
	}

	// Without n4 quarantined, two signatures are no certificate.
	cfg.Quarantined = nil
	if _, _, rejected, err := Fetch(context.Background(), cfg); err == nil || len(rejected) != 1 || rejected[0].Reason != ReasonForged {
		t.Fatalf("Fetch without the quarantine = %v, rejected %v", err, rejected)
	}

	// A peer serving another state under the fallback certificate.
	other, _ := realSnapshot(t, 10, 11)
	tampered := servePayload(t, mustTransfer(t, cert, other))
	cfg.Quarantined = []string{"n4"}
	cfg.Peers = []Peer{{ID: "n3", URL: tampered.URL}}
	if _, _, rejected, err := Fetch(context.Background(), cfg); err == nil || len(rejected) != 1 || rejected[0].Reason != ReasonMismatch {
		t.Fatalf("Fetch of a tampered state = %v, rejected %v", err, rejected)
	}
}

// TestFetchWithCertified: a peer stored a quorum certificate counting n4
// before it quarantined n4; the fetching node, which holds n4
// quarantined, refuses that certificate on its own but takes the state
// on the strength of the fallback certificate it holds for the same
// statement; a tampered state and a caller's certificate that does not
// verify are still refused.
func TestFetchWithCertified(t *testing.T) {
	snap, sum := realSnapshot(t, 10, 10)
	st := handoffStatement()
	st.Index, st.StateHash = 10, sum
	peerCert := certOf(t, st, 1, 2, 4)
	srv := honestPeer(t, peerCert, snap)
	mine := certOf(t, st, 2, 3)
	mine.Form = FormFallback
	cfg := FetchConfig{Peers: []Peer{{ID: "n2", URL: srv.URL}}, Committee: testCommittee(t, 4), Info: smr.SnapshotInfo,
		MinIndex: 10, Timeout: 5 * time.Second, MaxBytes: 1 << 20, Quarantined: []string{"n4"}}
	if _, _, rejected, err := Fetch(context.Background(), cfg); err == nil || len(rejected) != 1 || rejected[0].Reason != ReasonForged {
		t.Fatalf("Fetch without Certified = %v, rejected %v", err, rejected)
	}
	cfg.Certified = mine
	got, gotSnap, rejected, err := Fetch(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Fetch with Certified = %v (rejected %v)", err, rejected)
	}
	if got.Form != FormFallback || !slices.Equal(got.Signers(), []string{"n2", "n3"}) || string(gotSnap) != string(snap) {
		t.Fatalf("fetched %s by %v", got.Form, got.Signers())
	}

	other, _ := realSnapshot(t, 10, 11)
	cfg.Peers = []Peer{{ID: "n1", URL: servePayload(t, mustTransfer(t, peerCert, other)).URL}}
	if _, _, rejected, err := Fetch(context.Background(), cfg); err == nil || len(rejected) != 1 || rejected[0].Reason != ReasonMismatch {
		t.Fatalf("Fetch of a tampered state = %v, rejected %v", err, rejected)
	}
	cfg.Peers = []Peer{{ID: "n2", URL: srv.URL}}
	cfg.Quarantined = nil // two signatures are no certificate now
	if _, _, _, err := Fetch(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "the caller's certificate") {
		t.Fatalf("Fetch with a Certified that does not verify = %v", err)
	}
}
