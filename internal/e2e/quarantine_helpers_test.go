package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
)

// waitQuarantined calls write (a write through the correct nodes; it
// reports whether it was acknowledged) and polls the quarantine list of
// every correct node every pause, until each lists byzantineNode; a
// correct node listed anywhere, or 40 s without all of them, fails the
// test. It logs the detection latency: from the byzantine node's first
// equivocation (watch) to the quarantine on the last correct node, and
// returns when each correct node quarantined it.
func waitQuarantined(ctx context.Context, t *testing.T, c *cluster, adm *adminHTTP, correct []string, watch *actWatch, write func(i int) bool, pause time.Duration) map[string]time.Time {
	t.Helper()
	since := map[string]time.Time{}
	deadline := time.Now().Add(40 * time.Second)
	writes := 0
	for len(since) < len(correct) {
		if time.Now().After(deadline) {
			t.Fatalf("within 40s only %v quarantined %s (first equivocation seen: %v)", since, byzantineNode, !watch.first().IsZero())
		}
		if write(writes) {
			writes++
		}
		for _, id := range correct {
			if _, ok := since[id]; ok {
				continue
			}
			var v api.QuarantineView
			if err := adm.get(ctx, c.endpoint(id), "/v1/admin/quarantine", &v); err != nil {
				t.Logf("%s: quarantine list: %v", id, err)
				continue
			}
			for _, q := range v.Quarantined {
				if q.Node != byzantineNode {
					t.Fatalf("%s quarantined %s, a correct node: %+v", id, q.Node, q)
				}
				since[id] = q.Since
			}
		}
		time.Sleep(pause)
	}
	first := watch.first()
	if first.IsZero() {
		t.Fatalf("%s was quarantined but never logged an equivocation", byzantineNode)
	}
	last := latest(since)
	t.Logf("detection latency: %s from the first equivocation (%s) to quarantine on the last correct node; per node: %v; %d writes meanwhile",
		last.Sub(first).Round(time.Millisecond), first.Format(time.RFC3339Nano), since, writes)
	return since
}

// quarantineEvidence checks that node id lists byzantineNode, and only it,
// as quarantined with evidence, and that every piece of that evidence
// verifies against the member keys alone; it returns the evidence.
func quarantineEvidence(ctx context.Context, t *testing.T, c *cluster, adm *adminHTTP, id string, members *evidence.Members) []evidence.Evidence {
	t.Helper()
	var v api.QuarantineView
	if err := adm.get(ctx, c.endpoint(id), "/v1/admin/quarantine", &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Quarantined) != 1 || v.Quarantined[0].Node != byzantineNode || len(v.Quarantined[0].Evidence) == 0 {
		t.Fatalf("%s quarantine list: %+v", id, v)
	}
	var out []evidence.Evidence
	for _, s := range v.Quarantined[0].Evidence {
		var raw json.RawMessage
		if err := adm.get(ctx, c.endpoint(id), "/v1/admin/evidence/"+s.ID, &raw); err != nil {
			t.Fatal(err)
		}
		var e evidence.Evidence
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("%s evidence %s: %v", id, s.ID, err)
		}
		if err := evidence.Verify(&e, members); err != nil {
			t.Fatalf("%s evidence %s does not verify: %v", id, s.ID, err)
		}
		out = append(out, e)
	}
	return out
}

// latest returns the latest of the times in m (zero when m is empty).
func latest[K comparable](m map[K]time.Time) time.Time {
	var last time.Time
	for _, t := range m {
		if t.After(last) {
			last = t
		}
	}
	return last
}
