package smr

import (
	"crypto/ed25519"
	"fmt"
	"testing"
)

// BenchmarkApply measures Apply of register_session entries from one client,
// including entry decoding and signature verification. Sessions have a TTL
// and the clock advances 1 ms per entry, so expiry runs in steady state.
func BenchmarkApply(b *testing.B) {
	priv := testKey(1)
	sm, err := New(Genesis{AdminKeys: []ed25519.PublicKey{pubOf(priv)}})
	if err != nil {
		b.Fatal(err)
	}
	entries := make([][]byte, b.N)
	for i := range entries {
		env := mustSign(b, priv, uint64(i+1), Command{
			Op:        OpRegisterSession,
			SessionID: fmt.Sprintf("session-%d", i),
			TTLMillis: 30_000,
			Metadata:  map[string]string{"agent": "bench"},
		})
		entries[i] = entryBytes(b, int64(i)*1_000_000, env)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, e := range entries {
		if r := sm.Apply(uint64(i+1), e); r.Code != CodeOK {
			b.Fatalf("entry %d: %s: %s", i, r.Code, r.Message)
		}
	}
}

// BenchmarkSyncDataset measures Apply of sync_dataset entries of 100
// changes each (every change wins: it verifies, merges and spends), the
// unit of `tandem bench dataset`.
func BenchmarkSyncDataset(b *testing.B) {
	const changes = 100
	sm, ref := propDataset(b, Command{Cells: changes, CellSize: 32})
	agent := dsAgents[0]
	entries := make([][]byte, b.N)
	value := make([]byte, 32)
	for i := range entries {
		var snap DatasetSnapshot
		if i == 0 {
			snap.Statements = []SeqStatement{signedStatement(b, agent, ref, DefaultMaxAgentSeqs)}
		}
		for j := range changes {
			snap.Changes = append(snap.Changes, signedChange(b, agent, ref, uint64(i*changes+j+1), uint32(j), uint64(i+1), value))
		}
		entries[i] = entryBytes(b, 1, mustSign(b, agent, uint64(i+1), syncCommand(b, "d", snap)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i, e := range entries {
		if r := sm.Apply(uint64(i+2), e); r.Code != CodeOK {
			b.Fatalf("entry %d: %s: %s", i, r.Code, r.Message)
		}
	}
}
