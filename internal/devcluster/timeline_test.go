package devcluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
)

// poll builds the states of nodes node1..node4 with the given leader,
// mode and epoch; quarantines maps observer → offender.
func poll(leader, mode string, epoch uint64, switching bool, quarantines map[string]string) []NodeState {
	var out []NodeState
	for _, id := range []string{"node1", "node2", "node3", "node4"} {
		s := NodeState{ID: id, Quarantine: &api.QuarantineView{Node: id}}
		s.Status.Status = consensus.Status{Mode: mode, NodeID: id, LeaderID: leader, Term: 2, AppliedIndex: 5}
		s.Status.Epoch = &api.EpochStatus{Epoch: epoch, Mode: mode, Switching: switching, BaseIndex: 9}
		if epoch > 1 {
			s.Status.Epoch.Reason = "detector: node3"
			s.Status.Epoch.CertificateForm = "quorum"
		}
		if off, ok := quarantines[id]; ok {
			s.Quarantine.Quarantined = []api.QuarantineEntry{{Node: off, Evidence: []api.EvidenceSummary{{Kind: "leader-equivocation", Irrefutable: true}}}}
		}
		out = append(out, s)
	}
	return out
}

func kinds(ev []Event) string {
	var k []string
	for _, e := range ev {
		k = append(k, e.Kind+":"+e.Node+e.Offender)
	}
	return strings.Join(k, " ")
}

func TestTimelineEscalation(t *testing.T) {
	tl := &Timeline{Byzantine: map[string][]string{"node3": {"equivocate"}}}
	// Not up while a node has no leader.
	st := poll("node1", "cft", 1, false, nil)
	st[2].Status.LeaderID = ""
	if ev := tl.Observe(st); len(ev) != 0 {
		t.Fatalf("before every node knows a leader: %v", kinds(ev))
	}
	ev := tl.Observe(poll("node1", "cft", 1, false, nil))
	if kinds(ev) != "up:" || !strings.Contains(ev[0].Text, "mode cft, epoch 1, Raft leader node1") {
		t.Fatalf("up: %v %+v", kinds(ev), ev)
	}
	if ev := tl.Observe(poll("node1", "cft", 1, false, nil)); len(ev) != 0 {
		t.Fatalf("nothing changed: %v", kinds(ev))
	}
	ev = tl.Observe(poll("node3", "cft", 1, false, nil))
	if kinds(ev) != "leader:node3 equivocate:node3" {
		t.Fatalf("node3 leads: %v", kinds(ev))
	}
	// node3's own view of itself does not count; each correct node's
	// quarantine is reported once, with the evidence kind.
	q := map[string]string{"node1": "node3", "node3": "node3"}
	ev = tl.Observe(poll("node3", "cft", 1, false, q))
	if kinds(ev) != "quarantine:node1node3" || !strings.Contains(ev[0].Text, "leader-equivocation evidence (irrefutable)") {
		t.Fatalf("quarantine: %v %+v", kinds(ev), ev)
	}
	q = map[string]string{"node1": "node3", "node2": "node3", "node4": "node3"}
	if ev := tl.Observe(poll("node3", "cft", 1, false, q)); kinds(ev) != "quarantine:node2node3 quarantine:node4node3" {
		t.Fatalf("more quarantines: %v", kinds(ev))
	}
	// The switch: one node is handing over; then every correct node runs
	// epoch 2 (node3 lags: it does not count). No leader event for the
	// HotStuff leader.
	st = poll("node2", "cft", 1, true, q)
	if ev := tl.Observe(st); kinds(ev) != "switching:node1" {
		t.Fatalf("switching: %v", kinds(ev))
	}
	st = poll("node2", "bft", 2, false, q)
	st[2].Status.Epoch = &api.EpochStatus{Epoch: 1, Mode: "cft", Switching: true}
	ev = tl.Observe(st)
	if kinds(ev) != "epoch:" || ev[0].Epoch != 2 || ev[0].Mode != "bft" || !strings.Contains(ev[0].Text, "cft → bft") || !strings.Contains(ev[0].Text, "quorum certificate") {
		t.Fatalf("epoch 2: %v %+v", kinds(ev), ev)
	}
	if ev := tl.Observe(poll("node4", "bft", 2, false, q)); len(ev) != 0 {
		t.Fatalf("a HotStuff view change is no event: %v", kinds(ev))
	}
}

func TestTimelineUnreachable(t *testing.T) {
	tl := &Timeline{}
	tl.Observe(poll("node1", "cft", 1, false, nil))
	st := poll("node1", "cft", 1, false, nil)
	st[1] = NodeState{ID: "node2", Err: errors.New("connection refused")}
	if ev := tl.Observe(st); kinds(ev) != "unreachable:node2" {
		t.Fatalf("node2 down: %v", kinds(ev))
	}
	if ev := tl.Observe(st); len(ev) != 0 {
		t.Fatalf("still down: %v", kinds(ev))
	}
	if ev := tl.Observe(poll("node1", "cft", 1, false, nil)); kinds(ev) != "reachable:node2" {
		t.Fatalf("node2 back: %v", kinds(ev))
	}
}

// A node that equivocates and is quarantined between two polls is
// announced before its first quarantine, once.
func TestTimelineEquivocationBeforeQuarantine(t *testing.T) {
	tl := &Timeline{Byzantine: map[string][]string{"node3": {"equivocate"}}}
	tl.Observe(poll("node1", "cft", 1, false, nil))
	ev := tl.Observe(poll("node1", "cft", 1, false, map[string]string{"node2": "node3"}))
	if kinds(ev) != "equivocate:node3 quarantine:node2node3" {
		t.Fatalf("got %v", kinds(ev))
	}
	if _, ok := tl.Equivocating("node3"); ok {
		t.Fatal("node3's equivocation announced twice")
	}
	if _, ok := tl.Equivocating("node1"); ok {
		t.Fatal("node1 is not told to equivocate")
	}
}
