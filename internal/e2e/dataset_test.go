package e2e

import (
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
)

// TestDatasetThroughConsensus: on a 3-node cft cluster of real processes,
// agents that each talk to a different node (and one more through the
// tandem binary) edit a dataset offline and sync concurrently, also while
// a follower is down and after it restarts; attacks are rejected with
// their reasons and leave the dataset as it was; at the end every agent's
// replica, and the dataset read through every node, are the same, and the
// nodes' state hashes are equal (the restarted follower too).
func TestDatasetThroughConsensus(t *testing.T) {
	c := startCluster(t, 3, nil)
	eps := c.layout.Endpoints()
	datasetScenario{
		c: c,
		// Agent i asks node i first; followers forward to the leader.
		connect: func(key ed25519.PrivateKey, prefer int) *client.Client {
			if prefer < 0 {
				return c.newClient(key)
			}
			return c.newClient(key, append(slices.Clone(eps[prefer:]), eps[:prefer]...)...)
		},
		down: func() string {
			leader := c.waitLeader(nil, 10*time.Second)
			return without(c.ids(), leader)[0]
		},
	}.run(t)
}
