package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// TestDatasetThroughConsensus: on a 3-node cft cluster of real processes,
// agents that each talk to a different node edit a dataset offline and
// sync concurrently, also while a follower is down; attacks are rejected
// with their reasons and leave the dataset as it was; at the end every
// agent's replica, and the dataset read through every node, are the same,
// and the nodes' state hashes are equal (the restarted follower too).
func TestDatasetThroughConsensus(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	admin := c.newClient(c.admin)

	const agents = 3
	keys := make([]ed25519.PrivateKey, agents)
	spec := client.DatasetSpec{Name: "shared", Cells: 8, CellSize: 16, StepLimit: 100}
	for i := range keys {
		k, err := identity.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
		spec.Agents = append(spec.Agents, smr.FormatKey(k.Public().(ed25519.PublicKey)))
	}
	if _, err := admin.CreateDataset(ctx, spec); err != nil {
		t.Fatal(err)
	}

	// Agent i prefers node i (followers forward to the leader).
	eps := c.layout.Endpoints()
	clients := make([]*client.Client, agents)
	reps := make([]*client.Replica, agents)
	for i, k := range keys {
		order := append(slices.Clone(eps[i:]), eps[:i]...)
		clients[i] = c.newClient(k, order...)
		r, err := client.FetchReplica(ctx, clients[i], spec.Name, k)
		if err != nil {
			t.Fatal(err)
		}
		reps[i] = r
	}

	// edit makes agent i's offline changes of round: its own cell, and
	// the contended cell 7 at the same global seq as everyone else.
	edit := func(i, round int) {
		if _, err := reps[i].Set(i, fmt.Appendf(nil, "agent%d-r%d", i, round)); err != nil {
			t.Fatal(err)
		}
		if _, err := reps[i].SetAt(7, fmt.Appendf(nil, "contended-%d", i), uint64(round+1)); err != nil {
			t.Fatal(err)
		}
	}
	syncAll := func(skip int) {
		var wg sync.WaitGroup
		errs := make([]error, agents)
		for i := range reps {
			if i == skip {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = reps[i].Sync(ctx, clients[i])
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("agent %d sync: %v", i, err)
			}
		}
	}

	for i := range reps {
		edit(i, 0)
	}
	syncAll(-1)

	// A follower goes down; agents keep editing and syncing (the one that
	// prefers it fails over to the other nodes).
	leader := c.waitLeader(nil, 10*time.Second)
	down := without(c.ids(), leader)[0]
	if err := c.Stop(down, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range reps {
		edit(i, 1)
	}
	syncAll(-1)
	if err := c.Start(down); err != nil {
		t.Fatal(err)
	}

	// Attacks, through the cluster: each is rejected with its reason and
	// the dataset does not change. Agent 0 first signs ten more local seqs
	// than it has used, so that its next local seqs are valid.
	a0, a1 := keys[0], keys[1]
	ref := readDataset(ctx, t, admin, spec.Name).Ref()
	_, agent0 := findAgent(t, readDataset(ctx, t, admin, spec.Name), spec.Agents[0])
	st, err := smr.SignSeqStatement(a0, ref, agent0.LastSeq+10)
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := clients[0].SyncDataset(ctx, spec.Name, &smr.DatasetSnapshot{Statements: []smr.SeqStatement{st}}); err != nil || len(out.StatementsRejected) != 0 {
		t.Fatalf("statement sync: %+v %v", out, err)
	}
	before, last := findAgent(t, readDataset(ctx, t, admin, spec.Name), spec.Agents[0])
	if last.Available >= 100 {
		t.Fatalf("agent 0 has %d local seqs available; the attack below needs fewer than 100", last.Available)
	}
	sign := func(k ed25519.PrivateKey, l uint64, cell uint32, g uint64, v string) smr.DatasetChange {
		ch, err := smr.SignChange(k, ref, smr.DatasetChange{LocalSeq: l, Cell: cell, GlobalSeq: g, Value: bytes.Repeat([]byte(v), 16)[:16]})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	var stranger ed25519.PrivateKey
	forged := sign(a0, last.LastSeq+1, 3, 1, "f")
	forged.Agent = a1.Public().(ed25519.PublicKey)
	stranger, err = identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	attacks := []struct {
		change smr.DatasetChange
		reason smr.SyncRejected
	}{
		{sign(a0, last.LastSeq+1, 0, math.MaxUint64, "m"), smr.RejectTooHigh},
		{sign(a0, last.LastSeq+2, 0, before.Values[0].GlobalSeq+100, "s"), smr.RejectTooHigh}, // within the step limit, beyond the signed seqs
		{sign(a0, last.LastSeq, 5, 1, "r"), smr.RejectReplayed},
		{forged, smr.RejectBadSignature},
		{sign(a0, last.LastSeq+3, 8, 1, "o"), smr.RejectCellOutOfRange},
		{sign(stranger, 1, 6, 1, "u"), smr.RejectNotInvited},
	}
	for _, a := range attacks {
		snap := smr.DatasetSnapshot{Changes: []smr.DatasetChange{a.change}}
		out, _, err := clients[0].SyncDataset(ctx, spec.Name, &snap)
		if err != nil {
			t.Fatalf("attack sync: %v", err)
		}
		if len(out.Rejected) != 1 || out.Rejected[0].Reason != a.reason {
			t.Fatalf("attack %s: outcome %+v", a.reason, out)
		}
		t.Logf("rejected as %s: %s", a.reason, out.Rejected[0].Message)
	}
	if after := readDataset(ctx, t, admin, spec.Name); !sameDataset(before, after) {
		t.Fatalf("attacks changed the dataset:\n%+v\n%+v", before, after)
	}
	// An uninvited client cannot sync at all.
	outsider := c.newClient(stranger)
	if _, _, err := outsider.SyncDataset(ctx, spec.Name, &smr.DatasetSnapshot{}); client.ErrorCode(err) != smr.CodeUnknownClient {
		t.Fatalf("uninvited sync: %v", err)
	}

	// Everyone syncs twice (the second pulls what the others pushed).
	syncAll(-1)
	syncAll(-1)
	hash := c.waitConverged(c.ids(), 30*time.Second)
	final := readDataset(ctx, t, admin, spec.Name)
	for _, n := range c.layout.Nodes {
		got, _, err := c.newClient(nil, n.Endpoint()).GetDataset(ctx, spec.Name)
		if err != nil {
			t.Fatalf("read through %s: %v", n.ID, err)
		}
		if !sameDataset(got, final) {
			t.Fatalf("%s serves another dataset", n.ID)
		}
	}
	want := reps[0].Cells()
	for i, r := range reps {
		if got := r.Cells(); !sameCellList(got, want) || len(r.Pending()) != 0 {
			t.Fatalf("replica %d differs or has pending changes", i)
		}
	}
	// Cell 7: every agent wrote global seq 2 last; the greatest value won.
	if got := want[7]; got.GlobalSeq != 2 || !bytes.HasPrefix(got.Value, []byte("contended-2")) {
		t.Fatalf("cell 7 = %d %q", got.GlobalSeq, got.Value)
	}
	t.Logf("converged: version %d, state hash %s", final.Version, hash)
}

// findAgent returns info and the record of agent in it.
func findAgent(t *testing.T, info smr.DatasetInfo, agent string) (smr.DatasetInfo, smr.AgentInfo) {
	t.Helper()
	i := slices.IndexFunc(info.Agents, func(a smr.AgentInfo) bool { return a.Agent == agent })
	if i < 0 {
		t.Fatalf("agent %s is not in dataset %s", agent, info.Name)
	}
	return info, info.Agents[i]
}

func readDataset(ctx context.Context, t *testing.T, cl *client.Client, name string) smr.DatasetInfo {
	t.Helper()
	info, _, err := cl.GetDataset(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func sameDataset(a, b smr.DatasetInfo) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

func sameCellList(a, b []smr.Cell) bool {
	return slices.EqualFunc(a, b, func(x, y smr.Cell) bool { return smr.CompareCells(x, y) == 0 })
}
