package node

import (
	"testing"

	"github.com/tandem-consensus/tandem/checkpoint"
)

// TestKeepFrom: the HotStuff engine keeps the blocks from the lower of the
// previous stable checkpoint's index and the newest one's minus
// log_retention.
func TestKeepFrom(t *testing.T) {
	at := func(i uint64) *checkpoint.Certificate {
		return &checkpoint.Certificate{Statement: checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Index: i}}
	}
	cases := []struct {
		name           string
		prev           *checkpoint.Certificate
		cert           uint64
		retain, expect uint64
	}{
		{"retention reaches further back", at(200), 250, 100, 150},
		{"previous checkpoint is older", at(100), 250, 100, 100},
		{"no previous checkpoint", nil, 250, 100, 150},
		{"retention covers the whole log", at(50), 100, 100, 0},
		{"retention longer than the log", nil, 80, 1000, 0},
	}
	for _, c := range cases {
		if got := keepFrom(c.prev, at(c.cert), c.retain); got != c.expect {
			t.Errorf("%s: keepFrom = %d, want %d", c.name, got, c.expect)
		}
	}
}
