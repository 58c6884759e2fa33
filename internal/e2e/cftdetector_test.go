package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// TestCFTEquivocatingLeaderIsQuarantined: four processes in cft mode whose
// initial_members list every node's public key, one of them (node4) built
// with -tags byzantine and told to equivocate. Leadership is moved to
// node4; as leader it sends one follower other payloads (with fresh
// signed attestations of the same slots) than the rest. The replicas
// exchange the attestations they applied, so one of them holds two
// signed payloads for one slot, relays the proof, and every correct node
// verifies it and quarantines node4: each lists it (and no correct node)
// with evidence that verifies against the member keys, its metric says
// so, node4 is no longer a Raft voter, and writes keep committing. The
// detection latency (first equivocation to quarantine on the last correct
// node) is logged.
func TestCFTEquivocatingLeaderIsQuarantined(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)

	s := newByzantineSetup(t, byzBinary, "cft", map[string]any{"raft": fastRaft}, "equivocate", equivocating)
	c, correct, watch := s.c, s.correct, s.watch
	b := s.launch(t)
	cl := b.cl
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Make node4 lead (it may already).
	if c.waitLeader(nil, 30*time.Second) != byzantineNode && watch.first().IsZero() {
		if err := cl.TransferLeader(ctx, byzantineNode); err != nil {
			t.Fatalf("transfer leadership to %s: %v", byzantineNode, err)
		}
	}

	// Every correct node must quarantine node4, and only node4.
	waitQuarantined(ctx, t, c, b.adm, correct, watch, b.writer(ctx, "before-"), 50*time.Millisecond)

	// On every correct node: the evidence is stored, verifies against the
	// member keys alone and proves node4's equivocation; the metric says
	// node4 is quarantined.
	for _, id := range correct {
		b.requireQuarantined(ctx, t, id, evidence.KindLeaderEquivocation)
		var list api.EvidenceListView
		if err := b.adm.get(ctx, c.endpoint(id), "/v1/admin/evidence", &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Evidence) == 0 {
			t.Fatalf("%s stores no evidence", id)
		}
	}

	// A correct leader removes node4 from the voters.
	waitUntilTrue(t, "node4 to leave the raft configuration", 30*time.Second, func() bool {
		ms, err := cl.Members(ctx)
		if err != nil {
			return false
		}
		return !slices.ContainsFunc(ms, func(m client.Member) bool { return m.ID == byzantineNode })
	})
	leader := c.waitLeader(correct, 30*time.Second)
	if leader == byzantineNode {
		t.Fatalf("%s still leads", byzantineNode)
	}

	// Writes keep committing without node4.
	b.requireWritesCommit(ctx, t, 20, 20*time.Second)
}

// listMemberKeys rewrites every node's config of a cft layout so that the
// cluster forms from initial_members listing every node's public key,
// which turns the detector on in cft mode.
func listMemberKeys(t *testing.T, l *devcluster.Layout) {
	t.Helper()
	var ms []string
	for _, n := range l.Nodes {
		k, err := identity.LoadKeyFile(filepath.Join(n.DataDir, identity.NodeKeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, fmt.Sprintf("%s=%s/%s", n.ID, n.PeerAddr, smr.FormatKey(k.Public().(ed25519.PublicKey))))
	}
	for _, n := range l.Nodes {
		b, err := os.ReadFile(n.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg := map[string]any{}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		delete(cfg, "bootstrap_expect")
		cfg["initial_members"] = ms
		if b, err = yaml.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.ConfigPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// metricLine returns the value of the metric line that starts with name
// on the node at endpoint, or "" if there is none.
func metricLine(t *testing.T, hc *http.Client, endpoint, name string) string {
	t.Helper()
	resp, err := hc.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// waitUntil polls cond every 100 ms until it holds or timeout passes.
func waitUntilTrue(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
