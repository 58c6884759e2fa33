package smr

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
)

// dsFixture drives a state machine with one dataset: seqs of envelopes are
// tracked per client, so tests only say who sends what.
type dsFixture struct {
	h     *harness
	admin ed25519.PrivateKey
	seqs  map[clientKey]uint64
	ref   DatasetRef
}

// newDSFixture creates the dataset of create (signed by a genesis admin)
// with agents invited.
func newDSFixture(t testing.TB, create Command, agents ...ed25519.PrivateKey) *dsFixture {
	t.Helper()
	admin := testKey(1)
	f := &dsFixture{h: newHarness(t, admin), admin: admin, seqs: map[clientKey]uint64{}}
	create.Op = OpCreateDataset
	for _, a := range agents {
		create.Agents = append(create.Agents, FormatKey(pubOf(a)))
	}
	res := f.must(admin, create)
	var out Outcome
	if err := json.Unmarshal(res.Value, &out); err != nil {
		t.Fatalf("create outcome %s: %v", res.Value, err)
	}
	f.ref = DatasetRef{Name: create.Dataset, Created: out.Created}
	if out.Created != res.Index {
		t.Fatalf("created = %d, want the create entry's index %d", out.Created, res.Index)
	}
	return f
}

// submit signs cmd with priv's next seq and applies it.
func (f *dsFixture) submit(priv ed25519.PrivateKey, cmd Command) Result {
	f.h.t.Helper()
	k := clientKey(pubOf(priv))
	f.seqs[k]++
	return f.h.apply(mustSign(f.h.t, priv, f.seqs[k], cmd))
}

// must is submit that fails the test unless the command succeeds.
func (f *dsFixture) must(priv ed25519.PrivateKey, cmd Command) Result {
	f.h.t.Helper()
	r := f.submit(priv, cmd)
	if r.Code != CodeOK {
		f.h.t.Fatalf("%s by %s: %s: %s", cmd.Op, FormatKey(pubOf(priv))[:8], r.Code, r.Message)
	}
	return r
}

// syncCmd normalizes and encodes snap into a sync_dataset command.
func (f *dsFixture) syncCmd(snap DatasetSnapshot) Command {
	f.h.t.Helper()
	return syncCommand(f.h.t, f.ref.Name, snap)
}

// syncCommand normalizes and encodes snap into a sync_dataset command of
// dataset name.
func syncCommand(t fataler, name string, snap DatasetSnapshot) Command {
	helper(t)
	if err := snap.Normalize(); err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	b, err := EncodeDatasetSnapshot(snap)
	if err != nil {
		t.Fatalf("EncodeDatasetSnapshot: %v", err)
	}
	return Command{Op: OpSyncDataset, Dataset: name, Snapshot: b}
}

// sync submits snap for submitter and returns the verdicts. snap is
// normalized in place, so positions in the outcome index its slices.
func (f *dsFixture) sync(submitter ed25519.PrivateKey, snap *DatasetSnapshot) SyncOutcome {
	f.h.t.Helper()
	if err := snap.Normalize(); err != nil {
		f.h.t.Fatalf("Normalize: %v", err)
	}
	res := f.must(submitter, f.syncCmd(*snap))
	var out SyncOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil {
		f.h.t.Fatalf("sync outcome %s: %v", res.Value, err)
	}
	return out
}

func (f *dsFixture) info() DatasetInfo {
	f.h.t.Helper()
	var info DatasetInfo
	if err := json.Unmarshal(f.h.query(QueryDataset, f.ref.Name), &info); err != nil {
		f.h.t.Fatalf("dataset info: %v", err)
	}
	return info
}

func (f *dsFixture) agent(priv ed25519.PrivateKey) AgentInfo {
	f.h.t.Helper()
	for _, a := range f.info().Agents {
		if a.Agent == FormatKey(pubOf(priv)) {
			return a
		}
	}
	f.h.t.Fatalf("agent %s not in the dataset", FormatKey(pubOf(priv)))
	return AgentInfo{}
}

// cells returns the dataset's cells as the state holds them.
func (f *dsFixture) cells() []Cell {
	f.h.sm.mu.RLock()
	defer f.h.sm.mu.RUnlock()
	return datasetCells(f.h.sm, f.ref.Name)
}

// datasetCells copies the cells of dataset name; the caller holds sm.mu or
// owns sm.
func datasetCells(sm *StateMachine, name string) []Cell {
	ds := sm.st.datasets[name]
	out := make([]Cell, ds.cells)
	for i := range out {
		c := ds.cell(i)
		out[i] = Cell{GlobalSeq: c.GlobalSeq, Value: bytes.Clone(c.Value)}
	}
	return out
}

// datasetHash hashes the canonical encoding of every dataset of sm.
func datasetHash(sm *StateMachine) [32]byte {
	sm.mu.RLock()
	defer sm.mu.RUnlock()
	e := &encoder{}
	sm.st.encodeDatasets(e)
	return sha256.Sum256(e.b)
}

func signedChange(t fataler, priv ed25519.PrivateKey, ref DatasetRef, l uint64, cell uint32, g uint64, value []byte) DatasetChange {
	helper(t)
	c, err := SignChange(priv, ref, DatasetChange{LocalSeq: l, Cell: cell, GlobalSeq: g, Value: value})
	if err != nil {
		t.Fatalf("SignChange: %v", err)
	}
	return c
}

func signedStatement(t fataler, priv ed25519.PrivateKey, ref DatasetRef, max uint64) SeqStatement {
	helper(t)
	s, err := SignSeqStatement(priv, ref, max)
	if err != nil {
		t.Fatalf("SignSeqStatement: %v", err)
	}
	return s
}

// val returns a value of n bytes starting with s, padded with zeros.
func val(n int, s string) []byte {
	b := make([]byte, n)
	copy(b, s)
	return b
}
