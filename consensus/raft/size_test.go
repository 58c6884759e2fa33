package raftengine

import "testing"

// TestSnapshotOnLogSize: with Raft's own entry-count trigger out of reach
// and no stable checkpoint, nodes whose applied entries pass the log size
// limit snapshot, and Raft truncates the log behind the snapshot keeping
// log_retention entries; the byte count resets, and a restarted node
// counts the entries above its snapshot again.
func TestSnapshotOnLogSize(t *testing.T) {
	rc := fastRaft()
	rc.SnapshotThreshold = 1 << 40 // Raft's own trigger never fires
	rc.TrailingLogs = 4
	const retention = 8                       // above trailing_logs: Raft keeps this many
	limits := LogLimits{Retention: retention} // no size limit yet
	c := newCluster(t, 3, rc)
	for _, n := range c.nodes {
		n.e.SetLogLimits(limits)
	}
	c.bootstrap()
	c.propose(30)
	l := c.leader()
	c.converged(l)
	for _, n := range c.nodes {
		if st := n.e.Status(); st.LastSnapshotIndex != 0 || n.e.sizeSnaps.Load() != 0 || n.e.fsm.bytes.Load() == 0 {
			t.Fatalf("%s without a limit: snapshot index %d, %d size snapshots, %d bytes counted", n.id, st.LastSnapshotIndex, n.e.sizeSnaps.Load(), n.e.fsm.bytes.Load())
		}
	}
	before := l.e.fsm.bytes.Load()
	lim := before / 3
	limits.SizeBytes = lim
	for _, n := range c.nodes {
		n.e.SetLogLimits(limits)
	}
	c.propose(60)
	c.converged(c.leader())
	for _, n := range c.nodes {
		waitFor(t, n.id+" to snapshot on the size limit and truncate its log", func() bool {
			first, err := n.e.logs.FirstIndex()
			return err == nil && first > 1 && n.e.sizeSnaps.Load() > 0 && n.e.fsm.bytes.Load() < lim
		})
		first, _ := n.e.logs.FirstIndex()
		last, _ := n.e.logs.LastIndex()
		st := n.e.Status()
		if st.LastSnapshotIndex == 0 || last+1-first < retention {
			t.Fatalf("%s: snapshot index %d, log %d..%d: want a snapshot and at least %d entries kept", n.id, st.LastSnapshotIndex, first, last, retention)
		}
		t.Logf("%s: %d size snapshots, snapshot index %d, log %d..%d, %d bytes since (limit %d)", n.id, n.e.sizeSnaps.Load(), st.LastSnapshotIndex, first, last, n.e.fsm.bytes.Load(), lim)
	}

	// A restart counts the entries above the node's snapshot again.
	idx := 1
	if c.nodes[idx] == c.leader() {
		idx = 2
	}
	n := c.nodes[idx]
	want := n.e.fsm.bytes.Load()
	c.stop(idx)
	c.start(idx)
	n.e.SetLogLimits(limits)
	c.converged(c.leader())
	waitFor(t, "the restarted node to count the entries above its snapshot", func() bool {
		return n.e.fsm.bytes.Load() == want
	})
	c.propose(5)
	c.converged(c.leader())
}
