package smr

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var testSubject = FormatKey(pubOf(testKey(7)))

func TestDecodeCommandAcceptsEveryOp(t *testing.T) {
	cases := []struct {
		in   string
		want Command
	}{
		{`{"op":"register_session","session_id":"s1"}`, Command{Op: OpRegisterSession, SessionID: "s1"}},
		{`{"op":"register_session","session_id":"s1","metadata":{"a":"1","b":""},"ttl_ms":1500}`,
			Command{Op: OpRegisterSession, SessionID: "s1", Metadata: map[string]string{"a": "1", "b": ""}, TTLMillis: 1500}},
		{`{"op":"renew_session","session_id":"s1","ttl_ms":0}`, Command{Op: OpRenewSession, SessionID: "s1"}},
		{`{"op":"unregister_session","session_id":"s1"}`, Command{Op: OpUnregisterSession, SessionID: "s1"}},
		{` {"op":"register_tool","tool_name":"grep","definition": { "args" : [1, 2] }} `,
			Command{Op: OpRegisterTool, ToolName: "grep", Definition: json.RawMessage(`{"args":[1,2]}`)}},
		{`{"op":"unregister_tool","tool_name":"grep"}`, Command{Op: OpUnregisterTool, ToolName: "grep"}},
		{`{"op":"subscribe_resource","resource_uri":"file:///a","subscriber":"s1"}`,
			Command{Op: OpSubscribeResource, ResourceURI: "file:///a", Subscriber: "s1"}},
		{`{"op":"unsubscribe_resource","resource_uri":"file:///a","subscriber":"s1"}`,
			Command{Op: OpUnsubscribeResource, ResourceURI: "file:///a", Subscriber: "s1"}},
		{`{"op":"update_acl","subject":"` + testSubject + `","permission":"tool.write","effect":"deny"}`,
			Command{Op: OpUpdateACL, Subject: testSubject, Permission: PermToolWrite, Effect: EffectDeny}},
		{`{"op":"set_config","key":"k","value":"v"}`, Command{Op: OpSetConfig, Key: "k", Value: "v"}},
		{`{"op":"set_config","key":"k"}`, Command{Op: OpSetConfig, Key: "k"}},
		{`{"op":"delete_config","key":"ключ"}`, Command{Op: OpDeleteConfig, Key: "ключ"}},
	}
	for _, tc := range cases {
		got, err := DecodeCommand([]byte(tc.in))
		if err != nil {
			t.Errorf("DecodeCommand(%s): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeCommand(%s) = %+v, want %+v", tc.in, got, tc.want)
		}
		enc, err := EncodeCommand(got)
		if err != nil {
			t.Errorf("EncodeCommand(%+v): %v", got, err)
			continue
		}
		again, err := DecodeCommand(enc)
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(got)) {
			t.Errorf("round trip of %s via %s = %+v, %v", tc.in, enc, again, err)
		}
	}
}

// normalize maps the spellings that encode alike to one value.
func normalize(c Command) Command {
	if len(c.Metadata) == 0 {
		c.Metadata = nil
	}
	return c
}

func TestDecodeCommandRejects(t *testing.T) {
	long := strings.Repeat("x", MaxNameBytes+1)
	many := make([]string, MaxMetadataEntries+1)
	for i := range many {
		many[i] = `"k` + strings.Repeat("a", i) + `":"v"`
	}
	cases := []struct {
		name, in string
		code     Code
		mention  string
	}{
		{"empty", ``, CodeMalformed, "not valid JSON"},
		{"not an object", `["op"]`, CodeMalformed, "JSON object"},
		{"null", `null`, CodeMalformed, "JSON object"},
		{"trailing value", `{"op":"delete_config","key":"k"} {}`, CodeMalformed, "data after"},
		{"trailing garbage", `{"op":"delete_config","key":"k"}x`, CodeMalformed, ""},
		{"invalid utf8", "{\"op\":\"delete_config\",\"key\":\"\xff\"}", CodeMalformed, "UTF-8"},
		{"no op", `{"key":"k"}`, CodeMalformed, "no op"},
		{"empty op", `{"op":""}`, CodeMalformed, "no op"},
		{"unknown op", `{"op":"drop_tables"}`, CodeUnknownCommand, `"drop_tables"`},
		{"unknown field", `{"op":"delete_config","key":"k","extra":1}`, CodeMalformed, `"extra"`},
		{"differently cased field", `{"OP":"delete_config","key":"k"}`, CodeMalformed, `"OP"`},
		{"duplicate field", `{"op":"delete_config","key":"k","key":"j"}`, CodeMalformed, "more than once"},
		{"null field", `{"op":"delete_config","key":null}`, CodeMalformed, "key is null"},
		{"field of another op", `{"op":"delete_config","key":"k","session_id":"s"}`, CodeMalformed, "session_id is not used by op delete_config"},
		{"empty field of another op", `{"op":"delete_config","key":"k","ttl_ms":0}`, CodeMalformed, "ttl_ms is not used"},
		{"missing required", `{"op":"register_tool","tool_name":"t"}`, CodeMalformed, "requires field definition"},
		{"wrong type", `{"op":"register_session","session_id":"s","ttl_ms":"5"}`, CodeMalformed, "ttl_ms"},
		{"float ttl", `{"op":"register_session","session_id":"s","ttl_ms":1.5}`, CodeMalformed, "ttl_ms"},
		{"negative ttl", `{"op":"register_session","session_id":"s","ttl_ms":-1}`, CodeMalformed, "ttl_ms is -1"},
		{"empty id", `{"op":"register_session","session_id":""}`, CodeMalformed, "session_id is empty"},
		{"long id", `{"op":"register_session","session_id":"` + long + `"}`, CodeTooLarge, "session_id is 257 bytes"},
		{"control char", `{"op":"register_session","session_id":"a\u0007"}`, CodeMalformed, "control character"},
		{"too many metadata", `{"op":"register_session","session_id":"s","metadata":{` + strings.Join(many, ",") + `}}`, CodeTooLarge, "65 entries"},
		{"long metadata value", `{"op":"register_session","session_id":"s","metadata":{"k":"` + strings.Repeat("v", MaxMetadataValueBytes+1) + `"}}`, CodeTooLarge, "metadata value"},
		{"empty metadata key", `{"op":"register_session","session_id":"s","metadata":{"":"v"}}`, CodeMalformed, "metadata key is empty"},
		{"duplicate metadata key", `{"op":"register_session","session_id":"s","metadata":{"a":"1","a":"2"}}`, CodeMalformed, "more than once"},
		{"definition not object", `{"op":"register_tool","tool_name":"t","definition":[1]}`, CodeMalformed, "JSON object"},
		{"definition string", `{"op":"register_tool","tool_name":"t","definition":"{}"}`, CodeMalformed, "JSON object"},
		{"long config value", `{"op":"set_config","key":"k","value":"` + strings.Repeat("v", MaxConfigValueBytes+1) + `"}`, CodeTooLarge, "value is"},
		{"bad effect", `{"op":"update_acl","subject":"` + testSubject + `","permission":"admin","effect":"maybe"}`, CodeMalformed, "effect"},
		{"bad permission", `{"op":"update_acl","subject":"` + testSubject + `","permission":"root","effect":"allow"}`, CodeMalformed, "permission"},
		{"subject not hex", `{"op":"update_acl","subject":"` + strings.Repeat("zz", 32) + `","permission":"admin","effect":"allow"}`, CodeMalformed, "not lowercase hex"},
		{"subject upper-case hex", `{"op":"update_acl","subject":"` + strings.ToUpper(testSubject) + `","permission":"admin","effect":"allow"}`, CodeMalformed, "not lowercase hex"},
		{"subject short", `{"op":"update_acl","subject":"AAAA","permission":"admin","effect":"allow"}`, CodeMalformed, "has 4 characters"},
		{"subject with trailing byte", `{"op":"update_acl","subject":"` + testSubject + `0","permission":"admin","effect":"allow"}`, CodeMalformed, "has 65 characters"},
		{"subject base64url", `{"op":"update_acl","subject":"-mC8ORef4ygCXa87fD_EUxwqniUiRAOgCsvS_JHZ9aU","permission":"admin","effect":"allow"}`, CodeMalformed, "64 lowercase hex digits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeCommand([]byte(tc.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("DecodeCommand: err = %v, want *Error %s", err, tc.code)
			}
			if e.Code != tc.code || !strings.Contains(e.Message, tc.mention) {
				t.Fatalf("DecodeCommand: %v, want code %s mentioning %q", e, tc.code, tc.mention)
			}
		})
	}
}

func TestEncodeCommandValidates(t *testing.T) {
	cases := []struct {
		name string
		cmd  Command
		code Code
	}{
		{"no op", Command{Key: "k"}, CodeMalformed},
		{"unknown op", Command{Op: "nope"}, CodeUnknownCommand},
		{"missing field", Command{Op: OpDeleteConfig}, CodeMalformed},
		{"extra field", Command{Op: OpDeleteConfig, Key: "k", ToolName: "t"}, CodeMalformed},
		{"invalid utf8", Command{Op: OpDeleteConfig, Key: "\xff"}, CodeMalformed},
		{"definition invalid", Command{Op: OpRegisterTool, ToolName: "t", Definition: json.RawMessage(`{`)}, CodeMalformed},
	}
	for _, tc := range cases {
		_, err := EncodeCommand(tc.cmd)
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code {
			t.Errorf("%s: EncodeCommand(%+v) = %v, want code %s", tc.name, tc.cmd, err, tc.code)
		}
	}
	b, err := EncodeCommand(Command{Op: OpRegisterSession, SessionID: "s", TTLMillis: 10, Metadata: map[string]string{"b": "2", "a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"op":"register_session","session_id":"s","metadata":{"a":"1","b":"2"},"ttl_ms":10}`; string(b) != want {
		t.Fatalf("EncodeCommand = %s, want %s", b, want)
	}
}

func TestParseKey(t *testing.T) {
	pub := pubOf(testKey(1))
	got, err := ParseKey(FormatKey(pub))
	if err != nil || !got.Equal(pub) {
		t.Fatalf("ParseKey(FormatKey(k)) = %x, %v", got, err)
	}
	for _, bad := range []string{"", "!!", FormatKey(pub[:31]), FormatKey(append(pub, 0))} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// TestParseKeyOneSpelling: a key with line breaks inside or around it
// (which Go's base64 decoder skips) is refused: every key has exactly one
// accepted spelling.
func TestParseKeyOneSpelling(t *testing.T) {
	k := FormatKey(testKey(1).Public().(ed25519.PublicKey))
	if _, err := ParseKey(k); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{k + "\n", "\r" + k, k[:10] + "\n" + k[10:]} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted a non-canonical spelling", bad)
		}
	}
}
