package config

import "time"

// Defaults of the listen addresses and of the data directory.
const (
	DefaultDataDir    = "./tandem-data"
	DefaultAPIAddr    = "127.0.0.1:7001"
	DefaultPeerAddr   = "127.0.0.1:7002"
	DefaultGossipAddr = "127.0.0.1:7003"
)

// DefaultLogSizeLimit is log_size_limit's default: 256 MiB.
const DefaultLogSizeLimit = 256 << 20

// MinLogSizeLimit is the smallest log_size_limit: 1 MiB. A smaller log
// would be compacted every few blocks, and one HotStuff block alone may
// carry MaxBatch commands of up to limits.max_command_bytes each.
const MinLogSizeLimit = 1 << 20

// Default returns a configuration with every key at its default. It does not
// validate: NodeID, the TLS files and BootstrapAdminKeys have no usable
// default and must be set before Validate passes.
func Default() Config {
	return Config{
		NodeID:     "",
		DataDir:    DefaultDataDir,
		APIAddr:    DefaultAPIAddr,
		PeerAddr:   DefaultPeerAddr,
		GossipAddr: DefaultGossipAddr,

		ConsensusMode:        ModeCFT,
		BFTFaultThreshold:    0.33,
		AnomalyThreshold:     0.7,
		QuarantineThreshold:  0.9,
		ViewChangeTimeout:    5 * time.Second,
		VoteTimeout:          2 * time.Second,
		StateTransferTimeout: 30 * time.Second,
		CheckpointInterval:   10000,
		LogRetention:         100000,
		LogSizeLimit:         DefaultLogSizeLimit,
		RequireMTLS:          true,
		RequireSignatures:    true,
		SignatureAlgorithm:   SignatureEd25519,
		AutoRecovery:         true,
		MaxViewChangeRetries: 10,
		BFTCommitRule:        CommitRuleThreeChain,
		BFTMaxBatch:          256,
		AutoDeescalateAfter:  10 * time.Minute,

		// A correct member with pre-vote starts no election while a
		// leader is alive; a restarted or partitioned one a few at most.
		DisruptiveElectionsPerHour: 10,

		Raft: RaftConfig{
			HeartbeatTimeout:   time.Second,
			ElectionTimeout:    time.Second,
			LeaderLeaseTimeout: 500 * time.Millisecond,
			CommitTimeout:      50 * time.Millisecond,
			SnapshotInterval:   2 * time.Minute,
			SnapshotThreshold:  8192,
			TrailingLogs:       10240,
			SnapshotRetain:     2,
			MaxAppendEntries:   64,
			ApplyTimeout:       10 * time.Second,
		},
		Limits: LimitsConfig{
			MaxRequestBytes: 1 << 20,
			MaxCommandBytes: 64 << 10,
			ResultWindow:    1024,
		},
		Log: LogConfig{
			Level:  "info",
			Format: "text",
		},
	}
}
