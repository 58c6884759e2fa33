package checkpoint

import (
	"errors"
	"slices"
	"testing"
)

// unswitched is the hand-over statement of epoch 2 at index with state.
func unswitched(index uint64, state string) Statement {
	return Statement{Kind: KindHandoff, Epoch: 2, Index: index, StateHash: hashOf(state),
		Mode: ModeBFT, Members: []string{"n1", "n2", "n3", "n4"}}
}

func addAll(t *testing.T, c *Collector, votes ...Vote) {
	t.Helper()
	for _, v := range votes {
		if _, err := c.Add(v); err != nil {
			t.Fatalf("Add(%s by %s): %v", v.Statement, v.Signer, err)
		}
	}
}

// TestCertifyUnswitchedHighestIndex: the Raft leader n4 is the suspect and
// the members stopped at different indices. The certificate is the
// statement at the highest index that f+1 = 2 members other than n4
// signed; n4's own higher vote counts for nothing, and the certificate
// verifies only when the verifier also leaves n4 out.
func TestCertifyUnswitchedHighestIndex(t *testing.T) {
	com := testCommittee(t, 4)
	c := NewCollector(com)
	low, mid, high := unswitched(100, "A"), unswitched(101, "B"), unswitched(102, "C")
	addAll(t, c, mustSign(t, 1, low), mustSign(t, 2, low))
	cert, err := c.CertifyUnswitched(2, []string{"n4"})
	if err != nil || cert == nil || !cert.Statement.Equal(low) {
		t.Fatalf("two votes at 100: %v, %v", cert, err)
	}
	// n3 moved on to 101 and n4 to 102; n1 and n2 are still at 100, so
	// 100 is still the highest index with 2 counted signers.
	addAll(t, c, mustSign(t, 3, mid), mustSign(t, 4, high))
	if cert, err = c.CertifyUnswitched(2, []string{"n4"}); err != nil || !cert.Statement.Equal(low) {
		t.Fatalf("one vote at 101 and the suspect's at 102: %v, %v", cert, err)
	}
	// A second collector where n2 also stopped at 101: 101 wins over 100.
	c2 := NewCollector(com)
	addAll(t, c2, mustSign(t, 1, low), mustSign(t, 2, mid), mustSign(t, 3, mid), mustSign(t, 4, high))
	cert, err = c2.CertifyUnswitched(2, []string{"n4"})
	if err != nil || cert == nil {
		t.Fatalf("CertifyUnswitched: %v, %v", cert, err)
	}
	if cert.Form != FormFallback || !cert.Statement.Equal(mid) || !slices.Equal(cert.Signers(), []string{"n2", "n3"}) {
		t.Fatalf("certificate %s %s by %v, want fallback %s by n2, n3", cert.Form, cert.Statement, cert.Signers(), mid)
	}
	if err := cert.Verify(com, []string{"n4"}); err != nil {
		t.Fatalf("verify with the suspect left out: %v", err)
	}
	if err := cert.Verify(com, nil); !errors.Is(err, ErrInvalidCertificate) {
		t.Fatalf("verify counting the suspect: %v, want ErrInvalidCertificate", err)
	}
	// Without a suspect the same votes certify nothing: the fallback
	// then needs a quorum (nobody quarantined).
	if cert, err := c2.CertifyUnswitched(2, nil); cert != nil || err != nil {
		t.Fatalf("without suspects: %v, %v", cert, err)
	}
}

// TestCertifyUnswitchedSingleLiar: one member alone never chooses the
// genesis state. A liar that is not the suspect (n3) signs an invented
// state at a high index: alone it certifies nothing, and the suspect n4
// signing the same state does not lift it to f+1.
func TestCertifyUnswitchedSingleLiar(t *testing.T) {
	com := testCommittee(t, 4)
	c := NewCollector(com)
	lie := unswitched(500, "invented")
	addAll(t, c, mustSign(t, 1, unswitched(100, "A")), mustSign(t, 2, unswitched(101, "B")), mustSign(t, 3, lie), mustSign(t, 4, lie))
	if cert, err := c.CertifyUnswitched(2, []string{"n4"}); cert != nil || err != nil {
		t.Fatalf("the liar n3 with the suspect n4 certified %v (err %v)", cert, err)
	}
	// The liar can only join a correct member's state: that state (one a
	// correct member applied) is then certified, never its own.
	addAll(t, c, mustSign(t, 3, unswitched(101, "B")))
	cert, err := c.CertifyUnswitched(2, []string{"n4"})
	if err != nil || cert == nil || cert.Statement.Index != 101 || cert.Statement.StateHash != hashOf("B") {
		t.Fatalf("after the liar joined n2's state: %v, %v", cert, err)
	}
}

// TestCertifyUnswitchedMixed: votes of members that applied the switch
// entry and of members that stopped before it mix. A switched vote and an
// unswitched one for the same index and state are one statement; three of
// them make a quorum certificate, the ordinary form, whatever the
// suspects. In a larger committee a lower statement that reaches the
// threshold never wins over a higher one.
func TestCertifyUnswitchedMixed(t *testing.T) {
	com := testCommittee(t, 4)
	c := NewCollector(com)
	sw := unswitched(120, "switched") // n2 and n3 applied the switch at 120
	addAll(t, c, mustSign(t, 2, sw), mustSign(t, 3, sw), mustSign(t, 1, unswitched(119, "before")))
	cert, err := c.CertifyUnswitched(2, []string{"n4"})
	if err != nil || cert == nil || !cert.Statement.Equal(sw) || cert.Form != FormFallback {
		t.Fatalf("two switched votes with n1 one index behind: %v, %v", cert, err)
	}
	// n4 stopped at 120 with the same state: its vote is the same
	// statement, and three of them are a quorum certificate.
	addAll(t, c, mustSign(t, 4, sw))
	cert, err = c.CertifyUnswitched(2, []string{"n4"})
	if err != nil || cert == nil || cert.Form != FormQuorum || len(cert.Sigs) != 3 {
		t.Fatalf("three matching votes: %v, %v", cert, err)
	}

	// n=7, f=2, suspect n7, n6 quarantined: threshold f+1 = 3 of n1..n5.
	// n3 cannot sign a second state at index 300.
	com7 := testCommittee(t, 7)
	c7 := NewCollector(com7)
	c7.SetQuarantined([]string{"n6"})
	x, y := unswitched(300, "X"), unswitched(300, "Y")
	addAll(t, c7, mustSign(t, 1, x), mustSign(t, 2, x), mustSign(t, 5, y), mustSign(t, 3, x))
	low := unswitched(200, "low")
	addAll(t, c7, mustSign(t, 1, low), mustSign(t, 2, low), mustSign(t, 4, low))
	if _, err := c7.Add(mustSign(t, 3, y)); err == nil {
		t.Fatal("a second vote of n3 at index 300 was accepted")
	}
	if cert, err := c7.CertifyUnswitched(2, []string{"n7"}); err != nil || cert == nil || !cert.Statement.Equal(x) {
		t.Fatalf("X at 300 with 3 signers over the lower statement: %v, %v", cert, err)
	}
	// A higher index with 3 signers wins over 300.
	hi := unswitched(301, "hi")
	addAll(t, c7, mustSign(t, 1, hi), mustSign(t, 4, hi), mustSign(t, 5, hi))
	if cert, err := c7.CertifyUnswitched(2, []string{"n7"}); err != nil || cert == nil || !cert.Statement.Equal(hi) {
		t.Fatalf("301 with 3 signers: %v, %v", cert, err)
	}
}
