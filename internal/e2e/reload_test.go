package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-consensus/tandem/internal/devcluster"
)

// logLines collects the cluster's log lines (and passes them on).
type logLines struct {
	lineSplitter
	lines []string // guarded by lineSplitter.mu
}

func newLogLines(out io.Writer) *logLines {
	w := &logLines{}
	w.lineSplitter = lineSplitter{out: out, line: func(l string) { w.lines = append(w.lines, l) }}
	return w
}

// find returns the first line containing every one of parts.
func (w *logLines) find(parts ...string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return l, true
		}
	}
	return "", false
}

// launchLogged is launch with the processes' output collected.
func launchLogged(t *testing.T, opts devcluster.Options) (*cluster, *logLines) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	layout, err := devcluster.Prepare(opts)
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogLines(processLog())
	c := newCluster(t, layout, logs)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	c.waitLeader(nil, 30*time.Second)
	c.waitReady(30 * time.Second)
	return c, logs
}

// tunables reads the tunables of one node's /v1/status.
func (c *cluster) tunables(id string) (map[string]string, error) {
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 2 * time.Second}
	defer httpc.CloseIdleConnections()
	resp, err := httpc.Get(c.endpoint(id) + "/v1/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st struct {
		Tunables map[string]string `json:"tunables"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return st.Tunables, nil
}

// editConfig rewrites a node's config file as editors save: a new file
// renamed over the old one.
func editConfig(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = yaml.Marshal(m); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConfigReloadAtRunTime: a running `tandem serve` applies an edit of
// its config file (saved the way editors save, by renaming a new file over
// it) without a restart; an invalid edit is rejected with a log line
// naming the key, and the old value stays; a change that needs a restart
// is reported by key and ignored; SIGHUP re-reads the file.
func TestConfigReloadAtRunTime(t *testing.T) {
	c, logs := launchLogged(t, devcluster.Options{Dir: t.TempDir(), Nodes: 3, Extra: map[string]any{"raft": fastRaft}})
	n := c.layout.Nodes[0]

	tun, err := c.tunables(n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tun["view_change_timeout"] == "" || tun["anomaly_threshold"] != "0.7" {
		t.Fatalf("tunables at start = %v", tun)
	}

	editConfig(t, n.ConfigPath, func(m map[string]any) {
		m["view_change_timeout"] = "7s"
		m["anomaly_threshold"] = 0.55
		m["raft"].(map[string]any)["election_timeout"] = "450ms"
	})
	waitUntil(t, "the edited values in effect", 15*time.Second, func() (bool, string) {
		tun, err := c.tunables(n.ID)
		return err == nil && tun["view_change_timeout"] == "7s" && tun["anomaly_threshold"] == "0.55" && tun["raft.election_timeout"] == "450ms", fmt.Sprint(tun, err)
	})

	// Invalid: the running values stay and the log names the key.
	editConfig(t, n.ConfigPath, func(m map[string]any) {
		m["view_change_timeout"] = "9s"
		m["anomaly_threshold"] = 1.5
	})
	waitUntil(t, "the rejection in the log", 15*time.Second, func() (bool, string) {
		_, ok := logs.find("["+n.ID+"]", "configuration change rejected", "key=anomaly_threshold", "value=1.5")
		return ok, "no line"
	})
	tun, err = c.tunables(n.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tun["view_change_timeout"] != "7s" || tun["anomaly_threshold"] != "0.55" {
		t.Fatalf("after an invalid edit the tunables are %v; want the previous 7s and 0.55 (an invalid file applies nothing)", tun)
	}

	// A key that needs a restart: reported and ignored; the reloadable
	// part of the same valid edit applies.
	editConfig(t, n.ConfigPath, func(m map[string]any) {
		m["anomaly_threshold"] = 0.6
		m["max_view_change_retries"] = 4
		m["enable_debug"] = true
	})
	waitUntil(t, "the restart-only key in the log", 15*time.Second, func() (bool, string) {
		_, ok := logs.find("["+n.ID+"]", "requires a restart", "key=enable_debug")
		return ok, "no line"
	})
	waitUntil(t, "the reloadable part applied", 15*time.Second, func() (bool, string) {
		tun, err := c.tunables(n.ID)
		return err == nil && tun["anomaly_threshold"] == "0.6" && tun["max_view_change_retries"] == "4", fmt.Sprint(tun, err)
	})

	// SIGHUP re-reads the file (here unchanged: nothing to apply, and the
	// process keeps running).
	if err := syscall.Kill(c.Pid(n.ID), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the SIGHUP reload in the log", 15*time.Second, func() (bool, string) {
		_, ok := logs.find("["+n.ID+"]", "SIGHUP: reloading the configuration")
		return ok, "no line"
	})
	if exited, _ := c.Exited(n.ID); exited {
		t.Fatal("the node exited on SIGHUP")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.newClient(c.admin).SetConfig(ctx, "after-reload", "1"); err != nil {
		t.Fatalf("write after the reloads: %v", err)
	}
}
