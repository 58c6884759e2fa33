// Package config holds Tandem's typed configuration: the file schema, its
// defaults and its validation. It does not read files or the environment;
// cmd/tandem does that (with viper) and hands the result to Validate.
package config

import "time"

// Config is the whole node configuration. The YAML/mapstructure names are the
// keys operators write in the config file and, upper-cased with a TANDEM_
// prefix and '.' replaced by '_', in the environment.
type Config struct {
	NodeID  string `mapstructure:"node_id" yaml:"node_id"`   // unique, [a-z0-9-]{1,63}
	DataDir string `mapstructure:"data_dir" yaml:"data_dir"` // raft log, stable store, snapshots, node key

	// Addresses. Listen addresses are host:port; advertise addresses default
	// to the listen address (they must not be 0.0.0.0 / :: when set).
	APIAddr             string `mapstructure:"api_addr" yaml:"api_addr"`                       // client HTTP(S) API
	PeerAddr            string `mapstructure:"peer_addr" yaml:"peer_addr"`                     // node-to-node mTLS (raft + forwarding)
	GossipAddr          string `mapstructure:"gossip_addr" yaml:"gossip_addr"`                 // memberlist
	AdvertisePeerAddr   string `mapstructure:"advertise_peer_addr" yaml:"advertise_peer_addr"` // defaults to PeerAddr
	AdvertiseGossipAddr string `mapstructure:"advertise_gossip_addr" yaml:"advertise_gossip_addr"`

	// Cluster formation. Either InitialMembers (static, "id=peer_host:port")
	// or BootstrapExpect (discover that many servers through Join) is used on
	// a node with no existing state; a node with state ignores both.
	Join            []string `mapstructure:"join" yaml:"join"` // gossip addresses of other nodes
	BootstrapExpect int      `mapstructure:"bootstrap_expect" yaml:"bootstrap_expect"`
	InitialMembers  []string `mapstructure:"initial_members" yaml:"initial_members"`
	GossipKeyFile   string   `mapstructure:"gossip_key_file" yaml:"gossip_key_file"` // optional 32-byte AES key (base64) for memberlist

	TLS TLSConfig `mapstructure:"tls" yaml:"tls"`

	// BootstrapAdminKeys are client public keys (64 lowercase hex digits) that
	// hold the admin permission in the genesis state. Every node of a cluster
	// must list the same keys. At least one is required.
	BootstrapAdminKeys []string `mapstructure:"bootstrap_admin_keys" yaml:"bootstrap_admin_keys"`

	// The seed's configuration block.
	ConsensusMode        string        `mapstructure:"consensus_mode" yaml:"consensus_mode"`                 // auto | cft | bft
	BFTFaultThreshold    float64       `mapstructure:"bft_fault_threshold" yaml:"bft_fault_threshold"`       // (0, 1/3]
	AnomalyThreshold     float64       `mapstructure:"anomaly_threshold" yaml:"anomaly_threshold"`           // (0, 1]
	QuarantineThreshold  float64       `mapstructure:"quarantine_threshold" yaml:"quarantine_threshold"`     // (anomaly_threshold, 1]
	QuarantineWebhookURL string        `mapstructure:"quarantine_webhook_url" yaml:"quarantine_webhook_url"` // optional http(s) URL: JSON POST per quarantine change (bft)
	ViewChangeTimeout    time.Duration `mapstructure:"view_change_timeout" yaml:"view_change_timeout"`       // > 0
	VoteTimeout          time.Duration `mapstructure:"vote_timeout" yaml:"vote_timeout"`                     // > 0, < view_change_timeout
	StateTransferTimeout time.Duration `mapstructure:"state_transfer_timeout" yaml:"state_transfer_timeout"` // > 0
	CheckpointInterval   uint64        `mapstructure:"checkpoint_interval" yaml:"checkpoint_interval"`       // entries, > 0
	LogRetention         uint64        `mapstructure:"log_retention" yaml:"log_retention"`                   // entries, >= checkpoint_interval
	// LogSizeLimit: once the log an engine stores passes this many bytes
	// (HotStuff: the committed blocks above its horizon; Raft: the entries
	// applied since its last snapshot), it compacts without waiting for
	// the next stable checkpoint. log_retention still wins.
	LogSizeLimit         uint64 `mapstructure:"log_size_limit" yaml:"log_size_limit"` // bytes, >= MinLogSizeLimit
	RequireMTLS          bool   `mapstructure:"require_mtls" yaml:"require_mtls"`
	RequireSignatures    bool   `mapstructure:"require_signatures" yaml:"require_signatures"`   // must be true
	SignatureAlgorithm   string `mapstructure:"signature_algorithm" yaml:"signature_algorithm"` // ed25519
	AutoRecovery         bool   `mapstructure:"auto_recovery" yaml:"auto_recovery"`
	MaxViewChangeRetries int    `mapstructure:"max_view_change_retries" yaml:"max_view_change_retries"` // >= 1
	// BFTCommitRule is the HotStuff commit rule: chained-hotstuff (3-chain)
	// or two-chain-hotstuff. Every member must use the same one.
	BFTCommitRule string `mapstructure:"bft_commit_rule" yaml:"bft_commit_rule"`
	// BFTMaxBatch is the most client commands in one HotStuff block; the
	// same on every member (the omission analyzer judges a block's room
	// by it).
	BFTMaxBatch int `mapstructure:"bft_max_batch" yaml:"bft_max_batch"` // [1, MaxBFTBatch]
	// BFTMaxBatchDelay is how long a HotStuff leader holding some
	// commands, but fewer than bft_max_batch, may wait for more before
	// it proposes (0: at once).
	BFTMaxBatchDelay time.Duration `mapstructure:"bft_max_batch_delay" yaml:"bft_max_batch_delay"` // [0, view_change_timeout/2)
	// AutoDeescalateAfter is the calm period after which an auto cluster
	// that escalated to bft switches back to cft (0 disables it).
	AutoDeescalateAfter time.Duration `mapstructure:"auto_deescalate_after" yaml:"auto_deescalate_after"` // >= 0

	// DisruptiveElectionsPerHour: the detector (cft) accuses a member of
	// log conflicts once it started more than this many Raft elections in
	// an hour while this node had a live leader (see docs/detector.md).
	DisruptiveElectionsPerHour int `mapstructure:"disruptive_elections_per_hour" yaml:"disruptive_elections_per_hour"` // >= 3

	// EnableDebug mounts net/http/pprof under /debug/pprof/ on the API
	// listener (Consul's key name). Off by default: profiles reveal
	// internals and cost CPU while taken.
	EnableDebug bool `mapstructure:"enable_debug" yaml:"enable_debug"`

	Raft   RaftConfig   `mapstructure:"raft" yaml:"raft"`
	Limits LimitsConfig `mapstructure:"limits" yaml:"limits"`
	Log    LogConfig    `mapstructure:"log" yaml:"log"`
}

// TLSConfig names the PEM files of the cluster CA and this node's
// certificate (whose CommonName is the node ID) and key.
type TLSConfig struct {
	CAFile   string `mapstructure:"ca_file" yaml:"ca_file"`
	CertFile string `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file"`
}

// RaftConfig tunes hashicorp/raft. Durations are Go durations ("500ms").
type RaftConfig struct {
	HeartbeatTimeout   time.Duration `mapstructure:"heartbeat_timeout" yaml:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `mapstructure:"election_timeout" yaml:"election_timeout"`
	LeaderLeaseTimeout time.Duration `mapstructure:"leader_lease_timeout" yaml:"leader_lease_timeout"` // <= heartbeat_timeout
	CommitTimeout      time.Duration `mapstructure:"commit_timeout" yaml:"commit_timeout"`
	SnapshotInterval   time.Duration `mapstructure:"snapshot_interval" yaml:"snapshot_interval"`
	SnapshotThreshold  uint64        `mapstructure:"snapshot_threshold" yaml:"snapshot_threshold"` // entries since last snapshot
	TrailingLogs       uint64        `mapstructure:"trailing_logs" yaml:"trailing_logs"`           // entries kept after a snapshot
	SnapshotRetain     int           `mapstructure:"snapshot_retain" yaml:"snapshot_retain"`       // >= 1
	MaxAppendEntries   int           `mapstructure:"max_append_entries" yaml:"max_append_entries"` // 1..1024
	ApplyTimeout       time.Duration `mapstructure:"apply_timeout" yaml:"apply_timeout"`           // how long Propose waits to enqueue
}

// LimitsConfig bounds what clients can send.
type LimitsConfig struct {
	MaxRequestBytes int64 `mapstructure:"max_request_bytes" yaml:"max_request_bytes"` // whole HTTP body
	MaxCommandBytes int   `mapstructure:"max_command_bytes" yaml:"max_command_bytes"` // encoded Command inside an envelope
	ResultWindow    int   `mapstructure:"result_window" yaml:"result_window"`         // results kept per client for retries
}

// LogConfig selects the log output.
type LogConfig struct {
	Level  string `mapstructure:"level" yaml:"level"`   // debug | info | warn | error
	Format string `mapstructure:"format" yaml:"format"` // text | json
}
