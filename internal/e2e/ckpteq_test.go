package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
)

// equivocatingCheckpoint is the log text of node4's first checkpoint
// equivocation.
const equivocatingCheckpoint = "byzantine: equivocate-checkpoint"

// TestCheckpointEquivocationIsQuarantined: four processes whose
// initial_members list every member key, checkpoint_interval 10, node4
// built with -tags byzantine and told equivocate-checkpoint: for each of
// its checkpoints it signs its real state hash for node1 and node3 and
// another hash for node2. No correct node receives both votes from node4;
// node2 sees node4's vote dissent from the quorum and relays it, node1
// and node3 hold node4's other vote and prove the equivocation, and the
// evidence relay brings the proof to every correct node. Each quarantines
// node4, and only node4, with checkpoint-equivocation evidence that
// verifies against the member keys alone, its metric says so, and writes
// keep committing. Run in bft and cft mode; the detection latency (node4's
// first equivocation to quarantine on the last correct node) is logged.
func TestCheckpointEquivocationIsQuarantined(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	for _, tc := range []struct {
		mode  string
		extra map[string]any
	}{
		{"bft", map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms", "checkpoint_interval": 10}},
		{"cft", map[string]any{"raft": fastRaft, "checkpoint_interval": 10}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := newByzantineSetup(t, byzBinary, tc.mode, tc.extra, "equivocate-checkpoint", equivocatingCheckpoint)
			c, correct, watch := s.c, s.correct, s.watch
			b := s.launch(t)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()

			// Writes through the correct nodes cross checkpoint indexes
			// until every correct node quarantines node4, and only it.
			waitQuarantined(ctx, t, c, b.adm, correct, watch, b.writer(ctx, "before-"), 50*time.Millisecond)

			for _, id := range correct {
				for _, e := range b.requireQuarantined(ctx, t, id, evidence.KindCheckpointEquivocation) {
					one, two := e.Checkpoints[0].Statement, e.Checkpoints[1].Statement
					t.Logf("%s holds %s", id, e.Summary())
					if one.Index != two.Index || one.StateHash == two.StateHash {
						t.Fatalf("%s evidence %s holds %s and %s", id, e.ID(), one, two)
					}
				}
				var list api.EvidenceListView
				if err := b.adm.get(ctx, c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
					t.Fatal(err)
				}
				for _, s := range list.Evidence {
					if s.Kind == evidence.KindCheckpointEquivocation.String() && (s.Offender != byzantineNode || !s.Verified) {
						t.Fatalf("%s lists %+v", id, s)
					}
				}
			}

			// Writes keep committing without node4.
			b.requireWritesCommit(ctx, t, 20, 30*time.Second)
		})
	}
}
