package raftengine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/smr"
)

// TestClusterReplicatesThroughLeader: three nodes elect a leader; entries
// proposed through it apply on every node with equal state hashes;
// followers refuse proposals and reads with a hint naming the leader.
func TestClusterReplicatesThroughLeader(t *testing.T) {
	c := newCluster(t, 3, fastRaft())
	for _, n := range c.nodes {
		if ok, err := n.e.HasState(); err != nil || ok {
			t.Fatalf("%s HasState before bootstrap = %v, %v; want false", n.id, ok, err)
		}
	}
	c.bootstrap()
	c.propose(5)
	l := c.leader()
	c.converged(l)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if ok, err := n.e.HasState(); err != nil || !ok {
			t.Errorf("%s HasState after bootstrap = %v, %v; want true", n.id, ok, err)
		}
		if n == l {
			continue
		}
		_, err := n.e.Propose(ctx, c.envelope())
		var nl *consensus.NotLeaderError
		if !errors.As(err, &nl) || nl.LeaderID != l.id || nl.LeaderAddr != string(l.addr) {
			t.Errorf("follower %s Propose error = %v, want NotLeaderError naming %s at %s", n.id, err, l.id, l.addr)
		}
		if err := n.e.ReadBarrier(ctx); !errors.As(err, &nl) {
			t.Errorf("follower %s ReadBarrier error = %v, want NotLeaderError", n.id, err)
		}
		st := n.e.Status()
		if st.Role != "follower" || st.LeaderID != l.id || st.Mode != "cft" || st.NodeID != n.id {
			t.Errorf("follower status = %+v", st)
		}
		if rc := n.e.Contact(); !rc.Follower || rc.Leader || rc.LeaderID != l.id {
			t.Errorf("follower contact = %+v", rc)
		}
	}
	if rc := l.e.Contact(); rc.Follower || !rc.Leader || rc.LeaderID != l.id {
		t.Errorf("leader contact = %+v", rc)
	}

	// Bootstrapping again is a no-op on nodes with state.
	if err := l.e.Bootstrap(c.members()); err != nil {
		t.Errorf("second Bootstrap = %v, want nil", err)
	}

	st := l.e.Status()
	if st.Role != "leader" || st.LeaderID != l.id || st.CommitIndex < 6 || st.AppliedIndex < st.CommitIndex-1 || st.Term == 0 {
		t.Errorf("leader status = %+v", st)
	}
	members, err := l.e.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range members {
		if !m.Voter {
			t.Errorf("member %+v is not a voter", m)
		}
		if m.Leader {
			leaders++
			if m.ID != l.id {
				t.Errorf("member %s marked leader, want %s", m.ID, l.id)
			}
		}
	}
	if len(members) != 3 || leaders != 1 {
		t.Errorf("members = %+v, want 3 voters with one leader", members)
	}
	if err := l.e.ReadBarrier(ctx); err != nil {
		t.Errorf("leader ReadBarrier: %v", err)
	}

	// A duplicate (same client, seq and body) gets the stored result back.
	env := c.envelope()
	first, err := l.e.Propose(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.e.Propose(ctx, env)
	if err != nil || !again.Duplicate || again.Seq != first.Seq {
		t.Errorf("retry of seq %d = %+v, %v; want the stored result marked duplicate", env.Seq, again, err)
	}
}

// TestProposeTimesAreMonotonic: entry times never go backwards even when
// the clock does.
func TestProposeTimesAreMonotonic(t *testing.T) {
	e := &Engine{}
	times := []time.Time{time.Unix(100, 0), time.Unix(50, 0), time.Unix(200, 0)}
	i := 0
	e.cfg.Clock = func() time.Time { t := times[i]; i++; return t }
	got := []int64{e.nextTime(), e.nextTime(), e.nextTime()}
	want := []int64{100e9, 100e9, 200e9}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("entry times = %v, want %v", got, want)
		}
	}
}

// TestReadBarrierCoalesces: callers that arrive while a barrier is in flight
// do not return on it; they share one next barrier. 1 + N callers cost
// exactly two barriers.
func TestReadBarrierCoalesces(t *testing.T) {
	c := newCluster(t, 3, fastRaft())
	c.bootstrap()
	c.propose(1)
	l := c.leader()
	before := l.e.barriers.Load()

	// Hold the leader's state machine inside Apply: the barrier entry that
	// follows cannot complete until it is released.
	gate := make(chan struct{})
	l.sm.gate.Store(&gate)
	proposed := make(chan error, 1)
	go func() {
		_, err := l.e.Propose(context.Background(), c.envelope())
		proposed <- err
	}()
	<-l.sm.entered

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	firstDone := make(chan error, 1)
	go func() { firstDone <- l.e.ReadBarrier(ctx) }()
	waitFor(t, "the first barrier to start", func() bool { return l.e.barriers.Load() == before+1 })

	const n = 20
	rest := make(chan error, n)
	for range n {
		go func() { rest <- l.e.ReadBarrier(ctx) }()
	}
	waitFor(t, "callers to join the next barrier", func() bool {
		l.e.barrierMu.Lock()
		defer l.e.barrierMu.Unlock()
		return l.e.barrierNext != nil && l.e.barrierNext.waiters == n
	})
	if got := l.e.barriers.Load() - before; got != 1 {
		t.Fatalf("%d barriers issued while the first is in flight, want 1", got)
	}
	select {
	case err := <-firstDone:
		t.Fatalf("ReadBarrier returned (%v) before the state machine applied the earlier write", err)
	default:
	}

	l.sm.gate.Store(nil)
	close(gate)
	if err := <-proposed; err != nil {
		t.Fatal(err)
	}
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-rest; err != nil {
			t.Fatal(err)
		}
	}
	if got := l.e.barriers.Load() - before; got != 2 {
		t.Errorf("%d barriers for %d concurrent reads, want 2", got, n+1)
	}
}

// TestRestartRecoversState: a follower restarted from its data directory,
// and then the whole cluster restarted, rebuild the same state from
// snapshot and log.
func TestRestartRecoversState(t *testing.T) {
	c := newCluster(t, 3, fastRaft())
	c.bootstrap()
	c.propose(5)
	l := c.leader()
	c.converged(l)

	f := c.nodes[0]
	if f == l {
		f = c.nodes[1]
	}
	idx := indexOf(c, f)
	c.stop(idx)
	c.propose(3)
	c.start(idx)
	l = c.leader()
	c.converged(l)

	_, want := l.sm.Hash()
	c.stopAll()
	for i := range c.nodes {
		c.start(i)
	}
	for _, n := range c.nodes {
		if ok, err := n.e.HasState(); err != nil || !ok {
			t.Fatalf("%s HasState after restart = %v, %v", n.id, ok, err)
		}
	}
	l = c.leader()
	// The new leader commits an entry of its term, which applies the
	// earlier log everywhere.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.e.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if _, got := l.sm.Hash(); got != want {
		t.Fatalf("state hash after full restart differs from before")
	}
	c.propose(1)
	c.converged(c.leader())
}

func indexOf(c *cluster, n *testNode) int {
	for i, o := range c.nodes {
		if o == n {
			return i
		}
	}
	return -1
}

// TestSnapshotInstallCatchUp: a node that was down while the others
// snapshotted and truncated the log it needed catches up by snapshot
// installation to the same state hash.
func TestSnapshotInstallCatchUp(t *testing.T) {
	rc := fastRaft()
	rc.SnapshotThreshold = 5
	rc.TrailingLogs = 2
	rc.SnapshotInterval = 30 * time.Millisecond
	c := newCluster(t, 3, rc)
	c.bootstrap()
	c.propose(3)
	l := c.leader()
	c.converged(l)

	f := c.nodes[0]
	if f == l {
		f = c.nodes[1]
	}
	idx := indexOf(c, f)
	lastSeen := f.e.Status().LastIndex
	c.stop(idx)

	c.propose(30)
	// Every running node, not just the current leader, must have truncated
	// past what the stopped node has: leadership can move (a loaded machine
	// misses heartbeats), and a leader that still holds the entries would
	// rightly send them instead of a snapshot.
	waitFor(t, "every running node to truncate its log past the stopped node", func() bool {
		for i, n := range c.nodes {
			if i == idx {
				continue
			}
			first, err := n.e.logs.FirstIndex()
			if err != nil || first <= lastSeen+1 {
				return false
			}
		}
		return true
	})

	c.start(idx)
	c.converged(c.leader())
	// hashicorp/raft restores the state machine before it records the
	// installed snapshot's index, so the state can converge a moment
	// before the index shows.
	waitFor(t, "the restarted node to record a snapshot installed from the leader (above the index it had)", func() bool {
		return f.e.Status().LastSnapshotIndex > lastSeen
	})
	c.propose(1)
	c.converged(c.leader())
}

// TestCorruptLogStore: a raft.db that is not a bolt database makes New fail
// with a message naming the file, and the file is left untouched.
func TestCorruptLogStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"short text", []byte("this is not a database\n")},
		{"page of garbage", bytes.Repeat([]byte{0xab, 0x17, 0x00, 0x42}, 4096)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "raft", "raft.db")
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, trans := raft.NewInmemTransport("node-1:7001")
			defer trans.Close()
			sm, _ := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{make(ed25519.PublicKey, 32)}})
			_, err := New(Config{NodeID: "node-1", DataDir: dir, Advertise: "node-1:7001", Transport: trans, FSM: sm, Raft: fastRaft(), Logger: testLogger(t)})
			if !errors.Is(err, ErrCorruptLogStore) {
				t.Fatalf("New error = %v, want ErrCorruptLogStore", err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "not a valid database") {
				t.Errorf("error %q does not name %s and say it is not a valid database", msg, path)
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Errorf("raft.db was changed or removed (err %v)", err)
			}
		})
	}
}

// TestStop: Stop is idempotent and every method afterwards reports
// ErrStopped.
func TestStop(t *testing.T) {
	c := newCluster(t, 1, fastRaft())
	c.bootstrap()
	c.propose(1)
	n := c.leader()
	e := n.e
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	ctx := context.Background()
	if _, err := e.Propose(ctx, c.envelope()); !errors.Is(err, consensus.ErrStopped) {
		t.Errorf("Propose after Stop = %v, want ErrStopped", err)
	}
	if err := e.ReadBarrier(ctx); !errors.Is(err, consensus.ErrStopped) {
		t.Errorf("ReadBarrier after Stop = %v, want ErrStopped", err)
	}
	if _, err := e.Members(ctx); !errors.Is(err, consensus.ErrStopped) {
		t.Errorf("Members after Stop = %v, want ErrStopped", err)
	}
	if err := e.AddMember(ctx, consensus.Member{ID: "x", Address: "x:1", Voter: true}); !errors.Is(err, consensus.ErrStopped) {
		t.Errorf("AddMember after Stop = %v, want ErrStopped", err)
	}
	if st := e.Status(); st.Role != "shutdown" {
		t.Errorf("status role after Stop = %q, want shutdown", st.Role)
	}
	n.e = nil
}

// TestMembershipAndLeadershipTransfer: a new node added as a voter catches
// up, leadership moves to a named member, LeaderChanges reports it, and a
// removed member leaves the configuration.
func TestMembershipAndLeadershipTransfer(t *testing.T) {
	c := newCluster(t, 4, fastRaft())
	// Bootstrap only the first three; node-4 joins later.
	first3 := c.members()[:3]
	for _, n := range c.nodes[:3] {
		if err := n.e.Bootstrap(first3); err != nil {
			t.Fatal(err)
		}
	}
	c.propose(3)
	l := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	n4 := c.nodes[3]
	if err := l.e.AddMember(ctx, consensus.Member{ID: n4.id, Address: string(n4.addr), Voter: true}); err != nil {
		t.Fatal(err)
	}
	c.converged(l)

	var target *testNode
	for _, n := range c.nodes {
		if n != l {
			target = n
			break
		}
	}
	drain(target.e.LeaderChanges())
	if err := l.e.TransferLeadership(ctx, target.id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the target to lead", func() bool { return target.e.Status().Role == "leader" })
	select {
	case id := <-target.e.LeaderChanges():
		if id != target.id {
			// An intermediate "" (no leader) may precede the new leader.
			if got := <-target.e.LeaderChanges(); got != target.id {
				t.Errorf("LeaderChanges = %q then %q, want %q", id, got, target.id)
			}
		}
	case <-time.After(5 * time.Second):
		t.Error("LeaderChanges reported nothing after the transfer")
	}
	var nl *consensus.NotLeaderError
	if err := l.e.TransferLeadership(ctx, ""); !errors.As(err, &nl) {
		t.Errorf("TransferLeadership on a former leader = %v, want NotLeaderError", err)
	}

	if err := target.e.RemoveMember(ctx, n4.id); err != nil {
		t.Fatal(err)
	}
	members, err := target.e.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ID == n4.id {
			t.Errorf("removed member still listed: %+v", members)
		}
	}
	if len(members) != 3 {
		t.Errorf("members after removal = %+v, want 3", members)
	}
	if err := target.e.TransferLeadership(ctx, "nobody"); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Errorf("transfer to an unknown member = %v", err)
	}
}

func drain(ch <-chan string) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestSaveAndRestoreSnapshot: a saved snapshot restored later (as a log
// entry signed by an admin) brings every node back to the saved state at
// the same, higher index; later proposals keep working; an invalid snapshot
// or signature is refused without changing anything.
func TestSaveAndRestoreSnapshot(t *testing.T) {
	c := newCluster(t, 3, fastRaft())
	c.bootstrap()
	c.propose(4)
	l := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var buf bytes.Buffer
	index, err := l.e.SaveSnapshot(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	savedIndex, saved := l.sm.Hash()
	savedConfigs, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{c.admin.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := savedConfigs.Restore(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if index != savedIndex {
		t.Errorf("SaveSnapshot index = %d, state machine applied %d", index, savedIndex)
	}

	c.propose(4)
	l = c.leader()
	c.converged(l)
	if _, h := l.sm.Hash(); h == saved {
		t.Fatal("state did not change after the save")
	}
	_, changed := l.sm.Hash()
	before := l.sm.AppliedIndex()
	const uri = "/v1/admin/snapshot"

	garbage, err := smr.SignRestore(c.admin, uri, time.Now().Unix(), []byte("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.e.ProposeRestore(ctx, garbage)
	if err != nil || res.Code != smr.CodeMalformed {
		t.Fatalf("restoring garbage = %+v, %v; want a malformed result", res, err)
	}
	if _, h := l.sm.Hash(); h != changed {
		t.Fatal("a refused restore changed the state")
	}

	good, err := smr.SignRestore(c.admin, uri, time.Now().Unix(), buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	forged := *good
	forged.Snapshot = append([]byte(nil), buf.Bytes()...)
	forged.Sig = append([]byte(nil), good.Sig...)
	forged.Sig[0] ^= 1
	if res, err := l.e.ProposeRestore(ctx, &forged); err != nil || res.Code != smr.CodeBadSignature {
		t.Fatalf("restoring with a forged signature = %+v, %v; want bad_signature", res, err)
	}

	var nl *consensus.NotLeaderError
	for _, n := range c.nodes {
		if n != l {
			if _, err := n.e.ProposeRestore(ctx, good); !errors.As(err, &nl) {
				t.Errorf("ProposeRestore on follower %s = %v, want NotLeaderError", n.id, err)
			}
			break
		}
	}

	res, err = l.e.ProposeRestore(ctx, good)
	if err != nil || res.Code != smr.CodeOK {
		t.Fatalf("restore = %+v, %v", res, err)
	}
	if res.Index <= before {
		t.Fatalf("restore applied at index %d, not above the previous applied index %d", res.Index, before)
	}
	// The restored content is the saved one; the replicated clock does not
	// go back, so the hash is the saved state's at the later clock, which
	// the result reports.
	var out smr.RestoreOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil || out.RestoredFromIndex != savedIndex {
		t.Fatalf("restore outcome %s (%v), want restored_from_index %d", res.Value, err, savedIndex)
	}
	waitFor(t, "every node to hold the restored state at the restore's index", func() bool {
		for _, n := range c.nodes {
			if idx, h := n.sm.Hash(); hex.EncodeToString(h[:]) != out.StateHash || idx < res.Index {
				return false
			}
		}
		return true
	})
	for _, n := range c.nodes {
		v, err := n.sm.Query(smr.Query{Kind: smr.QueryConfigs})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := savedConfigs.Query(smr.Query{Kind: smr.QueryConfigs})
		if string(v) != string(want) {
			t.Fatalf("%s config after restore = %s, want the saved %s", n.id, v, want)
		}
	}
	c.propose(2)
	c.converged(c.leader())
}

func TestConfigValidate(t *testing.T) {
	_, trans := raft.NewInmemTransport("node-1:7001")
	defer trans.Close()
	sm, _ := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{make(ed25519.PublicKey, 32)}})
	base := Config{NodeID: "node-1", DataDir: t.TempDir(), Advertise: "node-1:7001", Transport: trans, FSM: sm, Raft: fastRaft()}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"node id", func(c *Config) { c.NodeID = "" }, "node ID is empty"},
		{"data dir", func(c *Config) { c.DataDir = "" }, "data directory is empty"},
		{"advertise", func(c *Config) { c.Advertise = "" }, "advertise address is empty"},
		{"advertise port", func(c *Config) { c.Advertise = "node-1" }, "not host:port"},
		{"unspecified", func(c *Config) { c.Advertise = "0.0.0.0:7001" }, "unspecified"},
		{"no transport", func(c *Config) { c.Transport = nil }, "neither a stream layer nor a transport"},
		{"fsm", func(c *Config) { c.FSM = nil }, "state machine is nil"},
		{"lease", func(c *Config) { c.Raft.LeaderLeaseTimeout = time.Second }, "LeaderLeaseTimeout (1s) cannot be larger than heartbeat timeout (200ms)"},
		{"max append", func(c *Config) { c.Raft.MaxAppendEntries = 5000 }, "MaxAppendEntries is too large"},
		{"retain", func(c *Config) { c.Raft.SnapshotRetain = -1 }, "snapshot_retain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// TestConcurrentProposalsAreBatched: proposals queued while the leader's
// proposer is busy go into one batch entry; each executes once with its own
// Result (at the batch's index), every replica checks the batch's
// attestation and reaches the same state.
func TestConcurrentProposalsAreBatched(t *testing.T) {
	const n = 20
	var calls atomic.Int32
	release := make(chan struct{})
	clock := func() time.Time {
		// The proposer stamps each entry: hold the first stamp of the
		// run until the other proposals are queued behind it.
		if calls.Add(1) == 1 {
			<-release
		}
		return time.Now()
	}
	c := newClusterWith(t, 3, fastRaft(), true, clock)
	c.bootstrap()
	l := c.leader()
	calls.Store(0)

	envs := make([]*smr.Envelope, n)
	for i := range envs {
		envs[i] = c.envelope()
	}
	results := make([]smr.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			results[i], errs[i] = l.e.Propose(ctx, envs[i])
		}()
		if i == 0 {
			waitFor(t, "the first proposal to be taken", func() bool { return calls.Load() == 1 })
		}
	}
	waitFor(t, "the other proposals to queue", func() bool { return len(l.e.propCh) == n-1 })
	close(release)
	wg.Wait()

	indexes := map[uint64]int{}
	for i, r := range results {
		if errs[i] != nil || r.Code != smr.CodeOK || r.Seq != envs[i].Seq {
			t.Fatalf("proposal %d: %+v, %v", i, r, errs[i])
		}
		indexes[r.Index]++
	}
	if len(indexes) != 2 || indexes[results[0].Index] != 1 {
		t.Fatalf("results per index %v: want the first alone and the other %d in one batch", indexes, n-1)
	}
	c.converged(l)
	for _, node := range c.nodes {
		c.checkMu.Lock()
		checks := c.checks[node.id]
		c.checkMu.Unlock()
		for _, ck := range checks {
			if ck.Err != nil || ck.Evidence != nil {
				t.Fatalf("%s: attestation check of entry %d: %v, evidence %v", node.id, ck.Index, ck.Err, ck.Evidence)
			}
		}
	}
	// Each envelope executed once: retrying one is a duplicate.
	res, err := l.e.Propose(context.Background(), envs[n-1])
	if err != nil || !res.Duplicate {
		t.Fatalf("retry: %+v, %v", res, err)
	}
}
