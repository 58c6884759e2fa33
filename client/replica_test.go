package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// smrNode is an httptest server in front of a real state machine: it
// applies every submitted envelope at the next index (after Precheck, as a
// node does) and answers queries from the state, so SDK tests see the
// cluster's real verdicts.
type smrNode struct {
	t     testing.TB
	srv   *httptest.Server
	admin ed25519.PrivateKey

	mu  sync.Mutex
	sm  *smr.StateMachine
	idx uint64
	// dropAfterApply, while positive, applies a submit and then drops the
	// connection without answering; each use decrements it.
	dropAfterApply int
}

func newSMRNode(t testing.TB) *smrNode {
	t.Helper()
	seed := sha256.Sum256([]byte("replica-test-admin"))
	n := &smrNode{t: t, admin: ed25519.NewKeyFromSeed(seed[:])}
	sm, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{n.admin.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	n.sm = sm
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *smrNode) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/submit" && r.Method == http.MethodPost:
		var env smr.Envelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			writeErr(w, 400, "malformed", err.Error(), "")
			return
		}
		n.mu.Lock()
		dup, err := n.sm.Precheck(&env)
		if err != nil {
			n.mu.Unlock()
			e := err.(*smr.Error)
			writeJSON(w, 400, wire.ErrorBody{Code: e.Code, Message: e.Message})
			return
		}
		res := smr.Result{}
		if dup != nil {
			res = *dup
		} else {
			n.idx++
			ent := smr.NewCommandEntry(int64(n.idx), env)
			b, err := ent.MarshalBinary()
			if err != nil {
				n.mu.Unlock()
				writeErr(w, 400, "malformed", err.Error(), "")
				return
			}
			res = n.sm.Apply(n.idx, b)
		}
		drop := n.dropAfterApply > 0
		if drop {
			n.dropAfterApply--
		}
		n.mu.Unlock()
		switch {
		case drop:
			dropConn(w)
		case res.Code != smr.CodeOK:
			writeJSON(w, 400, wire.ErrorBody{Code: res.Code, Message: res.Message, Result: &res})
		default:
			writeResult(w, res)
		}
	case r.URL.Path == "/v1/query":
		q := smr.Query{Kind: smr.QueryKind(r.URL.Query().Get("kind")), Key: r.URL.Query().Get("key")}
		v, idx, err := n.sm.QueryAt(q)
		if err != nil {
			e := err.(*smr.Error)
			status := 400
			if e.Code == smr.CodeNotFound {
				status = 404
			}
			writeJSON(w, status, wire.ErrorBody{Code: e.Code, Message: e.Message})
			return
		}
		writeJSON(w, 200, wire.QueryResponse{Index: idx, Value: v})
	default:
		writeErr(w, 404, "not_found", "no such endpoint", "")
	}
}

// client returns an SDK client of the node signing with key.
func (n *smrNode) client(key ed25519.PrivateKey, mod func(*Config)) *Client {
	n.t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = []string{n.srv.URL}
	cfg.Key = key
	cfg.Retry = RetryConfig{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

// cells reads the node's cells of dataset name.
func (n *smrNode) cells(name string) []smr.Cell {
	n.t.Helper()
	v, _, err := n.sm.QueryAt(smr.Query{Kind: smr.QueryDataset, Key: name})
	if err != nil {
		n.t.Fatal(err)
	}
	var info smr.DatasetInfo
	if err := json.Unmarshal(v, &info); err != nil {
		n.t.Fatal(err)
	}
	out := freshCells(info.Cells, info.CellSize)
	for _, c := range info.Values {
		out[c.Cell] = smr.Cell{GlobalSeq: c.GlobalSeq, Value: c.Value}
	}
	return out
}

func agentKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("agent " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func keyID(k ed25519.PrivateKey) string { return smr.FormatKey(k.Public().(ed25519.PublicKey)) }

// createDataset creates dataset spec through the admin and returns a
// replica of it and a client for each agent.
func createDataset(t testing.TB, n *smrNode, spec DatasetSpec, agents ...ed25519.PrivateKey) ([]*Replica, []*Client) {
	t.Helper()
	ctx := context.Background()
	for _, a := range agents {
		spec.Agents = append(spec.Agents, keyID(a))
	}
	admin := n.client(n.admin, nil)
	if _, err := admin.CreateDataset(ctx, spec); err != nil {
		t.Fatalf("CreateDataset: %v", err)
	}
	reps := make([]*Replica, len(agents))
	cls := make([]*Client, len(agents))
	for i, a := range agents {
		cls[i] = n.client(a, nil)
		r, err := FetchReplica(ctx, cls[i], spec.Name, a)
		if err != nil {
			t.Fatalf("FetchReplica: %v", err)
		}
		reps[i] = r
	}
	return reps, cls
}

func sameCells(a, b []smr.Cell) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if smr.CompareCells(a[i], b[i]) != 0 {
			return false
		}
	}
	return true
}

func mustSet(t testing.TB, r *Replica, cell int, v string, g uint64) smr.DatasetChange {
	t.Helper()
	c, err := r.SetAt(cell, []byte(v), g)
	if err != nil {
		t.Fatalf("SetAt(%d, %q, %d): %v", cell, v, g, err)
	}
	return c
}

func mustSync(t testing.TB, r *Replica, c *Client) SyncReport {
	t.Helper()
	rep, err := r.Sync(context.Background(), c)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return rep
}

// TestReplicaOfflineEditsConverge: three agents edit offline, then sync one
// after another; after a second round every replica shows the cluster's
// cells, and a tie on the global seq went to the greater value whoever
// synced first.
func TestReplicaOfflineEditsConverge(t *testing.T) {
	n := newSMRNode(t)
	a, b, c := agentKey("a"), agentKey("b"), agentKey("c")
	reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 4, CellSize: 4}, a, b, c)

	mustSet(t, reps[0], 0, "aaa", 0) // (1, aaa)
	mustSet(t, reps[1], 0, "bbb", 0) // (1, bbb): wins the tie
	mustSet(t, reps[0], 1, "a1", 0)
	mustSet(t, reps[0], 1, "a2", 0) // (2, a2)
	mustSet(t, reps[2], 2, "c", 5)  // costs 5
	if got, _ := reps[0].Get(1); got.GlobalSeq != 2 || !bytes.HasPrefix(got.Value, []byte("a2")) {
		t.Fatalf("local view of cell 1 = %+v", got)
	}
	if bud := reps[2].Budget(); bud.SignedMax != 5 || bud.Reserved != 5 || bud.LastLocalSeq != 1 {
		t.Fatalf("budget of c = %+v", bud)
	}

	rep := mustSync(t, reps[1], cls[1])
	if rep.Accepted() != 1 || rep.Syncs != 1 {
		t.Fatalf("b's sync: %+v", rep)
	}
	rep = mustSync(t, reps[0], cls[0])
	if rep.Accepted() != 2 || rep.Lost() != 1 {
		t.Fatalf("a's sync: %+v", rep)
	}
	mustSync(t, reps[2], cls[2])
	for i, r := range reps {
		mustSync(t, r, cls[i])
		if !sameCells(r.Cells(), n.cells("doc")) || len(r.Pending()) != 0 {
			t.Fatalf("replica %d: %+v, cluster %+v, pending %d", i, r.Cells(), n.cells("doc"), len(r.Pending()))
		}
	}
	if got := n.cells("doc")[0]; !bytes.HasPrefix(got.Value, []byte("bbb")) {
		t.Fatalf("cell 0 = %+v, want bbb (the greater value)", got)
	}
	if bud := reps[2].Budget(); bud.RemoteSpent != 5 || bud.Reserved != 0 || bud.Available != smr.DefaultMaxAgentSeqs-5 {
		t.Fatalf("budget of c after sync = %+v", bud)
	}
}

// TestReplicaRelay: b relays a's offline changes; a's later sync settles
// them as replayed, and both replicas show the cluster's cells.
func TestReplicaRelay(t *testing.T) {
	n := newSMRNode(t)
	a, b := agentKey("a"), agentKey("b")
	reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 2, CellSize: 2}, a, b)
	mustSet(t, reps[0], 0, "x", 0)
	mustSet(t, reps[0], 1, "y", 3)
	added, err := reps[1].Import(reps[0].Export())
	if err != nil || added != 2 {
		t.Fatalf("Import: %d %v", added, err)
	}
	if !sameCells(reps[1].Cells(), reps[0].Cells()) {
		t.Fatal("the relaying replica does not show the imported changes")
	}
	forged := reps[0].Export()
	forged.Changes[0].GlobalSeq++
	if _, err := reps[1].Import(forged); err == nil {
		t.Fatal("a forged change was imported")
	}
	rep := mustSync(t, reps[1], cls[1])
	if rep.Accepted() != 2 || rep.Changes[0].Own {
		t.Fatalf("relaying sync: %+v", rep)
	}
	rep = mustSync(t, reps[0], cls[0])
	if rep.Rejected() != 2 || rep.Changes[0].Reason != smr.RejectReplayed {
		t.Fatalf("a's own sync after the relay: %+v", rep)
	}
	for i, r := range reps {
		if !sameCells(r.Cells(), n.cells("doc")) || len(r.Pending()) != 0 || len(r.Export().Changes) != 0 {
			t.Fatalf("replica %d did not converge: %+v vs %+v", i, r.Cells(), n.cells("doc"))
		}
	}
}

func TestReplicaBudgetAndLocalChecks(t *testing.T) {
	n := newSMRNode(t)
	a := agentKey("a")
	reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 2, CellSize: 2, StepLimit: 3, MaxAgentSeqs: 4}, a)
	r := reps[0]
	if _, err := r.SetAt(0, []byte("x"), 4); !errors.Is(err, ErrTooHigh) {
		t.Fatalf("raise above the step limit: %v", err)
	}
	if _, err := r.SetAt(0, []byte("toolong"), 0); err == nil {
		t.Fatal("an oversized value was accepted")
	}
	if _, err := r.SetAt(2, []byte("x"), 0); err == nil {
		t.Fatal("a cell out of range was accepted")
	}
	mustSet(t, r, 0, "x", 3)
	if _, err := r.SetAt(0, []byte("a"), 3); !errors.Is(err, ErrWouldLose) {
		t.Fatalf("a losing change: %v", err)
	}
	mustSet(t, r, 0, "y", 3) // tie, greater value: costs nothing
	mustSet(t, r, 1, "z", 1) // 3 + 1 = 4, the cap
	if _, err := r.SetAt(1, []byte("w"), 0); !errors.Is(err, ErrTooHigh) {
		t.Fatalf("a change beyond the cap: %v", err)
	}
	rep := mustSync(t, r, cls[0])
	if rep.Accepted() != 3 {
		t.Fatalf("sync: %+v", rep)
	}
	if bud := r.Budget(); bud.RemoteSpent != 4 || bud.Available != 0 || bud.SignedMax != 4 {
		t.Fatalf("budget = %+v", bud)
	}
}

func TestReplicaSaveOpen(t *testing.T) {
	n := newSMRNode(t)
	a, b := agentKey("a"), agentKey("b")
	reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 3, CellSize: 2}, a, b)
	mustSet(t, reps[1], 2, "b", 0)
	mustSync(t, reps[1], cls[1])
	mustSync(t, reps[0], cls[0])
	mustSet(t, reps[0], 0, "p", 0)
	mustSet(t, reps[1], 1, "q", 0)
	if _, err := reps[0].Import(reps[1].Export()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "doc.json")
	if err := reps[0].Save(path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved file: %v %v", st, err)
	}
	back, err := OpenReplica(path, a)
	if err != nil {
		t.Fatal(err)
	}
	if !sameCells(back.Cells(), reps[0].Cells()) || back.Budget() != reps[0].Budget() || len(back.Export().Changes) != 2 {
		t.Fatalf("reopened replica differs: %+v vs %+v", back.Budget(), reps[0].Budget())
	}
	remote, idx := back.Remote()
	if want, wantIdx := reps[0].Remote(); !sameCells(remote, want) || idx != wantIdx {
		t.Fatal("reopened pulled state differs")
	}
	// The reopened replica syncs like the original.
	rep := mustSync(t, back, cls[0])
	if rep.Accepted() != 2 {
		t.Fatalf("sync of the reopened replica: %+v", rep)
	}

	if _, err := OpenReplica(path, b); err == nil || !strings.Contains(err.Error(), "belongs to agent") {
		t.Fatalf("open with another key: %v", err)
	}
	if _, err := OpenReplica(filepath.Join(t.TempDir(), "none.json"), a); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of a missing file: %v", err)
	}
	data, _ := os.ReadFile(path)
	for name, mutate := range map[string]func(string) string{
		"version":       func(s string) string { return strings.Replace(s, `"version": 1`, `"version": 2`, 1) },
		"unknown field": func(s string) string { return strings.Replace(s, `"format"`, `"extra": 1, "format"`, 1) },
		"cell size":     func(s string) string { return strings.Replace(s, `"cell_size": 2`, `"cell_size": 3`, 1) },
	} {
		p := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(p, []byte(mutate(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenReplica(p, a); err == nil {
			t.Errorf("%s: a corrupted replica opened", name)
		}
	}
	// A pending change altered on disk fails its signature.
	if err := reps[0].Save(path); err != nil {
		t.Fatal(err)
	}
	mustSet(t, reps[0], 1, "r", 0)
	if err := reps[0].Save(path); err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	data, _ = os.ReadFile(path)
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	pend := f["pending"].([]any)
	pend[0].(map[string]any)["change"].(map[string]any)["global_seq"] = 99
	data, _ = json.Marshal(f)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReplica(path, a); err == nil || !strings.Contains(err.Error(), "pending change") {
		t.Fatalf("tampered pending change: %v", err)
	}
}

// TestReplicaSyncOutcomeUnknown: the cluster merges a sync but its answer
// is lost; the changes stay pending, and the next sync settles them (as
// replayed) and shows the merged cells.
func TestReplicaSyncOutcomeUnknown(t *testing.T) {
	n := newSMRNode(t)
	a := agentKey("a")
	reps, _ := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 2, CellSize: 2}, a)
	cl := n.client(a, func(c *Config) { c.Retry.MaxAttempts = 1 })
	mustSet(t, reps[0], 0, "x", 0)
	n.mu.Lock()
	n.dropAfterApply = 1
	n.mu.Unlock()
	if _, err := reps[0].Sync(context.Background(), cl); !IsOutcomeUnknown(err) {
		t.Fatalf("sync with a lost answer: %v", err)
	}
	if len(reps[0].Pending()) != 1 {
		t.Fatal("the unsettled change was dropped")
	}
	rep := mustSync(t, reps[0], cl)
	if rep.Rejected() != 1 || rep.Changes[0].Reason != smr.RejectReplayed {
		t.Fatalf("second sync: %+v", rep)
	}
	if len(reps[0].Pending()) != 0 || !sameCells(reps[0].Cells(), n.cells("doc")) || n.cells("doc")[0].GlobalSeq != 1 {
		t.Fatalf("replica %+v vs cluster %+v", reps[0].Cells(), n.cells("doc"))
	}
}

// TestReplicaSyncSplitsLargeSnapshots: more pending changes than fit one
// command go out in several syncs, in order.
func TestReplicaSyncSplitsLargeSnapshots(t *testing.T) {
	n := newSMRNode(t)
	a := agentKey("a")
	reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 64, CellSize: 1024}, a)
	for i := range 64 {
		mustSet(t, reps[0], i, fmt.Sprint(i), 0)
	}
	rep := mustSync(t, reps[0], cls[0])
	if rep.Syncs < 2 || rep.Accepted() != 64 {
		t.Fatalf("sync of 64 KiB of changes: %d syncs, %d accepted", rep.Syncs, rep.Accepted())
	}
	if !sameCells(reps[0].Cells(), n.cells("doc")) {
		t.Fatal("not converged")
	}
}

// TestReplicasConverge: agents make random offline changes, sync at random
// moments and relay each other's exports; once every agent has synced
// (twice: the second pulls what the others pushed after its first), every
// replica shows the cluster's cells, whatever the interleaving.
func TestReplicasConverge(t *testing.T) {
	keys := []ed25519.PrivateKey{agentKey("a"), agentKey("b"), agentKey("c")}
	rapid.Check(t, func(rt *rapid.T) {
		n := newSMRNode(t)
		reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 3, CellSize: 1}, keys...)
		for range rapid.IntRange(1, 25).Draw(rt, "steps") {
			i := rapid.IntRange(0, len(reps)-1).Draw(rt, "agent")
			switch rapid.IntRange(0, 5).Draw(rt, "action") {
			case 0, 1, 2:
				g := rapid.SampledFrom([]uint64{0, 0, 1, 2, 4}).Draw(rt, "global seq")
				v := []byte{rapid.SampledFrom([]byte{'a', 'b', 'z'}).Draw(rt, "value")}
				if _, err := reps[i].SetAt(rapid.IntRange(0, 2).Draw(rt, "cell"), v, g); err != nil && !errors.Is(err, ErrWouldLose) {
					rt.Fatalf("SetAt: %v", err)
				}
			case 3, 4:
				if _, err := reps[i].Sync(context.Background(), cls[i]); err != nil {
					rt.Fatalf("Sync: %v", err)
				}
			default:
				j := rapid.IntRange(0, len(reps)-1).Draw(rt, "from")
				if j != i {
					if _, err := reps[i].Import(reps[j].Export()); err != nil {
						rt.Fatalf("Import: %v", err)
					}
				}
			}
		}
		for range 2 {
			for i, r := range reps {
				if _, err := r.Sync(context.Background(), cls[i]); err != nil {
					rt.Fatalf("final Sync: %v", err)
				}
			}
		}
		want := n.cells("doc")
		for i, r := range reps {
			if !sameCells(r.Cells(), want) || len(r.Export().Changes) != 0 {
				rt.Fatalf("replica %d shows %+v with %d unsent changes; the cluster has %+v", i, r.Cells(), len(r.Export().Changes), want)
			}
		}
	})
}

// TestSplitSnapshot: the pieces of a snapshot beyond one sync's limits each
// encode within those limits, keep the changes' order, and carry each
// statement once, no later than the agent's first change.
func TestSplitSnapshot(t *testing.T) {
	var s smr.DatasetSnapshot
	agent := func(i int) ed25519.PublicKey {
		k := make([]byte, 32)
		k[0], k[1] = byte(i>>8), byte(i)
		return k
	}
	sig := make([]byte, 64)
	const agents = smr.MaxSyncAgents + 300
	for i := range agents {
		s.Statements = append(s.Statements, smr.SeqStatement{Agent: agent(i), MaxLocalSeq: 9, Sig: sig})
		if i%3 != 0 {
			for l := range uint64(4) {
				s.Changes = append(s.Changes, smr.DatasetChange{Agent: agent(i), LocalSeq: l + 1, Value: make([]byte, 40), Sig: sig})
			}
		}
	}
	// A byte limit that binds, and one that leaves the agent limit to bind.
	for _, limit := range []int{MaxSyncBytes, 1 << 30} {
		checkSplit(t, s, limit, agents)
	}
}

func checkSplit(t *testing.T, s smr.DatasetSnapshot, limit, agents int) {
	t.Helper()
	parts := splitSnapshot(s, limit)
	if len(parts) < 2 {
		t.Fatalf("%d parts", len(parts))
	}
	var changes []smr.DatasetChange
	seen := map[string]int{} // agent -> part of its statement
	first := map[string]int{}
	for p, part := range parts {
		if err := part.Normalize(); err != nil {
			t.Fatalf("part %d: %v", p, err)
		}
		b, err := smr.EncodeDatasetSnapshot(part)
		if err != nil || len(b) > limit {
			t.Fatalf("part %d: %d bytes, %v", p, len(b), err)
		}
		for _, st := range part.Statements {
			if _, dup := seen[string(st.Agent)]; dup {
				t.Fatalf("statement of agent %x sent twice", st.Agent[:2])
			}
			seen[string(st.Agent)] = p
		}
		for _, c := range part.Changes {
			if _, ok := first[string(c.Agent)]; !ok {
				first[string(c.Agent)] = p
			}
		}
		changes = append(changes, part.Changes...)
	}
	if len(seen) != agents || len(changes) != len(s.Changes) {
		t.Fatalf("%d statements and %d changes sent, want %d and %d", len(seen), len(changes), agents, len(s.Changes))
	}
	for i := range changes {
		if !bytes.Equal(changes[i].Agent, s.Changes[i].Agent) || changes[i].LocalSeq != s.Changes[i].LocalSeq {
			t.Fatalf("change %d out of order", i)
		}
	}
	for a, p := range first {
		if seen[a] > p {
			t.Fatalf("statement of agent %x in part %d, after its first change in part %d", a[:2], seen[a], p)
		}
	}
}

// TestDatasetCalls: the typed calls of the dataset ops and reads, and
// Merge of a state older than the one pulled.
func TestDatasetCalls(t *testing.T) {
	n := newSMRNode(t)
	ctx := context.Background()
	a, b := agentKey("a"), agentKey("b")
	reps, cls := createDataset(t, n, DatasetSpec{Name: "doc", Cells: 2, CellSize: 1}, a)
	admin := n.client(n.admin, nil)
	if _, err := admin.InviteAgent(ctx, "doc", keyID(b), ""); err != nil {
		t.Fatal(err)
	}
	list, _, err := admin.ListDatasets(ctx)
	if err != nil || len(list) != 1 || list[0].AgentCount != 2 || list[0].Agents != nil {
		t.Fatalf("ListDatasets = %+v, %v", list, err)
	}
	if _, err := admin.RevokeAgent(ctx, "doc", keyID(b), smr.RoleAgent); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeAgent(ctx, "doc", keyID(b), smr.RoleAgent); ErrorCode(err) != smr.CodeNotFound {
		t.Fatalf("second revoke: %v", err)
	}
	if _, _, err := admin.GetDataset(ctx, "nope"); ErrorCode(err) != smr.CodeNotFound {
		t.Fatalf("GetDataset of a missing dataset: %v", err)
	}

	old, oldIdx, err := cls[0].GetDataset(ctx, "doc")
	if err != nil {
		t.Fatal(err)
	}
	r := reps[0]
	if r.Agent() != keyID(a) || r.Dataset().Name != "doc" || r.Dataset().Created == 0 {
		t.Fatalf("replica of %+v for %s", r.Dataset(), r.Agent())
	}
	if _, err := r.Set(0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	mustSync(t, r, cls[0])
	// An older state does not replace the newer pulled one.
	if err := r.Merge(old, oldIdx); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.Get(0); c.GlobalSeq != 1 || len(r.Pending()) != 0 {
		t.Fatalf("cell 0 after merging an older state = %+v", c)
	}
	other := old
	other.Name = "other"
	if err := r.Merge(other, oldIdx+100); err == nil {
		t.Fatal("a state of another dataset merged")
	}
	if _, err := NewReplica(smr.DatasetInfo{Name: "d", Created: 1, Cells: 0, CellSize: 1, MaxAgentSeqs: 1}, a); err == nil {
		t.Fatal("a replica of a dataset without cells was made")
	}
	if _, err := r.Get(2); err == nil {
		t.Fatal("Get of a cell out of range succeeded")
	}
}
