package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestForceViewChangeCFT: `tandem admin force-view-change --to ID` moves
// Raft leadership of a real cluster to ID; an unknown ID is refused with
// a message naming it and the members, and the leader stays.
func TestForceViewChangeCFT(t *testing.T) {
	c := startCluster(t, 3, nil)
	leader := c.waitLeader(nil, 30*time.Second)
	target := ""
	for _, id := range c.ids() {
		if id != leader {
			target = id
			break
		}
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"admin", "force-view-change"}, args...)...)
		cmd.Env = append(os.Environ(), "TANDEM_CLIENT_CONFIG="+c.layout.ClientConfigPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	out, err := run("--to", target)
	if err != nil {
		t.Fatalf("force-view-change --to %s: %v\n%s", target, err, out)
	}
	if !strings.Contains(out, target) {
		t.Errorf("output %q does not name the new leader %s", out, target)
	}
	if got := c.waitLeader(nil, 20*time.Second); got != target {
		t.Fatalf("leader after force-view-change --to %s is %s (was %s)", target, got, leader)
	}

	out, err = run("--to", "node99")
	if err == nil {
		t.Fatalf("force-view-change --to node99 succeeded: %s", out)
	}
	if !strings.Contains(out, `"node99"`) || !strings.Contains(out, "no such member") || !strings.Contains(out, target) {
		t.Fatalf("force-view-change --to node99 failed without naming the problem and the members: %s", out)
	}
	if got := c.waitLeader(nil, 10*time.Second); got != target {
		t.Fatalf("a refused transfer moved the leader from %s to %s", target, got)
	}
}
