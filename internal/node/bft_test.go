package node

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// TestBFTCluster: four nodes in consensus_mode bft form a HotStuff
// committee from initial_members. Every node takes writes (no forwarding
// to a leader) and serves linearizable reads that see every acknowledged
// write; status reports the view, leader, high QC and committed height;
// snapshots can be taken on any node; transfer-leader forces a view change;
// membership changes are refused in plain words.
func TestBFTCluster(t *testing.T) {
	c := startClusterMode(t, 4, config.ModeBFT)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for i, tn := range c.nodes {
		c.submit(t, ctx, tn, c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("k%d", i), Value: tn.id})
	}
	for _, reader := range c.nodes {
		for i, writer := range c.nodes {
			v, _, err := configValue(ctx, reader, fmt.Sprintf("k%d", i), false)
			if err != nil || v != writer.id {
				t.Fatalf("linearizable read of k%d through %s = %q, %v; want %q", i, reader.id, v, err, writer.id)
			}
		}
	}

	st := c.nodes[2].n.Status(ctx)
	if st.Mode != "bft" || st.View == 0 || st.Term != st.View || st.LeaderID == "" || st.CommittedHeight == 0 ||
		st.HighQCView == 0 || st.AppliedIndex < 5 || st.StateHash == "" {
		t.Fatalf("status = %+v", st)
	}
	ms, err := c.nodes[1].n.Members(ctx)
	if err != nil || len(ms) != 4 {
		t.Fatalf("members = %v, %v", ms, err)
	}

	var buf bytes.Buffer
	idx, err := c.nodes[3].n.SnapshotSave(ctx, &buf)
	if err != nil || idx < 5 || buf.Len() == 0 {
		t.Fatalf("snapshot on a non-leader: index %d, %d bytes, %v", idx, buf.Len(), err)
	}

	// A view change needs f+1 requesters (2 of 4), as an operator's CLI
	// asks every node.
	before := c.nodes[0].n.Status(ctx).View
	errs := make(chan error, 2)
	for _, tn := range c.nodes[:2] {
		go func() { errs <- tn.n.TransferLeader(ctx, "") }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("transfer-leader (view change): %v", err)
		}
	}
	if v := c.nodes[0].n.Status(ctx).View; v <= before {
		t.Fatalf("view %d after a forced view change from %d", v, before)
	}

	err = c.nodes[0].n.AddMember(ctx, consensus.Member{ID: "node-9", Address: "127.0.0.1:1"})
	if codeOf(err) != smr.CodeMalformed {
		t.Fatalf("add member in bft mode: %v", err)
	}
	if err := c.nodes[0].n.RemoveMember(ctx, "node-4"); codeOf(err) != smr.CodeMalformed {
		t.Fatalf("remove member in bft mode: %v", err)
	}

	// Every node applied the same entries: equal index and state hash.
	waitFor(t, "equal state on every node", 10*time.Second, func() bool {
		first := c.nodes[0].n.Status(ctx)
		for _, tn := range c.nodes[1:] {
			s := tn.n.Status(ctx)
			if s.AppliedIndex != first.AppliedIndex || s.StateHash != first.StateHash {
				return false
			}
		}
		return true
	})
}
