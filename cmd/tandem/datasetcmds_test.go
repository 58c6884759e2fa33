package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// runDataset runs the dataset and bench verbs with args and returns stdout.
func runDataset(t *testing.T, args ...string) (string, error) {
	t.Helper()
	g := &globalOptions{}
	root := &cobra.Command{Use: "tandem", SilenceUsage: true, SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error { _, err := g.format(); return err }}
	root.PersistentFlags().StringVarP(&g.output, "output", "o", outputTable, "output format")
	addDatasetCommands(root, g)
	addBenchCommands(root, g)
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustDataset(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runDataset(t, args...)
	if err != nil {
		t.Fatalf("tandem %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// agentKeyFile writes a new key file and returns its path and public key.
func agentKeyFile(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	k, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".key")
	if err := identity.WriteKeyFile(p, k); err != nil {
		t.Fatal(err)
	}
	return p, smr.FormatKey(k.Public().(ed25519.PublicKey))
}

// TestDatasetCLI walks the worked example of docs/datasets.md: create,
// offline set, get, sync, a tie won by the greater value, revoke.
func TestDatasetCLI(t *testing.T) {
	clearClientEnv(t)
	tc := newTestCluster(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	aKey, aPub := agentKeyFile(t, dir, "alice")
	bKey, bPub := agentKeyFile(t, dir, "bob")
	ep := tc.srv.URL
	admin := []string{"--endpoints", ep, "--key", tc.keyFile}

	out := mustDataset(t, append([]string{"dataset", "create", "doc", "--cells", "4", "--cell-size", "8", "--step-limit", "10", "--agent", aPub}, admin...)...)
	if !strings.Contains(out, `"dataset":"doc"`) {
		t.Fatalf("create output:\n%s", out)
	}
	mustDataset(t, append([]string{"dataset", "invite", "doc", bPub}, admin...)...)
	if _, err := runDataset(t, append([]string{"dataset", "invite", "doc", "not-a-key"}, admin...)...); err == nil {
		t.Fatal("invite of a malformed key succeeded")
	}

	// The first set fetches the dataset; the second works offline.
	out = mustDataset(t, "dataset", "set", "doc", "0", "hello", "--state-dir", state, "--key", aKey, "--endpoints", ep)
	if !strings.Contains(out, "Local seq") || !strings.Contains(out, `"hello"`) {
		t.Fatalf("set output:\n%s", out)
	}
	mustDataset(t, "dataset", "set", "doc", "1", "776f726c64", "--hex", "--state-dir", state, "--key", aKey)
	out = mustDataset(t, "dataset", "get", "doc", "--state-dir", state, "--key", aKey)
	if !strings.Contains(out, `"world"`) || !strings.Contains(out, "yes") || !strings.Contains(out, "2 change(s)") {
		t.Fatalf("local get output:\n%s", out)
	}
	if _, err := runDataset(t, "dataset", "set", "doc", "4", "x", "--state-dir", state, "--key", aKey); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("set of a cell out of range: %v", err)
	}
	if _, err := runDataset(t, "dataset", "set", "doc", "2", "x", "--global-seq", "1000", "--state-dir", state, "--key", aKey); err == nil || !strings.Contains(err.Error(), "step limit") {
		t.Fatalf("set above the step limit: %v", err)
	}

	out = mustDataset(t, "dataset", "sync", "doc", "-o", "json", "--state-dir", state, "--key", aKey, "--endpoints", ep)
	var so syncOutput
	if err := json.Unmarshal([]byte(out), &so); err != nil || so.Accepted != 2 || so.Syncs != 1 {
		t.Fatalf("sync output %s (%v)", out, err)
	}

	// Bob ties alice's global seq on cell 0 with a greater value.
	mustDataset(t, "dataset", "set", "doc", "0", "hellp", "--global-seq", "1", "--state-dir", state, "--key", bKey, "--endpoints", ep)
	out = mustDataset(t, "dataset", "sync", "doc", "--state-dir", state, "--key", bKey, "--endpoints", ep)
	if !strings.Contains(out, "1 accepted") {
		t.Fatalf("bob's sync:\n%s", out)
	}
	mustDataset(t, "dataset", "sync", "doc", "--state-dir", state, "--key", aKey, "--endpoints", ep)
	out = mustDataset(t, "dataset", "get", "doc", "-o", "json", "--state-dir", state, "--key", aKey)
	var lg localGetOutput
	if err := json.Unmarshal([]byte(out), &lg); err != nil || len(lg.Cells) != 2 || !bytes.HasPrefix(lg.Cells[0].Value, []byte("hellp")) || len(lg.Pending) != 0 {
		t.Fatalf("alice's view after syncing: %s (%v)", out, err)
	}
	out = mustDataset(t, "dataset", "get", "doc", "--remote", "--endpoints", ep)
	if !strings.Contains(out, `"hellp"`) || !strings.Contains(out, aPub) || !strings.Contains(out, "SIGNED_MAX") {
		t.Fatalf("remote get:\n%s", out)
	}
	// The read options of a remote get: --fast without a committee reads
	// like --stale; without --remote they are refused.
	for _, opt := range []string{"--stale", "--fast"} {
		out = mustDataset(t, "dataset", "get", "doc", "--remote", opt, "-o", "json", "--endpoints", ep)
		var info smr.DatasetInfo
		if err := json.Unmarshal([]byte(out), &info); err != nil || info.Name != "doc" || info.Version != 3 {
			t.Fatalf("remote get %s: %s (%v)", opt, out, err)
		}
		if _, err := runDataset(t, "dataset", "get", "doc", opt, "--state-dir", state, "--key", aKey); err == nil || !strings.Contains(err.Error(), "--remote") {
			t.Fatalf("local get %s: %v, want an error naming --remote", opt, err)
		}
	}
	out = mustDataset(t, "dataset", "list", "--endpoints", ep)
	if !strings.Contains(out, "doc") || !strings.Contains(out, "MAX_AGENT_SEQS") {
		t.Fatalf("list:\n%s", out)
	}

	// Revoked, bob cannot sync any more; his merged value stays.
	mustDataset(t, append([]string{"dataset", "revoke", "doc", bPub}, admin...)...)
	mustDataset(t, "dataset", "set", "doc", "3", "late", "--state-dir", state, "--key", bKey)
	if _, err := runDataset(t, "dataset", "sync", "doc", "--state-dir", state, "--key", bKey, "--endpoints", ep); err == nil {
		t.Fatal("a revoked agent synced")
	}
	entries, err := os.ReadDir(state)
	if err != nil || len(entries) != 2 {
		t.Fatalf("state dir holds %v (%v), want one replica per agent", entries, err)
	}
	if _, err := runDataset(t, "dataset", "get", "other", "--state-dir", state, "--key", aKey); err == nil || !strings.Contains(err.Error(), "no local replica") {
		t.Fatalf("get of a dataset without a replica: %v", err)
	}
}

func TestBenchDatasetCLI(t *testing.T) {
	clearClientEnv(t)
	tc := newTestCluster(t)
	out := mustDataset(t, "bench", "dataset", "--clients", "2", "--duration", "300ms", "--changes-per-sync", "10", "-o", "json",
		"--endpoints", tc.srv.URL, "--key", tc.keyFile)
	var res benchDatasetResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench output %s: %v", out, err)
	}
	if res.Syncs == 0 || res.Errors != 0 || res.Changes != 10*res.Syncs || res.Accepted != res.Changes || res.Version != uint64(res.Accepted) || res.P99Millis < res.P50Millis {
		t.Fatalf("bench result %+v", res)
	}
	if _, err := runDataset(t, "bench", "dataset", "--clients", "1000", "--changes-per-sync", "100", "--endpoints", tc.srv.URL, "--key", tc.keyFile); err == nil {
		t.Fatal("a bench beyond the dataset's cells ran")
	}
}

func TestReplicaPathEscapes(t *testing.T) {
	d := &datasetEnv{stateDir: "/s"}
	for name, want := range map[string]string{
		"doc":   "/s/doc@K.json",
		"a/b":   "/s/a%2Fb@K.json",
		"..":    "/s/%2E.@K.json",
		".x":    "/s/%2Ex@K.json",
		"sp ce": "/s/sp%20ce@K.json",
	} {
		if got, err := d.replicaPath(name, "K"); err != nil || got != want {
			t.Errorf("replicaPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestDatasetSyncOutcomeUnknown: a sync that the cluster applied but never
// answered is reported as an unknown outcome that tells the agent to sync
// again (not to repeat a seq, which `dataset sync` has no flag for); the
// change stays pending, and the next sync settles it as replayed.
func TestDatasetSyncOutcomeUnknown(t *testing.T) {
	clearClientEnv(t)
	tc := newTestCluster(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	aKey, aPub := agentKeyFile(t, dir, "alice")
	ep := tc.srv.URL
	mustDataset(t, "dataset", "create", "doc", "--cells", "2", "--cell-size", "8", "--agent", aPub, "--endpoints", ep, "--key", tc.keyFile)
	agent := []string{"--state-dir", state, "--key", aKey, "--endpoints", ep}
	mustDataset(t, append([]string{"dataset", "set", "doc", "0", "hello"}, agent...)...)

	applied := make(chan struct{})
	tc.backend.mu.Lock()
	tc.backend.hook = func(ctx context.Context, env *smr.Envelope) (smr.Result, error) {
		if _, err := tc.backend.apply(env); err != nil {
			return smr.Result{}, err
		}
		close(applied)
		<-ctx.Done()
		return smr.Result{}, ctx.Err()
	}
	tc.backend.mu.Unlock()
	_, err := runDataset(t, append([]string{"dataset", "sync", "doc", "--timeout", "300ms"}, agent...)...)
	if exitCode(err) != exitOutcomeUnknown {
		t.Fatalf("exit code %d for %v; want %d", exitCode(err), err, exitOutcomeUnknown)
	}
	msg := err.Error()
	if !strings.Contains(msg, "outcome unknown") || !strings.Contains(msg, "tandem dataset sync doc") || strings.Contains(msg, "--seq") {
		t.Fatalf("message does not say to sync again:\n%s", msg)
	}
	<-applied
	tc.backend.mu.Lock()
	tc.backend.hook = nil
	tc.backend.mu.Unlock()

	out := mustDataset(t, append([]string{"dataset", "get", "doc", "-o", "json"}, agent[:4]...)...)
	var lg localGetOutput
	if err := json.Unmarshal([]byte(out), &lg); err != nil || len(lg.Pending) != 1 {
		t.Fatalf("after the lost answer the change is not pending: %s (%v)", out, err)
	}
	out = mustDataset(t, append([]string{"dataset", "sync", "doc", "-o", "json"}, agent...)...)
	var so syncOutput
	if err := json.Unmarshal([]byte(out), &so); err != nil || len(so.Changes) != 1 || so.Changes[0].Reason != smr.RejectReplayed {
		t.Fatalf("second sync: %s (%v)", out, err)
	}
	out = mustDataset(t, append([]string{"dataset", "get", "doc", "-o", "json"}, agent[:4]...)...)
	if err := json.Unmarshal([]byte(out), &lg); err != nil || len(lg.Pending) != 0 || len(lg.Cells) != 1 || !bytes.HasPrefix(lg.Cells[0].Value, []byte("hello")) {
		t.Fatalf("after syncing again: %s (%v)", out, err)
	}
}
