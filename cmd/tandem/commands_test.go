package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// run executes the command tree with args and returns stdout, stderr and the
// error main would print.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.ExecuteContext(context.Background())
	return stdout.String(), stderr.String(), err
}

func assertMode600(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", p, fi.Mode().Perm())
		}
	}
}

func TestConfigCheck(t *testing.T) {
	clearEnv(t)
	good := writeFile(t, "good.yaml", validYAML(t))
	out, _, err := run(t, "config", "check", good)
	if err != nil {
		t.Fatalf("check good file: %v", err)
	}
	if out != "config OK: "+good+"\n" {
		t.Errorf("output %q", out)
	}
	// --config works as well as the argument.
	if _, _, err := run(t, "--config", good, "config", "check"); err != nil {
		t.Errorf("check via --config: %v", err)
	}

	bad := writeFile(t, "bad.yaml", "node_id: Node_1\nconsensus_mode: auto\nrequire_signatures: false\n")
	_, _, err = run(t, "config", "check", bad)
	if err == nil {
		t.Fatal("check bad file succeeded")
	}
	for _, w := range []string{bad, "node_id", "consensus_mode auto needs a static committee", "require_signatures", "tls.ca_file", "bootstrap_admin_keys"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}

	out, _, err = run(t, "-o", "json", "config", "check", bad)
	if err == nil {
		t.Fatal("json check of bad file succeeded")
	}
	var res struct {
		File     string   `json:"file"`
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
	}
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		t.Fatalf("json output %q: %v", out, jerr)
	}
	if res.OK || res.File != bad || len(res.Problems) != 7 {
		t.Errorf("json result %+v, want not OK with 7 problems", res)
	}

	if _, _, err := run(t, "config", "check"); err == nil || !strings.Contains(err.Error(), "no file given") {
		t.Errorf("check without a file: %v", err)
	}
	unknown := writeFile(t, "unknown.yaml", "nodeid: x\n")
	if _, _, err := run(t, "config", "check", unknown); err == nil || !strings.Contains(err.Error(), `unknown key "nodeid"`) {
		t.Errorf("check with an unknown key: %v", err)
	}
}

func TestConfigShow(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "tandem.yaml", validYAML(t))
	t.Setenv("TANDEM_RAFT_COMMIT_TIMEOUT", "70ms")
	out, stderr, err := run(t, "--config", file, "config", "show", "--peer-addr", "127.0.0.1:9999")
	if err != nil {
		t.Fatal(err)
	}
	if stderr != "" {
		t.Errorf("unexpected stderr %q", stderr)
	}
	lines := strings.Split(out, "\n")
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "KEY" || f[1] != "VALUE" || f[2] != "SOURCE" {
		t.Errorf("header %q", lines[0])
	}
	want := map[string][2]string{
		"node_id":             {"node-1", "file"},
		"peer_addr":           {"127.0.0.1:9999", "flag"},
		"raft.commit_timeout": {"70ms", "env"},
		"api_addr":            {"127.0.0.1:7001", "default"},
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) == 3 {
			if w, ok := want[f[0]]; ok {
				if f[1] != w[0] || f[2] != w[1] {
					t.Errorf("row %q, want value %s source %s", l, w[0], w[1])
				}
				delete(want, f[0])
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("rows missing: %v", want)
	}

	out, _, err = run(t, "--config", file, "-o", "json", "config", "show")
	if err != nil {
		t.Fatal(err)
	}
	var entries []configEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("json: %v", err)
	}
	got := map[string]configEntry{}
	for _, e := range entries {
		got[e.Key] = e
	}
	if e := got["raft.commit_timeout"]; e.Value != "70ms" || e.Source != "env" {
		t.Errorf("raft.commit_timeout entry %+v", e)
	}
	if e := got["checkpoint_interval"]; e.Value != float64(10000) || e.Source != "default" {
		t.Errorf("checkpoint_interval entry %+v", e)
	}

	// An invalid configuration is shown, with its problems on stderr.
	_, stderr, err = run(t, "config", "show")
	if err != nil || !strings.Contains(stderr, "node_id is required") {
		t.Errorf("show without config: err %v, stderr %q", err, stderr)
	}
}

func TestConfigDefault(t *testing.T) {
	out, _, err := run(t, "config", "default")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "\nraft:\n") || !strings.Contains(out, `  heartbeat_timeout: "1s"`) || !strings.Contains(out, "# ") {
		t.Errorf("default YAML lacks expected content:\n%s", out)
	}
	out, _, err = run(t, "-o", "json", "config", "default")
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]string
	if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) == 0 || docs[0]["env"] != "TANDEM_NODE_ID" {
		t.Errorf("json reference: %v, %v", err, docs)
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "admin.key")
	out, _, err := run(t, "-o", "json", "keygen", "--out", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	var res keyOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	if res.KeyFile != keyFile {
		t.Errorf("key_file %q", res.KeyFile)
	}
	assertMode600(t, keyFile)
	k, err := identity.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := smr.ParseKey(res.PublicKey)
	if err != nil || !pub.Equal(k.Public()) {
		t.Errorf("printed public key %q does not match the file (%v)", res.PublicKey, err)
	}
	// Never overwrite.
	_, _, err = run(t, "keygen", "--out", keyFile)
	if !errors.Is(err, identity.ErrFileExists) {
		t.Errorf("second keygen: %v, want ErrFileExists", err)
	}
	if _, _, err := run(t, "keygen"); err == nil || !strings.Contains(err.Error(), "--out is required") {
		t.Errorf("keygen without --out: %v", err)
	}
	// Table output carries the public key too.
	out, _, err = run(t, "keygen", "--out", filepath.Join(dir, "b.key"))
	if err != nil || !strings.Contains(out, "Public key:") {
		t.Errorf("table output %q, %v", out, err)
	}
}

func TestInit(t *testing.T) {
	clearEnv(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	out, _, err := run(t, "-o", "json", "init", "--data-dir", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var res keyOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dataDir, identity.NodeKeyFileName)
	if res.KeyFile != keyFile {
		t.Errorf("key_file = %q, want %q", res.KeyFile, keyFile)
	}
	assertMode600(t, keyFile)
	k, err := identity.LoadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if res.PublicKey != smr.FormatKey(k.Public().(ed25519.PublicKey)) {
		t.Error("printed public key does not match node.key")
	}
	if _, _, err := run(t, "init", "--data-dir", dataDir); !errors.Is(err, identity.ErrFileExists) {
		t.Errorf("second init: %v, want ErrFileExists", err)
	}
	// data_dir from the environment.
	envDir := filepath.Join(t.TempDir(), "env-data")
	t.Setenv("TANDEM_DATA_DIR", envDir)
	if _, _, err := run(t, "init"); err != nil {
		t.Fatal(err)
	}
	assertMode600(t, filepath.Join(envDir, identity.NodeKeyFileName))
}

func TestCAAndCertCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, _, err := run(t, "ca", "create", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	caFile, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	assertMode600(t, caFile, caKey)
	if _, _, err := run(t, "ca", "create", "--dir", dir); !errors.Is(err, identity.ErrFileExists) {
		t.Errorf("second ca create: %v, want ErrFileExists", err)
	}

	out, _, err := run(t, "cert", "create", "--ca-dir", dir, "--node", "node-1", "--host", "10.1.2.3", "--host", "n1.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "node-1.pem") {
		t.Errorf("output %q does not name the certificate", out)
	}
	n1Cert, n1Key := filepath.Join(dir, "node-1.pem"), filepath.Join(dir, "node-1-key.pem")
	assertMode600(t, n1Cert, n1Key)
	if _, _, err := identity.PeerTLS(caFile, n1Cert, n1Key); err != nil {
		t.Errorf("issued node certificate does not load as peer TLS: %v", err)
	}

	outDir := filepath.Join(t.TempDir(), "clients")
	out, _, err = run(t, "-o", "json", "cert", "create", "--ca-dir", dir, "--client", "alice", "--out-dir", outDir)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.CertFile != filepath.Join(outDir, "alice.pem") || res.KeyFile != filepath.Join(outDir, "alice-key.pem") {
		t.Errorf("json %+v", res)
	}
	assertMode600(t, res.CertFile, res.KeyFile)
	if _, err := identity.ClientTLS(caFile, res.CertFile, res.KeyFile); err != nil {
		t.Errorf("issued client certificate does not load: %v", err)
	}
	// A client certificate is not a node certificate.
	if _, _, err := identity.PeerTLS(caFile, res.CertFile, res.KeyFile); err == nil {
		t.Error("client certificate accepted as a node certificate")
	}

	for _, bad := range [][]string{
		{"cert", "create", "--ca-dir", dir},
		{"cert", "create", "--ca-dir", dir, "--node", "a", "--client", "b"},
		{"cert", "create", "--node", "a"},
		{"cert", "create", "--ca-dir", dir, "--client", "b", "--host", "h"},
		{"cert", "create", "--ca-dir", dir, "--node", "node-1"}, // exists
		{"cert", "create", "--ca-dir", dir, "--node", "Bad_ID"},
	} {
		if _, _, err := run(t, bad...); err == nil {
			t.Errorf("%v succeeded", bad)
		}
	}
}

func TestGlobalFlags(t *testing.T) {
	if _, _, err := run(t, "-o", "yaml", "config", "default"); err == nil || !strings.Contains(err.Error(), `"yaml" is not one of table, json`) {
		t.Errorf("bad --output: %v", err)
	}
	if _, _, err := run(t, "--log-level", "loud", "config", "default"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("bad --log-level: %v", err)
	}
	clearEnv(t)
	file := writeFile(t, "tandem.yaml", validYAML(t))
	out, _, err := run(t, "--config", file, "--log-level", "debug", "config", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "log.level") || !hasRow(out, "log.level", "debug", "flag") {
		t.Errorf("--log-level not applied to log.level:\n%s", out)
	}
}

// hasRow reports whether out has a table row with exactly these fields.
func hasRow(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}
