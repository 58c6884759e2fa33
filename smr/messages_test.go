package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// libraryPhrases are fragments of encoding/json, encoding/base64, io and
// strconv error texts. None may reach a Result: Results are hashed once
// stored, and those texts are not guaranteed stable across Go releases.
// Each has a space or a colon, so that no hex key in a message can
// match one by chance.
var libraryPhrases = []string{
	"invalid character", "json:", "unexpected end", "looking for beginning", "cannot unmarshal",
	"Go value", "Go struct", "illegal base64", "unexpected EOF", "strconv.", "parsing ", "syntax error",
}

// checkMessage fails unless msg is non-empty printable ASCII without
// library text.
func checkMessage(t *testing.T, what, msg string) {
	t.Helper()
	if msg == "" {
		t.Errorf("%s: empty message", what)
	}
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e {
			t.Errorf("%s: message has byte %#x at %d (not printable ASCII): %q", what, c, i, msg)
			break
		}
	}
	for _, p := range libraryPhrases {
		if strings.Contains(msg, p) {
			t.Errorf("%s: message contains library text %q: %s", what, p, msg)
		}
	}
}

// TestApplyMessagesAreOwnTemplates applies malformed commands, entries,
// genesis and restores, and checks every Result message.
func TestApplyMessagesAreOwnTemplates(t *testing.T) {
	a := testKey(1)
	h := newHarness(t, a)
	commands := []string{
		``, `nul`, `{`, `{,}`, `{"op" "x"}`, `{"op":"set_config","key":`, `{"op":"set_config","key":"k"`,
		`{"op":"set_config","key":tru}`, `{"op":"set_config","key":"k"}}`, `{"op":"set_config","key":"k"} x`,
		`[1,2]`, `"str"`, `{"op":5}`, `{"op":"set_config","key":["k"]}`,
		`{"op":"register_session","session_id":"s","ttl_ms":"5"}`,
		`{"op":"register_session","session_id":"s","ttl_ms":1.5}`,
		`{"op":"register_session","session_id":"s","ttl_ms":1e400}`,
		`{"op":"register_session","session_id":"s","ttl_ms":99999999999999999999}`,
		`{"op":"register_session","session_id":"s","metadata":{"a":1}}`,
		`{"op":"register_session","session_id":"s","metadata":[1]}`,
		`{"op":"register_session","session_id":"s","metadata":{"a":"1","a":"2"}}`,
		`{"op":"register_tool","tool_name":"t","definition":[1]}`,
		`{"op":"register_tool","tool_name":"t","definition":{"a":}}`,
		`{"op":"update_acl","subject":"a+b/","permission":"admin","effect":"allow"}`,
		`{"op":"update_acl","subject":"AAAA=","permission":"admin","effect":"allow"}`,
		`{"op":"update_acl","subject":"AAAA","permission":"admin","effect":"allow"}`,
		`{"op":"update_acl","subject":"` + testSubject + `","permission":"r\u00f6ot","effect":"allow"}`,
		"{\"op\":\"set_config\",\"key\":\"\xff\"}",
		`{"op\u0085":1}`,
		`{"op":"format\u2028disk"}`,
		`{"op":"register_session","session_id":"a\u0007"}`,
		`{"op":"unregister_session","session_id":"\u0378\u00e9\ud83d\ude00"}`,
		`{"op":"unregister_tool","tool_name":"` + strings.Repeat("\u0378", 40) + `"}`,
		`{"op":"delete_config","key":"\u200b"}`,
	}
	for i, c := range commands {
		r := h.apply(signRaw(a, uint64(i+1), []byte(c)))
		if r.Code == CodeOK {
			t.Fatalf("command %s succeeded", c)
		}
		checkMessage(t, "command "+c, r.Message)
	}

	snap := mustSnapshot(t, buildState(t).sm)
	corrupt := bytes.Clone(snap)
	corrupt[len(corrupt)/2] ^= 1
	badMagic := bytes.Clone(snap)
	copy(badMagic, "\xff\x00\u0378x")
	entries := map[string][]byte{
		"empty entry":      nil,
		"v3 entry":         {3, 0},
		"v2 kind 200":      append([]byte{2, 200}, make([]byte, 8)...),
		"short envelope":   append([]byte{1}, make([]byte, 20)...),
		"genesis empty":    genesisBytes(t, 0, Genesis{}),
		"restore corrupt":  restoreBytes(t, 0, mustSignRestore(t, a, corrupt)),
		"restore magic":    restoreBytes(t, 0, mustSignRestore(t, a, badMagic)),
		"restore junk":     restoreBytes(t, 0, mustSignRestore(t, a, []byte("{\"x\":\"\xff\"}"))),
		"restore stranger": restoreBytes(t, 0, mustSignRestore(t, testKey(3), snap)),
		"restore resealed": restoreBytes(t, 0, mustSignRestore(t, a, resealed(snap, func(b []byte) []byte {
			return append(b[:len(b)-8], "\xff\xfe\u0378xxxx"...)
		}))),
	}
	for name, b := range entries {
		h.idx++
		r := h.sm.Apply(h.idx, b)
		if r.Code == CodeOK {
			t.Fatalf("%s: succeeded", name)
		}
		checkMessage(t, name, r.Message)
	}
	for name, g := range map[string]Genesis{
		"genesis without admins":  {},
		"genesis duplicate admin": {AdminKeys: []ed25519.PublicKey{pubOf(a), pubOf(a)}},
		"genesis huge window":     {AdminKeys: []ed25519.PublicKey{pubOf(a)}, ResultWindow: 1 << 30},
	} {
		r := NewUninitialized().Apply(1, genesisBytes(t, 0, g))
		if r.Code != CodeMalformed {
			t.Fatalf("%s: %+v", name, r)
		}
		checkMessage(t, name, r.Message)
	}
	// The stored results carry the same messages.
	h.sm.mu.RLock()
	defer h.sm.mu.RUnlock()
	for _, sr := range h.sm.st.clients[clientKey(pubOf(a))].results {
		checkMessage(t, fmt.Sprintf("stored result of seq %d", sr.res.Seq), sr.res.Message)
	}
}

// TestQueryAtReadsIndexAndValueTogether: entry i sets config "n" to i, so
// a consistent read returns a value equal to its index, even while entries
// are being applied.
func TestQueryAtReadsIndexAndValueTogether(t *testing.T) {
	a := testKey(1)
	h := newHarness(t, a)
	h.idx = 1
	h.do(a, 1, Command{Op: OpSetConfig, Key: "n", Value: "2"})
	entries := make([][]byte, 300)
	for i := range entries {
		idx := i + 3
		entries[i] = entryBytes(t, 0, mustSign(t, a, uint64(i+2), Command{Op: OpSetConfig, Key: "n", Value: fmt.Sprint(idx)}))
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				v, idx, err := h.sm.QueryAt(Query{Kind: QueryConfig, Key: "n"})
				if err != nil {
					t.Error(err)
					return
				}
				var e ConfigEntry
				if err := json.Unmarshal(v, &e); err != nil || e.Value != fmt.Sprint(idx) {
					t.Errorf("QueryAt = %s at index %d (%v)", v, idx, err)
					return
				}
			}
		})
	}
	for i, e := range entries {
		if r := h.sm.Apply(uint64(i+3), e); r.Code != CodeOK {
			t.Errorf("Apply %d: %+v", i+3, r)
		}
	}
	close(done)
	wg.Wait()
	if _, idx, err := h.sm.QueryAt(Query{Kind: "bogus"}); !isCode(err, CodeMalformed) || idx != 302 {
		t.Fatalf("QueryAt of a bad kind = index %d, %v", idx, err)
	}
}
