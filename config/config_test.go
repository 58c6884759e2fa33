package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

func testAdminKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return smr.FormatKey(pub)
}

// valid returns Default() plus the keys that have no usable default.
func valid(t *testing.T) Config {
	t.Helper()
	c := Default()
	c.NodeID = "node-1"
	c.TLS = TLSConfig{CAFile: "ca.pem", CertFile: "node-1.pem", KeyFile: "node-1-key.pem"}
	c.BootstrapAdminKeys = []string{testAdminKey(t)}
	return c
}

// bftMembers returns n initial_members entries node-1 … node-n, each with
// a fresh node public key.
func bftMembers(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d=127.0.0.1:%d/%s", i+1, 7901+i, testAdminKey(t))
	}
	return out
}

// TestBFTModeValidates: consensus_mode bft with four keyed members passes,
// and ParseMember returns each member's key.
func TestBFTModeValidates(t *testing.T) {
	c := valid(t)
	c.ConsensusMode = ModeBFT
	c.InitialMembers = bftMembers(t, 4)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	ms, err := c.Members()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		want := strings.SplitN(c.InitialMembers[i], "/", 2)[1]
		if m.PublicKey == nil || smr.FormatKey(m.PublicKey) != want || m.Addr != fmt.Sprintf("127.0.0.1:%d", 7901+i) {
			t.Errorf("member %d = %+v, want key %s", i, m, want)
		}
	}
	// The same entries are accepted in cft mode (the key is unused there).
	c.ConsensusMode = ModeCFT
	if err := c.Validate(); err != nil {
		t.Fatalf("cft with keyed members: Validate() = %v", err)
	}
}

func TestDefaultPlusRequiredValidates(t *testing.T) {
	c := valid(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}

func TestDefaultAloneNamesEveryMissingKey(t *testing.T) {
	c := Default()
	err := c.Validate()
	got := map[string]bool{}
	for _, p := range Problems(err) {
		got[p.Key] = true
	}
	want := []string{"node_id", "tls.ca_file", "tls.cert_file", "tls.key_file", "bootstrap_admin_keys"}
	for _, k := range want {
		if !got[k] {
			t.Errorf("Default().Validate() does not report %s; got %v", k, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Default().Validate() reports %d keys, want %d: %v", len(got), len(want), err)
	}
}

func TestDefaultSeedValues(t *testing.T) {
	c := Default()
	checks := []struct {
		key  string
		want string
	}{
		{"consensus_mode", "cft"}, {"bft_fault_threshold", "0.33"}, {"anomaly_threshold", "0.7"},
		{"quarantine_threshold", "0.9"}, {"view_change_timeout", "5s"}, {"vote_timeout", "2s"},
		{"state_transfer_timeout", "30s"}, {"checkpoint_interval", "10000"}, {"log_retention", "100000"},
		{"log_size_limit", "268435456"},
		{"require_mtls", "true"}, {"require_signatures", "true"}, {"signature_algorithm", "ed25519"},
		{"auto_recovery", "true"}, {"max_view_change_retries", "10"}, {"enable_debug", "false"},
		{"auto_deescalate_after", "10m0s"}, {"bft_commit_rule", "chained-hotstuff"}, {"disruptive_elections_per_hour", "10"},
		{"bft_max_batch", "256"}, {"bft_max_batch_delay", "0s"},
		{"data_dir", "./tandem-data"}, {"api_addr", "127.0.0.1:7001"}, {"peer_addr", "127.0.0.1:7002"},
		{"gossip_addr", "127.0.0.1:7003"}, {"raft.heartbeat_timeout", "1s"}, {"raft.election_timeout", "1s"},
		{"raft.leader_lease_timeout", "500ms"}, {"raft.commit_timeout", "50ms"}, {"raft.snapshot_interval", "2m0s"},
		{"raft.snapshot_threshold", "8192"}, {"raft.trailing_logs", "10240"}, {"raft.snapshot_retain", "2"},
		{"raft.max_append_entries", "64"}, {"raft.apply_timeout", "10s"}, {"limits.max_request_bytes", "1048576"},
		{"limits.max_command_bytes", "65536"}, {"limits.result_window", "1024"}, {"log.level", "info"},
		{"log.format", "text"}, {"node_id", ""},
	}
	for _, tc := range checks {
		got, ok := c.Format(tc.key)
		if !ok || got != tc.want {
			t.Errorf("Default %s = %q (found %v), want %q", tc.key, got, ok, tc.want)
		}
	}
}

func TestValidateBadValues(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		key    string   // FieldError.Key expected among the problems
		want   []string // substrings of that problem's message
	}{
		{"missing node_id", func(c *Config) { c.NodeID = "" }, "node_id", []string{"node_id is required"}},
		{"bad node_id", func(c *Config) { c.NodeID = "Node_1" }, "node_id", []string{`"Node_1"`}},
		{"empty data_dir", func(c *Config) { c.DataDir = "" }, "data_dir", []string{"data_dir is required"}},
		{"unknown mode", func(c *Config) { c.ConsensusMode = "bfft" }, "consensus_mode", []string{`consensus_mode: "bfft" is not one of auto, cft, bft`}},
		{"bft without committee", func(c *Config) { c.ConsensusMode = "bft" }, "initial_members", []string{"consensus_mode bft needs a static committee", "id=host:port/node-public-key", "at least 4 members"}},
		{"bft with bootstrap_expect", func(c *Config) {
			c.ConsensusMode = "bft"
			c.BootstrapExpect = 4
		}, "bootstrap_expect", []string{"bootstrap_expect (4) cannot form a bft cluster", "initial_members"}},
		{"bft three members", func(c *Config) {
			c.ConsensusMode = "bft"
			c.InitialMembers = bftMembers(t, 3)
		}, "initial_members", []string{"needs at least 4 members in initial_members, got 3", "n >= 3f+1"}},
		{"bft member without key", func(c *Config) {
			c.ConsensusMode = "bft"
			c.InitialMembers = append(bftMembers(t, 3), "node-9=127.0.0.1:7909")
		}, "initial_members", []string{`initial_members[3]: "node-9=127.0.0.1:7909" has no node public key`}},
		{"bft duplicate key", func(c *Config) {
			c.ConsensusMode = "bft"
			ms := bftMembers(t, 4)
			ms[3] = "node-4=127.0.0.1:7904/" + strings.SplitN(ms[0], "/", 2)[1]
			c.InitialMembers = ms
		}, "initial_members", []string{`initial_members[3]: node public key of "node-4" is also the key of initial_members[0]`}},
		{"member bad key", func(c *Config) { c.InitialMembers = []string{"node-1=127.0.0.1:7002/xyz"} }, "initial_members", []string{`initial_members[0]: "node-1=127.0.0.1:7002/xyz": the node public key after '/' is not an Ed25519 public key`}},
		{"auto without committee", func(c *Config) { c.ConsensusMode = "auto" }, "initial_members", []string{"consensus_mode auto needs a static committee", "node-public-key"}},
		{"signatures off", func(c *Config) { c.RequireSignatures = false }, "require_signatures", []string{"require_signatures", "cannot be turned off"}},
		{"rsa", func(c *Config) { c.SignatureAlgorithm = "rsa" }, "signature_algorithm", []string{`signature_algorithm: "rsa"`, "ed25519"}},
		{"bad api addr", func(c *Config) { c.APIAddr = "localhost" }, "api_addr", []string{`api_addr: "localhost" is not host:port`}},
		{"bad port", func(c *Config) { c.GossipAddr = "127.0.0.1:99999" }, "gossip_addr", []string{`gossip_addr: "127.0.0.1:99999"`}},
		{"empty peer addr", func(c *Config) { c.PeerAddr = "" }, "peer_addr", []string{"peer_addr is required"}},
		{"wildcard peer no advertise", func(c *Config) { c.PeerAddr = "0.0.0.0:7002" }, "advertise_peer_addr", []string{"advertise_peer_addr is required", `"0.0.0.0:7002"`}},
		{"wildcard advertise", func(c *Config) { c.AdvertiseGossipAddr = "[::]:7003" }, "advertise_gossip_addr", []string{"advertise_gossip_addr", "wildcard"}},
		{"bad join", func(c *Config) { c.Join = []string{"10.0.0.1:7003", "nohost"} }, "join", []string{`join[1]: "nohost"`}},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, "bootstrap_expect", []string{"bootstrap_expect: -1 must be >= 0"}},
		{"both formations", func(c *Config) {
			c.BootstrapExpect = 3
			c.InitialMembers = []string{"node-1=127.0.0.1:7002"}
		}, "initial_members", []string{"initial_members", "bootstrap_expect (3)", "mutually exclusive"}},
		{"member syntax", func(c *Config) { c.InitialMembers = []string{"node-1=127.0.0.1:7002", "node-2"} }, "initial_members", []string{`initial_members[1]: "node-2" is not id=host:port`}},
		{"member dup id", func(c *Config) {
			c.InitialMembers = []string{"node-1=127.0.0.1:7002", "node-1=127.0.0.2:7002"}
		}, "initial_members", []string{`initial_members[1]: node ID "node-1" is already used by initial_members[0]`}},
		{"member missing self", func(c *Config) { c.InitialMembers = []string{"node-2=127.0.0.1:7002"} }, "initial_members", []string{"must include this node", `"node-1"`}},
		{"no admin keys", func(c *Config) { c.BootstrapAdminKeys = nil }, "bootstrap_admin_keys", []string{"bootstrap_admin_keys needs at least one"}},
		{"bad admin key", func(c *Config) { c.BootstrapAdminKeys = []string{"abc"} }, "bootstrap_admin_keys", []string{`bootstrap_admin_keys[0]: "abc" is not an Ed25519 public key`}},
		{"tls missing", func(c *Config) { c.TLS.KeyFile = "" }, "tls.key_file", []string{"tls.key_file is required when require_mtls is true"}},
		{"tls partial without mtls", func(c *Config) {
			c.RequireMTLS = false
			c.TLS.CAFile = ""
		}, "tls.ca_file", []string{"tls.ca_file is required when any of"}},
		{"bft threshold", func(c *Config) { c.BFTFaultThreshold = 0.5 }, "bft_fault_threshold", []string{"bft_fault_threshold: 0.5 must be in (0, 1/3]"}},
		{"anomaly range", func(c *Config) { c.AnomalyThreshold = 1.5 }, "anomaly_threshold", []string{"anomaly_threshold: 1.5 must be in (0, 1]"}},
		{"quarantine below anomaly", func(c *Config) { c.QuarantineThreshold = 0.5 }, "quarantine_threshold", []string{"quarantine_threshold (0.5) must be greater than anomaly_threshold (0.7)"}},
		{"quarantine equals anomaly", func(c *Config) { c.QuarantineThreshold = 0.7 }, "quarantine_threshold", []string{"quarantine_threshold (0.7) must be greater than anomaly_threshold (0.7)"}},
		{"webhook url", func(c *Config) { c.QuarantineWebhookURL = "ftp://x" }, "quarantine_webhook_url", []string{`quarantine_webhook_url: "ftp://x" is not an http:// or https:// URL`}},
		{"vote >= view change", func(c *Config) { c.VoteTimeout = 5 * time.Second }, "vote_timeout", []string{"vote_timeout (5s) must be less than view_change_timeout (5s)"}},
		{"zero view change", func(c *Config) { c.ViewChangeTimeout = 0 }, "view_change_timeout", []string{"view_change_timeout: 0s must be > 0"}},
		{"zero state transfer", func(c *Config) { c.StateTransferTimeout = -time.Second }, "state_transfer_timeout", []string{"state_transfer_timeout: -1s must be > 0"}},
		{"zero checkpoint", func(c *Config) { c.CheckpointInterval = 0 }, "checkpoint_interval", []string{"checkpoint_interval: 0 must be > 0"}},
		{"retention < checkpoint", func(c *Config) { c.LogRetention = 10 }, "log_retention", []string{"log_retention (10) must be >= checkpoint_interval (10000)"}},
		{"log size limit below minimum", func(c *Config) { c.LogSizeLimit = 4096 }, "log_size_limit", []string{"log_size_limit: 4096 must be >= 1048576"}},
		{"zero log size limit", func(c *Config) { c.LogSizeLimit = 0 }, "log_size_limit", []string{"log_size_limit: 0 must be >= 1048576"}},
		{"retries", func(c *Config) { c.MaxViewChangeRetries = 0 }, "max_view_change_retries", []string{"max_view_change_retries: 0 must be >= 1"}},
		{"commit rule", func(c *Config) { c.BFTCommitRule = "4chain" }, "bft_commit_rule", []string{`bft_commit_rule: "4chain" is not one of chained-hotstuff, two-chain-hotstuff`}},
		{"zero batch", func(c *Config) { c.BFTMaxBatch = 0 }, "bft_max_batch", []string{"bft_max_batch: 0 must be in [1, 65536]"}},
		{"huge batch", func(c *Config) { c.BFTMaxBatch = 1 << 17 }, "bft_max_batch", []string{"bft_max_batch: 131072 must be in [1, 65536]"}},
		{"negative batch delay", func(c *Config) { c.BFTMaxBatchDelay = -time.Millisecond }, "bft_max_batch_delay", []string{"bft_max_batch_delay: -1ms must be >= 0 and less than half of view_change_timeout (5s)"}},
		{"batch delay >= half the view timeout", func(c *Config) { c.BFTMaxBatchDelay = 2500 * time.Millisecond }, "bft_max_batch_delay", []string{"bft_max_batch_delay: 2.5s must be >= 0 and less than half of view_change_timeout (5s)"}},
		{"too few disruptive elections", func(c *Config) { c.DisruptiveElectionsPerHour = 2 }, "disruptive_elections_per_hour", []string{"disruptive_elections_per_hour: 2 must be at least 3"}},
		{"negative calm period", func(c *Config) { c.AutoDeescalateAfter = -time.Second }, "auto_deescalate_after", []string{"auto_deescalate_after: -1s must be >= 0"}},
		{"lease > heartbeat", func(c *Config) { c.Raft.LeaderLeaseTimeout = 2 * time.Second }, "raft.leader_lease_timeout", []string{"raft.leader_lease_timeout (2s) must not exceed raft.heartbeat_timeout (1s)"}},
		{"election < heartbeat", func(c *Config) { c.Raft.ElectionTimeout = 100 * time.Millisecond }, "raft.election_timeout", []string{"raft.election_timeout (100ms) must be >= raft.heartbeat_timeout (1s)"}},
		{"tiny heartbeat", func(c *Config) { c.Raft.HeartbeatTimeout = time.Millisecond }, "raft.heartbeat_timeout", []string{"raft.heartbeat_timeout: 1ms must be >= 5ms"}},
		{"commit timeout", func(c *Config) { c.Raft.CommitTimeout = 0 }, "raft.commit_timeout", []string{"raft.commit_timeout: 0s must be >= 1ms"}},
		{"append entries", func(c *Config) { c.Raft.MaxAppendEntries = 2000 }, "raft.max_append_entries", []string{"raft.max_append_entries: 2000 must be in 1..1024"}},
		{"snapshot retain", func(c *Config) { c.Raft.SnapshotRetain = 0 }, "raft.snapshot_retain", []string{"raft.snapshot_retain: 0 must be >= 1"}},
		{"snapshot threshold", func(c *Config) { c.Raft.SnapshotThreshold = 0 }, "raft.snapshot_threshold", []string{"raft.snapshot_threshold: 0"}},
		{"apply timeout", func(c *Config) { c.Raft.ApplyTimeout = 0 }, "raft.apply_timeout", []string{"raft.apply_timeout: 0s must be > 0"}},
		{"request bytes", func(c *Config) { c.Limits.MaxRequestBytes = 0 }, "limits.max_request_bytes", []string{"limits.max_request_bytes: 0 must be > 0"}},
		{"command > request", func(c *Config) { c.Limits.MaxCommandBytes = 2 << 20 }, "limits.max_command_bytes", []string{"limits.max_command_bytes (2097152) must not exceed limits.max_request_bytes (1048576)"}},
		{"result window", func(c *Config) { c.Limits.ResultWindow = 0 }, "limits.result_window", []string{"limits.result_window: 0 must be >= 1"}},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", []string{`log.level: "verbose" is not one of debug, info, warn, error`}},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", []string{`log.format: "xml" is not one of text, json`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			tc.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want a problem")
			}
			var found *FieldError
			for _, p := range Problems(err) {
				if p.Key == tc.key {
					found = p
					break
				}
			}
			if found == nil {
				t.Fatalf("no problem for key %s in: %v", tc.key, err)
			}
			if !strings.Contains(found.Msg, tc.key) {
				t.Errorf("message %q does not name the key %s", found.Msg, tc.key)
			}
			for _, w := range tc.want {
				if !strings.Contains(found.Msg, w) {
					t.Errorf("message %q does not contain %q", found.Msg, w)
				}
			}
		})
	}
}

func TestValidateCollectsAllProblems(t *testing.T) {
	c := valid(t)
	c.ConsensusMode = "bfft"
	c.Raft.LeaderLeaseTimeout = 2 * time.Second
	c.Log.Format = "xml"
	err := c.Validate()
	ps := Problems(err)
	if len(ps) != 3 {
		t.Fatalf("got %d problems, want 3: %v", len(ps), err)
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Error("errors.As(*FieldError) failed on the joined error")
	}
}

func TestValidateDoesNotModify(t *testing.T) {
	c := valid(t)
	c.PeerAddr = "0.0.0.0:7002"
	before := c
	before.BootstrapAdminKeys = append([]string(nil), c.BootstrapAdminKeys...)
	_ = c.Validate()
	if !reflect.DeepEqual(c, before) {
		t.Error("Validate modified the config")
	}
}

func TestKeysCoverStruct(t *testing.T) {
	keys := Keys()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.Name] {
			t.Errorf("duplicate key %s", k.Name)
		}
		seen[k.Name] = true
		if k.Description == "" {
			t.Errorf("key %s has no description", k.Name)
		}
		c := Default()
		if _, ok := c.Field(k.Name); !ok {
			t.Errorf("Field(%q) not found", k.Name)
		}
	}
	for name := range descriptions {
		if !seen[name] {
			t.Errorf("description for unknown key %s", name)
		}
	}
	if len(keys) != 52 {
		t.Errorf("Keys() has %d keys; update this test if a field was added on purpose", len(keys))
	}
}

func TestField(t *testing.T) {
	c := Default()
	p, ok := c.Field("raft.heartbeat_timeout")
	if !ok {
		t.Fatal("raft.heartbeat_timeout not found")
	}
	*p.(*time.Duration) = 3 * time.Second
	if c.Raft.HeartbeatTimeout != 3*time.Second {
		t.Error("Field pointer does not alias the config")
	}
	for _, bad := range []string{"raft", "nope", "raft.nope", "node_id.x", ""} {
		if _, ok := c.Field(bad); ok {
			t.Errorf("Field(%q) found", bad)
		}
	}
	if !IsSection("raft") || !IsSection("tls") || IsSection("node_id") || IsSection("raft.heartbeat_timeout") || IsSection("nope") {
		t.Error("IsSection is wrong")
	}
	if EnvName("raft.heartbeat_timeout") != "TANDEM_RAFT_HEARTBEAT_TIMEOUT" {
		t.Error(EnvName("raft.heartbeat_timeout"))
	}
}

func TestMembers(t *testing.T) {
	c := valid(t)
	c.InitialMembers = []string{"node-1=127.0.0.1:7002", " node-2 = 10.0.0.2:7002"}
	ms, err := c.Members()
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{{ID: "node-1", Addr: "127.0.0.1:7002"}, {ID: "node-2", Addr: "10.0.0.2:7002"}}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("Members() = %v, want %v", ms, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, bad := range []string{"node-1=0.0.0.0:7002", "node-1=127.0.0.1:0", "=1.2.3.4:5", "x=y"} {
		if _, err := ParseMember(bad); err == nil {
			t.Errorf("ParseMember(%q) succeeded", bad)
		}
	}
}

func TestAdvertiseDefaults(t *testing.T) {
	c := Default()
	if c.PeerAdvertiseAddr() != c.PeerAddr || c.GossipAdvertiseAddr() != c.GossipAddr {
		t.Error("advertise addresses do not default to listen addresses")
	}
	c.AdvertisePeerAddr, c.AdvertiseGossipAddr = "10.0.0.1:7002", "10.0.0.1:7003"
	if c.PeerAdvertiseAddr() != "10.0.0.1:7002" || c.GossipAdvertiseAddr() != "10.0.0.1:7003" {
		t.Error("advertise addresses ignored")
	}
}

func TestSampleYAMLMentionsEveryKey(t *testing.T) {
	s := SampleYAML()
	for _, k := range Keys() {
		leaf := k.Name
		if i := strings.LastIndex(leaf, "."); i >= 0 {
			leaf = leaf[i+1:]
		}
		if !strings.Contains(s, "\n"+strings.Repeat("  ", strings.Count(k.Name, "."))+leaf+": ") {
			t.Errorf("sample YAML lacks key %s", k.Name)
		}
	}
}

// bootstrap_admin_keys accept exactly the spellings that ACL subjects (and
// `tandem acl`) accept: smr.ParseKey's canonical form, nothing looser.
func TestAdminKeysMatchACLParser(t *testing.T) {
	key := testAdminKey(t)
	upper := strings.ToUpper(key)
	for _, s := range []string{key, " " + key, key + " ", "\t" + key, key + "=", upper, "0x" + key, key[:62], "", "abc"} {
		c := valid(t)
		c.BootstrapAdminKeys = []string{s}
		err := c.Validate()
		_, perr := smr.ParseKey(s)
		if (err == nil) != (perr == nil) {
			t.Errorf("key %q: config.Validate = %v but smr.ParseKey = %v", s, err, perr)
		}
		if err != nil && !strings.Contains(err.Error(), "bootstrap_admin_keys[0]") {
			t.Errorf("key %q: %v does not name bootstrap_admin_keys[0]", s, err)
		}
	}
	c := valid(t)
	c.BootstrapAdminKeys = []string{key, key}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "duplicate of bootstrap_admin_keys[0]") {
		t.Errorf("duplicate key: %v", err)
	}
}

// TestLogSizeLimitMinimum: log_size_limit accepts its documented minimum
// and refuses one byte less, naming the key, the value and the minimum.
func TestLogSizeLimitMinimum(t *testing.T) {
	c := valid(t)
	c.LogSizeLimit = MinLogSizeLimit
	if err := c.Validate(); err != nil {
		t.Fatalf("log_size_limit %d (the minimum): %v", c.LogSizeLimit, err)
	}
	c.LogSizeLimit = MinLogSizeLimit - 1
	ps := Problems(c.Validate())
	if len(ps) != 1 || ps[0].Key != "log_size_limit" || !strings.Contains(ps[0].Msg, "1048575 must be >= 1048576") {
		t.Fatalf("log_size_limit %d: problems %v, want one naming the key, the value and the minimum", c.LogSizeLimit, ps)
	}
}
