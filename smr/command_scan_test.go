package smr

import "testing"

var benchCommand = []byte(`{"op":"register_session","session_id":"session-0001","metadata":{"agent":"a1","region":"eu"},"ttl_ms":60000}`)

// BenchmarkScanFields compares the byte scanner that walks valid commands
// with encoding/json's tokenizer walk, side by side:
//
//	go test ./smr -run '^$' -bench ScanFields -benchmem
func BenchmarkScanFields(b *testing.B) {
	b.Run("scanner", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := scanFields(benchCommand); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tokenizer", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := scanFieldsTokens(benchCommand); err != nil {
				b.Fatal(err)
			}
		}
	})
}
