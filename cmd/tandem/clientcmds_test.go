package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// smBackend is an api.Backend over one real state machine, without
// consensus: entries are applied in arrival order.
type smBackend struct {
	sm *smr.StateMachine

	mu      sync.Mutex
	index   uint64
	members []consensus.Member
	leader  string
	// hook, when set, runs instead of the normal submit path.
	hook func(ctx context.Context, env *smr.Envelope) (smr.Result, error)
}

func newSMBackend(t *testing.T, admin ed25519.PublicKey) *smBackend {
	t.Helper()
	sm, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{admin}})
	if err != nil {
		t.Fatal(err)
	}
	return &smBackend{sm: sm, leader: "n1", members: []consensus.Member{
		{ID: "n1", Address: "127.0.0.1:8101", Voter: true, Leader: true},
		{ID: "n2", Address: "127.0.0.1:8102", Voter: true},
	}}
}

// apply orders and applies env (the part of Submit after the hook).
func (b *smBackend) apply(env *smr.Envelope) (smr.Result, error) {
	if dup, err := b.sm.Precheck(env); err != nil || dup != nil {
		if dup != nil {
			return *dup, nil
		}
		return smr.Result{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.index++
	ent := smr.NewCommandEntry(time.Now().UnixNano(), *env)
	data, err := ent.MarshalBinary()
	if err != nil {
		return smr.Result{}, err
	}
	return b.sm.Apply(b.index, data), nil
}

func (b *smBackend) Submit(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
	b.mu.Lock()
	h := b.hook
	b.mu.Unlock()
	if h != nil {
		return h(ctx, env)
	}
	return b.apply(env)
}

func (b *smBackend) Query(_ context.Context, q smr.Query, _ bool) (json.RawMessage, uint64, error) {
	v, err := b.sm.Query(q)
	return v, b.sm.AppliedIndex(), err
}

func (b *smBackend) Status(context.Context) api.NodeStatus {
	idx, sum := b.sm.Hash()
	b.mu.Lock()
	defer b.mu.Unlock()
	return api.NodeStatus{
		Status: consensus.Status{Mode: "cft", NodeID: b.leader, Role: "leader", Term: 4, LeaderID: b.leader,
			CommitIndex: idx, AppliedIndex: idx, LastIndex: idx},
		StateHash: hex.EncodeToString(sum[:]),
	}
}

func (b *smBackend) Members(context.Context) ([]consensus.Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.members), nil
}

func (b *smBackend) Authorize(key ed25519.PublicKey, perm smr.Permission) error {
	raw, err := b.sm.Query(smr.Query{Kind: smr.QueryACL, Key: smr.FormatKey(key)})
	if err != nil {
		return smr.Errorf(smr.CodeUnknownClient, "client %s is not invited", smr.FormatKey(key))
	}
	var info smr.ACLInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return err
	}
	for _, r := range info.Rules {
		if (r.Permission == perm || r.Permission == smr.PermAdmin) && r.Effect == smr.EffectAllow {
			return nil
		}
	}
	return smr.Errorf(smr.CodePermissionDenied, "client %s lacks permission %s", smr.FormatKey(key), perm)
}

func (b *smBackend) Ready() error { return nil }

func (b *smBackend) TransferLeader(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id == "" {
		id = "n2"
	}
	b.leader = id
	return nil
}

func (b *smBackend) SnapshotSave(_ context.Context, w io.Writer) (uint64, error) {
	snap, err := b.sm.Snapshot()
	if err != nil {
		return 0, err
	}
	_, err = w.Write(snap)
	return b.sm.AppliedIndex(), err
}

// SnapshotRestore orders the restore as a log entry, as a node does.
func (b *smBackend) SnapshotRestore(_ context.Context, r *smr.Restore) (smr.Result, error) {
	if err := b.sm.PrecheckRestore(r); err != nil {
		return smr.Result{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.index++
	ent := smr.NewRestoreEntry(time.Now().UnixNano(), *r)
	data, err := ent.MarshalBinary()
	if err != nil {
		return smr.Result{}, err
	}
	return b.sm.Apply(b.index, data), nil
}

func (b *smBackend) AddMember(_ context.Context, m consensus.Member) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.members = append(b.members, m)
	return nil
}

func (b *smBackend) RemoveMember(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.IndexFunc(b.members, func(m consensus.Member) bool { return m.ID == id })
	if i < 0 {
		return smr.Errorf(smr.CodeNotFound, "no member %s", id)
	}
	b.members = slices.Delete(b.members, i, i+1)
	return nil
}

// testCluster is one API server over an smBackend and an admin key file.
type testCluster struct {
	backend  *smBackend
	srv      *httptest.Server
	keyFile  string // admin key, PEM, mode 0600
	adminPub string
	dir      string
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	dir := t.TempDir()
	key, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "admin.key")
	if err := identity.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	b := newSMBackend(t, pub)
	h, err := api.New(api.Config{
		Backend:         b,
		Registry:        prometheus.NewRegistry(),
		MaxRequestBytes: 1 << 20,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testCluster{backend: b, srv: srv, keyFile: keyFile, adminPub: smr.FormatKey(pub), dir: dir}
}

// clearClientEnv blanks the client connection variables.
func clearClientEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{envEndpoints, envKey, envCA, envCert, envCertKey, envClientConfig} {
		t.Setenv(k, "")
	}
}

// newClientTestRoot is a root command with only the global -o flag and the
// verbs of this package's client and admin files.
func newClientTestRoot() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{Use: "tandem", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVarP(&g.output, "output", "o", outputTable, "output format")
	addClientCommands(root, g)
	configCmd := &cobra.Command{Use: "config"}
	root.AddCommand(configCmd)
	addClusterConfigVerbs(configCmd, g)
	return root
}

// cli runs the test root with args (and stdin) and returns stdout and the
// error main would print.
func cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newClientTestRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// mustCLI runs args against c with its endpoint and admin key.
func (c *testCluster) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, "", append(args, "--endpoints", c.srv.URL, "--key", c.keyFile)...)
	if err != nil {
		t.Fatalf("tandem %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestClientVerbsTableOutput(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)

	out := c.mustCLI(t, "config", "set", "color", "blue")
	if !hasRow(out, "Index:", "1") || !hasRow(out, "Seq:", "1") || !hasRow(out, "Duplicate:", "false") {
		t.Fatalf("config set output:\n%s", out)
	}
	// A new process continues the seqs from the cluster.
	out = c.mustCLI(t, "config", "set", "size", "L")
	if !hasRow(out, "Seq:", "2") {
		t.Fatalf("second write did not continue the seqs:\n%s", out)
	}
	if out = c.mustCLI(t, "config", "get", "color"); !hasRow(out, "KEY", "VALUE") || !hasRow(out, "color", "blue") {
		t.Fatalf("config get:\n%s", out)
	}
	if out = c.mustCLI(t, "config", "list", "--stale"); !hasRow(out, "color", "blue") || !hasRow(out, "size", "L") {
		t.Fatalf("config list:\n%s", out)
	}
	c.mustCLI(t, "config", "delete", "size")
	if out = c.mustCLI(t, "config", "list"); hasRow(out, "size", "L") {
		t.Fatalf("deleted key still listed:\n%s", out)
	}

	c.mustCLI(t, "session", "register", "s1", "--ttl", "30s", "--meta", "team=red", "--meta", "zone=a=b")
	c.mustCLI(t, "session", "register", "s2")
	c.mustCLI(t, "session", "renew", "s1")
	out = c.mustCLI(t, "session", "list")
	if !hasRow(out, "s2", "-", "-", "-") {
		t.Fatalf("session list lacks s2 without ttl:\n%s", out)
	}
	row := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "s1 ") {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.HasPrefix(row, "s1 30s 20") || !strings.HasSuffix(row, " team=red,zone=a=b") {
		t.Fatalf("session s1 row = %q in\n%s", row, out)
	}
	c.mustCLI(t, "session", "unregister", "s2")
	_, err := cli(t, "", "session", "get", "s2", "--endpoints", c.srv.URL)
	if !strings.Contains(err.Error(), "not_found") || exitCode(err) != 1 {
		t.Fatalf("session get of a removed session: %v (exit %d)", err, exitCode(err))
	}

	defFile := filepath.Join(c.dir, "def.json")
	if err := os.WriteFile(defFile, []byte("{\n  \"type\": \"search\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.mustCLI(t, "tool", "register", "search", "--definition", "@"+defFile)
	c.mustCLI(t, "tool", "register", "calc", "--definition", `{"type":"calc"}`)
	if out = c.mustCLI(t, "tool", "list"); !hasRow(out, "calc", `{"type":"calc"}`) || !hasRow(out, "search", `{"type":"search"}`) {
		t.Fatalf("tool list:\n%s", out)
	}
	if out, err = cli(t, `{"v":2}`, "tool", "register", "stdin", "--definition", "@-", "--endpoints", c.srv.URL, "--key", c.keyFile); err != nil {
		t.Fatalf("tool register from stdin: %v", err)
	}
	if out = c.mustCLI(t, "tool", "get", "stdin"); !hasRow(out, "stdin", `{"v":2}`) {
		t.Fatalf("tool get:\n%s", out)
	}
	c.mustCLI(t, "tool", "unregister", "calc")

	c.mustCLI(t, "resource", "subscribe", "mcp://files", "agent-1")
	c.mustCLI(t, "resource", "subscribe", "mcp://files", "agent-2")
	c.mustCLI(t, "resource", "unsubscribe", "mcp://files", "agent-1")
	if out = c.mustCLI(t, "resource", "get", "mcp://files"); !hasRow(out, "mcp://files", "agent-2") {
		t.Fatalf("resource get:\n%s", out)
	}
	if out = c.mustCLI(t, "resource", "list"); !hasRow(out, "RESOURCE", "SUBSCRIBERS") || !hasRow(out, "mcp://files", "agent-2") {
		t.Fatalf("resource list:\n%s", out)
	}

	other, _ := identity.GenerateKey()
	otherPub := smr.FormatKey(other.Public().(ed25519.PublicKey))
	c.mustCLI(t, "acl", "grant", otherPub, "tool.write")
	c.mustCLI(t, "acl", "deny", otherPub, "config.write")
	if out = c.mustCLI(t, "acl", "get", otherPub); !hasRow(out, otherPub, "config.write", "deny") || !hasRow(out, otherPub, "tool.write", "allow") {
		t.Fatalf("acl get:\n%s", out)
	}
	c.mustCLI(t, "acl", "remove", otherPub, "config.write")
	out = c.mustCLI(t, "acl", "list")
	if !hasRow(out, c.adminPub, "admin", "allow") || !hasRow(out, otherPub, "tool.write", "allow") || hasRow(out, otherPub, "config.write", "deny") {
		t.Fatalf("acl list:\n%s", out)
	}
	// The last admin cannot remove itself: a definitive rejection.
	_, err = cli(t, "", "acl", "remove", c.adminPub, "admin", "--endpoints", c.srv.URL, "--key", c.keyFile)
	if !strings.Contains(fmt.Sprint(err), "last_admin") || exitCode(err) != 1 {
		t.Fatalf("removing the last admin: %v (exit %d)", err, exitCode(err))
	}
}

func TestClientVerbsJSONOutput(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)
	out := c.mustCLI(t, "-o", "json", "session", "register", "s1", "--meta", "a=b")
	var w writeOutput
	if err := json.Unmarshal([]byte(out), &w); err != nil || w.Index != 1 || w.Seq != 1 || w.Duplicate {
		t.Fatalf("write JSON %q: %+v, %v", out, w, err)
	}
	var outcome smr.Outcome
	if err := json.Unmarshal(w.Value, &outcome); err != nil || outcome.SessionID != "s1" {
		t.Fatalf("write outcome %s: %v", w.Value, err)
	}

	out = c.mustCLI(t, "session", "list", "-o", "json")
	var ss []smr.SessionInfo
	if err := json.Unmarshal([]byte(out), &ss); err != nil || len(ss) != 1 || ss[0].Metadata["a"] != "b" {
		t.Fatalf("session list JSON %q: %v", out, err)
	}
	out = c.mustCLI(t, "acl", "list", "-o", "json")
	var acls []smr.ACLInfo
	if err := json.Unmarshal([]byte(out), &acls); err != nil || len(acls) != 1 || acls[0].Subject != c.adminPub {
		t.Fatalf("acl list JSON %q: %v", out, err)
	}
	out = c.mustCLI(t, "config", "list", "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Fatalf("empty config list JSON = %q, want []", out)
	}
}

func TestWriteOutcomeUnknownAndRetryWithSeq(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)
	// The node applies the write and then never answers.
	applied := make(chan struct{})
	c.backend.hook = func(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
		if _, err := c.backend.apply(env); err != nil {
			return smr.Result{}, err
		}
		close(applied)
		<-ctx.Done()
		return smr.Result{}, ctx.Err()
	}
	_, err := cli(t, "", "config", "set", "k", "v1", "--timeout", "300ms", "--endpoints", c.srv.URL, "--key", c.keyFile)
	if exitCode(err) != exitOutcomeUnknown {
		t.Fatalf("exit code %d for %v; want %d", exitCode(err), err, exitOutcomeUnknown)
	}
	msg := err.Error()
	if !strings.Contains(msg, "outcome unknown") || !strings.Contains(msg, "Retrying is safe") || !strings.Contains(msg, "--seq 1") {
		t.Fatalf("message does not explain the unknown outcome:\n%s", msg)
	}
	<-applied

	c.backend.mu.Lock()
	c.backend.hook = nil
	c.backend.mu.Unlock()
	// The same command with the same seq finds the stored result.
	out := c.mustCLI(t, "config", "set", "k", "v1", "--seq", "1")
	if !hasRow(out, "Duplicate:", "true") || !hasRow(out, "Index:", "1") {
		t.Fatalf("retry with --seq:\n%s", out)
	}
	// Another command with that seq is refused.
	_, err = cli(t, "", "config", "set", "k", "v2", "--seq", "1", "--endpoints", c.srv.URL, "--key", c.keyFile)
	if !strings.Contains(fmt.Sprint(err), "seq_conflict") || !strings.Contains(fmt.Sprint(err), "exactly the same arguments") || exitCode(err) != 1 {
		t.Fatalf("other command with a used seq: %v", err)
	}
	if out = c.mustCLI(t, "config", "get", "k"); !hasRow(out, "k", "v1") {
		t.Fatalf("config get:\n%s", out)
	}
}

// A retry with --seq whose seq fell out of the result window cannot find
// out what happened: the CLI must say the outcome is unknown, not that the
// write failed, and must not suggest the same retry again.
func TestRetryWithSeqBelowWindowIsOutcomeUnknown(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)
	admin, err := identity.LoadKeyFile(c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{admin.Public().(ed25519.PublicKey)}, ResultWindow: 2})
	if err != nil {
		t.Fatal(err)
	}
	c.backend.sm = sm // before any request

	// seq 1 is applied, but its answer is lost.
	applied := make(chan struct{})
	c.backend.hook = func(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
		if _, err := c.backend.apply(env); err != nil {
			return smr.Result{}, err
		}
		close(applied)
		<-ctx.Done()
		return smr.Result{}, ctx.Err()
	}
	_, err = cli(t, "", "config", "set", "k", "v1", "--timeout", "300ms", "--endpoints", c.srv.URL, "--key", c.keyFile)
	if exitCode(err) != exitOutcomeUnknown || !strings.Contains(err.Error(), "--seq 1") {
		t.Fatalf("first write: exit %d, %v; want an unknown outcome for seq 1", exitCode(err), err)
	}
	<-applied
	c.backend.mu.Lock()
	c.backend.hook = nil
	c.backend.mu.Unlock()
	// Later writes move the window past seq 1.
	c.mustCLI(t, "config", "set", "a", "1")
	c.mustCLI(t, "config", "set", "b", "2")
	c.mustCLI(t, "config", "set", "c", "3")

	_, err = cli(t, "", "config", "set", "k", "v1", "--seq", "1", "--endpoints", c.srv.URL, "--key", c.keyFile)
	if exitCode(err) != exitOutcomeUnknown {
		t.Fatalf("retry below the window: exit %d, %v; want %d (outcome unknown)", exitCode(err), err, exitOutcomeUnknown)
	}
	msg := err.Error()
	if !strings.Contains(msg, "outcome unknown") || !strings.Contains(msg, "result window") || !strings.Contains(msg, "seq_too_old") {
		t.Fatalf("message does not explain that the seq fell out of the window:\n%s", msg)
	}
	if strings.Contains(msg, "Retrying is safe") {
		t.Fatalf("message suggests a retry that cannot resolve the outcome:\n%s", msg)
	}
}

func TestClientErrorsNameTheirFlag(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no endpoints", []string{"config", "list"}, "set --endpoints, TANDEM_ENDPOINTS"},
		{"bad endpoint", []string{"config", "list", "--endpoints", "http://h"}, "--endpoints: endpoint \"http://h\" has no port"},
		{"no key for a write", []string{"config", "set", "a", "b", "--endpoints", c.srv.URL}, "set --key, TANDEM_KEY"},
		{"missing key file", []string{"config", "set", "a", "b", "--endpoints", c.srv.URL, "--key", filepath.Join(c.dir, "nope.key")}, "--key: key file"},
		{"https without CA", []string{"tool", "list", "--endpoints", "127.0.0.1:1"}, "set --ca, TANDEM_CA"},
		{"half a client cert", []string{"tool", "list", "--endpoints", "127.0.0.1:1", "--ca", "ca.pem", "--cert", "c.pem"}, "give both --cert and --cert-key"},
		{"bad permission", []string{"acl", "grant", c.adminPub, "tool.read", "--endpoints", c.srv.URL, "--key", c.keyFile}, `PERMISSION: "tool.read" is not one of admin,`},
		{"bad subject", []string{"acl", "grant", "bob", "admin", "--endpoints", c.srv.URL, "--key", c.keyFile}, "SUBJECT:"},
		{"bad meta", []string{"session", "register", "s", "--meta", "novalue", "--endpoints", c.srv.URL, "--key", c.keyFile}, `--meta: "novalue" is not key=value`},
		{"definition not an object", []string{"tool", "register", "t", "--definition", "[1]", "--endpoints", c.srv.URL, "--key", c.keyFile}, "--definition: want a JSON object"},
		{"definition required", []string{"tool", "register", "t", "--endpoints", c.srv.URL}, `"definition" not set`},
		{"bad output", []string{"-o", "yaml", "config", "list", "--endpoints", c.srv.URL}, "--output"},
		{"unavailable", []string{"config", "list", "--endpoints", refused, "--timeout", "300ms"}, "cluster unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cli(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to contain %q", err, tc.want)
			}
			if exitCode(err) != 1 {
				t.Fatalf("exit code %d, want 1", exitCode(err))
			}
		})
	}
}

func TestClientConfigFilePrecedence(t *testing.T) {
	clearClientEnv(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "client.yaml")
	content := "endpoints: [\"http://127.0.0.1:7001\", \"http://127.0.0.1:7002\"]\nkey_file: admin.key\nca_file: /abs/ca.pem\ncert_file: c.pem\ncert_key_file: c-key.pem\n"
	if err := os.WriteFile(cfgFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envClientConfig, cfgFile)
	t.Setenv(envCA, "/env/ca.pem")

	o := newClientOptions()
	cmd := &cobra.Command{Use: "x"}
	o.bind(cmd.Flags())
	if err := cmd.Flags().Parse([]string{"--cert", "/flag/c.pem"}); err != nil {
		t.Fatal(err)
	}
	s, err := o.resolve(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		got       setting
		value, by string
	}{
		{s.key, filepath.Join(dir, "admin.key"), "key_file in " + cfgFile}, // relative to the file
		{s.ca, "/env/ca.pem", envCA},
		{s.cert, "/flag/c.pem", "--cert"},
		{s.certKey, filepath.Join(dir, "c-key.pem"), "cert_key_file in " + cfgFile},
	}
	for _, c := range checks {
		if c.got.value != c.value || c.got.source != c.by {
			t.Errorf("got %+v, want %q from %q", c.got, c.value, c.by)
		}
	}
	if len(s.endpoints) != 2 || s.endpoints[1].value != "http://127.0.0.1:7002" {
		t.Errorf("endpoints from the file = %+v", s.endpoints)
	}

	t.Setenv(envEndpoints, "http://10.0.0.1:1, http://10.0.0.2:1")
	if s, _ = o.resolve(cmd.Flags()); len(s.endpoints) != 2 || s.endpoints[0].value != "http://10.0.0.1:1" || s.endpoints[1].source != envEndpoints {
		t.Errorf("endpoints from the environment = %+v", s.endpoints)
	}

	// Unknown keys in the file are refused, naming the flag or variable.
	if err := os.WriteFile(cfgFile, []byte("endpoint: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := o.resolve(cmd.Flags()); err == nil || !strings.Contains(err.Error(), envClientConfig) || !strings.Contains(err.Error(), "endpoint not found") {
		t.Errorf("typo in the client config: %v", err)
	}
}

func TestHTTPSWithClientConfigFile(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)
	dir := t.TempDir()
	ca, err := identity.CreateCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), "test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nodeCert, nodeKey, err := ca.IssueNode("n1", identity.DefaultHosts(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteCertPair(filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), nodeCert, nodeKey); err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ca.IssueClient("ops", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteCertPair(filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem"), cliCert, cliKey); err != nil {
		t.Fatal(err)
	}
	serverTLS, err := identity.APIServerTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), true)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(c.srv.Config.Handler)
	srv.TLS = serverTLS
	srv.StartTLS()
	t.Cleanup(srv.Close)

	keyCopy := filepath.Join(dir, "admin.key")
	data, err := os.ReadFile(c.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyCopy, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "client.yaml")
	content := fmt.Sprintf("endpoints: [%q]\nkey_file: admin.key\nca_file: ca.pem\ncert_file: ops.pem\ncert_key_file: ops-key.pem\n", srv.URL)
	if err := os.WriteFile(cfgFile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "", "--client-config", cfgFile, "config", "set", "tls", "yes"); err != nil {
		t.Fatalf("write over mTLS: %v", err)
	}
	t.Setenv(envClientConfig, cfgFile)
	out, err := cli(t, "", "config", "get", "tls")
	if err != nil || !hasRow(out, "tls", "yes") {
		t.Fatalf("read over mTLS via %s: %v\n%s", envClientConfig, err, out)
	}
	// Without the client certificate the server refuses the handshake.
	_, err = cli(t, "", "config", "get", "tls", "--cert", "", "--cert-key", "", "--timeout", "300ms")
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	t.Logf("without a client certificate: %v", err)
}

func TestAdminVerbs(t *testing.T) {
	clearClientEnv(t)
	c := newTestCluster(t)
	c.mustCLI(t, "config", "set", "a", "1")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	// status: one row per endpoint, the unreachable one with its error.
	out, err := cli(t, "", "admin", "status", "--endpoints", c.srv.URL+","+refused)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 endpoints") {
		t.Fatalf("status with a down node: err = %v", err)
	}
	_, sum := c.backend.sm.Hash()
	if !hasRow(out, "NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "HASH") ||
		!hasRow(out, "n1", "leader", "4", "n1", "1", "1", hex.EncodeToString(sum[:])[:16]) {
		t.Fatalf("status table:\n%s", out)
	}
	if !strings.Contains(out, refused+"  unreachable") || !strings.Contains(out, "error: ") {
		t.Fatalf("status table lacks the error row:\n%s", out)
	}
	out = c.mustCLI(t, "admin", "status", "-o", "json")
	var rows []statusRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Status.StateHash != hex.EncodeToString(sum[:]) {
		t.Fatalf("status JSON %q: %v", out, err)
	}

	if out = c.mustCLI(t, "admin", "members"); !hasRow(out, "n1", "127.0.0.1:8101", "true", "true") || !hasRow(out, "n2", "127.0.0.1:8102", "true", "false") {
		t.Fatalf("members:\n%s", out)
	}
	if out = c.mustCLI(t, "admin", "transfer-leader", "n2"); !strings.Contains(out, "leadership transferred to n2") {
		t.Fatalf("transfer-leader: %s", out)
	}
	c.mustCLI(t, "admin", "add-member", "n3", "127.0.0.1:8103")
	if out = c.mustCLI(t, "admin", "members", "-o", "json"); !strings.Contains(out, `"id": "n3"`) {
		t.Fatalf("members after add:\n%s", out)
	}
	c.mustCLI(t, "admin", "remove-member", "n3")
	_, err = cli(t, "", "admin", "remove-member", "n3", "--endpoints", c.srv.URL, "--key", c.keyFile)
	if !strings.Contains(fmt.Sprint(err), "not_found") {
		t.Fatalf("removing an absent member: %v", err)
	}

	// Snapshot save, change the state, restore, and the change is gone.
	snap := filepath.Join(c.dir, "snap.bin")
	if out = c.mustCLI(t, "admin", "snapshot", "save", snap); !strings.Contains(out, "snapshot at index 1 saved to "+snap) {
		t.Fatalf("snapshot save: %s", out)
	}
	if fi, err := os.Stat(snap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v", fi, err)
	}
	if _, err := cli(t, "", "admin", "snapshot", "save", snap, "--endpoints", c.srv.URL, "--key", c.keyFile); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwriting a snapshot without --force: %v", err)
	}
	c.mustCLI(t, "admin", "snapshot", "save", snap, "--force")
	c.mustCLI(t, "config", "set", "a", "2")
	c.mustCLI(t, "admin", "snapshot", "restore", snap)
	if out = c.mustCLI(t, "config", "get", "a"); !hasRow(out, "a", "1") {
		t.Fatalf("after restore:\n%s", out)
	}

	// Admin verbs need the key; a key without admin is refused.
	if _, err := cli(t, "", "admin", "transfer-leader", "--endpoints", c.srv.URL); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Fatalf("transfer-leader without a key: %v", err)
	}
	stranger, _ := identity.GenerateKey()
	strangerFile := filepath.Join(c.dir, "stranger.key")
	if err := identity.WriteKeyFile(strangerFile, stranger); err != nil {
		t.Fatal(err)
	}
	_, err = cli(t, "", "admin", "transfer-leader", "--endpoints", c.srv.URL, "--key", strangerFile)
	if client.ErrorCode(err) != smr.CodeUnknownClient {
		t.Fatalf("transfer-leader with an uninvited key: %v", err)
	}
}
