package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeCommand: decoding never panics; a rejection's message is
// printable ASCII from this package's templates; whatever decodes re-encodes
// to bytes that decode to the same command, and that encoding is a fixed
// point.
func FuzzDecodeCommand(f *testing.F) {
	for _, seed := range []string{
		`{"op":"register_session","session_id":"s1","metadata":{"a":"1"},"ttl_ms":1500}`,
		`{"op":"register_tool","tool_name":"grep","definition":{"x":[1,"<&>"]}}`,
		`{"op":"update_acl","subject":"` + testSubject + `","permission":"admin","effect":"allow"}`,
		`{"op":"set_config","key":"k","value":"v"}`,
		`{"op":"subscribe_resource","resource_uri":"u","subscriber":"s"}`,
		`{"op":"delete_config","key":"k"} `,
		`{"op":"nope"}`,
		`{"op":"register_session","session_id":"\u0378\u00e9","ttl_ms":1e3}`,
		`{"op":"update_acl","subject":"a+b/","permission":"admin","effect":"allow"}`,
		`{"OP":"set_config","key":"k"}`,
		`{"op":"create_dataset","dataset":"d","cells":4,"cell_size":8,"step_limit":3,"max_agent_seqs":100,"agents":["` + testSubject + `"]}`,
		`{"op":"invite_agent","dataset":"d","subject":"` + testSubject + `","role":"admin"}`,
		`{"op":"revoke_agent","dataset":"d","subject":"` + testSubject + `"}`,
		`{"op":"sync_dataset","dataset":"d","snapshot":"AQAAAAAAAA=="}`,
		`{"op":"create_dataset","dataset":"d","cells":65536,"cell_size":4096}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == CodeOK || e.Message == "" {
				t.Fatalf("DecodeCommand error %v is not a coded *Error", err)
			}
			checkMessage(t, "DecodeCommand", e.Message)
			return
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("EncodeCommand of a decoded command %+v: %v", c, err)
		}
		back, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("decode(encode(x)) failed for %s: %v", enc, err)
		}
		if !reflect.DeepEqual(normalize(withoutDefinition(back)), normalize(withoutDefinition(c))) || !sameDefinition(back.Definition, c.Definition) {
			t.Fatalf("decode(encode(x)) = %+v, want %+v", back, c)
		}
		enc2, err := EncodeCommand(back)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point: %s vs %s (%v)", enc, enc2, err)
		}
	})
}

// The definition is re-encoded (HTML-escaped) by encoding/json, so compare it
// apart from the rest.
func withoutDefinition(c Command) Command {
	c.Definition = nil
	return c
}

func sameDefinition(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// FuzzEntryUnmarshal: decoding never panics, and a decoded entry encodes to
// exactly the input (the binary form is canonical), for every kind. Apply of
// the bytes never panics either, on an initialized and an uninitialized
// machine, and its messages are printable ASCII from this package's
// templates.
func FuzzEntryUnmarshal(f *testing.F) {
	env := mustSign(f, testKey(1), 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	good := entryBytes(f, 123, env)
	f.Add(good)
	f.Add(good[:20])
	f.Add(append([]byte{2}, good[1:]...))
	f.Add([]byte{})
	gen := genesisBytes(f, 5, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(testKey(1)), pubOf(testKey(2))}, ResultWindow: 3})
	f.Add(gen)
	f.Add(gen[:len(gen)-3])
	batch := batchBytes(f, 9, env, mustSign(f, testKey(2), 4, Command{Op: OpDeleteConfig, Key: "k"}))
	f.Add(batch)
	f.Add(batch[:len(batch)-5])
	snap, err := buildState(f).sm.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(restoreBytes(f, 7, mustSignRestore(f, testKey(1), snap)))
	f.Add(restoreBytes(f, 7, mustSignRestore(f, testKey(1), snap[:100])))
	sm := mustNew(f, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(testKey(1))}})
	var idx uint64
	f.Fuzz(func(t *testing.T, b []byte) {
		idx++
		if r := sm.Apply(idx, b); r.Code != CodeOK {
			checkMessage(t, "Apply", r.Message)
		}
		if r := NewUninitialized().Apply(1, b); r.Code != CodeOK {
			checkMessage(t, "Apply (uninitialized)", r.Message)
		}
		var ent Entry
		if err := ent.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := ent.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a decoded entry: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the bytes:\n%x\n%x", b, again)
		}
	})
}

// FuzzRestore: Restore never panics; a rejected snapshot leaves the state
// unchanged; an accepted one is reproduced exactly by Snapshot.
func FuzzRestore(f *testing.F) {
	snap, err := buildState(f).sm.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snap)
	f.Add(snap[:snapshotHeaderLen])
	f.Add(resealed(snap, func(b []byte) []byte { return b[:len(b)-4] }))
	f.Add(resealed(snap, func(b []byte) []byte { b[len(b)-1] ^= 1; return b }))
	f.Add([]byte("TANDEMSM"))
	f.Add(datasetStateSnapshot(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		sm := mustNew(t, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(testKey(5))}})
		idx0, sum0 := sm.Hash()
		if err := sm.Restore(b); err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore error %v does not wrap ErrBadSnapshot", err)
			}
			if idx, sum := sm.Hash(); idx != idx0 || sum != sum0 {
				t.Fatal("a rejected snapshot changed the state")
			}
			return
		}
		again, err := sm.Snapshot()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("Snapshot after Restore differs from the input (%v)", err)
		}
	})
}

// FuzzScanFields: scanFields (which walks valid JSON by scanValidObject)
// gives exactly what encoding/json's tokenizer walk gives, for any bytes:
// the same raw values, fields and error message.
func FuzzScanFields(f *testing.F) {
	for _, seed := range []string{
		`{"op":"set_config","key":"k","value":"v"}`,
		` { "op" : "register_session" , "session_id":"s\"1}" ,"metadata":{"a":"1","b":"}"},"ttl_ms":15e2 } `,
		`{"op":"register_tool","tool_name":"grep","definition":{"x":[1,"<&>",{"y":[]}],"z":null}}`,
		`{"\u006fp":"set_config","key":"k"}`,
		`{"op":"set_config","op":"set_config"}`,
		`{"op":null}`,
		`{"metadata":{"a":"1","a":"2"}}`,
		`{"OP":"x"}`,
		`{}`,
		`[1]`,
		`"op"`,
		`{"op":"x"} {}`,
		`{"op":`,
		`{"op":"x",}`,
		`{"cells":-0.5e+7,"agents":["a","b"],"ttl_ms":true}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		raws, present, err := scanFields(b)
		wantRaws, wantPresent, wantErr := scanFieldsTokens(b)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("%q: error %v, the tokenizer's %v", b, err, wantErr)
		}
		if present != wantPresent || len(raws) != len(wantRaws) {
			t.Fatalf("%q: fields %b, the tokenizer's %b", b, present, wantPresent)
		}
		for i := range raws {
			if !bytes.Equal(raws[i], wantRaws[i]) {
				t.Fatalf("%q: field %d is %q, the tokenizer's %q", b, i, raws[i], wantRaws[i])
			}
		}
	})
}
