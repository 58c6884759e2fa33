package smr

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// TestRestoreEntry: an admin of the current state restores a snapshot of
// another history through the log; the applied index keeps moving forwards
// and the content (genesis included) becomes the snapshot's.
func TestRestoreEntry(t *testing.T) {
	src := buildState(t) // admin testKey(1), window default
	snap := mustSnapshot(t, src.sm)
	snapIdx, _ := src.sm.Hash()

	admin, member := testKey(5), testKey(6)
	h := newHarness(t, admin)
	h.idx = 100 // beyond the snapshot's index
	h.do(admin, 1, grant(member, PermConfigWrite, EffectAllow))
	h.do(admin, 2, Command{Op: OpSetConfig, Key: "mine", Value: "1"})

	r := mustSignRestore(t, admin, snap)
	if err := h.sm.PrecheckRestore(r); err != nil {
		t.Fatalf("PrecheckRestore = %v", err)
	}
	res := h.sm.Apply(h.idx+1, restoreBytes(t, 7, r))
	h.idx++
	if res.Code != CodeOK || res.Index != h.idx || res.Duplicate {
		t.Fatalf("Apply(restore) = %+v", res)
	}
	var out RestoreOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil {
		t.Fatal(err)
	}
	// The content is the snapshot's; the state also remembers this restore
	// (so it cannot apply twice), so its hash is the snapshot's content
	// with that time, which the result reports.
	want := *src.sm.st
	want.lastRestore = r.Time
	wantSum := want.hash()
	if out.RestoredFromIndex != snapIdx || out.StateHash != hex.EncodeToString(wantSum[:]) {
		t.Fatalf("restore value = %s, want index %d hash %x", res.Value, snapIdx, wantSum)
	}
	idx, sum := h.sm.Hash()
	if idx != h.idx || sum != wantSum || sum != h.sm.st.hash() {
		t.Fatalf("after restore: index %d hash %x, want %d %x", idx, sum, h.idx, wantSum)
	}
	if _, err := h.sm.Query(Query{Kind: QueryConfig, Key: "mine"}); !isCode(err, CodeNotFound) {
		t.Fatalf("content from before the restore survived: %v", err)
	}
	// The genesis and the ACL are the snapshot's: the old admin is gone and
	// the snapshot's admin works, continuing its own seqs.
	if r := h.apply(mustSign(t, admin, 3, Command{Op: OpSetConfig, Key: "x"})); r.Code != CodeUnknownClient {
		t.Fatalf("old admin after restore = %+v", r)
	}
	h.do(testKey(1), 6, Command{Op: OpSetConfig, Key: "after", Value: "restore"})
	if r := h.sm.Apply(h.idx, restoreBytes(t, 7, r)); r.Code != CodeMalformed || !strings.Contains(r.Message, "not after") {
		t.Fatalf("re-applying at an old index = %+v", r)
	}
}

func TestRestoreEntryRejections(t *testing.T) {
	src := buildState(t)
	snap := mustSnapshot(t, src.sm)
	admin, member, stranger, deniedAdmin := testKey(5), testKey(6), testKey(7), testKey(8)

	cases := []struct {
		name    string
		restore func() *Restore
		code    Code
		mention string
	}{
		{"bad signature", func() *Restore {
			r := mustSignRestore(t, admin, snap)
			r.Sig[3] ^= 1
			return r
		}, CodeBadSignature, "does not verify"},
		{"signed for another uri", func() *Restore {
			r := mustSignRestore(t, admin, snap)
			r.RequestURI = "/v1/admin/other"
			return r
		}, CodeBadSignature, "does not verify"},
		{"other snapshot than signed", func() *Restore {
			r := mustSignRestore(t, admin, snap)
			r.Snapshot = mustSnapshot(t, newHarness(t, admin).sm)
			return r
		}, CodeBadSignature, "does not verify"},
		{"unknown admin", func() *Restore { return mustSignRestore(t, stranger, snap) }, CodeUnknownClient, "not invited"},
		{"admin of the snapshot only", func() *Restore { return mustSignRestore(t, testKey(1), snap) }, CodeUnknownClient, "not invited"},
		{"not an admin", func() *Restore { return mustSignRestore(t, member, snap) }, CodePermissionDenied, "permission admin"},
		{"admin denied", func() *Restore { return mustSignRestore(t, deniedAdmin, snap) }, CodePermissionDenied, "permission admin"},
		{"corrupt snapshot", func() *Restore {
			bad := bytes.Clone(snap)
			bad[len(bad)/2] ^= 1
			return mustSignRestore(t, admin, bad)
		}, CodeMalformed, "checksum mismatch"},
		{"not a snapshot", func() *Restore { return mustSignRestore(t, admin, []byte(`{"id":"node2"}`)) }, CodeMalformed, "shorter than"},
		{"uninitialized snapshot", func() *Restore {
			return mustSignRestore(t, admin, mustSnapshot(t, NewUninitialized()))
		}, CodeMalformed, "uninitialized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, admin, deniedAdmin)
			h.do(admin, 1, grant(member, PermConfigWrite, EffectAllow))
			h.do(admin, 2, grant(deniedAdmin, PermAdmin, EffectDeny))
			h.do(admin, 3, grant(deniedAdmin, PermToolWrite, EffectAllow)) // still invited
			h.do(admin, 4, Command{Op: OpSetConfig, Key: "mine", Value: "1"})
			_, before := h.sm.Hash()
			r := tc.restore()
			if err := h.sm.PrecheckRestore(r); !isCode(err, tc.code) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("PrecheckRestore = %v, want %s mentioning %q", err, tc.code, tc.mention)
			}
			res := h.sm.Apply(h.idx+1, restoreBytes(t, 0, r))
			h.idx++
			if res.Code != tc.code || !strings.Contains(res.Message, tc.mention) || res.Value != nil {
				t.Fatalf("Apply = %+v, want %s mentioning %q", res, tc.code, tc.mention)
			}
			if idx, after := h.sm.Hash(); after != before || idx != h.idx {
				t.Fatalf("a rejected restore changed the state (index %d, want %d)", idx, h.idx)
			}
		})
	}
	if err := newHarness(t, admin).sm.PrecheckRestore(nil); !isCode(err, CodeMalformed) {
		t.Fatalf("PrecheckRestore(nil) = %v", err)
	}
}

// TestRetryOfRevokedClient: a client that executed a seq and was then
// revoked still gets that seq's stored result on a retry, from Apply and
// from Precheck; anything else from it is unknown_client.
func TestRetryOfRevokedClient(t *testing.T) {
	a, c := testKey(1), testKey(2)
	h := newHarness(t, a)
	h.do(a, 1, grant(c, PermConfigWrite, EffectAllow))
	env := mustSign(t, c, 1, Command{Op: OpSetConfig, Key: "k", Value: "v"})
	first := h.apply(env)
	if first.Code != CodeOK {
		t.Fatalf("first execution = %+v", first)
	}
	denied := mustSign(t, c, 2, Command{Op: OpDeleteConfig, Key: "k"})
	h.do(a, 2, grant(c, PermConfigWrite, EffectDeny)) // c keeps no allow rule: un-invited
	before := h.hash()

	want := first
	want.Duplicate = true
	if r := h.apply(env); !equalResult(r, want) {
		t.Fatalf("retry after revocation = %+v, want the stored %+v", r, want)
	}
	dup, err := h.sm.Precheck(env)
	if err != nil || dup == nil || !equalResult(*dup, want) {
		t.Fatalf("Precheck of the retry = %+v, %v; want the stored result", dup, err)
	}
	if h.hash() != before {
		t.Fatal("a retry changed the state")
	}
	// Not a retry: a new seq, or the same seq with another body.
	conflict := mustSign(t, c, 1, Command{Op: OpSetConfig, Key: "k", Value: "other"})
	for name, e := range map[string]*Envelope{"new seq": denied, "other body": conflict} {
		if r := h.apply(e); r.Code != CodeUnknownClient {
			t.Errorf("%s: Apply = %+v, want unknown_client", name, r)
		}
		if _, err := h.sm.Precheck(e); !isCode(err, CodeUnknownClient) {
			t.Errorf("%s: Precheck = %v, want unknown_client", name, err)
		}
	}
	// A retry with a broken signature is still refused.
	forged := *env
	forged.Sig = bytes.Clone(env.Sig)
	forged.Sig[0] ^= 1
	if r := h.apply(&forged); r.Code != CodeBadSignature {
		t.Fatalf("forged retry = %+v", r)
	}
	// A client that only lost the permission (still invited) gets its stored
	// result too.
	h.do(a, 3, grant(c, PermSessionWrite, EffectAllow))
	if r := h.apply(env); !equalResult(r, want) {
		t.Fatalf("retry of a re-invited client without the permission = %+v", r)
	}
}

func equalResult(a, b Result) bool {
	return a.Index == b.Index && a.Seq == b.Seq && a.Code == b.Code && a.Message == b.Message &&
		bytes.Equal(a.Value, b.Value) && a.Duplicate == b.Duplicate
}

// TestRestoreReplayOutsideWindow: a captured restore proposed again later
// than RestoreWindow after it was signed is refused at apply time on every
// replica (deterministically, from the entry's time), and changes nothing.
func TestRestoreReplayOutsideWindow(t *testing.T) {
	src := buildState(t)
	snap := mustSnapshot(t, src.sm)
	admin := testKey(5)
	h := newHarness(t, admin)
	h.idx = 100
	h.do(admin, 1, Command{Op: OpSetConfig, Key: "mine", Value: "1"})
	r := mustSignRestore(t, admin, snap)
	_, before := h.sm.Hash()
	for _, late := range []int64{RestoreWindow + 1, -RestoreWindow - 1} {
		res := h.sm.Apply(h.idx+1, restoreBytes(t, late*1e9, r))
		h.idx++
		if res.Code != CodeBadSignature {
			t.Fatalf("restore %ds off its signing time: %+v, want bad_signature", late, res)
		}
		if _, after := h.sm.Hash(); after != before {
			t.Fatalf("a refused restore changed the state")
		}
	}
}

// TestRestoreAppliesOnce: the same signed restore ordered twice (a faulty
// replica re-wrapping it, or a forwarded copy committed again) is refused
// the second time, even with a fresh entry time, and changes nothing.
func TestRestoreAppliesOnce(t *testing.T) {
	src := buildState(t)
	snap := mustSnapshot(t, src.sm)
	admin := testKey(1) // an admin in the snapshot too, so the second restore passes the ACL check
	h := newHarness(t, admin)
	h.idx = 100
	h.do(admin, 1, Command{Op: OpSetConfig, Key: "mine", Value: "1"})
	r := mustSignRestore(t, admin, snap)
	if res := h.sm.Apply(h.idx+1, restoreBytes(t, 1e9, r)); res.Code != CodeOK {
		t.Fatalf("first restore: %+v", res)
	}
	h.idx++
	_, before := h.sm.Hash()
	res := h.sm.Apply(h.idx+1, restoreBytes(t, 2e9, r))
	h.idx++
	if res.Code != CodeSeqConflict {
		t.Fatalf("second application of the same restore: %+v, want seq_conflict", res)
	}
	if _, after := h.sm.Hash(); after != before {
		t.Fatal("a refused restore changed the state")
	}
}
