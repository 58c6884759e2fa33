package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// byzantineNode runs the byzantine-tagged binary in the detector test.
const byzantineNode = "node4"

// TestBFTEquivocatingLeaderIsQuarantined: four processes in bft mode, one
// of them (node4) built with -tags byzantine and told to equivocate: when
// it leads a view it signs two different blocks and sends one to a single
// peer and the other to the rest. The peer that gets the twin ends up
// holding both signed blocks, relays the proof, and every correct node
// verifies it and quarantines node4: each lists it (and no correct node)
// with evidence that verifies against the member keys, the rotation skips
// it, and writes keep committing. The detection latency (first
// equivocation to quarantine on the last correct node) is logged.
func TestBFTEquivocatingLeaderIsQuarantined(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)

	// node4's log is scanned for its first equivocation.
	s := newByzantineSetup(t, byzBinary, "bft", map[string]any{"view_change_timeout": "400ms", "vote_timeout": "120ms"}, "equivocate", equivocating)
	c, correct, watch, layout := s.c, s.correct, s.watch, s.layout
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Writes through the correct nodes while node4 misbehaves.
	endpoints := s.endpoints()
	cl, members, adm := b.cl, b.members, b.adm

	// Every correct node must quarantine node4, and only node4.
	since := waitQuarantined(ctx, t, c, adm, correct, watch, func(i int) bool {
		_, err := cl.SetConfig(ctx, "before-"+strconv.Itoa(i), "v")
		return err == nil
	}, 100*time.Millisecond)

	// The evidence verifies against the member keys alone, on every
	// correct node, and is an irrefutable proof naming node4.
	for _, id := range correct {
		for _, e := range quarantineEvidence(ctx, t, c, adm, id, members) {
			if !e.Irrefutable() || e.Offender != byzantineNode || e.Kind != evidence.KindEquivocatingProposals {
				t.Fatalf("%s evidence %s: %s", id, e.ID(), e.Summary())
			}
		}
	}

	// The CLI shows the same, and exports the evidence in Git form.
	cli := func(args ...string) string {
		cmd := exec.CommandContext(ctx, binary, append([]string{"admin", "--client-config", layout.ClientConfigPath, "--endpoints", strings.Join(endpoints, ",")}, args...)...)
		outb, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tandem admin %v: %v\n%s", args, err, outb)
		}
		return string(outb)
	}
	if got := cli("quarantine", "list"); strings.Count(got, byzantineNode) != len(correct) {
		t.Fatalf("quarantine list should name %s once per correct node:\n%s", byzantineNode, got)
	}
	gitDir := filepath.Join(t.TempDir(), "evidence.git")
	cli("evidence", "export", "--format", "git", "--out", gitDir)
	if _, err := os.Stat(filepath.Join(gitDir, "HEAD")); err != nil {
		t.Fatalf("git export: %v", err)
	}

	// Writes keep committing with node4 skipped, and no correct node
	// names it leader any more.
	for i := range 20 {
		if _, err := cl.SetConfig(ctx, "after-"+strconv.Itoa(i), "v"); err != nil {
			t.Fatalf("write %d after the quarantine: %v", i, err)
		}
	}
	for _, id := range correct {
		st, err := c.status(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.LeaderID == byzantineNode {
			t.Fatalf("%s still follows %s as leader in view %d", id, byzantineNode, st.View)
		}
	}
	c.waitConverged(correct, 20*time.Second)

	// The quarantine and its evidence survive a restart.
	if err := c.Stop("node1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Start("node1"); err != nil {
		t.Fatal(err)
	}
	c.waitReady(30 * time.Second)
	var after api.QuarantineView
	if err := adm.get(ctx, c.endpoint("node1"), "/v1/admin/quarantine", &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Quarantined) != 1 || after.Quarantined[0].Node != byzantineNode || !after.Quarantined[0].Since.Equal(since["node1"]) {
		t.Fatalf("node1 after a restart: %+v", after)
	}

	// Only an operator lifts it: the lift is recorded with the admin key
	// on every correct node. (node4's own detector verified the proof
	// against its key too and keeps itself quarantined: it proposes no
	// more, so it commits no further offence here.)
	cli("quarantine", "lift", byzantineNode)
	for _, id := range correct {
		var v api.QuarantineView
		if err := adm.get(ctx, c.endpoint(id), "/v1/admin/quarantine", &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Lifted) != 1 || v.Lifted[0].Node != byzantineNode || !strings.HasPrefix(v.Lifted[0].Operator, "admin ") {
			t.Fatalf("%s lift history: %+v", id, v.Lifted)
		}
	}
}

// memberKeys reads every node's public key from its data directory.
func memberKeys(t *testing.T, l *devcluster.Layout) *evidence.Members {
	t.Helper()
	var ms []evidence.Member
	for _, n := range l.Nodes {
		k, err := identity.LoadKeyFile(filepath.Join(n.DataDir, identity.NodeKeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, evidence.Member{ID: evidence.NodeID(n.ID), PublicKey: k.Public().(ed25519.PublicKey)})
	}
	m, err := evidence.NewMembers(ms)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// adminHTTP sends signed admin GETs.
type adminHTTP struct {
	key  ed25519.PrivateKey
	http *http.Client
}

func (a *adminHTTP) get(ctx context.Context, endpoint, uri string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+uri, nil)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	req.Header.Set(wire.HeaderKey, smr.FormatKey(a.key.Public().(ed25519.PublicKey)))
	req.Header.Set(wire.HeaderTime, strconv.FormatInt(now, 10))
	req.Header.Set(wire.HeaderSignature, base64.RawURLEncoding.EncodeToString(ed25519.Sign(a.key, smr.AdminSignBytes(http.MethodGet, req.URL.RequestURI(), now, nil))))
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// logTime returns the time= field of a text log line, or now.
func logTime(line string) time.Time {
	sc := bufio.NewScanner(strings.NewReader(line))
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "time="); ok {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return t
			}
		}
	}
	return time.Now()
}
