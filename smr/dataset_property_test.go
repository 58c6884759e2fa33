package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// dsAgents are the agents of the property tests.
var dsAgents = func() []ed25519.PrivateKey {
	ks := make([]ed25519.PrivateKey, 5)
	for i := range ks {
		ks[i] = testKey(200 + i)
	}
	return ks
}()

func genCell(t *rapid.T, label string, fixedLen bool) Cell {
	n := 2
	if !fixedLen {
		n = rapid.IntRange(0, 3).Draw(t, label+"len")
	}
	v := make([]byte, n)
	for i := range v {
		v[i] = rapid.SampledFrom([]byte{0, 1, 0xff}).Draw(t, label+"byte")
	}
	return Cell{GlobalSeq: rapid.Uint64Range(0, 3).Draw(t, label+"seq"), Value: v}
}

// TestMergeCellLaws: the per-cell merge is commutative, associative and
// idempotent, returns one of its inputs and is at least both (so it is the
// join of a total order), whatever the values' lengths.
func TestMergeCellLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fixed := rapid.Bool().Draw(t, "fixed length")
		a, b, c := genCell(t, "a", fixed), genCell(t, "b", fixed), genCell(t, "c", fixed)
		same := func(x, y Cell) bool { return x.GlobalSeq == y.GlobalSeq && bytes.Equal(x.Value, y.Value) }
		if !same(MergeCell(a, b), MergeCell(b, a)) {
			t.Fatalf("not commutative: %v %v", a, b)
		}
		if !same(MergeCell(MergeCell(a, b), c), MergeCell(a, MergeCell(b, c))) {
			t.Fatalf("not associative: %v %v %v", a, b, c)
		}
		if !same(MergeCell(a, a), a) {
			t.Fatalf("not idempotent: %v", a)
		}
		m := MergeCell(a, b)
		if !same(m, a) && !same(m, b) {
			t.Fatalf("merge of %v and %v is neither: %v", a, b, m)
		}
		if CompareCells(m, a) < 0 || CompareCells(m, b) < 0 {
			t.Fatalf("merge %v is below an input (%v, %v)", m, a, b)
		}
		if (CompareCells(a, b) == 0) != same(a, b) || CompareCells(a, b) != -CompareCells(b, a) {
			t.Fatalf("CompareCells is not a total order on %v, %v", a, b)
		}
	})
}

// plannedSync is one sync of an author's queue: the author's changes (and
// its statement, in its first sync), submitted by submitter, which may be
// another agent relaying them.
type plannedSync struct {
	author    int
	submitter int
	snap      DatasetSnapshot
}

// propDataset creates dataset "d" with every dsAgent invited on a fresh
// state machine and returns it with the next index.
func propDataset(t fataler, create Command) (*StateMachine, DatasetRef) {
	admin := testKey(1)
	sm := mustNew(t, Genesis{AdminKeys: []ed25519.PublicKey{pubOf(admin)}})
	create.Op, create.Dataset = OpCreateDataset, "d"
	for _, a := range dsAgents {
		create.Agents = append(create.Agents, FormatKey(pubOf(a)))
	}
	if r := sm.Apply(1, entryBytes(t, 1, mustSign(t, admin, 1, create))); r.Code != CodeOK {
		t.Fatalf("create: %+v", r)
	}
	return sm, DatasetRef{Name: "d", Created: 1}
}

// replica applies syncs to a state machine, with per-client envelope seqs.
type replica struct {
	sm   *StateMachine
	idx  uint64
	seqs map[int]uint64
}

func newReplica(sm *StateMachine, idx uint64) *replica {
	return &replica{sm: sm, idx: idx, seqs: map[int]uint64{}}
}

func (r *replica) apply(t fataler, submitter int, cmd Command) SyncOutcome {
	helper(t)
	r.idx++
	r.seqs[submitter]++
	res := r.sm.Apply(r.idx, entryBytes(t, 1, mustSign(t, dsAgents[submitter], r.seqs[submitter], cmd)))
	if res.Code != CodeOK {
		t.Fatalf("sync at %d: %+v", r.idx, res)
	}
	var out SyncOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil {
		t.Fatalf("sync outcome: %v", err)
	}
	return out
}

// drawInterleaving returns an order of every planned sync that keeps each
// author's syncs in their own order.
func drawInterleaving(t *rapid.T, label string, queues [][]plannedSync) []plannedSync {
	next := make([]int, len(queues))
	var out []plannedSync
	for {
		var open []int
		for a, q := range queues {
			if next[a] < len(q) {
				open = append(open, a)
			}
		}
		if len(open) == 0 {
			return out
		}
		a := rapid.SampledFrom(open).Draw(t, label)
		out = append(out, queues[a][next[a]])
		next[a]++
	}
}

// TestDatasetSyncsConverge: agents sync batches of valid changes (with
// enough signed local seqs), each batch submitted by its author or relayed
// by another agent. Whatever the interleaving of the agents (each agent's
// own batches stay in order), every replica ends with the same cells: the
// per-cell maximum of all changes. Replicas that apply the same order,
// one of them restored from a snapshot half-way, have equal state hashes.
func TestDatasetSyncsConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const cells = 3
		nAgents := rapid.IntRange(2, len(dsAgents)).Draw(t, "agents")
		sm1, ref := propDataset(t, Command{Cells: cells, CellSize: 2})
		sm3, _ := propDataset(t, Command{Cells: cells, CellSize: 2})

		want := make([]Cell, cells)
		for i := range want {
			want[i] = Cell{Value: make([]byte, 2)}
		}
		queues := make([][]plannedSync, nAgents)
		total := 0
		for a := range nAgents {
			priv := dsAgents[a]
			l := uint64(0)
			for s := range rapid.IntRange(1, 3).Draw(t, fmt.Sprintf("syncs of %d", a)) {
				ps := plannedSync{author: a, submitter: rapid.IntRange(0, nAgents-1).Draw(t, "submitter")}
				if s == 0 {
					ps.snap.Statements = []SeqStatement{signedStatement(t, priv, ref, 1_000_000)}
				}
				for range rapid.IntRange(0, 4).Draw(t, "changes") {
					l += rapid.Uint64Range(1, 3).Draw(t, "local seq step")
					c := Cell{GlobalSeq: rapid.Uint64Range(0, 6).Draw(t, "global seq"),
						Value: []byte{rapid.SampledFrom([]byte{0, 1, 2, 0xff}).Draw(t, "v"), byte(a)}}
					cell := uint32(rapid.IntRange(0, cells-1).Draw(t, "cell"))
					ps.snap.Changes = append(ps.snap.Changes, signedChange(t, priv, ref, l, cell, c.GlobalSeq, c.Value))
					want[cell] = MergeCell(want[cell], c)
					total++
				}
				queues[a] = append(queues[a], ps)
			}
		}
		order1 := drawInterleaving(t, "order 1", queues)
		order3 := drawInterleaving(t, "order 3", queues)
		cut := rapid.IntRange(0, len(order1)).Draw(t, "snapshot after")

		r1, r3 := newReplica(sm1, 1), newReplica(sm3, 1)
		var r2 *replica
		merged := 0
		for i, ps := range order1 {
			if i == cut {
				sm2 := NewUninitialized()
				if err := sm2.Restore(mustSnapshot(t, sm1)); err != nil {
					t.Fatal(err)
				}
				r2 = &replica{sm: sm2, idx: r1.idx, seqs: maps.Clone(r1.seqs)}
			}
			cmd := syncCommand(t, "d", ps.snap)
			out := r1.apply(t, ps.submitter, cmd)
			if len(out.Rejected) != 0 || len(out.StatementsRejected) != 0 {
				t.Fatalf("valid sync rejected: %+v", out)
			}
			merged += len(out.Accepted) + len(out.Lost)
			if r2 != nil {
				r2.apply(t, ps.submitter, cmd)
			}
		}
		if merged != total {
			t.Fatalf("%d of %d changes got a verdict", merged, total)
		}
		for _, ps := range order3 {
			out := r3.apply(t, ps.submitter, syncCommand(t, "d", ps.snap))
			if len(out.Rejected) != 0 {
				t.Fatalf("valid sync rejected in order 3: %+v", out)
			}
		}
		if r2 == nil {
			sm2 := NewUninitialized()
			if err := sm2.Restore(mustSnapshot(t, sm1)); err != nil {
				t.Fatal(err)
			}
			r2 = &replica{sm: sm2}
		}
		if _, h1 := sm1.Hash(); func() bool { _, h2 := r2.sm.Hash(); return h1 != h2 }() {
			t.Fatal("replicas applying the same order differ")
		}
		for name, sm := range map[string]*StateMachine{"order 1": sm1, "order 3": sm3} {
			got := datasetCells(sm, "d")
			for i := range want {
				if CompareCells(got[i], want[i]) != 0 {
					t.Fatalf("%s: cell %d = %v, want the maximum %v", name, i, got[i], want[i])
				}
			}
		}
	})
}

// TestDatasetArbitrarySyncs: syncs of arbitrary, often invalid, statements
// and changes (forged signatures, revoked agents, huge or maximal global
// seqs, replays, wrong cells and sizes, small caps and step limits). After
// every sync:
//   - the sum of the cells' global seqs equals the sum of what the agents
//     spent (every raise was paid exactly), spent <= signed max <= cap, and
//     the version counts the accepted changes;
//   - a second replica that is sent only the statements and changes the
//     first accepted ends in the same datasets: rejected and losing changes
//     changed nothing.
func TestDatasetArbitrarySyncs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const cells = 3
		create := Command{Cells: cells, CellSize: 2,
			StepLimit:    rapid.SampledFrom([]uint64{0, 1, 5}).Draw(t, "step limit"),
			MaxAgentSeqs: rapid.SampledFrom([]uint64{3, 20, DefaultMaxAgentSeqs}).Draw(t, "cap")}
		sm1, ref := propDataset(t, create)
		sm2, _ := propDataset(t, create)
		r1, r2 := newReplica(sm1, 1), newReplica(sm2, 1)
		admin := testKey(1)
		adminSeq := uint64(1)
		accepted := uint64(0)
		for step := range rapid.IntRange(1, 8).Draw(t, "steps") {
			if rapid.IntRange(0, 4).Draw(t, "membership") == 0 {
				op := rapid.SampledFrom([]Op{OpInviteAgent, OpRevokeAgent}).Draw(t, "op")
				who := FormatKey(pubOf(dsAgents[rapid.IntRange(1, len(dsAgents)-1).Draw(t, "who")]))
				adminSeq++
				cmd := Command{Op: op, Dataset: "d", Subject: who}
				for _, r := range []*replica{r1, r2} {
					r.idx++
					r.sm.Apply(r.idx, entryBytes(t, 1, mustSign(t, admin, adminSeq, cmd)))
				}
			}
			var snap DatasetSnapshot
			for a := range rapid.IntRange(0, 2).Draw(t, "statements") {
				signer, claimed := dsAgents[a], dsAgents[a]
				if rapid.IntRange(0, 5).Draw(t, "forge statement") == 0 {
					signer = dsAgents[(a+1)%len(dsAgents)]
				}
				s := signedStatement(t, signer, ref, rapid.SampledFrom([]uint64{0, 2, 10, 25, math.MaxUint64}).Draw(t, "max"))
				s.Agent = pubOf(claimed)
				snap.Statements = append(snap.Statements, s)
			}
			for range rapid.IntRange(0, 5).Draw(t, "changes") {
				a := rapid.IntRange(0, len(dsAgents)-1).Draw(t, "author")
				size := 2
				if rapid.IntRange(0, 6).Draw(t, "bad size") == 0 {
					size = rapid.SampledFrom([]int{0, 1, 3}).Draw(t, "size")
				}
				v := make([]byte, size)
				for i := range v {
					v[i] = rapid.SampledFrom([]byte{0, 7, 0xff}).Draw(t, "byte")
				}
				c := signedChange(t, dsAgents[a], ref,
					rapid.Uint64Range(0, 12).Draw(t, "local seq"),
					uint32(rapid.IntRange(0, cells).Draw(t, "cell")),
					rapid.SampledFrom([]uint64{0, 1, 2, 3, 6, 19, math.MaxUint64 - 1, math.MaxUint64}).Draw(t, "global seq"), v)
				if rapid.IntRange(0, 6).Draw(t, "forge change") == 0 {
					c.GlobalSeq++
				}
				snap.Changes = append(snap.Changes, c)
			}
			if err := snap.Normalize(); err != nil {
				continue // two changes of one local seq: not a snapshot
			}
			submitter := 0 // never revoked
			out := r1.apply(t, submitter, syncCommand(t, "d", snap))
			accepted += uint64(len(out.Accepted))

			var kept DatasetSnapshot
			rejectedStmt := map[int]bool{}
			for _, rj := range out.StatementsRejected {
				rejectedStmt[rj.Index] = true
			}
			for i, s := range snap.Statements {
				if !rejectedStmt[i] {
					kept.Statements = append(kept.Statements, s)
				}
			}
			for _, i := range out.Accepted {
				kept.Changes = append(kept.Changes, snap.Changes[i])
			}
			out2 := r2.apply(t, submitter, syncCommand(t, "d", kept))
			if len(out2.Accepted) != len(kept.Changes) || len(out2.Rejected)+len(out2.StatementsRejected)+len(out2.Lost) != 0 {
				t.Fatalf("step %d: the accepted part of the sync was not all accepted again: %+v", step, out2)
			}
			if datasetHash(sm1) != datasetHash(sm2) {
				t.Fatalf("step %d: rejected or losing changes changed the dataset: %+v", step, out)
			}
			checkDatasetInvariants(t, sm1, accepted)
		}
	})
}

// checkDatasetInvariants checks the accounting of dataset "d" of sm.
func checkDatasetInvariants(t fataler, sm *StateMachine, accepted uint64) {
	helper(t)
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	ds := sm.st.datasets["d"]
	var seqs, spent uint64
	for _, g := range ds.seqs {
		seqs += g
	}
	for k, rec := range ds.agents {
		if rec.spent > rec.signedMax || rec.signedMax > ds.maxAgentSeqs || rec.lastSeq > rec.signedMax {
			t.Fatalf("agent %s: %+v (cap %d)", FormatKey(k[:]), *rec, ds.maxAgentSeqs)
		}
		spent += rec.spent
	}
	if seqs != spent {
		t.Fatalf("cells sum to global seq %d, agents spent %d", seqs, spent)
	}
	if ds.version != accepted {
		t.Fatalf("version %d, %d changes accepted", ds.version, accepted)
	}
	if !slices.Equal(slices.Sorted(func(yield func(string) bool) {
		for k := range sm.st.refs {
			if !yield(FormatKey(k[:])) {
				return
			}
		}
	}), refsFromScratch(sm.st)) {
		t.Fatalf("membership counts are out of step with the datasets")
	}
}

// refsFromScratch lists the members of any dataset, sorted.
func refsFromScratch(st *state) []string {
	seen := map[string]bool{}
	for _, ds := range st.datasets {
		for k := range ds.admins {
			seen[FormatKey(k[:])] = true
		}
		for k, rec := range ds.agents {
			if rec.invited {
				seen[FormatKey(k[:])] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
