package config

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// Consensus modes (consensus_mode).
const (
	ModeAuto = "auto"      // start in CFT, escalate to BFT on detected misbehaviour
	ModeCFT  = smr.ModeCFT // Raft only
	ModeBFT  = smr.ModeBFT // HotStuff only
)

// SignatureEd25519 is the only supported signature_algorithm.
const SignatureEd25519 = "ed25519"

// Allowed values of the enumerated keys, in the order error messages list
// them.
var (
	consensusModes = []string{ModeAuto, ModeCFT, ModeBFT}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
	commitRules    = []string{CommitRuleThreeChain, CommitRuleTwoChain}
)

// MaxBFTBatch is the largest bft_max_batch: the most commands a HotStuff
// block may carry (consensus/hotstuff/types.MaxCommands).
const MaxBFTBatch = 1 << 16

// Values of bft_commit_rule.
const (
	CommitRuleThreeChain = "chained-hotstuff"
	CommitRuleTwoChain   = "two-chain-hotstuff"
)

// Limits that mirror hashicorp/raft's ValidateConfig, so that a bad value is
// reported against its key here rather than by raft at start-up.
const (
	minRaftTimeout       = 5 * time.Millisecond
	minRaftCommitTimeout = time.Millisecond
	maxRaftAppendEntries = 1024
)

// FieldError is one problem found by Validate. Key is the dotted key the
// problem is about (for a problem relating two keys, the one to change
// first); Msg is the full message, which names the key, the value and what
// is allowed.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Msg }

// Problems returns the FieldErrors inside an error returned by Validate, in
// the order Validate found them. Errors of any other kind are skipped.
func Problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case nil:
		case *FieldError:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, inner := range x.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// problems collects FieldErrors.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks every key and every combination of keys and returns all
// problems at once, joined with errors.Join (each one a *FieldError; see
// Problems), or nil. It does not read files: TLS paths are only required to
// be set, not to exist. Validate does not modify c.
func (c *Config) Validate() error {
	var p problems
	c.validateIdentity(&p)
	c.validateAddresses(&p)
	c.validateFormation(&p)
	c.validateTLS(&p)
	c.validateAdminKeys(&p)
	c.validateConsensus(&p)
	c.Raft.validate(&p)
	c.Limits.validate(&p)
	c.Log.validate(&p)
	return errors.Join(p...)
}

func (c *Config) validateIdentity(p *problems) {
	if c.NodeID == "" {
		p.add("node_id", "node_id is required (1-63 characters of a-z, 0-9 and '-')")
	} else if err := identity.ValidateNodeID(c.NodeID); err != nil {
		p.add("node_id", "node_id: %q is invalid: want 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'", c.NodeID)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		p.add("data_dir", "data_dir is required (a directory for the raft log, snapshots and the node key)")
	}
}

func (c *Config) validateAddresses(p *problems) {
	checkListenAddr(p, "api_addr", c.APIAddr)
	checkListenAddr(p, "peer_addr", c.PeerAddr)
	checkListenAddr(p, "gossip_addr", c.GossipAddr)
	if c.AdvertisePeerAddr != "" {
		checkAdvertiseAddr(p, "advertise_peer_addr", c.AdvertisePeerAddr)
	} else if host, port, err := splitHostPort(c.PeerAddr); err == nil && (isUnspecified(host) || port == 0) {
		p.add("advertise_peer_addr", "advertise_peer_addr is required when peer_addr (%q) is not an address other nodes can dial (wildcard host or port 0)", c.PeerAddr)
	}
	if c.AdvertiseGossipAddr != "" {
		checkAdvertiseAddr(p, "advertise_gossip_addr", c.AdvertiseGossipAddr)
	}
}

func (c *Config) validateFormation(p *problems) {
	for i, j := range c.Join {
		if _, _, err := splitHostPort(j); err != nil {
			p.add("join", "join[%d]: %q is not host:port (%v)", i, j, err)
		}
	}
	if c.BootstrapExpect < 0 {
		p.add("bootstrap_expect", "bootstrap_expect: %d must be >= 0 (0 = do not bootstrap by discovery)", c.BootstrapExpect)
	}
	if len(c.InitialMembers) > 0 && c.BootstrapExpect > 0 {
		p.add("initial_members", "initial_members and bootstrap_expect (%d) are mutually exclusive: list the members statically or discover them, not both", c.BootstrapExpect)
	}
	if len(c.InitialMembers) == 0 {
		return
	}
	ids := make(map[string]int, len(c.InitialMembers))
	addrs := make(map[string]int, len(c.InitialMembers))
	for i, s := range c.InitialMembers {
		m, err := ParseMember(s)
		if err != nil {
			p.add("initial_members", "initial_members[%d]: %v", i, err)
			continue
		}
		if prev, dup := ids[m.ID]; dup {
			p.add("initial_members", "initial_members[%d]: node ID %q is already used by initial_members[%d]", i, m.ID, prev)
		} else {
			ids[m.ID] = i
		}
		if prev, dup := addrs[m.Addr]; dup {
			p.add("initial_members", "initial_members[%d]: address %q is already used by initial_members[%d]", i, m.Addr, prev)
		} else {
			addrs[m.Addr] = i
		}
	}
	if _, ok := ids[c.NodeID]; !ok && c.NodeID != "" {
		p.add("initial_members", "initial_members must include this node (node_id %q); got %s", c.NodeID, strings.Join(c.InitialMembers, ", "))
	}
}

func (c *Config) validateTLS(p *problems) {
	files := []struct{ key, val string }{
		{"tls.ca_file", c.TLS.CAFile},
		{"tls.cert_file", c.TLS.CertFile},
		{"tls.key_file", c.TLS.KeyFile},
	}
	set := 0
	for _, f := range files {
		if f.val != "" {
			set++
		}
	}
	for _, f := range files {
		if f.val != "" {
			continue
		}
		switch {
		case c.RequireMTLS:
			p.add(f.key, "%s is required when require_mtls is true (create the files with `tandem ca create` and `tandem cert create`)", f.key)
		case set > 0:
			p.add(f.key, "%s is required when any of tls.ca_file, tls.cert_file, tls.key_file is set", f.key)
		}
	}
}

func (c *Config) validateAdminKeys(p *problems) {
	if len(c.BootstrapAdminKeys) == 0 {
		p.add("bootstrap_admin_keys", "bootstrap_admin_keys needs at least one client public key (create one with `tandem keygen`)")
		return
	}
	seen := make(map[string]int, len(c.BootstrapAdminKeys))
	for i, k := range c.BootstrapAdminKeys {
		// The same parser as ACL subjects and `tandem acl`, so a key is
		// accepted here exactly when it would be accepted there.
		pub, err := smr.ParseKey(k)
		if err != nil {
			reason := err.Error()
			var se *smr.Error
			if errors.As(err, &se) {
				reason = se.Message
			}
			p.add("bootstrap_admin_keys", "bootstrap_admin_keys[%d]: %q is not an Ed25519 public key (want its 64 lowercase hex digits, as printed by `tandem keygen`, without spaces): %s", i, k, reason)
			continue
		}
		canon := smr.FormatKey(pub)
		if prev, dup := seen[canon]; dup {
			p.add("bootstrap_admin_keys", "bootstrap_admin_keys[%d]: duplicate of bootstrap_admin_keys[%d]", i, prev)
			continue
		}
		seen[canon] = i
	}
}

func (c *Config) validateConsensus(p *problems) {
	switch c.ConsensusMode {
	case ModeCFT:
	case ModeBFT:
		c.validateBFTCommittee(p)
	case ModeAuto:
		// Auto starts on Raft and may escalate to HotStuff: it needs
		// what bft needs, from the first epoch on.
		c.validateBFTCommittee(p)
	default:
		p.add("consensus_mode", "consensus_mode: %q is not one of %s", c.ConsensusMode, strings.Join(consensusModes, ", "))
	}
	if !(c.BFTFaultThreshold > 0 && c.BFTFaultThreshold <= 1.0/3+1e-9) {
		p.add("bft_fault_threshold", "bft_fault_threshold: %v must be in (0, 1/3] (BFT tolerates f < n/3 faulty members)", c.BFTFaultThreshold)
	}
	anomalyOK := c.AnomalyThreshold > 0 && c.AnomalyThreshold <= 1
	if !anomalyOK {
		p.add("anomaly_threshold", "anomaly_threshold: %v must be in (0, 1]", c.AnomalyThreshold)
	}
	switch {
	case math.IsNaN(c.QuarantineThreshold) || c.QuarantineThreshold <= 0 || c.QuarantineThreshold > 1:
		p.add("quarantine_threshold", "quarantine_threshold: %v must be in (0, 1] and greater than anomaly_threshold", c.QuarantineThreshold)
	case anomalyOK && c.QuarantineThreshold <= c.AnomalyThreshold:
		p.add("quarantine_threshold", "quarantine_threshold (%v) must be greater than anomaly_threshold (%v): a node is escalated on before it is quarantined", c.QuarantineThreshold, c.AnomalyThreshold)
	}
	if c.DisruptiveElectionsPerHour < minDisruptiveElectionsPerHour {
		p.add("disruptive_elections_per_hour", "disruptive_elections_per_hour: %d must be at least %d (its accusations are log-conflict accusations, which count only above %d per hour)",
			c.DisruptiveElectionsPerHour, minDisruptiveElectionsPerHour, minDisruptiveElectionsPerHour)
	}
	if c.QuarantineWebhookURL != "" {
		if u, err := url.Parse(c.QuarantineWebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("quarantine_webhook_url", "quarantine_webhook_url: %q is not an http:// or https:// URL", c.QuarantineWebhookURL)
		}
	}
	positive(p, "view_change_timeout", c.ViewChangeTimeout)
	positive(p, "vote_timeout", c.VoteTimeout)
	positive(p, "state_transfer_timeout", c.StateTransferTimeout)
	if c.AutoDeescalateAfter < 0 {
		p.add("auto_deescalate_after", "auto_deescalate_after: %s must be >= 0 (0 disables automatic de-escalation)", c.AutoDeescalateAfter)
	}
	if c.VoteTimeout > 0 && c.ViewChangeTimeout > 0 && c.VoteTimeout >= c.ViewChangeTimeout {
		p.add("vote_timeout", "vote_timeout (%s) must be less than view_change_timeout (%s)", c.VoteTimeout, c.ViewChangeTimeout)
	}
	if c.CheckpointInterval == 0 {
		p.add("checkpoint_interval", "checkpoint_interval: 0 must be > 0 (entries between signed checkpoints)")
	} else if c.LogRetention < c.CheckpointInterval {
		p.add("log_retention", "log_retention (%d) must be >= checkpoint_interval (%d): the entries since the previous checkpoint must be kept", c.LogRetention, c.CheckpointInterval)
	}
	if c.LogSizeLimit < MinLogSizeLimit {
		p.add("log_size_limit", "log_size_limit: %d must be >= %d (1 MiB): bytes of stored log past which the node compacts", c.LogSizeLimit, MinLogSizeLimit)
	}
	if !c.RequireSignatures {
		p.add("require_signatures", "require_signatures: false is not allowed: signatures cannot be turned off (every write is a signed envelope); remove the key or set it to true")
	}
	oneOf(p, "bft_commit_rule", c.BFTCommitRule, commitRules)
	if c.BFTMaxBatch < 1 || c.BFTMaxBatch > MaxBFTBatch {
		p.add("bft_max_batch", "bft_max_batch: %d must be in [1, %d] (client commands per HotStuff block)", c.BFTMaxBatch, MaxBFTBatch)
	}
	if c.BFTMaxBatchDelay < 0 || (c.ViewChangeTimeout > 0 && c.BFTMaxBatchDelay >= c.ViewChangeTimeout/2) {
		p.add("bft_max_batch_delay", "bft_max_batch_delay: %s must be >= 0 and less than half of view_change_timeout (%s); 0 proposes at once", c.BFTMaxBatchDelay, c.ViewChangeTimeout)
	}
	if c.SignatureAlgorithm != SignatureEd25519 {
		p.add("signature_algorithm", "signature_algorithm: %q is not supported; the only allowed value is %q", c.SignatureAlgorithm, SignatureEd25519)
	}
	if c.MaxViewChangeRetries < 1 {
		p.add("max_view_change_retries", "max_view_change_retries: %d must be >= 1", c.MaxViewChangeRetries)
	}
}

// MinBFTMembers is the smallest committee consensus_mode bft accepts:
// n = 3f+1 with f = 1, the smallest n that tolerates one Byzantine member.
const MinBFTMembers = 4

// validateBFTCommittee checks what consensus_mode bft needs from cluster
// formation: a static committee of at least MinBFTMembers members in
// initial_members, each with its node public key.
func (c *Config) validateBFTCommittee(p *problems) {
	if c.BootstrapExpect > 0 {
		p.add("bootstrap_expect", "bootstrap_expect (%d) cannot form a "+c.ConsensusMode+" cluster: in "+c.ConsensusMode+" mode every member must know every other member's signing key before the first vote, which discovery through gossip cannot establish; list all %d or more members in initial_members as id=host:port/node-public-key instead", c.BootstrapExpect, MinBFTMembers)
		return
	}
	if len(c.InitialMembers) == 0 {
		p.add("initial_members", "consensus_mode "+c.ConsensusMode+" needs a static committee: list every member, this node included, in initial_members as id=host:port/node-public-key (the public key `tandem init` printed for that node's data_dir/node.key); at least %d members, because BFT tolerates f faulty members only with n >= 3f+1", MinBFTMembers)
		return
	}
	if n := len(c.InitialMembers); n < MinBFTMembers {
		p.add("initial_members", "consensus_mode "+c.ConsensusMode+" needs at least %d members in initial_members, got %d: BFT tolerates f Byzantine members only with n >= 3f+1 (4 members tolerate 1); use consensus_mode cft for a smaller crash-fault-tolerant cluster", MinBFTMembers, n)
	}
	keys := make(map[string]int, len(c.InitialMembers))
	for i, s := range c.InitialMembers {
		m, err := ParseMember(s)
		if err != nil {
			continue // reported by validateFormation
		}
		if m.PublicKey == nil {
			p.add("initial_members", "initial_members[%d]: %q has no node public key; in "+c.ConsensusMode+" mode write it as %s=%s/<public key of that node's data_dir/node.key, as printed by `tandem init`>", i, s, m.ID, m.Addr)
			continue
		}
		k := string(m.PublicKey)
		if prev, dup := keys[k]; dup {
			p.add("initial_members", "initial_members[%d]: node public key of %q is also the key of initial_members[%d]; every member needs its own key, or one key would count twice in every quorum", i, m.ID, prev)
			continue
		}
		keys[k] = i
	}
}

func (r *RaftConfig) validate(p *problems) {
	atLeast(p, "raft.heartbeat_timeout", r.HeartbeatTimeout, minRaftTimeout)
	atLeast(p, "raft.election_timeout", r.ElectionTimeout, minRaftTimeout)
	atLeast(p, "raft.leader_lease_timeout", r.LeaderLeaseTimeout, minRaftTimeout)
	atLeast(p, "raft.commit_timeout", r.CommitTimeout, minRaftCommitTimeout)
	atLeast(p, "raft.snapshot_interval", r.SnapshotInterval, minRaftTimeout)
	positive(p, "raft.apply_timeout", r.ApplyTimeout)
	if r.LeaderLeaseTimeout > r.HeartbeatTimeout && r.HeartbeatTimeout >= minRaftTimeout {
		p.add("raft.leader_lease_timeout", "raft.leader_lease_timeout (%s) must not exceed raft.heartbeat_timeout (%s)", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
	if r.ElectionTimeout < r.HeartbeatTimeout && r.ElectionTimeout >= minRaftTimeout {
		p.add("raft.election_timeout", "raft.election_timeout (%s) must be >= raft.heartbeat_timeout (%s)", r.ElectionTimeout, r.HeartbeatTimeout)
	}
	if r.SnapshotThreshold == 0 {
		p.add("raft.snapshot_threshold", "raft.snapshot_threshold: 0 must be > 0 (entries since the last snapshot)")
	}
	if r.SnapshotRetain < 1 {
		p.add("raft.snapshot_retain", "raft.snapshot_retain: %d must be >= 1", r.SnapshotRetain)
	}
	if r.MaxAppendEntries < 1 || r.MaxAppendEntries > maxRaftAppendEntries {
		p.add("raft.max_append_entries", "raft.max_append_entries: %d must be in 1..%d", r.MaxAppendEntries, maxRaftAppendEntries)
	}
}

func (l *LimitsConfig) validate(p *problems) {
	if l.MaxRequestBytes < 1 {
		p.add("limits.max_request_bytes", "limits.max_request_bytes: %d must be > 0", l.MaxRequestBytes)
	}
	if l.MaxCommandBytes < 1 {
		p.add("limits.max_command_bytes", "limits.max_command_bytes: %d must be > 0", l.MaxCommandBytes)
	} else if l.MaxRequestBytes > 0 && int64(l.MaxCommandBytes) > l.MaxRequestBytes {
		p.add("limits.max_command_bytes", "limits.max_command_bytes (%d) must not exceed limits.max_request_bytes (%d): a command travels inside a request", l.MaxCommandBytes, l.MaxRequestBytes)
	}
	if l.ResultWindow < 1 {
		p.add("limits.result_window", "limits.result_window: %d must be >= 1", l.ResultWindow)
	}
}

func (l *LogConfig) validate(p *problems) {
	oneOf(p, "log.level", l.Level, logLevels)
	oneOf(p, "log.format", l.Format, logFormats)
}

// Member is one entry of initial_members.
type Member struct {
	ID   string // node ID
	Addr string // peer address, host:port
	// PublicKey is the member's node signing key (the public half of its
	// data_dir/node.key), or nil when the entry names none. consensus_mode
	// bft needs it for every member; cft ignores it.
	PublicKey ed25519.PublicKey
}

// ParseMember parses an initial_members entry "id=host:port", optionally
// followed by "/" and the member's node public key in the form `tandem
// init` prints (64 lowercase hex digits): "id=host:port/key".
func ParseMember(s string) (Member, error) {
	id, addr, ok := strings.Cut(s, "=")
	if !ok {
		return Member{}, fmt.Errorf("%q is not id=host:port", s)
	}
	id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
	var pub ed25519.PublicKey
	if a, key, hasKey := strings.Cut(addr, "/"); hasKey {
		k, err := smr.ParseKey(strings.TrimSpace(key))
		if err != nil {
			reason := err.Error()
			var se *smr.Error
			if errors.As(err, &se) {
				reason = se.Message
			}
			return Member{}, fmt.Errorf("%q: the node public key after '/' is not an Ed25519 public key (want the 64 hex digits `tandem init` printed): %s", s, reason)
		}
		addr, pub = strings.TrimSpace(a), k
	}
	if err := identity.ValidateNodeID(id); err != nil {
		return Member{}, fmt.Errorf("%q: %w", s, err)
	}
	host, port, err := splitHostPort(addr)
	if err != nil {
		return Member{}, fmt.Errorf("%q: address is not host:port (%v)", s, err)
	}
	if isUnspecified(host) || port == 0 {
		return Member{}, fmt.Errorf("%q: address must be dialable (no wildcard host, no port 0)", s)
	}
	return Member{ID: id, Addr: addr, PublicKey: pub}, nil
}

// Members parses InitialMembers. It returns the first parse error; Validate
// reports all of them.
func (c *Config) Members() ([]Member, error) {
	out := make([]Member, 0, len(c.InitialMembers))
	for i, s := range c.InitialMembers {
		m, err := ParseMember(s)
		if err != nil {
			return nil, fmt.Errorf("initial_members[%d]: %w", i, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// PeerAdvertiseAddr is the peer address other nodes dial: AdvertisePeerAddr,
// or PeerAddr when that is unset.
func (c *Config) PeerAdvertiseAddr() string {
	if c.AdvertisePeerAddr != "" {
		return c.AdvertisePeerAddr
	}
	return c.PeerAddr
}

// GossipAdvertiseAddr is the gossip address announced to other nodes:
// AdvertiseGossipAddr, or GossipAddr when that is unset.
func (c *Config) GossipAdvertiseAddr() string {
	if c.AdvertiseGossipAddr != "" {
		return c.AdvertiseGossipAddr
	}
	return c.GossipAddr
}

// splitHostPort splits host:port and checks the port is a number in
// 0..65535. The host may be empty (":7001" listens on all interfaces).
func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0..65535", portStr)
	}
	return host, port, nil
}

func isUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func checkListenAddr(p *problems, key, addr string) {
	if addr == "" {
		p.add(key, "%s is required (host:port)", key)
		return
	}
	if _, _, err := splitHostPort(addr); err != nil {
		p.add(key, "%s: %q is not host:port (%v)", key, addr, err)
	}
}

func checkAdvertiseAddr(p *problems, key, addr string) {
	host, port, err := splitHostPort(addr)
	switch {
	case err != nil:
		p.add(key, "%s: %q is not host:port (%v)", key, addr, err)
	case isUnspecified(host):
		p.add(key, "%s: %q must name a reachable host, not a wildcard", key, addr)
	case port == 0:
		p.add(key, "%s: %q must have a non-zero port", key, addr)
	}
}

func positive(p *problems, key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "%s: %s must be > 0", key, d)
	}
}

func atLeast(p *problems, key string, d, min time.Duration) {
	if d < min {
		p.add(key, "%s: %s must be >= %s", key, d, min)
	}
}

func oneOf(p *problems, key, val string, allowed []string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	p.add(key, "%s: %q is not one of %s", key, val, strings.Join(allowed, ", "))
}

// minDisruptiveElectionsPerHour is the least disruptive_elections_per_hour:
// the scoring's log-conflicts signal (detector/score, "> 3 per hour")
// counts an accusation only when its value is above 3, so a lower bound
// would sign accusations that count for nothing.
const minDisruptiveElectionsPerHour = 3
