package e2e

import (
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
)

// TestDatasetThroughBFT: the dataset scenario of TestDatasetThroughConsensus
// on a 4-node bft cluster of real processes, every client speaking the
// signed BFT protocol: each write goes to every member and each sync's
// verdicts, and each read of the dataset, are accepted on f+1 = 2 matching
// signed replies. Agent i asks node i to propose its syncs; one node (f =
// 1) is stopped while the agents keep syncing, then restarted. Attacks
// are rejected with their reasons; at the end every agent's replica and the
// dataset read through every node are equal, the four state hashes too,
// and no member sent a reply the clients had to ignore.
func TestDatasetThroughBFT(t *testing.T) {
	c := startBFTCluster(t)
	committee, err := c.layout.Committee()
	if err != nil {
		t.Fatal(err)
	}
	var clients []*client.Client
	datasetScenario{
		c: c,
		connect: func(key ed25519.PrivateKey, prefer int) *client.Client {
			members := committee
			if prefer >= 0 {
				// The first member is the one asked to propose.
				members = append(slices.Clone(committee[prefer:]), committee[:prefer]...)
			}
			cl := c.newBFTClient(key, members)
			clients = append(clients, cl)
			return cl
		},
		// Agent 1's proposer: its syncs must move to another member.
		down: func() string { return committee[1].ID },
	}.run(t)
	for i, cl := range clients {
		st := cl.BFTStats()
		if st.BadSignatures+st.WrongSigner+st.Mismatched != 0 {
			t.Errorf("client %d ignored replies of an honest committee: %+v", i, st)
		}
		// Reads racing concurrent syncs may see the replicas answer
		// different versions (a conflict, read again): not a fault.
		t.Logf("client %d: %+v", i, st)
	}
}

// newBFTClient returns a client of the committee members signing with
// key; members[0] is asked to propose its writes first.
func (c *cluster) newBFTClient(key ed25519.PrivateKey, members []client.CommitteeMember) *client.Client {
	c.t.Helper()
	cfg := client.DefaultConfig()
	cfg.Committee = members
	cfg.Key = key
	cfg.TLS = c.tls
	cfg.RequestTimeout = 3 * time.Second
	cfg.Retry.MaxAttempts = 20
	cl, err := client.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}
