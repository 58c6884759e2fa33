package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/smr"
)

// TestReloadCFT: in cft mode a reload reaches running Raft, reports the
// keys that need a restart without applying them, refuses an invalid
// configuration without changing anything, and shows the values in effect
// in the status.
func TestReloadCFT(t *testing.T) {
	c := startCluster(t, 3)
	tn := c.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	next := tn.cfg
	next.Raft.HeartbeatTimeout = 700 * time.Millisecond
	next.Raft.ElectionTimeout = 900 * time.Millisecond
	next.Raft.TrailingLogs = 4321
	next.AnomalyThreshold = 0.6
	next.LogSizeLimit = 3 << 20
	next.DataDir = t.TempDir()                // needs a restart
	next.Raft.CommitTimeout = 3 * time.Second // fixed when Raft starts
	applied, ignored, err := tn.n.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"anomaly_threshold", "log_size_limit", "raft.heartbeat_timeout", "raft.election_timeout", "raft.trailing_logs"}; !slices.Equal(applied, want) {
		t.Errorf("applied = %v, want %v", applied, want)
	}
	if want := []string{"data_dir", "raft.commit_timeout"}; !slices.Equal(ignored, want) {
		t.Errorf("ignored = %v, want %v", ignored, want)
	}
	if l := tn.n.raft.LogLimits(); l.SizeBytes != 3<<20 || l.Retention != tn.cfg.LogRetention {
		t.Fatalf("running raft's log limits after Reload: %+v", l)
	}
	rc := tn.n.raft.Reloadable()
	if rc.HeartbeatTimeout != 700*time.Millisecond || rc.ElectionTimeout != 900*time.Millisecond || rc.TrailingLogs != 4321 {
		t.Fatalf("running raft after Reload: %+v", rc)
	}
	eff := tn.n.Effective()
	if eff.DataDir != tn.cfg.DataDir || eff.Raft.CommitTimeout != tn.cfg.Raft.CommitTimeout {
		t.Errorf("restart-only keys changed in the effective config: data_dir %s, raft.commit_timeout %s", eff.DataDir, eff.Raft.CommitTimeout)
	}
	st := tn.n.Status(ctx)
	if st.Tunables["raft.heartbeat_timeout"] != "700ms" || st.Tunables["anomaly_threshold"] != "0.6" {
		t.Fatalf("status tunables = %v", st.Tunables)
	}
	if _, ok := st.Tunables["data_dir"]; ok {
		t.Error("status tunables list data_dir, which is not reloadable")
	}

	// Invalid: vote_timeout not below view_change_timeout. Nothing changes.
	bad := next
	bad.Raft.HeartbeatTimeout = 500 * time.Millisecond
	bad.VoteTimeout = 10 * time.Second
	if _, _, err := tn.n.Reload(bad); err == nil {
		t.Fatal("Reload accepted vote_timeout >= view_change_timeout")
	} else if probs := config.Problems(err); len(probs) != 1 || probs[0].Key != "vote_timeout" {
		t.Fatalf("Reload error %v does not name vote_timeout", err)
	}
	if got := tn.n.raft.Reloadable().HeartbeatTimeout; got != 700*time.Millisecond {
		t.Fatalf("a refused reload changed the heartbeat timeout to %s", got)
	}

	// Refused by Raft itself (heartbeat below the running leader lease):
	// nothing changes either.
	bad = next
	bad.Raft.HeartbeatTimeout = 100 * time.Millisecond
	bad.Raft.ElectionTimeout = 100 * time.Millisecond
	bad.Raft.LeaderLeaseTimeout = 50 * time.Millisecond // restart-only: the running 200ms stays
	if _, _, err := tn.n.Reload(bad); err == nil {
		t.Fatal("Reload accepted a heartbeat timeout below the running leader lease")
	}
	if got := tn.n.Effective().Raft.HeartbeatTimeout; got != 700*time.Millisecond {
		t.Fatalf("effective heartbeat timeout after a refused reload = %s", got)
	}

	// Reloading the same file again changes nothing.
	if applied, _, err := tn.n.Reload(next); err != nil || len(applied) != 0 {
		t.Fatalf("second Reload of the same configuration: applied %v, %v", applied, err)
	}
	c.submit(t, ctx, c.leader(t), c.admin, smr.Command{Op: smr.OpSetConfig, Key: "after-reload", Value: "1"})
}

// TestReloadBFT: in bft mode a reload reaches the HotStuff engine's
// pacemaker and the detector's thresholds.
func TestReloadBFT(t *testing.T) {
	c := startClusterMode(t, 4, config.ModeBFT)
	tn := c.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	next := tn.cfg
	next.ViewChangeTimeout = 900 * time.Millisecond
	next.VoteTimeout = 300 * time.Millisecond
	next.MaxViewChangeRetries = 5
	next.CheckpointInterval = 500
	next.AnomalyThreshold = 0.5
	next.QuarantineThreshold = 0.8
	next.DisruptiveElectionsPerHour = 25
	applied, ignored, err := tn.n.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 7 || len(ignored) != 0 {
		t.Fatalf("applied %v, ignored %v", applied, ignored)
	}
	to, err := tn.n.bft.Timeouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if to.ViewChangeTimeout != 900*time.Millisecond || to.VoteTimeout != 300*time.Millisecond || to.MaxViewChangeRetries != 5 || to.SnapshotInterval != 500 {
		t.Fatalf("engine timeouts after Reload = %+v", to)
	}
	if got := tn.n.det.conflicts.disruptLimit.Load(); got != 25 {
		t.Fatalf("disruptive_elections_per_hour after Reload = %d, want 25", got)
	}
	sc := tn.n.det.scoreConfig()
	if sc.AnomalyThreshold != 0.5 || sc.QuarantineThreshold != 0.8 {
		t.Fatalf("detector thresholds after Reload = %v, %v", sc.AnomalyThreshold, sc.QuarantineThreshold)
	}
	if sc.EscalateCeiling < sc.AnomalyThreshold || sc.EscalateCeiling >= sc.QuarantineThreshold {
		t.Fatalf("escalate ceiling %v outside [anomaly, quarantine)", sc.EscalateCeiling)
	}

	// quarantine_threshold not above anomaly_threshold: refused, the
	// detector keeps its thresholds.
	bad := next
	bad.AnomalyThreshold = 0.9
	if _, _, err := tn.n.Reload(bad); err == nil {
		t.Fatal("Reload accepted quarantine_threshold <= anomaly_threshold")
	}
	if got := tn.n.det.scoreConfig().AnomalyThreshold; got != 0.5 {
		t.Fatalf("a refused reload changed anomaly_threshold to %v", got)
	}
	c.submit(t, ctx, tn, c.admin, smr.Command{Op: smr.OpSetConfig, Key: "after-reload", Value: "1"})
}
