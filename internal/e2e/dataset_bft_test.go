package e2e

import (
	"crypto/ed25519"
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/client"
)

// TestDatasetThroughBFT: the dataset scenario of TestDatasetThroughConsensus
// on a 4-node bft cluster of real processes, every client speaking the
// signed BFT protocol: each write goes to every member and each sync's
// verdicts, and each read of the dataset, are accepted on f+1 = 2 matching
// signed replies. Agent i's client asks node i to propose its syncs; one
// node (f = 1), agent 1's proposer, is stopped while the agents keep
// syncing, then restarted. Attacks are rejected with their reasons; at
// the end every agent's replica and the dataset read through every node
// are equal, the four state hashes too, and no member sent a reply the
// clients had to ignore.
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
			cfg := c.clientConfig(key)
			cfg.Committee = committee
			if prefer >= 0 {
				cfg.Committee = proposingFirst(committee, key, prefer)
			}
			cl := c.clientWith(cfg)
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

// proposingFirst returns the committee in an order that makes a client
// signing with key ask member proposer (an index into committee) to
// propose its writes first (the SDK picks it from the key:
// client.PrimaryIndex).
func proposingFirst(committee []client.CommitteeMember, key ed25519.PrivateKey, proposer int) []client.CommitteeMember {
	n := len(committee)
	at := client.PrimaryIndex(key.Public().(ed25519.PublicKey), n)
	k := ((proposer-at)%n + n) % n
	return append(slices.Clone(committee[k:]), committee[:k]...)
}
