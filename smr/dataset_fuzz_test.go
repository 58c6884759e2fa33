package smr

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// fuzzSnapshot is a valid binary snapshot for seeds: statements and changes
// of two agents for dataset "d" created at index 1.
func fuzzSnapshot(t fataler) []byte {
	helper(t)
	ref := DatasetRef{Name: "d", Created: 1}
	a, b := dsAgents[0], dsAgents[1]
	snap := DatasetSnapshot{
		Statements: []SeqStatement{signedStatement(t, a, ref, 10), signedStatement(t, b, ref, 4)},
		Changes: []DatasetChange{
			signedChange(t, a, ref, 1, 0, 2, []byte("ab")),
			signedChange(t, a, ref, 2, 2, 3, []byte("zz")),
			signedChange(t, b, ref, 1, 1, 1, []byte{0xff, 0}),
			signedChange(t, b, ref, 2, 9, 1, []byte("xyz")),
		},
	}
	return syncCommand(t, "d", snap).Snapshot
}

// FuzzDecodeDatasetSnapshot: decoding never panics; a rejection is a coded
// *Error with a message from this package's templates; whatever decodes
// encodes to exactly the input (one encoding per snapshot).
func FuzzDecodeDatasetSnapshot(f *testing.F) {
	good := fuzzSnapshot(f)
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeDatasetSnapshot(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeMalformed && e.Code != CodeTooLarge) {
				t.Fatalf("DecodeDatasetSnapshot error %v is not malformed or too_large", err)
			}
			checkMessage(t, "DecodeDatasetSnapshot", e.Message)
			return
		}
		again, err := EncodeDatasetSnapshot(s)
		if err != nil {
			t.Fatalf("EncodeDatasetSnapshot of a decoded snapshot: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the bytes:\n%x\n%x", b, again)
		}
	})
}

// FuzzDatasetSync: a sync of arbitrary snapshot bytes into a dataset never
// panics; its messages come from this package's templates; a rejected sync
// leaves the datasets unchanged; and the accounting invariants hold.
func FuzzDatasetSync(f *testing.F) {
	f.Add(fuzzSnapshot(f))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0})
	sm, _ := propDataset(f, Command{Cells: 3, CellSize: 2, StepLimit: 3, MaxAgentSeqs: 50})
	r := newReplica(sm, 1)
	accepted := uint64(0)
	f.Fuzz(func(t *testing.T, b []byte) {
		before := datasetHash(sm)
		cmd, err := json.Marshal(Command{Op: OpSyncDataset, Dataset: "d", Snapshot: b})
		if err != nil {
			t.Fatal(err)
		}
		r.idx++
		r.seqs[0]++
		res := sm.Apply(r.idx, entryBytes(t, 1, signRaw(dsAgents[0], r.seqs[0], cmd)))
		if res.Code != CodeOK {
			checkMessage(t, "Apply", res.Message)
			if datasetHash(sm) != before {
				t.Fatal("a rejected sync changed the datasets")
			}
			return
		}
		var out SyncOutcome
		if err := json.Unmarshal(res.Value, &out); err != nil {
			t.Fatalf("outcome %s: %v", res.Value, err)
		}
		for i, rj := range append(out.StatementsRejected, out.Rejected...) {
			if (rj.Message != "") != (i < MaxRejectionMessages) {
				t.Fatalf("rejection %d has message %q; the first %d have one", i, rj.Message, MaxRejectionMessages)
			}
			if rj.Message != "" {
				checkMessage(t, "rejection", rj.Message)
			}
		}
		accepted += uint64(len(out.Accepted))
		checkDatasetInvariants(t, sm, accepted)
	})
}
