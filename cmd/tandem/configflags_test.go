package main

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/goleak"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clearEnv blanks every TANDEM_* variable loadConfig reads, so that the
// environment of the test process cannot leak in (empty counts as unset).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range config.Keys() {
		t.Setenv(config.EnvName(k.Name), "")
	}
	t.Setenv(envConfigFile, "")
}

func adminKey(t *testing.T) string {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return smr.FormatKey(k.Public().(ed25519.PublicKey))
}

// writeFile writes content to name in a temp dir and returns the path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validYAML is a file that validates on its own.
func validYAML(t *testing.T) string {
	return `node_id: node-1
tls:
  ca_file: ca.pem
  cert_file: node-1.pem
  key_file: node-1-key.pem
bootstrap_admin_keys:
  - ` + adminKey(t) + `
`
}

func flagSet(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	bindConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestLoadConfigPrecedence(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "tandem.yaml", validYAML(t)+`
api_addr: 10.0.0.1:1001
peer_addr: 10.0.0.1:1002
gossip_addr: 10.0.0.1:1003
raft:
  heartbeat_timeout: 2s
  election_timeout: 3s
`)
	// env beats file for peer_addr and gossip_addr; flag beats env for gossip_addr.
	t.Setenv("TANDEM_PEER_ADDR", "10.0.0.2:2002")
	t.Setenv("TANDEM_GOSSIP_ADDR", "10.0.0.2:2003")
	t.Setenv("TANDEM_RAFT_ELECTION_TIMEOUT", "4s")
	t.Setenv("TANDEM_JOIN", "10.0.0.5:7003, 10.0.0.6:7003")
	fs := flagSet(t, "--gossip-addr", "10.0.0.3:3003", "--join", "10.0.0.7:7003", "--join", "10.0.0.8:7003")

	cfg, src, err := loadConfig(file, fs)
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	checks := []struct {
		key, value, source string
	}{
		{"api_addr", "10.0.0.1:1001", sourceFile},
		{"peer_addr", "10.0.0.2:2002", sourceEnv},
		{"gossip_addr", "10.0.0.3:3003", sourceFlag},
		{"raft.heartbeat_timeout", "2s", sourceFile},
		{"raft.election_timeout", "4s", sourceEnv},
		{"join", "10.0.0.7:7003,10.0.0.8:7003", sourceFlag},
		{"data_dir", config.DefaultDataDir, sourceDefault},
		{"node_id", "node-1", sourceFile},
	}
	for _, c := range checks {
		got, _ := cfg.Format(c.key)
		if got != c.value || src[c.key] != c.source {
			t.Errorf("%s = %q from %s, want %q from %s", c.key, got, src[c.key], c.value, c.source)
		}
	}
	if len(src) != len(config.Keys()) {
		t.Errorf("sources has %d keys, want every key (%d)", len(src), len(config.Keys()))
	}

	// Without the flag, the environment's list wins over the default.
	cfg, src, err = loadConfig(file, flagSet(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Join, []string{"10.0.0.5:7003", "10.0.0.6:7003"}) || src["join"] != sourceEnv {
		t.Errorf("join = %q from %s, want the env list", cfg.Join, src["join"])
	}
	if cfg.GossipAddr != "10.0.0.2:2003" {
		t.Errorf("gossip_addr = %q, want the env value", cfg.GossipAddr)
	}
}

func TestLoadConfigTypes(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "tandem.yaml", validYAML(t)+`
bootstrap_expect: 3
join: ["a:1", "b:2"]
bft_fault_threshold: 0.25
checkpoint_interval: 500
log_retention: 1000
require_mtls: true
limits:
  max_request_bytes: 2097152
`)
	t.Setenv("TANDEM_AUTO_RECOVERY", "false")
	t.Setenv("TANDEM_LIMITS_RESULT_WINDOW", "77")
	cfg, _, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.NodeID = "node-1"
	want.TLS = config.TLSConfig{CAFile: "ca.pem", CertFile: "node-1.pem", KeyFile: "node-1-key.pem"}
	want.BootstrapAdminKeys = cfg.BootstrapAdminKeys
	want.BootstrapExpect = 3
	want.Join = []string{"a:1", "b:2"}
	want.BFTFaultThreshold = 0.25
	want.CheckpointInterval = 500
	want.LogRetention = 1000
	want.Limits.MaxRequestBytes = 2 << 20
	want.AutoRecovery = false
	want.Limits.ResultWindow = 77
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("loaded config\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name  string
		yaml  string
		env   map[string]string
		flags []string
		want  []string
	}{
		{
			name: "unknown key",
			yaml: "node_id: n1\nraft:\n  hearbeat_timeout: 2s\n",
			want: []string{`unknown key "raft.hearbeat_timeout"`, "line 3", `did you mean "raft.heartbeat_timeout"`, "tandem.yaml"},
		},
		{
			name: "key in the wrong section",
			yaml: "heartbeat_timeout: 2s\n",
			want: []string{`unknown key "heartbeat_timeout"`, `did you mean "raft.heartbeat_timeout"`},
		},
		{
			name: "section not a mapping",
			yaml: "raft: fast\n",
			want: []string{"raft must be a mapping", "line 1"},
		},
		{
			name: "duration type",
			yaml: "raft:\n  heartbeat_timeout: soon\n",
			want: []string{`raft.heartbeat_timeout: "soon" is not a duration`, "line 2"},
		},
		{
			name: "duration without unit",
			yaml: "vote_timeout: 1000\n",
			want: []string{"vote_timeout: 1000 is not a duration: give a unit"},
		},
		{
			name: "negative uint",
			yaml: "checkpoint_interval: -5\n",
			want: []string{"checkpoint_interval: -5 is not a non-negative integer"},
		},
		{
			name: "list type",
			yaml: "join: {a: 1}\n",
			want: []string{"join:", "is not a list"},
		},
		{
			name: "env type",
			env:  map[string]string{"TANDEM_BOOTSTRAP_EXPECT": "three"},
			want: []string{`bootstrap_expect: "three" is not an integer`, "env TANDEM_BOOTSTRAP_EXPECT"},
		},
		{
			name: "env bool",
			env:  map[string]string{"TANDEM_REQUIRE_MTLS": "maybe"},
			want: []string{`require_mtls: "maybe" is not a boolean`},
		},
		{
			name: "parse error names file and line",
			yaml: "node_id: n1\n  raft: x\n",
			want: []string{"tandem.yaml", "invalid YAML", "line 2"},
		},
		{
			name: "top level list",
			yaml: "- a\n- b\n",
			want: []string{"top level must be a mapping"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			file := writeFile(t, "tandem.yaml", tc.yaml)
			_, _, err := loadConfig(file, flagSet(t, tc.flags...))
			if err == nil {
				t.Fatal("loadConfig succeeded")
			}
			var cp *configProblemsError
			if errors.As(err, &cp) {
				t.Fatalf("got a validation error, want a read error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	clearEnv(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, _, err := loadConfig(missing, nil)
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("err = %v, want 'does not exist' naming the file", err)
	}
}

func TestLoadConfigValidationAnnotatesOrigin(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "tandem.yaml", validYAML(t)+"consensus_mode: bfft\n")
	t.Setenv("TANDEM_LOG_FORMAT", "xml")
	cfg, src, err := loadConfig(file, flagSet(t, "--api-addr", "nope"))
	var cp *configProblemsError
	if !errors.As(err, &cp) {
		t.Fatalf("err = %v, want *configProblemsError", err)
	}
	if cfg.ConsensusMode != "bfft" || src["consensus_mode"] != sourceFile {
		t.Error("the invalid config is not returned with its sources")
	}
	msg := err.Error()
	for _, w := range []string{
		"has 3 problems",
		`consensus_mode: "bfft" is not one of auto, cft, bft [file ` + file + " line 8]",
		`log.format: "xml" is not one of text, json [env TANDEM_LOG_FORMAT]`,
		`api_addr: "nope" is not host:port`, "[flag --api-addr]",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	if n := len(config.Problems(err)); n != 3 {
		t.Errorf("config.Problems found %d problems, want 3", n)
	}
}

func TestSampleYAMLLoadsAsDefault(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "default.yaml", config.SampleYAML())
	l, err := readConfig(file, nil)
	if err != nil {
		t.Fatalf("readConfig(sample): %v", err)
	}
	if want := config.Default(); !reflect.DeepEqual(l.cfg, want) {
		// Lists: the sample has [] where Default has nil.
		want.Join, want.InitialMembers, want.BootstrapAdminKeys = []string{}, []string{}, []string{}
		if !reflect.DeepEqual(l.cfg, want) {
			t.Errorf("sample YAML loads as\n%+v\nwant\n%+v", l.cfg, want)
		}
	}
	for k, s := range l.sources {
		if s != sourceFile {
			t.Errorf("key %s comes from %s, want file (the sample lists every key)", k, s)
		}
	}
}

func TestEnvDurationAndFlagInt(t *testing.T) {
	clearEnv(t)
	t.Setenv("TANDEM_RAFT_HEARTBEAT_TIMEOUT", "3s")
	t.Setenv("TANDEM_RAFT_ELECTION_TIMEOUT", "3s")
	l, err := readConfig("", flagSet(t, "--bootstrap-expect", "5"))
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.Raft.HeartbeatTimeout != 3*time.Second || l.sources["raft.heartbeat_timeout"] != sourceEnv {
		t.Errorf("heartbeat = %v from %s", l.cfg.Raft.HeartbeatTimeout, l.sources["raft.heartbeat_timeout"])
	}
	if l.cfg.BootstrapExpect != 5 || l.sources["bootstrap_expect"] != sourceFlag {
		t.Errorf("bootstrap_expect = %d from %s", l.cfg.BootstrapExpect, l.sources["bootstrap_expect"])
	}
}
