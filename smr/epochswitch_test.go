package smr

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func switchBytes(t *testing.T, at int64, s *EpochSwitch) []byte {
	t.Helper()
	ent := NewEpochSwitchEntry(at, *s)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	var back Entry
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	again, err := back.MarshalBinary()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("round trip changed the entry: %v", err)
	}
	return b
}

func TestEpochSwitchEntry(t *testing.T) {
	admin, other := testKey(1), testKey(2)
	h := newHarness(t, admin)
	h.do(admin, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	before := h.hash()
	now := h.time / 1e9

	sw, err := SignEpochSwitch(admin, "/v1/admin/mode", now, SwitchRequest{Mode: ModeBFT, Epoch: 2, Reason: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sm.PrecheckEpochSwitch(sw); err != nil {
		t.Fatalf("PrecheckEpochSwitch = %v", err)
	}
	h.idx++
	res := h.sm.Apply(h.idx, switchBytes(t, h.time, sw))
	if res.Code != CodeOK {
		t.Fatalf("Apply(switch) = %+v", res)
	}
	var out SwitchOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil || out.Epoch != 2 || out.Mode != ModeBFT {
		t.Fatalf("switch value = %s (%v)", res.Value, err)
	}
	if h.hash() != before {
		t.Fatal("an epoch switch changed the state")
	}

	// The detector may escalate without an operator; nobody may
	// de-escalate without one.
	det := &EpochSwitch{Epoch: 3, Mode: ModeBFT, Reason: "evidence 1234"}
	h.idx++
	if r := h.sm.Apply(h.idx, switchBytes(t, h.time, det)); r.Code != CodeOK {
		t.Fatalf("detector escalation = %+v", r)
	}
	down := &EpochSwitch{Epoch: 3, Mode: ModeCFT}
	h.idx++
	if r := h.sm.Apply(h.idx, switchBytes(t, h.time, down)); r.Code != CodePermissionDenied {
		t.Fatalf("unsigned de-escalation = %+v", r)
	}

	cases := []struct {
		name string
		mod  func() *EpochSwitch
		code Code
		msg  string
	}{
		{"not admin", func() *EpochSwitch {
			s, _ := SignEpochSwitch(other, "/v1/admin/mode", now, SwitchRequest{Mode: ModeCFT, Epoch: 3})
			return s
		}, CodeUnknownClient, ""},
		{"bad signature", func() *EpochSwitch {
			s, _ := SignEpochSwitch(admin, "/v1/admin/mode", now, SwitchRequest{Mode: ModeCFT, Epoch: 3})
			s.Sig[0] ^= 1
			return s
		}, CodeBadSignature, "does not verify"},
		{"entry disagrees with the signed request", func() *EpochSwitch {
			s, _ := SignEpochSwitch(admin, "/v1/admin/mode", now, SwitchRequest{Mode: ModeCFT, Epoch: 3})
			s.Epoch = 9
			return s
		}, CodeMalformed, "signed request asks for epoch 3"},
		{"stale request", func() *EpochSwitch {
			s, _ := SignEpochSwitch(admin, "/v1/admin/mode", now-RestoreWindow-1, SwitchRequest{Mode: ModeCFT, Epoch: 3})
			return s
		}, CodeBadSignature, "more than"},
		{"bad mode", func() *EpochSwitch { return &EpochSwitch{Epoch: 3, Mode: "auto"} }, CodeMalformed, "mode"},
		{"epoch 1", func() *EpochSwitch { return &EpochSwitch{Epoch: 1, Mode: ModeBFT} }, CodeMalformed, "epoch 1"},
		{"long reason", func() *EpochSwitch {
			return &EpochSwitch{Epoch: 3, Mode: ModeBFT, Reason: strings.Repeat("x", MaxSwitchReasonBytes+1)}
		}, CodeTooLarge, "reason"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.idx++
			r := h.sm.Apply(h.idx, switchBytes(t, h.time, c.mod()))
			if r.Code != c.code || !strings.Contains(r.Message, c.msg) {
				t.Fatalf("Apply = %+v, want code %s containing %q", r, c.code, c.msg)
			}
			if h.hash() != before {
				t.Fatal("a rejected switch changed the state")
			}
		})
	}
}

func TestEpochSwitchDecodeTruncated(t *testing.T) {
	sw, err := SignEpochSwitch(testKey(1), "/v1/admin/mode", 5, SwitchRequest{Mode: ModeBFT, Epoch: 2})
	if err != nil {
		t.Fatal(err)
	}
	ent := NewEpochSwitchEntry(1, *sw)
	b, err := ent.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Every cut inside the fixed fields is an error, never a panic; cuts
	// in the body decode to a shorter body, which the signature rejects.
	fixed := entryV2HeaderLen + 8 + 1 + len(sw.Mode) + 2 + 1 + 32 + 8 + 1 + 64 + 4 + len(sw.RequestURI)
	for n := entryV2HeaderLen; n < fixed; n++ {
		var e Entry
		if err := e.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded", n)
		}
	}
}
