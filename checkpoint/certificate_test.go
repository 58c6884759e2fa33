package checkpoint

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

// TestQuorum defends DESIGN invariant 5: q = n − ⌊(n−1)/3⌋ for n ≥ 4, a
// majority for the crash-only n ≤ 3.
func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 4, 6: 5, 7: 5, 10: 7} {
		if got := testCommittee(t, n).Quorum(); got != want {
			t.Errorf("n=%d: Quorum = %d, want %d", n, got, want)
		}
	}
}

func TestNewCommitteeRejects(t *testing.T) {
	pk := testKey(1).Public().(ed25519.PublicKey)
	for name, m := range map[string]map[string]ed25519.PublicKey{
		"empty":     {},
		"empty ID":  {"": pk},
		"short key": {"n1": pk[:31]},
	} {
		if _, err := NewCommittee(m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCertificateVerifyAtQuorum: for n = 3, 4, 5, 7 a certificate with
// exactly a quorum of signatures verifies and one with a signature fewer
// does not.
func TestCertificateVerifyAtQuorum(t *testing.T) {
	for _, n := range []int{3, 4, 5, 7} {
		com := testCommittee(t, n)
		q := com.Quorum()
		ids := make([]int, q)
		for i := range ids {
			ids[i] = n - i // the last q members
		}
		s := ckptStatement(1, 100, "state")
		if err := certOf(t, s, ids...).Verify(com, nil); err != nil {
			t.Errorf("n=%d, %d sigs: %v", n, q, err)
		}
		err := certOf(t, s, ids[:q-1]...).Verify(com, nil)
		if !errors.Is(err, ErrInvalidCertificate) || !strings.Contains(err.Error(), "quorum") {
			t.Errorf("n=%d, %d sigs: Verify = %v, want a quorum error", n, q-1, err)
		}
	}
}

// TestCertificateVerifyRejects gives each check of Certificate.Verify a
// case.
func TestCertificateVerifyRejects(t *testing.T) {
	com := testCommittee(t, 4)
	s := ckptStatement(1, 100, "state")
	other := ckptStatement(1, 100, "other state")
	cases := []struct {
		name string
		cert func() *Certificate
		want string
	}{
		{"too few", func() *Certificate { return certOf(t, s, 1, 2) }, "2 signatures, a quorum of this 4-member committee is 3"},
		{"duplicate signer", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			c.Sigs = append(c.Sigs, c.Sigs[2])
			return c
		}, `duplicate signer "n3"`},
		{"unsorted", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			c.Sigs[0], c.Sigs[1] = c.Sigs[1], c.Sigs[0]
			return c
		}, "not sorted"},
		{"unknown signer", func() *Certificate { return certOf(t, s, 1, 2, 5) }, `"n5" is not a committee member`},
		{"signature over another statement", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			c.Sigs[1].Sig = mustSign(t, 2, other).Sig
			return c
		}, `signature of "n2" does not verify`},
		{"wrong key", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			v, _ := Sign(testKey(9), "n3", s) // n3's name, another key
			c.Sigs[2].Sig = v.Sig
			return c
		}, `signature of "n3" does not verify`},
		{"bad among a quorum", func() *Certificate {
			c := certOf(t, s, 1, 2, 3, 4)
			c.Sigs[3].Sig[0] ^= 1
			return c
		}, `signature of "n4" does not verify`},
		{"short signature", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			c.Sigs[0].Sig = c.Sigs[0].Sig[:10]
			return c
		}, "10 bytes"},
		{"invalid statement", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			c.Statement.Mode = "bft"
			return c
		}, "a checkpoint has no mode"},
		{"statement altered after signing", func() *Certificate {
			c := certOf(t, s, 1, 2, 3)
			c.Statement.Index++
			return c
		}, "does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cert().Verify(com, nil)
			if !errors.Is(err, ErrInvalidCertificate) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify = %v, want ErrInvalidCertificate containing %q", err, c.want)
			}
		})
	}
	var nilCert *Certificate
	if err := nilCert.Verify(com, nil); err == nil {
		t.Error("nil certificate verified")
	}
}

func TestVoteVerify(t *testing.T) {
	com := testCommittee(t, 4)
	v := mustSign(t, 1, ckptStatement(1, 5, "a"))
	if err := v.Verify(com); err != nil {
		t.Fatal(err)
	}
	bad := v
	bad.Signer = "n2"
	if err := bad.Verify(com); !errors.Is(err, ErrBadSignature) {
		t.Errorf("vote under another member's name: %v", err)
	}
	bad = mustSign(t, 5, ckptStatement(1, 5, "a"))
	if err := bad.Verify(com); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "not a committee member") {
		t.Errorf("non-member vote: %v", err)
	}
	if _, err := Sign(testKey(1)[:10], "n1", ckptStatement(1, 5, "a")); err == nil {
		t.Error("Sign accepted a short key")
	}
}
