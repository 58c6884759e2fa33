package raftengine

import (
	"errors"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
)

// TestReloadChangesRunningRaft: Reload reaches hashicorp/raft's running
// configuration, an invalid combination changes nothing, and the cluster
// keeps committing.
func TestReloadChangesRunningRaft(t *testing.T) {
	c := newCluster(t, 3, fastRaft())
	c.bootstrap()
	l := c.leader()
	c.propose(1)

	next := fastRaft()
	next.HeartbeatTimeout = 400 * time.Millisecond
	next.ElectionTimeout = 600 * time.Millisecond
	next.SnapshotInterval = 3 * time.Second
	next.SnapshotThreshold = 77
	next.TrailingLogs = 99
	next.CommitTimeout = time.Second // fixed at start: ignored
	if err := l.e.Reload(next); err != nil {
		t.Fatal(err)
	}
	got := l.e.Reloadable()
	if got.HeartbeatTimeout != next.HeartbeatTimeout || got.ElectionTimeout != next.ElectionTimeout ||
		got.SnapshotInterval != next.SnapshotInterval || got.SnapshotThreshold != 77 || got.TrailingLogs != 99 {
		t.Fatalf("running raft settings after Reload = %+v, want those of %+v", got, next)
	}
	if got.CommitTimeout != 0 {
		t.Fatalf("Reloadable reports a commit timeout (%s); it is not reloadable", got.CommitTimeout)
	}

	// The leader lease (200ms, fixed at start) must not exceed the
	// heartbeat timeout: hashicorp/raft refuses, nothing changes.
	bad := next
	bad.HeartbeatTimeout = 100 * time.Millisecond
	bad.ElectionTimeout = 100 * time.Millisecond
	if err := l.e.Reload(bad); err == nil {
		t.Fatal("Reload accepted a heartbeat timeout below the running leader lease")
	}
	if after := l.e.Reloadable(); after != got {
		t.Fatalf("a refused Reload changed the settings to %+v", after)
	}
	c.propose(1)
}

func TestReloadOnStoppedEngine(t *testing.T) {
	c := newCluster(t, 1, fastRaft())
	e := c.nodes[0].e
	c.stop(0)
	if err := e.Reload(fastRaft()); !errors.Is(err, consensus.ErrStopped) {
		t.Fatalf("Reload after Stop: %v, want ErrStopped", err)
	}
}
