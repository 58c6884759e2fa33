package config

import (
	"reflect"
	"slices"
)

// reloadable lists the keys a running node applies when its configuration
// changes (tandem serve re-reads the file on a change and on SIGHUP). Every
// other key is read once at start-up: the node's identity, storage and
// addresses, its TLS files, the consensus mode and the cluster's formation,
// and what the genesis entry fixes for the whole cluster. A change to one of
// those is reported by key name and ignored until the node restarts.
//
// The quarantine webhook is set up with the detector when the node starts.
// Raft's leader lease, commit timeout, append batch size and apply timeout
// are fixed when Raft starts (hashicorp/raft reloads only the heartbeat and
// election timeouts and the snapshot settings).
var reloadable = map[string]bool{
	"anomaly_threshold":       true,
	"quarantine_threshold":    true,
	"view_change_timeout":     true,
	"vote_timeout":            true,
	"max_view_change_retries": true,
	"auto_deescalate_after":   true,
	"state_transfer_timeout":  true,
	"checkpoint_interval":     true,
	"raft.heartbeat_timeout":  true,
	"raft.election_timeout":   true,
	"raft.snapshot_interval":  true,
	"raft.snapshot_threshold": true,
	"raft.trailing_logs":      true,
	"log.level":               true,

	"disruptive_elections_per_hour": true,
	"log_size_limit":                true,
}

// restartOnly lists the keys read once at start-up. A test checks that
// every key is in exactly one of reloadable and restartOnly, so a new key
// has to be classified.
var restartOnly = map[string]bool{
	"node_id":                   true,
	"data_dir":                  true,
	"api_addr":                  true,
	"peer_addr":                 true,
	"gossip_addr":               true,
	"advertise_peer_addr":       true,
	"advertise_gossip_addr":     true,
	"join":                      true,
	"bootstrap_expect":          true,
	"initial_members":           true,
	"gossip_key_file":           true,
	"tls.ca_file":               true,
	"tls.cert_file":             true,
	"tls.key_file":              true,
	"bootstrap_admin_keys":      true,
	"consensus_mode":            true,
	"quarantine_webhook_url":    true,
	"bft_fault_threshold":       true,
	"log_retention":             true,
	"require_mtls":              true,
	"require_signatures":        true,
	"signature_algorithm":       true,
	"bft_commit_rule":           true,
	"bft_max_batch":             true,
	"bft_max_batch_delay":       true,
	"auto_recovery":             true,
	"enable_debug":              true,
	"raft.leader_lease_timeout": true,
	"raft.commit_timeout":       true,
	"raft.snapshot_retain":      true,
	"raft.max_append_entries":   true,
	"raft.apply_timeout":        true,
	"limits.max_request_bytes":  true,
	"limits.max_command_bytes":  true,
	"limits.result_window":      true,
	"log.format":                true,
}

// Reloadable reports whether a running node applies a change of key without
// a restart. It is false for unknown keys.
func Reloadable(key string) bool { return reloadable[key] }

// ReloadableKeys returns the reloadable keys in file order.
func ReloadableKeys() []string {
	var out []string
	for _, k := range Keys() {
		if reloadable[k.Name] {
			out = append(out, k.Name)
		}
	}
	return out
}

// Diff returns the keys whose values differ between old and new, in file
// order.
func Diff(old, new Config) (changed []string) {
	walkPair(reflect.ValueOf(&old).Elem(), reflect.ValueOf(&new).Elem(), "", func(name string, a, b reflect.Value) {
		if !sameValue(a, b) {
			changed = append(changed, name)
		}
	})
	return changed
}

// sameValue compares two values of one key; a nil and an empty list are
// the same.
func sameValue(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice {
		return slices.Equal(a.Interface().([]string), b.Interface().([]string))
	}
	return a.Interface() == b.Interface()
}

// SplitReload divides the keys that changed from old to new into those a
// running node applies (reload) and those that need a restart (restart),
// each in file order.
func SplitReload(old, new Config) (reload, restart []string) {
	for _, k := range Diff(old, new) {
		if Reloadable(k) {
			reload = append(reload, k)
		} else {
			restart = append(restart, k)
		}
	}
	return reload, restart
}

// WithReloaded returns running with the reloadable keys taken from next:
// the configuration a node runs with after applying next without a
// restart.
func WithReloaded(running, next Config) Config {
	out := running
	dst := reflect.ValueOf(&out).Elem()
	walkPair(dst, reflect.ValueOf(&next).Elem(), "", func(name string, a, b reflect.Value) {
		if reloadable[name] {
			a.Set(b)
		}
	})
	return out
}

// walkPair walks the keys of two values of the same struct type in file
// order.
func walkPair(a, b reflect.Value, prefix string, fn func(name string, a, b reflect.Value)) {
	t := a.Type()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + tag
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct {
			walkPair(fa, fb, name+".", fn)
		} else {
			fn(name, fa, fb)
		}
	}
}
