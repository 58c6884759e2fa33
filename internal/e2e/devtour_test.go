package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevTour runs `tandem dev --byzantine node3=equivocate`, the tour of
// auto mode, from a binary built with -tags byzantine, and reads the
// timeline it prints: the cluster comes up in cft at epoch 1, node3 leads
// and equivocates, every correct node quarantines it on leader-equivocation
// evidence, every correct node runs epoch 2 in bft, and writes continue.
// Then Ctrl-C (SIGINT) stops every node and dev exits 0. A binary without
// the tag refuses --byzantine.
func TestDevTour(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	out, err := exec.Command(binary, "dev", "--byzantine", "node3=equivocate", "--dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-tags byzantine") {
		t.Fatalf("a correct build ran --byzantine: %v: %s", err, out)
	}

	byz := buildByzantine(t)
	dir := filepath.Join(t.TempDir(), "tour")
	cmd := exec.Command(byz, "dev", "--byzantine", "node3=equivocate", "--dir", dir, "--base-port", "0", "--rate", "20")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})

	// What the timeline must show, in this order.
	want := []struct {
		name string
		all  []string
	}{
		{"cluster up", []string{"cluster up: 4 nodes, mode cft, epoch 1"}},
		{"equivocation", []string{"node3 starts equivocating"}},
		{"quarantine on node1", []string{"node1 quarantined node3", "leader-equivocation"}},
		{"quarantine on node2", []string{"node2 quarantined node3", "leader-equivocation"}},
		{"quarantine on node4", []string{"node4 quarantined node3", "leader-equivocation"}},
		{"switch", []string{"switched cft → bft: every correct node runs epoch 2", "detector"}},
		{"writes in bft", []string{"writes continue in bft"}},
	}
	seen := map[string]time.Time{}
	var timeline []string
	deadline := time.After(35 * time.Second)
	start := time.Now()
	for len(seen) < len(want) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("dev exited before the timeline was complete (seen %v): %s\n%s", keys(seen), strings.Join(timeline, "\n"), stderr.String())
			}
			if !strings.HasPrefix(l, ">>>") {
				continue
			}
			timeline = append(timeline, l)
			for _, w := range want {
				if _, ok := seen[w.name]; ok {
					continue
				}
				if containsAll(l, w.all) {
					seen[w.name] = time.Now()
				}
			}
		case <-deadline:
			logs, _ := os.ReadFile(filepath.Join(dir, "nodes.log"))
			if len(logs) > 8000 {
				logs = logs[len(logs)-8000:]
			}
			t.Fatalf("within 35s the timeline showed only %v:\n%s\nnode logs (tail):\n%s", keys(seen), strings.Join(timeline, "\n"), logs)
		}
	}
	t.Logf("timeline after %s:\n%s", time.Since(start).Round(time.Millisecond), strings.Join(timeline, "\n"))
	for _, o := range [][2]string{{"cluster up", "equivocation"}, {"equivocation", "quarantine on node1"}, {"equivocation", "quarantine on node2"},
		{"equivocation", "quarantine on node4"}, {"quarantine on node1", "switch"}, {"switch", "writes in bft"}} {
		if seen[o[1]].Before(seen[o[0]]) {
			t.Errorf("%q came before %q", o[1], o[0])
		}
	}

	// Ctrl-C stops every node; dev exits cleanly.
	stopped = true
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	timeout := time.After(20 * time.Second)
	for open := true; open; {
		select {
		case l, ok := <-lines:
			rest, open = append(rest, l), ok
		case <-timeout:
			t.Fatalf("dev did not stop within 20s of SIGINT")
		}
	}
	if err := <-exited; err != nil {
		t.Fatalf("dev exited with %v after SIGINT: %s", err, stderr.String())
	}
	if !strings.Contains(strings.Join(rest, "\n"), "all nodes stopped") {
		t.Fatalf("no \"all nodes stopped\" after SIGINT: %s", strings.Join(rest, "\n"))
	}
}

func containsAll(s string, subs []string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func keys(m map[string]time.Time) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
