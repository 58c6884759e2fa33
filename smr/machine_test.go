package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestNewValidatesGenesis(t *testing.T) {
	k := pubOf(testKey(1))
	cases := map[string]Genesis{
		"no admin":         {},
		"short admin key":  {AdminKeys: []ed25519.PublicKey{k[:31]}},
		"duplicate admin":  {AdminKeys: []ed25519.PublicKey{k, k}},
		"negative window":  {AdminKeys: []ed25519.PublicKey{k}, ResultWindow: -1},
		"huge window":      {AdminKeys: []ed25519.PublicKey{k}, ResultWindow: MaxResultWindow + 1},
		"negative max cmd": {AdminKeys: []ed25519.PublicKey{k}, MaxCommandBytes: -5},
	}
	for name, g := range cases {
		if _, err := New(g); err == nil {
			t.Errorf("%s: New accepted %+v", name, g)
		}
	}
	sm, err := New(Genesis{AdminKeys: []ed25519.PublicKey{k}})
	if err != nil {
		t.Fatal(err)
	}
	g, ok := sm.Genesis()
	if !ok || g.ResultWindow != DefaultResultWindow || g.MaxCommandBytes != DefaultMaxCommandBytes {
		t.Fatalf("defaults: %+v, %v", g, ok)
	}
}

// rejectionFixture builds a state with window 4 and a 512-byte command
// limit: admin A; client C with session.write allowed and tool.write denied,
// whose seqs 1..6 executed (so 3..6 are retained); stranger S.
func rejectionFixture(t *testing.T) (h *harness, a, c, s ed25519.PrivateKey) {
	t.Helper()
	a, c, s = testKey(1), testKey(2), testKey(3)
	sm, err := New(Genesis{AdminKeys: []ed25519.PublicKey{pubOf(a)}, ResultWindow: 4, MaxCommandBytes: 512})
	if err != nil {
		t.Fatal(err)
	}
	h = &harness{t: t, sm: sm, time: 5_000}
	h.do(a, 1, grant(c, PermSessionWrite, EffectAllow))
	h.do(a, 2, grant(c, PermToolWrite, EffectDeny))
	h.do(a, 3, Command{Op: OpRegisterSession, SessionID: "s1"})
	for i := uint64(1); i <= 6; i++ {
		h.do(c, i, Command{Op: OpRegisterSession, SessionID: fmt.Sprintf("c%d", i)})
	}
	return h, a, c, s
}

// TestRejections checks every rejection code: Precheck rejects without
// changing the state, and Apply either changes nothing at all (signature,
// client and seq rejections) or only consumes the seq (command rejections),
// so that a retry gets the same Result.
func TestRejections(t *testing.T) {
	type build func(a, c, s ed25519.PrivateKey) *Envelope
	cases := []struct {
		name     string
		env      build
		precheck Code // CodeOK: Precheck lets it through (decided at execution)
		apply    Code // CodeOK: not applicable (cannot be put in an entry)
		consumes bool
		mention  string
	}{
		{"bad signature", func(a, c, s ed25519.PrivateKey) *Envelope {
			e := mustSign(t, c, 7, Command{Op: OpUnregisterSession, SessionID: "c1"})
			e.Sig[5] ^= 1
			return e
		}, CodeBadSignature, CodeBadSignature, false, "does not verify"},
		{"missing signature", func(a, c, s ed25519.PrivateKey) *Envelope {
			e := mustSign(t, c, 7, Command{Op: OpUnregisterSession, SessionID: "c1"})
			e.Sig = nil
			return e
		}, CodeBadSignature, CodeOK, false, "no signature"},
		{"short client key", func(a, c, s ed25519.PrivateKey) *Envelope {
			e := mustSign(t, c, 7, Command{Op: OpUnregisterSession, SessionID: "c1"})
			e.Client = e.Client[:16]
			return e
		}, CodeMalformed, CodeOK, false, "16 bytes"},
		{"unknown client", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, s, 1, Command{Op: OpRegisterSession, SessionID: "x"})
		}, CodeUnknownClient, CodeUnknownClient, false, "not invited"},
		{"seq zero", func(a, c, s ed25519.PrivateKey) *Envelope {
			return signRaw(c, 0, []byte(`{"op":"unregister_session","session_id":"c1"}`))
		}, CodeMalformed, CodeMalformed, false, "seq 0"},
		{"seq conflict", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 5, Command{Op: OpRegisterSession, SessionID: "other"})
		}, CodeSeqConflict, CodeSeqConflict, false, "seq 5 was already executed"},
		{"seq too old", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 2, Command{Op: OpRegisterSession, SessionID: "c2"})
		}, CodeSeqTooOld, CodeSeqTooOld, false, "seq 2 is older than the retained window (highest executed 6, window 4)"},
		{"seq too far", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 11, Command{Op: OpRegisterSession, SessionID: "c11"})
		}, CodeSeqTooFar, CodeSeqTooFar, false, "at most 10"},
		{"command too large", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 7, Command{Op: OpRegisterSession, SessionID: "big", Metadata: map[string]string{"k": strings.Repeat("v", 600)}})
		}, CodeTooLarge, CodeTooLarge, true, "at most 512"},
		{"malformed command", func(a, c, s ed25519.PrivateKey) *Envelope {
			return signRaw(c, 7, []byte(`{"op":"register_session"}`))
		}, CodeMalformed, CodeMalformed, true, "requires field session_id"},
		{"unknown command", func(a, c, s ed25519.PrivateKey) *Envelope {
			return signRaw(c, 7, []byte(`{"op":"format_disk"}`))
		}, CodeUnknownCommand, CodeUnknownCommand, true, `"format_disk"`},
		{"permission not held", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 7, Command{Op: OpSetConfig, Key: "k", Value: "v"})
		}, CodePermissionDenied, CodePermissionDenied, true, "config.write"},
		{"permission denied explicitly", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 7, Command{Op: OpRegisterTool, ToolName: "t", Definition: json.RawMessage(`{}`)})
		}, CodePermissionDenied, CodePermissionDenied, true, "denied"},
		{"not found", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 7, Command{Op: OpUnregisterSession, SessionID: "nope"})
		}, CodeOK, CodeNotFound, true, `"nope"`},
		{"already exists", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, c, 7, Command{Op: OpRegisterSession, SessionID: "s1"})
		}, CodeOK, CodeAlreadyExists, true, `"s1"`},
		{"last admin", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, a, 4, grant(a, PermAdmin, EffectRemove))
		}, CodeOK, CodeLastAdmin, true, "only admin"},
		{"last admin denied", func(a, c, s ed25519.PrivateKey) *Envelope {
			return mustSign(t, a, 4, grant(a, PermAdmin, EffectDeny))
		}, CodeOK, CodeLastAdmin, true, "only admin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, a, c, s := rejectionFixture(t)
			env := tc.env(a, c, s)
			before := h.hash()

			dup, err := h.sm.Precheck(env)
			if dup != nil {
				t.Fatalf("Precheck returned a cached result %+v", dup)
			}
			if tc.precheck == CodeOK {
				if err != nil {
					t.Fatalf("Precheck = %v, want it to pass", err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || e.Code != tc.precheck || !strings.Contains(e.Message, tc.mention) {
					t.Fatalf("Precheck = %v, want %s mentioning %q", err, tc.precheck, tc.mention)
				}
			}
			if h.hash() != before {
				t.Fatal("Precheck changed the state hash")
			}
			if tc.apply == CodeOK {
				return
			}

			domain := h.domainHash()
			r := h.apply(env)
			if r.Code != tc.apply || !strings.Contains(r.Message, tc.mention) || r.Value != nil || r.Duplicate {
				t.Fatalf("Apply = %+v, want %s mentioning %q", r, tc.apply, tc.mention)
			}
			if r.Err() == nil {
				t.Fatal("Result.Err() = nil for a rejection")
			}
			if got := h.sm.AppliedIndex(); got != h.idx {
				t.Fatalf("AppliedIndex = %d, want %d", got, h.idx)
			}
			if !tc.consumes {
				if h.hash() != before {
					t.Fatal("a rejection that records nothing changed the state hash")
				}
				return
			}
			if h.domainHash() != domain {
				t.Fatal("a rejected command changed more than the exactly-once record")
			}
			retry := h.apply(env)
			want := r
			want.Duplicate = true
			if fmt.Sprint(retry) != fmt.Sprint(want) {
				t.Fatalf("retry = %+v, want the stored %+v", retry, want)
			}
			// Precheck serves the stored result too, except that it checks the
			// size before anything else.
			cached, err := h.sm.Precheck(env)
			if tc.apply == CodeTooLarge {
				if !isCode(err, CodeTooLarge) {
					t.Fatalf("Precheck of the retry = %+v, %v; want too_large", cached, err)
				}
			} else if err != nil || cached == nil || cached.Code != tc.apply || !cached.Duplicate {
				t.Fatalf("Precheck of the retry = %+v, %v; want the stored result", cached, err)
			}
		})
	}
}

func TestApplyRejectsUndecodableEntriesAndOldIndexes(t *testing.T) {
	a := testKey(1)
	h := newHarness(t, a)
	h.do(a, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	before := h.hash()

	for i, data := range [][]byte{nil, {1}, {2, 0, 0}, bytes.Repeat([]byte{1}, 200)} {
		h.idx++
		r := h.sm.Apply(h.idx, data)
		if r.Code != CodeMalformed || r.Index != h.idx {
			t.Fatalf("entry %d: Apply = %+v, want malformed at index %d", i, r, h.idx)
		}
	}
	env := mustSign(t, a, 2, Command{Op: OpSetConfig, Key: "k", Value: "w"})
	for _, idx := range []uint64{0, 1, h.idx} {
		r := h.sm.Apply(idx, entryBytes(t, 0, env))
		if r.Code != CodeMalformed || !strings.Contains(r.Message, "not after the last applied index") {
			t.Fatalf("Apply at old index %d = %+v", idx, r)
		}
	}
	if h.hash() != before || h.sm.AppliedIndex() != h.idx {
		t.Fatal("rejected entries changed the state")
	}
	// Indexes may skip (entries of the engine itself are not applied).
	h.idx += 10
	if r := h.apply(env); r.Code != CodeOK || r.Index != h.idx {
		t.Fatalf("Apply after a gap = %+v", r)
	}
}

// TestExactlyOnce covers invariant 1: retries, pipelining out of order
// within the window, and pruning outside it.
func TestExactlyOnce(t *testing.T) {
	a := testKey(1)
	sm, err := New(Genesis{AdminKeys: []ed25519.PublicKey{pubOf(a)}, ResultWindow: 8})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, sm: sm}
	subscribe := func(seq uint64) *Envelope {
		return mustSign(t, a, seq, Command{Op: OpSubscribeResource, ResourceURI: "r", Subscriber: fmt.Sprint(seq)})
	}
	// Out of order, with a gap: 3, 1, 8 execute; 2 still can.
	for _, seq := range []uint64{3, 1, 8, 2} {
		if r := h.apply(subscribe(seq)); r.Code != CodeOK || r.Duplicate {
			t.Fatalf("seq %d: %+v", seq, r)
		}
	}
	first := h.apply(subscribe(9))
	before := h.hash()
	again := h.apply(subscribe(9))
	if !again.Duplicate || again.Index != first.Index || !bytes.Equal(again.Value, first.Value) {
		t.Fatalf("retry = %+v, want the stored %+v", again, first)
	}
	if h.hash() != before {
		t.Fatal("a retry changed the state")
	}
	if r := h.apply(subscribe(17)); r.Code != CodeOK {
		t.Fatalf("seq 17 (highest 9 + window 8): %+v", r)
	}
	// Now retained: (9, 17]. 9 is out of the window, 10 is not executed yet.
	if r := h.apply(subscribe(9)); r.Code != CodeSeqTooOld {
		t.Fatalf("seq 9 after the window moved: %+v", r)
	}
	if r := h.apply(subscribe(10)); r.Code != CodeOK || r.Duplicate {
		t.Fatalf("seq 10 (never executed, inside the window): %+v", r)
	}
	for seq := uint64(18); seq < 200; seq++ {
		h.apply(subscribe(seq))
		sm.mu.RLock()
		n := len(sm.st.clients[clientKey(pubOf(a))].results)
		sm.mu.RUnlock()
		if n > 8 {
			t.Fatalf("after seq %d, %d results retained, want at most the window of 8", seq, n)
		}
	}
	var info ClientInfo
	if err := json.Unmarshal(h.query(QueryClient, FormatKey(pubOf(a))), &info); err != nil || info.HighestSeq != 199 || !info.Known {
		t.Fatalf("client query = %+v, %v", info, err)
	}
}

func TestSessionsExpireOnTheStateClock(t *testing.T) {
	a := testKey(1)
	h := newHarness(t, a)
	h.time = 1_000_000_000
	r := h.do(a, 1, Command{Op: OpRegisterSession, SessionID: "short", TTLMillis: 100})
	var out Outcome
	if err := json.Unmarshal(r.Value, &out); err != nil || out.ExpiresAt != 1_100_000_000 || out.TTLMillis != 100 {
		t.Fatalf("register value = %s (%v)", r.Value, err)
	}
	h.do(a, 2, Command{Op: OpRegisterSession, SessionID: "long", TTLMillis: 1000, Metadata: map[string]string{"m": "1"}})
	h.do(a, 3, Command{Op: OpRegisterSession, SessionID: "forever"})

	// A lower leader time is clamped: the clock never goes backwards.
	h.time = 10
	h.do(a, 4, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	if string(h.query(QuerySession, "short")) == "" {
		t.Fatal("session expired although the clock did not move")
	}

	h.time = 1_100_000_000 // exactly the expiry of "short"
	if r := h.apply(mustSign(t, a, 5, Command{Op: OpRenewSession, SessionID: "short"})); r.Code != CodeNotFound {
		t.Fatalf("renew of an expired session = %+v, want not_found", r)
	}
	if _, err := h.sm.Query(Query{Kind: QuerySession, Key: "short"}); err == nil {
		t.Fatal("expired session is still returned")
	}
	r = h.do(a, 6, Command{Op: OpRenewSession, SessionID: "long", TTLMillis: 50})
	if err := json.Unmarshal(r.Value, &out); err != nil || out.ExpiresAt != 1_150_000_000 {
		t.Fatalf("renew value = %s", r.Value)
	}
	var list []SessionInfo
	if err := json.Unmarshal(h.query(QuerySessions, ""), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].SessionID != "forever" || list[1].SessionID != "long" || list[1].Metadata["m"] != "1" {
		t.Fatalf("sessions = %+v", list)
	}
	// The name of an expired session can be registered again.
	h.do(a, 7, Command{Op: OpRegisterSession, SessionID: "short"})
	h.time = 2_000_000_000
	h.do(a, 8, Command{Op: OpUnregisterSession, SessionID: "short"})
	if err := json.Unmarshal(h.query(QuerySessions, ""), &list); err != nil || len(list) != 1 || list[0].SessionID != "forever" {
		t.Fatalf("sessions after expiry and unregister = %+v", list)
	}
	if n := len(h.sm.st.expiries); n != 0 {
		t.Fatalf("expiry index holds %d sessions, want 0", n)
	}
	// A huge TTL saturates instead of overflowing.
	r = h.do(a, 9, Command{Op: OpRegisterSession, SessionID: "ages", TTLMillis: 1 << 62})
	if err := json.Unmarshal(r.Value, &out); err != nil || out.ExpiresAt != 1<<63-1 {
		t.Fatalf("huge ttl value = %s", r.Value)
	}
}

func TestACLInvitationsAndPermissions(t *testing.T) {
	a, b, c := testKey(1), testKey(2), testKey(3)
	h := newHarness(t, a)
	if r := h.apply(mustSign(t, c, 1, Command{Op: OpSetConfig, Key: "k"})); r.Code != CodeUnknownClient {
		t.Fatalf("uninvited client: %+v", r)
	}
	h.do(a, 1, grant(c, PermConfigWrite, EffectAllow))
	h.do(c, 1, Command{Op: OpSetConfig, Key: "k", Value: "1"})

	// Admin implies every permission unless that one is denied.
	h.do(a, 2, grant(b, PermAdmin, EffectAllow))
	h.do(b, 1, Command{Op: OpRegisterTool, ToolName: "t", Definition: json.RawMessage(`{"x":1}`)})
	h.do(a, 3, grant(b, PermToolWrite, EffectDeny))
	if r := h.apply(mustSign(t, b, 2, Command{Op: OpUnregisterTool, ToolName: "t"})); r.Code != CodePermissionDenied {
		t.Fatalf("denied tool.write despite admin: %+v", r)
	}

	// With two admins, the genesis admin can be revoked; the last cannot.
	r := h.do(b, 3, grant(a, PermAdmin, EffectRemove))
	var out Outcome
	if err := json.Unmarshal(r.Value, &out); err != nil || out.Previous != EffectAllow || out.Effect != EffectRemove {
		t.Fatalf("update_acl value = %s", r.Value)
	}
	if r := h.apply(mustSign(t, a, 4, Command{Op: OpSetConfig, Key: "k", Value: "2"})); r.Code != CodeUnknownClient {
		t.Fatalf("revoked genesis admin: %+v", r)
	}
	if r := h.apply(mustSign(t, b, 4, grant(b, PermAdmin, EffectDeny))); r.Code != CodeLastAdmin {
		t.Fatalf("denying the last admin: %+v", r)
	}
	if r := h.apply(mustSign(t, b, 5, grant(c, PermACLWrite, EffectRemove))); r.Code != CodeNotFound {
		t.Fatalf("removing a missing rule: %+v", r)
	}
	// Revoking every allow rule of c un-invites it.
	h.do(b, 6, grant(c, PermConfigWrite, EffectRemove))
	if r := h.apply(mustSign(t, c, 2, Command{Op: OpSetConfig, Key: "k", Value: "3"})); r.Code != CodeUnknownClient {
		t.Fatalf("un-invited client: %+v", r)
	}

	var acls []ACLInfo
	if err := json.Unmarshal(h.query(QueryACLs, ""), &acls); err != nil {
		t.Fatal(err)
	}
	if len(acls) != 1 || acls[0].Subject != FormatKey(pubOf(b)) || len(acls[0].Rules) != 2 ||
		acls[0].Rules[0] != (ACLRule{PermAdmin, EffectAllow}) || acls[0].Rules[1] != (ACLRule{PermToolWrite, EffectDeny}) {
		t.Fatalf("acls = %+v", acls)
	}
	var info ClientInfo
	if err := json.Unmarshal(h.query(QueryClient, FormatKey(pubOf(c))), &info); err != nil || info.Known || info.HighestSeq != 1 {
		t.Fatalf("client c = %+v, %v", info, err)
	}
}

func TestToolsResourcesConfigAndQueries(t *testing.T) {
	a := testKey(1)
	h := newHarness(t, a)
	seq := uint64(0)
	do := func(c Command) Outcome {
		t.Helper()
		seq++
		var out Outcome
		if err := json.Unmarshal(h.do(a, seq, c).Value, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := do(Command{Op: OpRegisterTool, ToolName: "b", Definition: json.RawMessage(`{ "v": 1 }`)}); out.Replaced {
		t.Fatal("first registration reported replaced")
	}
	if out := do(Command{Op: OpRegisterTool, ToolName: "b", Definition: json.RawMessage(`{"v":2}`)}); !out.Replaced {
		t.Fatal("second registration did not report replaced")
	}
	do(Command{Op: OpRegisterTool, ToolName: "a", Definition: json.RawMessage(`{}`)})
	if got := string(h.query(QueryTools, "ignored")); got != `[{"tool_name":"a","definition":{}},{"tool_name":"b","definition":{"v":2}}]` {
		t.Fatalf("tools = %s", got)
	}
	do(Command{Op: OpUnregisterTool, ToolName: "a"})
	if _, err := h.sm.Query(Query{Kind: QueryTool, Key: "a"}); !isCode(err, CodeNotFound) {
		t.Fatalf("unregistered tool query: %v", err)
	}

	do(Command{Op: OpSubscribeResource, ResourceURI: "r", Subscriber: "y"})
	if out := do(Command{Op: OpSubscribeResource, ResourceURI: "r", Subscriber: "x"}); out.AlreadySubscribed {
		t.Fatal("new subscription reported already subscribed")
	}
	before := h.domainHash()
	if out := do(Command{Op: OpSubscribeResource, ResourceURI: "r", Subscriber: "x"}); !out.AlreadySubscribed {
		t.Fatal("repeated subscription not reported")
	}
	if h.domainHash() != before {
		t.Fatal("a repeated subscription changed the content")
	}
	if got := string(h.query(QueryResource, "r")); got != `{"resource_uri":"r","subscribers":["x","y"]}` {
		t.Fatalf("resource = %s", got)
	}
	do(Command{Op: OpUnsubscribeResource, ResourceURI: "r", Subscriber: "x"})
	do(Command{Op: OpUnsubscribeResource, ResourceURI: "r", Subscriber: "y"})
	if got := string(h.query(QueryResources, "")); got != `[]` {
		t.Fatalf("resources after the last unsubscribe = %s", got)
	}

	do(Command{Op: OpSetConfig, Key: "z", Value: "1"})
	if out := do(Command{Op: OpSetConfig, Key: "z", Value: ""}); !out.Replaced {
		t.Fatal("overwrite not reported")
	}
	do(Command{Op: OpSetConfig, Key: "m", Value: "2"})
	if got := string(h.query(QueryConfigs, "")); got != `[{"key":"m","value":"2"},{"key":"z","value":""}]` {
		t.Fatalf("configs = %s", got)
	}
	do(Command{Op: OpDeleteConfig, Key: "m"})
	if got := string(h.query(QueryConfig, "z")); got != `{"key":"z","value":""}` {
		t.Fatalf("config z = %s", got)
	}

	for _, q := range []Query{
		{Kind: "bogus"}, {Kind: QuerySession}, {Kind: QueryTool}, {Kind: QueryResource},
		{Kind: QueryACL}, {Kind: QueryACL, Key: "short"}, {Kind: QueryConfig}, {Kind: QueryClient, Key: "x"},
	} {
		if _, err := h.sm.Query(q); !isCode(err, CodeMalformed) {
			t.Errorf("Query(%+v) = %v, want malformed", q, err)
		}
	}
	for _, q := range []Query{
		{Kind: QuerySession, Key: "x"}, {Kind: QueryResource, Key: "x"}, {Kind: QueryConfig, Key: "m"},
		{Kind: QueryACL, Key: FormatKey(pubOf(testKey(9)))},
	} {
		if _, err := h.sm.Query(q); !isCode(err, CodeNotFound) {
			t.Errorf("Query(%+v) = %v, want not_found", q, err)
		}
	}
}

func isCode(err error, c Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == c
}

// buildState applies a mix of commands so that every part of the state is
// populated.
func buildState(t testing.TB) *harness {
	a, b := testKey(1), testKey(2)
	h := newHarness(t, a)
	h.do(a, 1, grant(b, PermSessionWrite, EffectAllow))
	h.do(a, 2, grant(b, PermConfigWrite, EffectDeny))
	h.do(b, 1, Command{Op: OpRegisterSession, SessionID: "s", TTLMillis: 5000, Metadata: map[string]string{"k": "v"}})
	h.do(b, 2, Command{Op: OpRegisterSession, SessionID: "t"})
	h.apply(mustSign(t, b, 3, Command{Op: OpSetConfig, Key: "k"})) // denied, recorded
	h.do(a, 3, Command{Op: OpRegisterTool, ToolName: "tool", Definition: json.RawMessage(`{"a":[1,2]}`)})
	h.do(a, 4, Command{Op: OpSubscribeResource, ResourceURI: "u", Subscriber: "s"})
	h.do(a, 5, Command{Op: OpSetConfig, Key: "c", Value: "v"})
	return h
}

func TestSnapshotRestore(t *testing.T) {
	h := buildState(t)
	snap, err := h.sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if string(snap[:8]) != "TANDEMSM" {
		t.Fatalf("snapshot magic = %q", snap[:8])
	}
	idx, sum := h.sm.Hash()

	other := newHarness(t, testKey(5))
	if err := other.sm.Restore(snap); err != nil {
		t.Fatal(err)
	}
	gotIdx, gotSum := other.sm.Hash()
	if gotIdx != idx || gotSum != sum {
		t.Fatalf("after Restore: index %d hash %x, want %d %x", gotIdx, gotSum, idx, sum)
	}
	again, _ := other.sm.Snapshot()
	if !bytes.Equal(again, snap) {
		t.Fatal("Snapshot after Restore differs")
	}
	// The restored expiry index works.
	other.idx, other.time = idx, h.time+5_000_000_000
	if r := other.apply(mustSign(t, testKey(2), 4, Command{Op: OpRenewSession, SessionID: "s"})); r.Code != CodeNotFound {
		t.Fatalf("renew of a session that expired after restore: %+v", r)
	}
	// Equal content hashes equal regardless of the applied index: an
	// undecodable entry moves the index but not the content.
	other.sm.Apply(other.idx+50, []byte("junk"))
	i1, s1 := other.sm.Hash()
	other.sm.Apply(other.idx+60, nil)
	if i2, s2 := other.sm.Hash(); i1 == i2 || s1 != s2 {
		t.Fatalf("hash depends on the index: %d %x vs %d %x", i1, s1, i2, s2)
	}
	if gi, gs, err := SnapshotInfo(snap); err != nil || gi != idx || gs != sum {
		t.Fatalf("SnapshotInfo = %d %x %v", gi, gs, err)
	}
}

// TestSnapshotTamperingIsRejected flips every byte of a snapshot in turn:
// each copy must be rejected and leave the target state unchanged.
func TestSnapshotTamperingIsRejected(t *testing.T) {
	snap, err := buildState(t).sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	target := newHarness(t, testKey(5))
	target.do(testKey(5), 1, Command{Op: OpSetConfig, Key: "x", Value: "y"})
	idx, sum := target.sm.Hash()
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x01
		err := target.sm.Restore(bad)
		if !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("flipping byte %d: Restore = %v, want ErrBadSnapshot", i, err)
		}
		if gi, gs := target.sm.Hash(); gi != idx || gs != sum {
			t.Fatalf("flipping byte %d changed the state", i)
		}
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": snap[:len(snap)-1],
		"trailing":  append(bytes.Clone(snap), 0),
		"header":    snap[:snapshotHeaderLen],
	} {
		if err := target.sm.Restore(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: Restore = %v", name, err)
		}
	}
	// A snapshot whose hash was recomputed over altered content is still
	// rejected when the content is not canonical.
	if err := target.sm.Restore(resealed(snap, func(body []byte) []byte { return append(body, 0) })); err == nil ||
		!strings.Contains(err.Error(), "after the end") {
		t.Fatalf("resealed snapshot with trailing bytes: %v", err)
	}
}

// resealed rewrites the body of a snapshot and fixes up its hash.
func resealed(snap []byte, f func([]byte) []byte) []byte {
	body := f(bytes.Clone(snap[snapshotHeaderLen : len(snap)-32]))
	out := bytes.Clone(snap[:snapshotHeaderLen-32])
	sum := sha256Sum(body)
	out = append(out, sum[:]...)
	out = append(out, body...)
	check := sha256Sum(out)
	return append(out, check[:]...)
}

func TestConcurrentUse(t *testing.T) {
	a := testKey(1)
	h := newHarness(t, a)
	envs := make([][]byte, 200)
	for i := range envs {
		envs[i] = entryBytes(t, int64(i), mustSign(t, a, uint64(i+1), Command{Op: OpSetConfig, Key: fmt.Sprint(i % 7), Value: fmt.Sprint(i)}))
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				h.sm.Hash()
				if _, err := h.sm.Query(Query{Kind: QueryConfigs}); err != nil {
					t.Error(err)
					return
				}
				if _, err := h.sm.Precheck(mustSign(t, a, 500, Command{Op: OpDeleteConfig, Key: "1"})); err != nil {
					t.Error(err)
					return
				}
				if _, err := h.sm.Snapshot(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i, e := range envs {
		if r := h.sm.Apply(uint64(i+1), e); r.Code != CodeOK {
			t.Errorf("Apply %d: %+v", i, r)
		}
	}
	close(stop)
	wg.Wait()
	if h.sm.AppliedIndex() != 200 {
		t.Fatalf("AppliedIndex = %d", h.sm.AppliedIndex())
	}
}
