package e2e

import (
	"context"
	"strconv"
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
		out = append(out, verifiedEvidence(ctx, t, adm, c.endpoint(id), s.ID, members))
	}
	return out
}

// verifiedEvidence fetches the evidence record id from the node at ep and
// checks that it verifies against the member keys alone.
func verifiedEvidence(ctx context.Context, t *testing.T, adm *adminHTTP, ep, id string, members *evidence.Members) evidence.Evidence {
	t.Helper()
	var e evidence.Evidence
	if err := adm.get(ctx, ep, "/v1/admin/evidence/"+id, &e); err != nil {
		t.Fatalf("%s: evidence %s: %v", ep, id, err)
	}
	if err := evidence.Verify(&e, members); err != nil {
		t.Fatalf("%s: evidence %s does not verify: %v", ep, id, err)
	}
	return e
}

// accusersOf returns the accusers of node4 on metric in the accusations
// correct node id keeps, every record verifying against the member keys;
// an accusation on metric of anyone else, or by node4, fails the test.
// Other records are logged, but with strict any record that is not an
// accusation fails the test.
func accusersOf(ctx context.Context, t *testing.T, b *byzantineRun, id string, metric evidence.Metric, strict bool) map[evidence.NodeID]bool {
	t.Helper()
	var list api.EvidenceListView
	if err := b.adm.get(ctx, b.c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
		t.Fatal(err)
	}
	accusers := map[evidence.NodeID]bool{}
	for _, s := range list.Evidence {
		e := verifiedEvidence(ctx, t, b.adm, b.c.endpoint(id), s.ID, b.members)
		if strict && e.Kind != evidence.KindAccusation {
			t.Fatalf("%s keeps unexpected evidence %s: %s %s", id, e.ID(), e.Kind, e.Summary())
		}
		if e.Kind != evidence.KindAccusation || e.Accusation.Metric != metric {
			t.Logf("%s also keeps %s", id, e.Summary())
			continue
		}
		if e.Offender != byzantineNode || e.Accusation.Accuser == byzantineNode {
			t.Fatalf("%s keeps a false %s accusation: %s", id, metric, e.Summary())
		}
		accusers[e.Accusation.Accuser] = true
	}
	return accusers
}

// requireQuarantined checks that correct node id quarantines node4, and
// only it, on irrefutable evidence of kind naming node4 that verifies
// against the member keys alone, and that its tandem_quarantined metric
// says so; it returns the evidence.
func (b *byzantineRun) requireQuarantined(ctx context.Context, t *testing.T, id string, kind evidence.Kind) []evidence.Evidence {
	t.Helper()
	evs := quarantineEvidence(ctx, t, b.c, b.adm, id, b.members)
	for _, e := range evs {
		if !e.Irrefutable() || e.Offender != byzantineNode || e.Kind != kind {
			t.Fatalf("%s evidence %s: %s %s", id, e.ID(), e.Kind, e.Summary())
		}
	}
	if got := metricLine(t, b.adm.http, b.c.endpoint(id), `tandem_quarantined{member="`+byzantineNode+`"}`); got != "1" {
		t.Fatalf("%s: tandem_quarantined for %s is %q, want 1", id, byzantineNode, got)
	}
	return evs
}

// writer returns a write for waitQuarantined: config key prefix<i>
// through the correct nodes, within 2 s.
func (b *byzantineRun) writer(ctx context.Context, prefix string) func(i int) bool {
	return func(i int) bool {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.cl.SetConfig(wctx, prefix+strconv.Itoa(i), "v")
		return err == nil
	}
}

// requireWritesCommit writes n keys through the correct nodes, each of
// which must commit, and waits until the correct nodes converge.
func (b *byzantineRun) requireWritesCommit(ctx context.Context, t *testing.T, n int, converge time.Duration) {
	t.Helper()
	for i := range n {
		if _, err := b.cl.SetConfig(ctx, "after-"+strconv.Itoa(i), "v"); err != nil {
			t.Fatalf("write %d after the verdict: %v", i, err)
		}
	}
	b.c.waitConverged(b.correct, converge)
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
