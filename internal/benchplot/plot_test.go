package benchplot

import (
	"strings"
	"testing"
)

// TestPageDrawsEverySeries: every series becomes a polyline with one circle
// per point, labels are escaped, and an empty chart draws nothing.
func TestPageDrawsEverySeries(t *testing.T) {
	var b strings.Builder
	err := Page(&b, "Writes <cft>", "note", []Chart{{
		Title: "writes/s", XLabel: "clients", YLabel: "writes/s", LogX: true,
		Series: []Series{
			{Label: "cft", Points: []Point{{16, 914}, {64, 780}, {256, 693}}},
			{Label: "bft", Points: []Point{{16, 500}, {64, 600}}},
		},
	}, {Title: "empty"}})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if got := strings.Count(out, "<polyline"); got != 2 {
		t.Errorf("%d polylines, want 2", got)
	}
	if got := strings.Count(out, "<circle"); got != 5 {
		t.Errorf("%d points, want 5", got)
	}
	if strings.Contains(out, "<cft>") || !strings.Contains(out, "Writes &lt;cft&gt;") {
		t.Error("title not escaped")
	}
	if strings.Count(out, "<svg") != 1 {
		t.Error("an empty chart should draw no svg")
	}
}
