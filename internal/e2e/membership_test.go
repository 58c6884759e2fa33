package e2e

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
)

// TestRemoveAndAddServer: an operator removes a server and adds it back;
// the cluster keeps serving with three voters and converges again with four.
// The metrics endpoint exposes Raft and request metrics throughout.
func TestRemoveAndAddServer(t *testing.T) {
	c := startCluster(t, 4, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := c.newClient(c.admin)
	if _, err := admin.SetConfig(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.waitLeader(nil, 10*time.Second)
	victim := without(c.ids(), leader)[0]

	if err := admin.RemoveMember(ctx, victim); err != nil {
		t.Fatalf("remove %s: %v", victim, err)
	}
	members, err := admin.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 || slices.ContainsFunc(members, func(m client.Member) bool { return m.ID == victim }) {
		t.Fatalf("members after removing %s: %+v", victim, members)
	}
	if err := c.Stop(victim, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetConfig(ctx, "with-three", "1"); err != nil {
		t.Fatalf("write with three voters: %v", err)
	}

	// Back in: restart it, then add it explicitly as a voter.
	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, n := range c.layout.Nodes {
		if n.ID == victim {
			addr = n.PeerAddr
		}
	}
	if err := admin.AddMember(ctx, victim, addr); err != nil {
		t.Fatalf("add %s back: %v", victim, err)
	}
	if _, err := admin.SetConfig(ctx, "with-four", "1"); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(c.ids(), 30*time.Second)
	members, err = admin.Members(ctx)
	if err != nil || len(members) != 4 {
		t.Fatalf("members after adding %s back: %+v (%v)", victim, members, err)
	}

	// Metrics: Prometheus text with raft's and the API's series.
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 5 * time.Second}
	resp, err := httpc.Get(c.endpoint(leader) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"tandem_requests_total{", "tandem_build_info", "raft_", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
