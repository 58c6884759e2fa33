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
