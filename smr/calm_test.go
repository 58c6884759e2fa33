package smr

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

func calmOf(t *testing.T, key ed25519.PrivateKey, signer string, epoch uint64, at int64) CalmStatement {
	t.Helper()
	c, err := SignCalm(key, signer, epoch, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCalmStatementVerify(t *testing.T) {
	k1, k2 := testKey(1), testKey(2)
	c := calmOf(t, k1, "node1", 2, 42)
	if err := c.Verify(k1.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("Verify with the signer's key = %v", err)
	}
	if err := c.Verify(k2.Public().(ed25519.PublicKey)); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("Verify with another key = %v", err)
	}
	for name, mod := range map[string]func(*CalmStatement){
		"epoch":  func(c *CalmStatement) { c.Epoch = 3 },
		"time":   func(c *CalmStatement) { c.Time++ },
		"signer": func(c *CalmStatement) { c.Signer = "node2" },
	} {
		bad := c
		mod(&bad)
		if err := bad.Verify(k1.Public().(ed25519.PublicKey)); err == nil {
			t.Errorf("a statement with another %s verifies", name)
		}
	}
	if _, err := SignCalm(k1, "", 2, 1); err == nil {
		t.Error("SignCalm with an empty signer succeeded")
	}
	if _, err := SignCalm(k1[:10], "node1", 2, 1); err == nil {
		t.Error("SignCalm with a short key succeeded")
	}
}

func TestCalmSwitchEntry(t *testing.T) {
	admin := testKey(1)
	h := newHarness(t, admin)
	h.do(admin, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	before := h.hash()
	at := h.time
	good := func() *EpochSwitch {
		cs := []CalmStatement{calmOf(t, testKey(12), "node2", 2, at-int64(time.Second)), calmOf(t, testKey(11), "node1", 2, at)}
		SortCalm(cs)
		return &EpochSwitch{Epoch: 3, Mode: ModeCFT, Reason: "calm for 10m0s after quarantining node4", Calm: cs}
	}
	b := switchBytes(t, at, good())
	var back Entry
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got := back.Switch.Calm; len(got) != 2 || got[0].Signer != "node1" || got[1].Signer != "node2" || got[0].Time != at || len(back.Switch.Body) != 0 {
		t.Fatalf("decoded calm statements %+v, body %q", got, back.Switch.Body)
	}
	if err := back.Switch.Calm[0].Verify(testKey(11).Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("a decoded statement does not verify: %v", err)
	}
	h.idx++
	if r := h.sm.Apply(h.idx, b); r.Code != CodeOK {
		t.Fatalf("Apply(calm switch) = %+v", r)
	}

	cases := []struct {
		name string
		mod  func(s *EpochSwitch)
		code Code
		msg  string
	}{
		{"stale statement", func(s *EpochSwitch) { s.Calm[0] = calmOf(t, testKey(11), "node1", 2, at-int64(CalmMaxAge)-1) }, CodeMalformed, "must be fresh"},
		{"statement from the future", func(s *EpochSwitch) { s.Calm[0] = calmOf(t, testKey(11), "node1", 2, at+int64(CalmMaxAhead)+1) }, CodeMalformed, "must be fresh"},
		{"statement for another epoch", func(s *EpochSwitch) { s.Calm[0] = calmOf(t, testKey(11), "node1", 1, at) }, CodeMalformed, "needs statements for epoch 2"},
		{"duplicate signer", func(s *EpochSwitch) { s.Calm[1] = s.Calm[0] }, CodeMalformed, "distinct signers"},
		{"unsorted", func(s *EpochSwitch) { s.Calm[0], s.Calm[1] = s.Calm[1], s.Calm[0] }, CodeMalformed, "increasing order"},
		{"escalation with statements", func(s *EpochSwitch) { s.Mode = ModeBFT }, CodeMalformed, "no calm statements"},
		{"no statements", func(s *EpochSwitch) { s.Calm = nil }, CodePermissionDenied, "calm statements"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := good()
			c.mod(s)
			h.idx++
			r := h.sm.Apply(h.idx, switchBytes(t, at, s))
			if r.Code != c.code || !strings.Contains(r.Message, c.msg) {
				t.Fatalf("Apply = %+v, want code %s containing %q", r, c.code, c.msg)
			}
			if h.hash() != before {
				t.Fatal("a rejected switch changed the state")
			}
		})
	}

	// An operator's switch cannot carry statements.
	op, err := SignEpochSwitch(admin, "/v1/admin/mode", at/1e9, SwitchRequest{Mode: ModeCFT, Epoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	op.Calm = good().Calm
	ent := NewEpochSwitchEntry(at, *op)
	if _, err := ent.MarshalBinary(); err == nil {
		t.Fatal("a switch with an admin request and calm statements encoded")
	}
	if err := op.Verify(); err == nil || !strings.Contains(err.Error(), "no calm statements") {
		t.Fatalf("Verify(operator switch with statements) = %v", err)
	}
}

func TestCalmSwitchDecodeTruncated(t *testing.T) {
	cs := []CalmStatement{calmOf(t, testKey(11), "node1", 2, 5)}
	ent := NewEpochSwitchEntry(5, EpochSwitch{Epoch: 3, Mode: ModeCFT, Calm: cs})
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	calmStart := len(b) - (1 + 1 + len("node1") + 8 + 8 + ed25519.SignatureSize)
	for n := calmStart + 1; n < len(b); n++ {
		var e Entry
		if err := e.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded", n)
		}
	}
	var e Entry
	if err := e.UnmarshalBinary(append(b, 0)); err == nil || !strings.Contains(err.Error(), "after the last statement") {
		t.Fatalf("a trailing byte: %v", err)
	}
}
