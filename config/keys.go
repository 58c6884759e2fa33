package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix is the prefix of the environment variables that set keys.
const EnvPrefix = "TANDEM_"

// Key describes one configuration key.
type Key struct {
	Name        string // dotted key, e.g. "raft.heartbeat_timeout"
	Type        string // string | int | float | bool | duration | list
	Default     string // Default()'s value, formatted as by Config.Format
	Description string // one line
}

// EnvName returns the environment variable that sets key:
// "raft.heartbeat_timeout" -> "TANDEM_RAFT_HEARTBEAT_TIMEOUT".
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// descriptions holds the one-line description of every key. A test checks
// that it covers exactly the keys of Config.
var descriptions = map[string]string{
	"node_id":                   "Unique node ID (1-63 of a-z, 0-9, '-'); must equal the CommonName of tls.cert_file.",
	"data_dir":                  "Directory for the raft log, stable store, snapshots and node.key.",
	"api_addr":                  "Listen address (host:port) of the client HTTP(S) API.",
	"peer_addr":                 "Listen address (host:port) of node-to-node mutual TLS (raft, forwarding).",
	"gossip_addr":               "Listen address (host:port) of memberlist gossip.",
	"advertise_peer_addr":       "Peer address other nodes dial; defaults to peer_addr. Required if peer_addr is a wildcard.",
	"advertise_gossip_addr":     "Gossip address announced to other nodes; defaults to gossip_addr.",
	"join":                      "Gossip addresses (host:port) of other nodes to join; env/flags: comma-separated.",
	"bootstrap_expect":          "Bootstrap a new cluster once this many servers are discovered through join (0 = off).",
	"initial_members":           "Static initial membership, entries id=peer_host:port including this node (bft: id=peer_host:port/node-public-key); excludes bootstrap_expect.",
	"gossip_key_file":           "Optional file with a base64 32-byte key that encrypts gossip.",
	"tls.ca_file":               "PEM file of the cluster CA (tandem ca create).",
	"tls.cert_file":             "PEM node certificate issued by the cluster CA (tandem cert create --node).",
	"tls.key_file":              "PEM private key of tls.cert_file; mode 0600.",
	"bootstrap_admin_keys":      "Client public keys (64 hex digits, from tandem keygen) holding admin in the genesis entry the first leader proposes; later changes have no effect.",
	"consensus_mode":            "Consensus engine: cft (Raft), bft (HotStuff; needs >= 4 initial_members with node keys) or auto (starts on Raft and escalates to HotStuff on the detector's verdict or an operator's `tandem admin mode set`; needs what bft needs).",
	"bft_fault_threshold":       "Fraction of members that may be Byzantine in BFT mode, in (0, 1/3].",
	"anomaly_threshold":         "Detector score in (0, 1] at which a node is escalated on.",
	"quarantine_threshold":      "Detector score in (anomaly_threshold, 1] at which a node is quarantined; must be greater than anomaly_threshold.",
	"quarantine_webhook_url":    "Optional http(s) URL that receives a JSON POST for every quarantine, further evidence and lift on this node (bft mode).",
	"view_change_timeout":       "How long to wait for progress before changing view (BFT) or declaring a hand-over stuck.",
	"vote_timeout":              "How long a vote may take before it counts as late; less than view_change_timeout.",
	"auto_deescalate_after":     "auto: calm period (no new anomaly, the offender quarantined) after which an escalated cluster switches back to cft on f+1 members' signed calm statements; 0 disables.",
	"state_transfer_timeout":    "Deadline of one state transfer (snapshot + certificate) from a peer.",
	"checkpoint_interval":       "Commands between signed checkpoints.",
	"log_retention":             "Entries kept after a checkpoint for lagging peers; >= checkpoint_interval.",
	"log_size_limit":            "Bytes of stored log (HotStuff: committed blocks; Raft: entries since the last snapshot) past which the node compacts without waiting for a stable checkpoint; >= 1048576 (1 MiB). log_retention wins over it.",
	"require_mtls":              "Require mutual TLS on the peer port (and client certificates on the API).",
	"require_signatures":        "Client request signatures; must be true (every write is a signed envelope).",
	"signature_algorithm":       "Signature algorithm of nodes and clients; only ed25519.",
	"auto_recovery":             "Re-sync a diverged or lagging replica automatically from a certified checkpoint.",
	"max_view_change_retries":   "View changes with exponential backoff before giving up and alerting.",
	"bft_commit_rule":           "HotStuff commit rule (bft epochs): chained-hotstuff (3-chain, the default) or two-chain-hotstuff (commits one view sooner); the same on every member.",
	"bft_max_batch":             "Most client commands in one HotStuff block (bft epochs); the same on every member.",
	"bft_max_batch_delay":       "How long a HotStuff leader with fewer than bft_max_batch commands may wait for more before proposing; 0 proposes at once; < view_change_timeout/2.",
	"enable_debug":              "Serve Go profiles (net/http/pprof) under /debug/pprof/ on the API listener; off by default.",
	"raft.heartbeat_timeout":    "Raft follower timeout without leader contact before an election.",
	"raft.election_timeout":     "Raft candidate timeout without a leader; >= raft.heartbeat_timeout.",
	"raft.leader_lease_timeout": "Raft leader lease; <= raft.heartbeat_timeout.",
	"raft.commit_timeout":       "Raft delay before a heartbeat that carries the commit index.",
	"raft.snapshot_interval":    "How often Raft checks whether to snapshot.",
	"raft.snapshot_threshold":   "Log entries since the last snapshot that trigger a snapshot.",
	"raft.trailing_logs":        "Log entries kept after a snapshot so followers can catch up without one.",
	"raft.snapshot_retain":      "Snapshots kept on disk; >= 1.",
	"raft.max_append_entries":   "Entries per Raft AppendEntries request, 1..1024.",
	"raft.apply_timeout":        "How long a proposal waits to be enqueued into Raft.",
	"limits.max_request_bytes":  "Largest client HTTP request body in bytes.",
	"limits.max_command_bytes":  "Largest encoded command inside a signed envelope, in bytes; fixed by the genesis entry.",
	"limits.result_window":      "Results kept per client for idempotent retries; fixed by the genesis entry.",
	"log.level":                 "Log level: debug, info, warn or error.",
	"log.format":                "Log format: text or json.",

	"disruptive_elections_per_hour": "cft detector: a member that starts more Raft elections than this in an hour while this node has a live leader is accused of log conflicts (escalate); >= 3.",
}

// Keys returns every configuration key in file order, with its type,
// default and description.
func Keys() []Key {
	def := Default()
	var out []Key
	walkFields(reflect.ValueOf(&def).Elem(), "", func(name string, v reflect.Value) {
		out = append(out, Key{
			Name:        name,
			Type:        typeName(v),
			Default:     formatValue(v),
			Description: descriptions[name],
		})
	})
	return out
}

// Field returns a pointer to the field of c that holds key, e.g. a
// *time.Duration for "raft.heartbeat_timeout", and whether key exists. The
// pointer types are *string, *int, *int64, *uint64, *float64, *bool,
// *time.Duration and *[]string.
func (c *Config) Field(key string) (any, bool) {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		if v.Kind() != reflect.Struct {
			return nil, false
		}
		f, ok := fieldByTag(v, part)
		if !ok {
			return nil, false
		}
		v = f
	}
	if v.Kind() == reflect.Struct {
		return nil, false // a section, not a key
	}
	return v.Addr().Interface(), true
}

// Format returns the value of key formatted as in Keys: durations as Go
// durations ("1s"), lists comma-separated, others as strconv would.
func (c *Config) Format(key string) (string, bool) {
	p, ok := c.Field(key)
	if !ok {
		return "", false
	}
	return formatValue(reflect.ValueOf(p).Elem()), true
}

// IsSection reports whether name is a section (e.g. "raft") rather than a
// key.
func IsSection(name string) bool {
	t := reflect.TypeFor[Config]()
	for part := range strings.SplitSeq(name, ".") {
		if t.Kind() != reflect.Struct {
			return false
		}
		f, ok := structFieldByTag(t, part)
		if !ok {
			return false
		}
		t = f.Type
	}
	return t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Duration]()
}

func walkFields(v reflect.Value, prefix string, fn func(string, reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + tag
		if f := v.Field(i); f.Kind() == reflect.Struct {
			walkFields(f, name+".", fn)
		} else {
			fn(name, f)
		}
	}
}

func fieldByTag(v reflect.Value, tag string) (reflect.Value, bool) {
	f, ok := structFieldByTag(v.Type(), tag)
	if !ok {
		return reflect.Value{}, false
	}
	return v.FieldByIndex(f.Index), true
}

func structFieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("mapstructure") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func typeName(v reflect.Value) string {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return "duration"
	}
	switch v.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "int"
	case reflect.Float64:
		return "float"
	case reflect.Slice:
		return "list"
	}
	panic(fmt.Sprintf("config: unsupported field type %s", v.Type()))
}

func formatValue(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	}
	panic(fmt.Sprintf("config: unsupported field type %s", v.Type()))
}
