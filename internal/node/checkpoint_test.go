package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/internal/testlog"
	"github.com/tandem-consensus/tandem/smr"
)

// ckptReplica is one member's checkpointer over its own state machine,
// without the rest of a node: the apply hook and the vote counting are
// driven by the test.
type ckptReplica struct {
	id  string
	c   *checkpointer
	fsm *appliedFSM
}

// ckptFixture is a committee of four members with checkpoint_interval
// interval and an admin key for the commands they apply.
type ckptFixture struct {
	admin    ed25519.PrivateKey
	replicas []*ckptReplica
	com      *checkpoint.Committee
}

func newCkptFixture(t *testing.T, interval uint64) *ckptFixture {
	t.Helper()
	admin, err := identity.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	const size = 4
	keys := make([]ed25519.PrivateKey, size)
	var members []string
	pub := map[string]ed25519.PublicKey{}
	for i := range keys {
		if keys[i], err = identity.GenerateKey(); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("n%d", i+1)
		pub[id] = keys[i].Public().(ed25519.PublicKey)
		members = append(members, fmt.Sprintf("%s=127.0.0.1:%d/%s", id, 7000+i, smr.FormatKey(pub[id])))
	}
	f := &ckptFixture{admin: admin}
	if f.com, err = checkpoint.NewCommittee(pub); err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		cfg := config.Default()
		cfg.NodeID = fmt.Sprintf("n%d", i+1)
		cfg.DataDir = t.TempDir()
		cfg.InitialMembers = members
		cfg.CheckpointInterval = interval
		n := &Node{cfg: cfg, log: testlog.New(t, slog.LevelWarn), registry: prometheus.NewRegistry()}
		c, err := n.newCheckpointer(keys[i])
		if err != nil || c == nil {
			t.Fatalf("checkpointer of %s: %v, %v", cfg.NodeID, c, err)
		}
		n.ckpt = c
		fsm := newAppliedFSM(smr.NewUninitialized())
		fsm.ckpt = c
		n.fsm = fsm
		f.replicas = append(f.replicas, &ckptReplica{id: cfg.NodeID, c: c, fsm: fsm})
	}
	return f
}

// entry returns the log entry at index: the genesis at 1, then a config
// write whose value is tag and the index.
func (f *ckptFixture) entry(t *testing.T, index uint64, tag string) []byte {
	t.Helper()
	var e smr.Entry
	if index == 1 {
		g := smr.Genesis{AdminKeys: []ed25519.PublicKey{f.admin.Public().(ed25519.PublicKey)}}.WithDefaults()
		e = smr.NewGenesisEntry(0, g)
	} else {
		env, err := smr.Sign(f.admin, index, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: fmt.Sprintf("%s-%d", tag, index)})
		if err != nil {
			t.Fatal(err)
		}
		e = smr.NewCommandEntry(int64(index), *env)
	}
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// apply applies the entries at indexes to r and returns the state hash
// after each.
func (f *ckptFixture) apply(t *testing.T, r *ckptReplica, tag string, indexes ...uint64) map[uint64][32]byte {
	t.Helper()
	hashes := map[uint64][32]byte{}
	for _, i := range indexes {
		r.fsm.Apply(i, f.entry(t, i, tag))
		idx, sum := r.fsm.Hash()
		if idx != i {
			t.Fatalf("%s applied index %d after applying %d", r.id, idx, i)
		}
		hashes[i] = sum
	}
	return hashes
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// captured returns the indexes of r's own checkpoints waiting for a
// certificate.
func (r *ckptReplica) captured() map[uint64]capture {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	out := map[uint64]capture{}
	for k, v := range r.c.captures {
		out[k] = v
	}
	return out
}

// TestCheckpointCapturedWhereTheIndexCrossesTheInterval: the apply hook
// signs the state at the first applied index at or past each multiple of
// checkpoint_interval (Raft skips indexes the state machine never sees),
// with the hash and a snapshot of exactly that state; a snapshot installed
// past a multiple captures nothing for it.
func TestCheckpointCapturedWhereTheIndexCrossesTheInterval(t *testing.T) {
	f := newCkptFixture(t, 5)
	r := f.replicas[0]
	// Index 5 is never applied here (a Raft configuration entry).
	indexes := append(seq(1, 4), seq(6, 12)...)
	hashes := f.apply(t, r, "a", indexes...)

	got := r.captured()
	if len(got) != 2 {
		t.Fatalf("captured checkpoints at %v, want indexes 6 and 10", keysOf(got))
	}
	for _, idx := range []uint64{6, 10} {
		cp, ok := got[idx]
		if !ok {
			t.Fatalf("no checkpoint at index %d; captured %v", idx, keysOf(got))
		}
		st := cp.vote.Statement
		if st.Kind != checkpoint.KindCheckpoint || st.Index != idx || st.StateHash != hashes[idx] || st.Epoch != cftEpoch {
			t.Errorf("checkpoint at %d = %s, want the state hash %x after applying it", idx, st, hashes[idx])
		}
		if err := cp.vote.Verify(f.com); err != nil || cp.vote.Signer != r.id {
			t.Errorf("vote at %d by %q: %v", idx, cp.vote.Signer, err)
		}
		si, sh, err := smr.SnapshotInfo(cp.snap)
		if err != nil || si != idx || sh != hashes[idx] {
			t.Errorf("snapshot kept at %d holds index %d hash %x (%v)", idx, si, sh[:6], err)
		}
	}

	// Another replica installs the snapshot at 12 and applies on: the
	// multiples behind the snapshot are not captured, the next one is.
	snap, err := r.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	other := f.replicas[1]
	if err := other.fsm.Restore(snap); err != nil {
		t.Fatal(err)
	}
	f.apply(t, other, "a", 13, 14)
	if got := other.captured(); len(got) != 0 {
		t.Fatalf("captured %v after a snapshot at 12 and entries 13-14, want none", keysOf(got))
	}
	f.apply(t, other, "a", 15)
	if got := other.captured(); len(got) != 1 || got[15].vote.Statement.Index != 15 {
		t.Fatalf("captured %v after entry 15, want index 15", keysOf(got))
	}
}

func keysOf[V any](m map[uint64]V) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCheckpointVotesMakeAStableCertificate: q = 3 matching votes of the
// four members make a certificate; it is stored with the snapshot, shown
// in status and the metric; a vote for another state at the same index is
// counted for that state only, an equivocating vote is refused, and a
// node whose own state differs from the certified one reports a
// divergence and stores nothing.
func TestCheckpointVotesMakeAStableCertificate(t *testing.T) {
	f := newCkptFixture(t, 5)
	ctx := context.Background()
	for _, r := range f.replicas[:3] {
		f.apply(t, r, "a", seq(1, 5)...)
	}
	diverged := f.replicas[3]
	f.apply(t, diverged, "b", seq(1, 5)...) // other values: another state at 5

	votes := map[string]checkpoint.Vote{}
	for _, r := range f.replicas {
		votes[r.id] = r.captured()[5].vote
	}
	if votes["n1"].Statement.Equal(votes["n4"].Statement) {
		t.Fatal("the diverged replica has the same state")
	}
	n1 := f.replicas[0].c
	for _, id := range []string{"n1", "n4", "n2"} {
		cert, err := n1.addVote(ctx, votes[id])
		if err != nil || cert != nil {
			t.Fatalf("vote of %s: certificate %v, %v; want none yet", id, cert, err)
		}
	}
	// An equivocation by n4 (two states at one index) is refused.
	forged, err := checkpoint.Sign(diverged.c.key, "n4", votes["n1"].Statement)
	if err != nil {
		t.Fatal(err)
	}
	var ce *checkpoint.ConflictError
	if _, err := n1.addVote(ctx, forged); !errors.As(err, &ce) {
		t.Fatalf("equivocating vote: %v, want a conflict", err)
	}
	cert, err := n1.addVote(ctx, votes["n3"])
	if err != nil || cert == nil {
		t.Fatalf("third matching vote: certificate %v, %v", cert, err)
	}
	if err := cert.Verify(f.com, nil); err != nil || !cert.Statement.Equal(votes["n1"].Statement) {
		t.Fatalf("certificate %s: %v", cert.Statement, err)
	}
	if n1.status() != nil {
		t.Fatal("stable before the certificate was matched")
	}
	n1.offer(cert)
	n1.match(ctx)
	st := n1.status()
	if st == nil || st.Index != 5 || len(st.Signers) != 3 || st.Form != "quorum" {
		t.Fatalf("status after the certificate: %+v", st)
	}
	if g := metricValue(t, n1.metrics.stableIndex); g != 5 {
		t.Errorf("stable index gauge = %v, want 5", g)
	}
	stored, snap, err := n1.store.Latest()
	if err != nil || !stored.Statement.Equal(cert.Statement) {
		t.Fatalf("stored checkpoint %v, %v", stored, err)
	}
	if idx, _, err := smr.SnapshotInfo(snap); err != nil || idx != 5 {
		t.Fatalf("stored snapshot at %d, %v", idx, err)
	}
	if len(f.replicas[0].captured()) != 0 {
		t.Errorf("own checkpoint still pending after it became stable")
	}
	// Votes for what is settled change nothing.
	if c, err := n1.addVote(ctx, votes["n2"]); c != nil || err != nil {
		t.Errorf("vote for a stable index: %v, %v", c, err)
	}

	// The certificate reaches the diverged replica (a peer's answer).
	diverged.c.offer(cert)
	diverged.c.match(ctx)
	if diverged.c.status() != nil {
		t.Fatal("the diverged replica took a certificate for another state as its own")
	}
	if n := metricValue(t, diverged.c.metrics.divergence); n != 1 {
		t.Errorf("divergence counter = %v, want 1", n)
	}
	if _, err := diverged.c.store.LatestCertificate(); !errors.Is(err, checkpoint.ErrNone) {
		t.Errorf("the diverged replica stored %v", err)
	}
}

// TestCheckpointCertificateBeforeOwnState: a node that lags receives the
// certificate before it applies the index; it keeps it, and the
// checkpoint becomes stable once its own state at that index matches. A
// vote far beyond the node's applied index is not kept.
func TestCheckpointCertificateBeforeOwnState(t *testing.T) {
	f := newCkptFixture(t, 5)
	ctx := context.Background()
	for _, r := range f.replicas {
		f.apply(t, r, "a", seq(1, 4)...)
	}
	var votes []checkpoint.Vote
	for _, r := range f.replicas[:3] {
		f.apply(t, r, "a", 5)
		votes = append(votes, r.captured()[5].vote)
	}
	var cert *checkpoint.Certificate
	for _, v := range votes {
		c, err := f.replicas[0].c.addVote(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			cert = c
		}
	}
	if cert == nil {
		t.Fatal("no certificate from three matching votes")
	}
	lag := f.replicas[3]
	lag.c.offer(cert)
	lag.c.match(ctx)
	if lag.c.status() != nil {
		t.Fatal("stable before this node applied the index")
	}
	f.apply(t, lag, "a", 5)
	lag.c.match(ctx)
	if st := lag.c.status(); st == nil || st.Index != 5 {
		t.Fatalf("status after applying the certified index: %+v", st)
	}

	far, err := checkpoint.Sign(f.replicas[1].c.key, "n2", checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: cftEpoch, Index: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lag.c.addVote(ctx, far); err == nil {
		t.Error("a vote 995 entries ahead of this node was kept")
	}
}

// metricValue reads a gauge or counter.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// TestCheckpointsCompactTheRaftLog: three cft nodes with every member's
// key in initial_members, checkpoint_interval reloaded to 20. Writes past
// three intervals make every node report the same stable checkpoint, each
// node takes a Raft snapshot behind it, and the Raft engine keeps at least
// log_retention trailing entries.
func TestCheckpointsCompactTheRaftLog(t *testing.T) {
	c := startClusterKeys(t, 3, config.ModeCFT, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const interval = 20
	for _, tn := range c.nodes {
		cfg := tn.cfg
		cfg.CheckpointInterval = interval
		if _, _, err := tn.n.Reload(cfg); err != nil {
			t.Fatalf("reload %s: %v", tn.id, err)
		}
	}
	waitFor(t, "checkpoint_interval 20 in effect on every node's checkpointer", 10*time.Second, func() bool {
		for _, tn := range c.nodes {
			if tn.n.ckpt == nil || tn.n.ckpt.interval() != interval {
				return false
			}
		}
		return true
	})
	leader := c.leader(t)
	for i := range 3*interval + 5 {
		c.submit(t, ctx, leader, c.admin, smr.Command{Op: smr.OpSetConfig, Key: fmt.Sprintf("k%d", i), Value: "v"})
	}
	waitConverged(t, c)
	var want *api.CheckpointStatus
	waitFor(t, "the same stable checkpoint at index >= 60 on every node", 20*time.Second, func() bool {
		want = c.nodes[0].n.CheckpointStatus()
		if want == nil || want.Index < 3*interval {
			return false
		}
		for _, tn := range c.nodes[1:] {
			got := tn.n.CheckpointStatus()
			if got == nil || got.Index != want.Index || got.StateHash != want.StateHash {
				return false
			}
		}
		return true
	})
	if len(want.Signers) < 2 || want.Epoch != cftEpoch {
		t.Fatalf("stable checkpoint %+v: want a majority of 3 signers in epoch %d", want, cftEpoch)
	}
	retain := c.nodes[0].cfg.LogRetention
	for _, tn := range c.nodes {
		r := tn.n.raftEng()
		// The stable checkpoint is published before the node compacts
		// for it (settle): the snapshot follows shortly.
		waitFor(t, tn.id+": a Raft snapshot after stable checkpoint "+fmt.Sprint(want.Index), 10*time.Second, func() bool {
			return r.Status().LastSnapshotIndex > 0
		})
		if got := r.Reloadable().TrailingLogs; got < retain {
			t.Errorf("%s: Raft keeps %d trailing entries, below log_retention %d", tn.id, got, retain)
		}
		cert, snap, err := tn.n.ckpt.store.Latest()
		if err != nil || cert.Statement.Index != want.Index {
			t.Fatalf("%s: stored checkpoint %v, %v", tn.id, cert, err)
		}
		if idx, _, err := smr.SnapshotInfo(snap); err != nil || idx != want.Index {
			t.Errorf("%s: stored snapshot at %d, %v", tn.id, idx, err)
		}
	}
}
