package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestDatasetCreatePermissions(t *testing.T) {
	admin, creator, stranger, agent := testKey(1), testKey(2), testKey(3), testKey(4)
	h := newHarness(t, admin)
	create := Command{Op: OpCreateDataset, Dataset: "d", Cells: 4, CellSize: 8}

	h.do(admin, 1, grant(stranger, PermToolWrite, EffectAllow))
	if r := h.apply(mustSign(t, stranger, 1, create)); r.Code != CodePermissionDenied || !strings.Contains(r.Message, "dataset.create") {
		t.Fatalf("create without dataset.create: %+v", r)
	}
	h.do(admin, 2, grant(creator, PermDatasetCreate, EffectAllow))
	c := create
	c.Agents = []string{FormatKey(pubOf(agent))}
	r := h.do(creator, 1, c)
	var out Outcome
	if err := json.Unmarshal(r.Value, &out); err != nil || out.Dataset != "d" || out.Created != r.Index {
		t.Fatalf("create outcome %s (%v), index %d", r.Value, err, r.Index)
	}
	if r := h.apply(mustSign(t, admin, 3, create)); r.Code != CodeAlreadyExists {
		t.Fatalf("second create: %+v", r)
	}
	// admin implies dataset.create, unless denied.
	h.do(admin, 4, Command{Op: OpCreateDataset, Dataset: "e", Cells: 1, CellSize: 1})
	var info DatasetInfo
	if err := json.Unmarshal(h.query(QueryDataset, "d"), &info); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Admins, []string{FormatKey(pubOf(creator))}) || info.AgentCount != 1 || info.MaxAgentSeqs != DefaultMaxAgentSeqs || info.Cells != 4 || info.CellSize != 8 {
		t.Fatalf("info = %+v", info)
	}
	var list []DatasetInfo
	if err := json.Unmarshal(h.query(QueryDatasets, ""), &list); err != nil || len(list) != 2 || list[0].Name != "d" || list[1].Name != "e" || list[0].Agents != nil {
		t.Fatalf("datasets = %+v (%v)", list, err)
	}
	if _, err := h.sm.Query(Query{Kind: QueryDataset, Key: "nope"}); !isCode(err, CodeNotFound) {
		t.Fatalf("query of a missing dataset: %v", err)
	}
}

func TestDatasetCreateLimits(t *testing.T) {
	admin := testKey(1)
	h := newHarness(t, admin)
	seq := uint64(0)
	try := func(c Command) Result {
		seq++
		c.Op = OpCreateDataset
		b, _ := json.Marshal(c)
		return h.apply(signRaw(admin, seq, b))
	}
	for _, tc := range []struct {
		c    Command
		code Code
	}{
		{Command{Dataset: "a", Cells: 0, CellSize: 1}, CodeMalformed},
		{Command{Dataset: "a", Cells: MaxDatasetCells + 1, CellSize: 1}, CodeMalformed},
		{Command{Dataset: "a", Cells: 1, CellSize: MaxCellSize + 1}, CodeMalformed},
		{Command{Dataset: "a", Cells: MaxDatasetCells, CellSize: MaxCellSize}, CodeTooLarge},
		{Command{Dataset: "a", Cells: 1, CellSize: 1, MaxAgentSeqs: DefaultMaxAgentSeqs + 1}, CodeMalformed},
		{Command{Dataset: "a", Cells: 1, CellSize: 1, Agents: []string{"x"}}, CodeMalformed},
		{Command{Dataset: "a", Cells: 1, CellSize: 1, Agents: []string{FormatKey(pubOf(admin)), FormatKey(pubOf(admin))}}, CodeMalformed},
	} {
		if r := try(tc.c); r.Code != tc.code {
			t.Errorf("create %+v: %s %s, want %s", tc.c, r.Code, r.Message, tc.code)
		}
	}
	// The cluster-wide cap: four datasets of 16 MiB fill it.
	for i := range 4 {
		if r := try(Command{Dataset: string(rune('p' + i)), Cells: MaxDatasetCells, CellSize: MaxDatasetBytes / MaxDatasetCells}); r.Code != CodeOK {
			t.Fatalf("dataset %d: %+v", i, r)
		}
	}
	if r := try(Command{Dataset: "z", Cells: 1, CellSize: 1}); r.Code != CodeTooLarge || !strings.Contains(r.Message, "at most") {
		t.Fatalf("dataset over the cluster cap: %+v", r)
	}
}

func TestDatasetInviteRevoke(t *testing.T) {
	a, b, c := testKey(10), testKey(11), testKey(12)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 4, CellSize: 4}, a)
	invite := func(who ed25519.PrivateKey, role DatasetRole) Command {
		return Command{Op: OpInviteAgent, Dataset: "d", Subject: FormatKey(pubOf(who)), Role: role}
	}
	revoke := func(who ed25519.PrivateKey, role DatasetRole) Command {
		return Command{Op: OpRevokeAgent, Dataset: "d", Subject: FormatKey(pubOf(who)), Role: role}
	}

	// An agent is a known client, but only for syncs of its dataset.
	if r := f.submit(a, invite(b, "")); r.Code != CodePermissionDenied {
		t.Fatalf("agent inviting: %+v", r)
	}
	if r := f.submit(a, Command{Op: OpSetConfig, Key: "k"}); r.Code != CodePermissionDenied {
		t.Fatalf("agent writing config: %+v", r)
	}
	if r := f.submit(b, f.syncCmd(DatasetSnapshot{})); r.Code != CodeUnknownClient {
		t.Fatalf("stranger syncing: %+v", r)
	}
	if r := f.submit(a, Command{Op: OpSyncDataset, Dataset: "other", Snapshot: f.syncCmd(DatasetSnapshot{}).Snapshot}); r.Code != CodeNotFound {
		t.Fatalf("sync of a missing dataset: %+v", r)
	}

	// A dataset admin without any ACL rule invites and revokes.
	f.must(f.admin, invite(c, RoleAdmin))
	f.must(c, invite(b, ""))
	var out Outcome
	if err := json.Unmarshal(f.must(c, invite(b, RoleAgent)).Value, &out); err != nil || !out.Unchanged || out.Role != RoleAgent {
		t.Fatalf("second invite: %+v %v", out, err)
	}
	f.sync(b, &DatasetSnapshot{Statements: []SeqStatement{signedStatement(t, b, f.ref, 5)}})
	f.must(c, revoke(b, ""))
	if r := f.submit(c, revoke(b, "")); r.Code != CodeNotFound {
		t.Fatalf("revoking a revoked agent: %+v", r)
	}
	if r := f.submit(b, f.syncCmd(DatasetSnapshot{})); r.Code != CodeUnknownClient {
		t.Fatalf("revoked agent (no other membership) syncing: %+v", r)
	}
	// Re-inviting keeps the record: the signed maximum is still 5.
	f.must(f.admin, invite(b, ""))
	if ag := f.agent(b); !ag.Invited || ag.SignedMax != 5 {
		t.Fatalf("re-invited agent = %+v", ag)
	}
	f.must(f.admin, revoke(c, RoleAdmin))
	if r := f.submit(c, invite(a, "")); r.Code != CodeUnknownClient {
		t.Fatalf("former dataset admin inviting: %+v", r)
	}
	if r := f.submit(f.admin, revoke(c, RoleAdmin)); r.Code != CodeNotFound {
		t.Fatalf("revoking a missing admin: %+v", r)
	}
	// A global admin that is no admin of the dataset may invite, until
	// admin is denied to it.
	g := testKey(13)
	f.must(f.admin, grant(g, PermAdmin, EffectAllow))
	f.must(f.admin, grant(g, PermToolWrite, EffectAllow))
	f.must(g, invite(c, ""))
	f.must(f.admin, grant(g, PermAdmin, EffectDeny))
	if r := f.submit(g, revoke(c, "")); r.Code != CodePermissionDenied {
		t.Fatalf("denied admin revoking: %+v", r)
	}
}

func TestDatasetSyncMergeAndBudgets(t *testing.T) {
	a, b := testKey(10), testKey(11)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 4, CellSize: 4}, a, b)
	ref := f.ref

	out := f.sync(a, &DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, a, ref, 10)},
		Changes: []DatasetChange{
			signedChange(t, a, ref, 1, 0, 3, val(4, "a1")), // cost 3
			signedChange(t, a, ref, 2, 1, 1, val(4, "a2")), // cost 1
			signedChange(t, a, ref, 3, 0, 2, val(4, "zz")), // loses to (3, a1): nothing spent
		},
	})
	if !slices.Equal(out.Accepted, []int{0, 1}) || !slices.Equal(out.Lost, []int{2}) || len(out.Rejected) != 0 || out.Version != 2 {
		t.Fatalf("outcome = %+v", out)
	}
	if ag := f.agent(a); ag.SignedMax != 10 || ag.Spent != 4 || ag.Available != 6 || ag.LastSeq != 2 {
		t.Fatalf("agent a = %+v", ag)
	}
	// b relays its statement through a's sync? No: b syncs itself, and
	// ties on global seq are broken by value, whoever wrote them.
	out = f.sync(b, &DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, b, ref, 3)},
		Changes: []DatasetChange{
			signedChange(t, b, ref, 1, 0, 3, val(4, "a0")), // (3, a0) < (3, a1): lost
			signedChange(t, b, ref, 2, 1, 1, val(4, "b2")), // (1, b2) > (1, a2): wins at cost 0
			signedChange(t, b, ref, 3, 2, 3, val(4, "b3")), // cost 3 of 3
		},
	})
	if !slices.Equal(out.Accepted, []int{1, 2}) || !slices.Equal(out.Lost, []int{0}) {
		t.Fatalf("outcome = %+v", out)
	}
	cells := f.cells()
	want := []Cell{{3, val(4, "a1")}, {1, val(4, "b2")}, {3, val(4, "b3")}, {0, val(4, "")}}
	for i := range want {
		if CompareCells(cells[i], want[i]) != 0 {
			t.Fatalf("cell %d = %+v, want %+v", i, cells[i], want[i])
		}
	}
	info := f.info()
	if len(info.Values) != 3 || info.Values[2].Cell != 2 || info.Version != 4 || info.AgentCount != 2 {
		t.Fatalf("info = %+v", info)
	}
	// Σ global seqs = Σ spent: every raise was paid for exactly.
	if ag := f.agent(b); ag.Spent != 3 || ag.LastSeq != 3 {
		t.Fatalf("agent b = %+v", ag)
	}
}

// TestDatasetAttacks: each attack is rejected with its reason and leaves
// every dataset, the ACL and the rest of the content unchanged.
func TestDatasetAttacks(t *testing.T) {
	a, b, stranger := testKey(10), testKey(11), testKey(12)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 4, CellSize: 4, StepLimit: 200, MaxAgentSeqs: 1000}, a, b)
	ref := f.ref
	// Agent a has signed 100 local seqs, spent 5 on cell 0 and last used
	// local seq 2; b has signed 100 and spent nothing.
	f.sync(a, &DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, a, ref, 100), signedStatement(t, b, ref, 100)},
		Changes:    []DatasetChange{signedChange(t, a, ref, 2, 0, 5, val(4, "a"))},
	})
	accepted := signedChange(t, a, ref, 2, 0, 5, val(4, "a"))
	f.must(f.admin, Command{Op: OpInviteAgent, Dataset: "d", Subject: FormatKey(pubOf(testKey(13)))})
	f.must(f.admin, Command{Op: OpRevokeAgent, Dataset: "d", Subject: FormatKey(pubOf(testKey(13)))})

	forged := signedChange(t, a, ref, 1, 1, 1, val(4, "f"))
	forged.Agent = pubOf(b) // a signs, claims to be b
	forgedStmt := signedStatement(t, a, ref, 900)
	forgedStmt.Agent = pubOf(b)
	otherDataset := signedChange(t, a, DatasetRef{Name: "d", Created: ref.Created + 1}, 3, 1, 1, val(4, "x"))
	altered := signedChange(t, a, ref, 3, 1, 1, val(4, "x"))
	altered.GlobalSeq = 40

	cases := []struct {
		name     string
		snap     DatasetSnapshot
		reason   SyncRejected
		contains string
		stmt     bool // the rejection is of a statement
	}{
		{name: "maximal global seq", reason: RejectTooHigh, contains: "step limit",
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 3, 1, math.MaxUint64, val(4, "top"))}}},
		{name: "huge global seq within the step limit but beyond the budget", reason: RejectTooHigh, contains: "signed unspent",
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, b, ref, 1, 1, 1, val(4, "1")), signedChange(t, b, ref, 2, 2, 60, val(4, "2")), signedChange(t, b, ref, 3, 3, 60, val(4, "3"))}}},
		{name: "overspending", reason: RejectTooHigh, contains: "has 95 signed unspent",
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 3, 0, 5+96, val(4, "a"))}}},
		{name: "replayed change", reason: RejectReplayed, contains: "not above its last merged local seq 2",
			snap: DatasetSnapshot{Changes: []DatasetChange{accepted}}},
		{name: "old local seq on a new change", reason: RejectReplayed,
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 1, 2, 1, val(4, "new"))}}},
		{name: "local seq beyond the signed maximum", reason: RejectSeqNotSigned, contains: "signed maximum 100",
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 101, 2, 1, val(4, "new"))}}},
		{name: "forged change", reason: RejectBadSignature,
			snap: DatasetSnapshot{Changes: []DatasetChange{forged}}},
		{name: "altered change", reason: RejectBadSignature,
			snap: DatasetSnapshot{Changes: []DatasetChange{altered}}},
		{name: "change signed for another dataset", reason: RejectBadSignature,
			snap: DatasetSnapshot{Changes: []DatasetChange{otherDataset}}},
		{name: "forged statement", reason: RejectBadSignature, stmt: true,
			snap: DatasetSnapshot{Statements: []SeqStatement{forgedStmt}}},
		{name: "statement above the cap", reason: RejectAboveCap, stmt: true, contains: "cap of 1000",
			snap: DatasetSnapshot{Statements: []SeqStatement{signedStatement(t, a, ref, 1001)}}},
		{name: "cell out of range", reason: RejectCellOutOfRange, contains: "cells 0..3",
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 3, 4, 1, val(4, "x"))}}},
		{name: "cell far out of range", reason: RejectCellOutOfRange,
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 3, math.MaxUint32, 1, val(4, "x"))}}},
		{name: "oversized value", reason: RejectValueSize, contains: "exactly 4",
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 3, 1, 1, val(MaxCellSize, "x"))}}},
		{name: "short value", reason: RejectValueSize,
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, ref, 3, 1, 1, val(3, "x"))}}},
		{name: "uninvited agent relayed", reason: RejectNotInvited,
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, stranger, ref, 1, 1, 1, val(4, "x"))}}},
		{name: "uninvited agent's statement", reason: RejectNotInvited, stmt: true,
			snap: DatasetSnapshot{Statements: []SeqStatement{signedStatement(t, stranger, ref, 5)}}},
		{name: "revoked agent relayed", reason: RejectRevoked,
			snap: DatasetSnapshot{Changes: []DatasetChange{signedChange(t, testKey(13), ref, 1, 1, 1, val(4, "x"))}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			domain, datasets := f.h.domainHash(), datasetHash(f.h.sm)
			out := f.sync(a, &tc.snap)
			rej := out.Rejected
			if tc.stmt {
				rej = out.StatementsRejected
			}
			if len(out.Accepted) != 0 && tc.name != "huge global seq within the step limit but beyond the budget" {
				t.Fatalf("accepted %v: %+v", out.Accepted, out)
			}
			last := rej[len(rej)-1]
			if last.Reason != tc.reason || !strings.Contains(last.Message, tc.contains) {
				t.Fatalf("rejections = %+v, want the last %s containing %q", rej, tc.reason, tc.contains)
			}
			if tc.name == "huge global seq within the step limit but beyond the budget" {
				// The first two fit b's budget of 100 (1 + 60 = 61);
				// the third (another 60) does not.
				if !slices.Equal(out.Accepted, []int{0, 1}) || len(rej) != 1 || rej[0].Index != 2 {
					t.Fatalf("outcome = %+v", out)
				}
				return
			}
			if f.h.domainHash() != domain || datasetHash(f.h.sm) != datasets {
				t.Fatal("a rejected sync changed the state")
			}
		})
	}

	// A client that is not an agent of the dataset cannot sync at all.
	f.must(f.admin, grant(stranger, PermToolWrite, EffectAllow))
	domain := f.h.domainHash()
	if r := f.submit(stranger, f.syncCmd(DatasetSnapshot{Changes: []DatasetChange{signedChange(t, stranger, ref, 1, 1, 1, val(4, "x"))}})); r.Code != CodePermissionDenied || !strings.Contains(r.Message, "not an invited agent") {
		t.Fatalf("uninvited submitter: %+v", r)
	}
	if f.h.domainHash() != domain {
		t.Fatal("an uninvited sync changed the state")
	}
	// Precheck refuses it before it is proposed.
	env := mustSign(t, stranger, 99, f.syncCmd(DatasetSnapshot{}))
	if _, err := f.h.sm.Precheck(env); !isCode(err, CodePermissionDenied) {
		t.Fatalf("Precheck of an uninvited sync: %v", err)
	}
}

// TestDatasetRevokedAgentKeepsItsCells: values merged before a revocation
// stay; later changes of the agent, relayed by another, are rejected.
func TestDatasetRevokedAgentKeepsItsCells(t *testing.T) {
	a, b := testKey(10), testKey(11)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 2, CellSize: 2}, a, b)
	f.sync(a, &DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, a, f.ref, 10)},
		Changes:    []DatasetChange{signedChange(t, a, f.ref, 1, 0, 1, val(2, "a"))},
	})
	f.must(f.admin, Command{Op: OpRevokeAgent, Dataset: "d", Subject: FormatKey(pubOf(a))})
	out := f.sync(b, &DatasetSnapshot{Changes: []DatasetChange{signedChange(t, a, f.ref, 2, 1, 1, val(2, "late"))}})
	if len(out.Rejected) != 1 || out.Rejected[0].Reason != RejectRevoked {
		t.Fatalf("outcome = %+v", out)
	}
	if c := f.cells()[0]; c.GlobalSeq != 1 || !bytes.Equal(c.Value, val(2, "a")) {
		t.Fatalf("cell 0 = %+v", c)
	}
}

func TestDatasetSnapshotCodec(t *testing.T) {
	a, b := testKey(10), testKey(11)
	ref := DatasetRef{Name: "d", Created: 7}
	snap := DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, b, ref, 9), signedStatement(t, a, ref, 3)},
		Changes: []DatasetChange{
			signedChange(t, b, ref, 2, 1, 1, []byte("x")),
			signedChange(t, a, ref, 5, 0, 2, []byte{}),
			signedChange(t, b, ref, 1, 3, 4, []byte("yz")),
		},
	}
	if _, err := EncodeDatasetSnapshot(snap); err == nil {
		t.Fatal("an unsorted snapshot encoded")
	}
	if err := snap.Normalize(); err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeDatasetSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeDatasetSnapshot(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range snap.Changes {
		if compareChanges(back.Changes[i], snap.Changes[i]) != 0 || !bytes.Equal(back.Changes[i].Sig, snap.Changes[i].Sig) ||
			!bytes.Equal(back.Changes[i].Value, snap.Changes[i].Value) || back.Changes[i].Cell != snap.Changes[i].Cell {
			t.Fatalf("change %d: %+v, want %+v", i, back.Changes[i], snap.Changes[i])
		}
		if err := back.Changes[i].Verify(ref); err != nil {
			t.Fatalf("decoded change %d: %v", i, err)
		}
	}
	dup := snap
	dup.Changes = append(slices.Clone(snap.Changes), snap.Changes[0])
	if err := dup.Normalize(); err == nil {
		t.Fatal("two changes with one (agent, local seq) normalized")
	}
	for _, bad := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version", append([]byte{2}, enc[1:]...)},
		{"truncated", enc[:len(enc)-1]},
		{"trailing", append(slices.Clone(enc), 0)},
		{"unused agent", append([]byte{1, 0, 1}, append(make([]byte, 32), 0, 0, 0, 0)...)},
		{"agent index", []byte{1, 0, 0, 0, 1, 0, 0}},
	} {
		if _, err := DecodeDatasetSnapshot(bad.b); !isCode(err, CodeMalformed) {
			t.Errorf("%s: %v", bad.name, err)
		}
	}
}

// TestDatasetSnapshotRestore: datasets survive Snapshot and Restore, with
// the derived membership rebuilt.
func TestDatasetSnapshotRestore(t *testing.T) {
	a := testKey(10)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 3, CellSize: 2, StepLimit: 9}, a)
	f.sync(a, &DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, a, f.ref, 10)},
		Changes:    []DatasetChange{signedChange(t, a, f.ref, 1, 2, 4, val(2, "v"))},
	})
	snap := mustSnapshot(t, f.h.sm)
	sm := NewUninitialized()
	if err := sm.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if _, h1 := sm.Hash(); h1 != f.h.hash() {
		t.Fatal("restored hash differs")
	}
	if datasetHash(sm) != datasetHash(f.h.sm) {
		t.Fatal("restored datasets differ")
	}
	// a, known only as an agent, may still sync on the restored machine.
	env := mustSign(t, a, 2, f.syncCmd(DatasetSnapshot{}))
	if _, err := sm.Precheck(env); err != nil {
		t.Fatalf("agent's sync after restore: %v", err)
	}
}

func TestDatasetCommandCodec(t *testing.T) {
	agent := FormatKey(pubOf(testKey(10)))
	snap := syncCommand(t, "d", DatasetSnapshot{Statements: []SeqStatement{signedStatement(t, testKey(10), DatasetRef{Name: "d"}, 1)}})
	for _, c := range []Command{
		{Op: OpCreateDataset, Dataset: "d", Cells: 3, CellSize: 8, StepLimit: 5, MaxAgentSeqs: 9, Agents: []string{agent}},
		{Op: OpInviteAgent, Dataset: "d", Subject: agent, Role: RoleAdmin},
		{Op: OpRevokeAgent, Dataset: "d", Subject: agent},
		snap,
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("encode %+v: %v", c, err)
		}
		back, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if b2, _ := EncodeCommand(back); !bytes.Equal(b, b2) {
			t.Fatalf("round trip %s -> %s", b, b2)
		}
	}
	for _, bad := range []struct {
		in   string
		code Code
	}{
		{`{"op":"create_dataset","dataset":"d","cells":1}`, CodeMalformed},
		{`{"op":"create_dataset","dataset":"d","cells":1,"cell_size":1,"agents":[]}`, CodeMalformed},
		{`{"op":"create_dataset","dataset":"d","cells":1.5,"cell_size":1}`, CodeMalformed},
		{`{"op":"create_dataset","dataset":"d","cells":1,"cell_size":1,"step_limit":-1}`, CodeMalformed},
		{`{"op":"invite_agent","dataset":"d","subject":"` + agent + `","role":"owner"}`, CodeMalformed},
		{`{"op":"sync_dataset","dataset":"d","snapshot":"AQ=="}`, CodeMalformed},
		{`{"op":"sync_dataset","dataset":"d","snapshot":"!"}`, CodeMalformed},
		{`{"op":"sync_dataset","dataset":"d","snapshot":"AQAAAAAAAA==","cells":1}`, CodeMalformed},
	} {
		if _, err := DecodeCommand([]byte(bad.in)); !isCode(err, bad.code) {
			t.Errorf("DecodeCommand(%s) = %v, want %s", bad.in, err, bad.code)
		}
	}
}

// TestDatasetRejectionMessagesBounded: only the first MaxRejectionMessages
// rejections of a sync carry a message, so a stored sync result stays a
// small fraction of its command.
func TestDatasetRejectionMessagesBounded(t *testing.T) {
	a := testKey(10)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 2, CellSize: 2}, a)
	var snap DatasetSnapshot
	for l := range uint64(200) {
		snap.Changes = append(snap.Changes, signedChange(t, a, f.ref, l+1, 9, 1, val(2, "x")))
	}
	cmd := f.syncCmd(snap)
	res := f.must(a, cmd)
	var out SyncOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil || len(out.Rejected) != 200 {
		t.Fatalf("outcome %s (%v)", res.Value, err)
	}
	for i, rj := range out.Rejected {
		if rj.Reason != RejectCellOutOfRange || (rj.Message != "") != (i < MaxRejectionMessages) {
			t.Fatalf("rejection %d = %+v", i, rj)
		}
	}
	enc, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Value) > len(enc)/2 {
		t.Fatalf("the outcome is %d bytes for a %d-byte command", len(res.Value), len(enc))
	}
}

// datasetStateSnapshot returns a snapshot of a state with a dataset that
// has an admin, invited and revoked agents and written cells.
func datasetStateSnapshot(t testing.TB) []byte {
	a, b := testKey(10), testKey(11)
	f := newDSFixture(t, Command{Dataset: "d", Cells: 3, CellSize: 2, StepLimit: 9, MaxAgentSeqs: 50}, a, b)
	f.sync(a, &DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, a, f.ref, 10)},
		Changes:    []DatasetChange{signedChange(t, a, f.ref, 1, 2, 4, val(2, "v"))},
	})
	f.must(f.admin, Command{Op: OpRevokeAgent, Dataset: "d", Subject: FormatKey(pubOf(b))})
	f.must(f.admin, Command{Op: OpInviteAgent, Dataset: "d", Subject: FormatKey(pubOf(testKey(12))), Role: RoleAdmin})
	return mustSnapshot(t, f.h.sm)
}

// TestDatasetSnapshotTampering: every single-bit change of a snapshot with
// a dataset is rejected and leaves the target unchanged; a snapshot whose
// hashes were recomputed over a dataset that breaks its invariants is
// rejected too.
func TestDatasetSnapshotTampering(t *testing.T) {
	snap := datasetStateSnapshot(t)
	target := newHarness(t, testKey(5))
	idx, sum := target.sm.Hash()
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x01
		if err := target.sm.Restore(bad); err == nil {
			t.Fatalf("flipping byte %d was accepted", i)
		}
		if gi, gs := target.sm.Hash(); gi != idx || gs != sum {
			t.Fatalf("flipping byte %d changed the state", i)
		}
	}
	// Raise a's spent above its signed max, re-encode and reseal.
	body := snap[snapshotHeaderLen : len(snap)-32]
	st, err := decodeState(body)
	if err != nil {
		t.Fatal(err)
	}
	rec := st.datasets["d"].agents[clientKey(pubOf(testKey(10)))]
	rec.spent = rec.signedMax + 1
	forged := resealed(snap, func([]byte) []byte { return st.encode() })
	if err := target.sm.Restore(forged); err == nil || !strings.Contains(err.Error(), "spent") {
		t.Fatalf("a dataset with spent above signed max restored: %v", err)
	}
}
