package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/devcluster"
	"github.com/tandem-consensus/tandem/internal/identity"
)

// TestAutoEscalatesOnEquivocation: four processes in consensus_mode auto,
// node4 built with -tags byzantine and told to equivocate. Leadership is
// moved to node4; as Raft leader it sends one follower other payloads for
// signed slots. Every correct node verifies the proof, quarantines node4,
// and the cluster switches itself to HotStuff (epoch 2) with no operator:
// every correct node runs epoch 2 in bft, its hand-over certificate names
// the detector as the reason, and writes keep committing. The time from
// the first equivocation to the last correct node in epoch 2 is logged.
func TestAutoEscalatesOnEquivocation(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := filepath.Join(t.TempDir(), "tandem-byzantine")
	build := exec.Command("go", "build", "-tags", "byzantine", "-o", byzBinary, "github.com/tandem-consensus/tandem/cmd/tandem")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building the byzantine binary: %v", err)
	}
	layout, err := devcluster.Prepare(devcluster.Options{Dir: t.TempDir(), Nodes: 4, Mode: "auto",
		Extra: map[string]any{"raft": fastRaft, "view_change_timeout": "400ms", "vote_timeout": "120ms"}})
	if err != nil {
		t.Fatal(err)
	}
	var out io.Writer = io.Discard
	if os.Getenv("TANDEM_E2E_LOG") != "" {
		out = os.Stderr
	}
	c := &cluster{Cluster: devcluster.New(layout, binary, out), t: t, layout: layout}
	t.Cleanup(func() { _ = c.StopAll(5 * time.Second) })
	if c.tls, err = identity.ClientTLS(layout.CAFile, layout.ClientCertFile, layout.ClientKeyFile); err != nil {
		t.Fatal(err)
	}
	if c.admin, err = identity.LoadKeyFile(layout.AdminKeyPath); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_BYZANTINE", "equivocate")
	watch := &equivocationWatch{out: out}
	byz := devcluster.New(layout, byzBinary, watch)
	t.Cleanup(func() { _ = byz.StopAll(5 * time.Second) })
	correct := without(c.ids(), byzantineNode)
	for _, id := range correct {
		if err := c.Start(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := byz.Start(byzantineNode); err != nil {
		t.Fatal(err)
	}
	c.waitReady(30 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var endpoints []string
	for _, id := range correct {
		endpoints = append(endpoints, c.endpoint(id))
	}
	cl := c.newClient(c.admin, endpoints...)
	defer cl.Close()
	if c.waitLeader(nil, 30*time.Second) != byzantineNode && watch.first().IsZero() {
		if err := cl.TransferLeader(ctx, byzantineNode); err != nil {
			t.Fatalf("transfer leadership to %s: %v", byzantineNode, err)
		}
	}

	deadline := time.Now().Add(45 * time.Second)
	writes := 0
	var switched time.Time
	for switched.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not escalate to bft within 45s (first equivocation seen: %v)", !watch.first().IsZero())
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := cl.SetConfig(wctx, "load-"+strconv.Itoa(writes), "v"); err == nil {
			writes++
		}
		wcancel()
		all := true
		for _, id := range correct {
			st, err := c.epochOf(ctx, cl, id)
			if err != nil || st.Epoch != 2 || st.Mode != "bft" || st.Switching {
				all = false
				break
			}
		}
		if all {
			switched = time.Now()
		}
	}
	if first := watch.first(); !first.IsZero() {
		t.Logf("first equivocation to every correct node in epoch 2 (bft): %s", switched.Sub(first).Round(time.Millisecond))
	}
	st, err := c.epochOf(ctx, cl, correct[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Reason) < len("detector: ") || st.Reason[:len("detector: ")] != "detector: " {
		t.Fatalf("epoch 2 reason %q does not name the detector", st.Reason)
	}
	for _, id := range correct {
		var v api.QuarantineView
		if err := cl.AdminJSON(ctx, c.endpoint(id), http.MethodGet, "/v1/admin/quarantine", nil, &v); err != nil {
			t.Fatalf("%s quarantine list: %v", id, err)
		}
		found := false
		for _, q := range v.Quarantined {
			if string(q.Node) != byzantineNode {
				t.Fatalf("%s quarantined correct node %s", id, q.Node)
			}
			found = true
		}
		if !found {
			t.Fatalf("%s did not quarantine %s", id, byzantineNode)
		}
	}
	for i := range 10 {
		if _, err := cl.SetConfig(ctx, "after-"+strconv.Itoa(i), "v"); err != nil {
			t.Fatalf("write %d in epoch 2: %v", i, err)
		}
	}
	c.waitConverged(correct, 20*time.Second)
	t.Logf("%d writes before the switch; the correct nodes agree in epoch 2", writes)
}
