package config

import (
	"slices"
	"testing"
	"time"
)

func TestEveryKeyIsClassifiedOnce(t *testing.T) {
	names := map[string]bool{}
	for _, k := range Keys() {
		names[k.Name] = true
		r, s := reloadable[k.Name], restartOnly[k.Name]
		switch {
		case r && s:
			t.Errorf("%s is both reloadable and restart-only", k.Name)
		case !r && !s:
			t.Errorf("%s is neither reloadable nor restart-only: classify it in config/reload.go", k.Name)
		}
	}
	for k := range reloadable {
		if !names[k] {
			t.Errorf("reloadable lists %q, which is not a key", k)
		}
	}
	for k := range restartOnly {
		if !names[k] {
			t.Errorf("restartOnly lists %q, which is not a key", k)
		}
	}
}

func TestReloadableKeys(t *testing.T) {
	for _, k := range []string{"anomaly_threshold", "quarantine_threshold", "view_change_timeout", "vote_timeout",
		"max_view_change_retries", "state_transfer_timeout", "checkpoint_interval", "log.level", "auto_deescalate_after", "disruptive_elections_per_hour",
		"raft.heartbeat_timeout", "raft.election_timeout", "raft.snapshot_interval", "raft.snapshot_threshold",
		"raft.trailing_logs", "log_size_limit"} {
		if !Reloadable(k) {
			t.Errorf("Reloadable(%q) = false, want true", k)
		}
	}
	for _, k := range []string{"node_id", "data_dir", "api_addr", "peer_addr", "tls.cert_file", "consensus_mode",
		"initial_members", "bootstrap_admin_keys", "limits.result_window", "limits.max_command_bytes", "log_retention", "no_such_key", ""} {
		if Reloadable(k) {
			t.Errorf("Reloadable(%q) = true, want false", k)
		}
	}
	got := ReloadableKeys()
	if len(got) != len(reloadable) {
		t.Fatalf("ReloadableKeys() = %v, want the %d reloadable keys", got, len(reloadable))
	}
}

func TestDiff(t *testing.T) {
	a := Default()
	if d := Diff(a, a); len(d) != 0 {
		t.Fatalf("Diff of equal configs = %v, want none", d)
	}
	b := a
	b.NodeID = "other"
	b.ViewChangeTimeout = 7 * time.Second
	b.Raft.HeartbeatTimeout = 3 * time.Second
	b.InitialMembers = []string{"n1=127.0.0.1:1"}
	b.Log.Level = "debug"
	want := []string{"node_id", "initial_members", "view_change_timeout", "raft.heartbeat_timeout", "log.level"}
	if d := Diff(a, b); !slices.Equal(d, want) {
		t.Fatalf("Diff = %v, want %v", d, want)
	}
	reload, restart := SplitReload(a, b)
	if !slices.Equal(reload, []string{"view_change_timeout", "raft.heartbeat_timeout", "log.level"}) {
		t.Errorf("reload = %v", reload)
	}
	if !slices.Equal(restart, []string{"node_id", "initial_members"}) {
		t.Errorf("restart = %v", restart)
	}
	// A nil and an empty list are the same configuration.
	c := a
	c.Join = []string{}
	if d := Diff(a, c); len(d) != 0 {
		t.Errorf("Diff(nil join, empty join) = %v, want none", d)
	}
}

func TestWithReloaded(t *testing.T) {
	running := Default()
	running.NodeID = "n1"
	next := running
	next.NodeID = "n2"
	next.AnomalyThreshold = 0.5
	next.Raft.ElectionTimeout = 4 * time.Second
	next.Raft.CommitTimeout = 9 * time.Millisecond
	got := WithReloaded(running, next)
	if got.NodeID != "n1" || got.Raft.CommitTimeout != running.Raft.CommitTimeout {
		t.Errorf("restart-only keys changed: node_id %q, raft.commit_timeout %s", got.NodeID, got.Raft.CommitTimeout)
	}
	if got.AnomalyThreshold != 0.5 || got.Raft.ElectionTimeout != 4*time.Second {
		t.Errorf("reloadable keys not taken: anomaly_threshold %v, raft.election_timeout %s", got.AnomalyThreshold, got.Raft.ElectionTimeout)
	}
	if running.AnomalyThreshold == 0.5 {
		t.Error("WithReloaded modified its argument")
	}
}
