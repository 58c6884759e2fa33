package raftengine

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// chanTransport is a transport whose consumer channel the test feeds.
type chanTransport struct {
	raft.Transport
	ch     chan raft.RPC
	closed chan struct{}
	once   sync.Once
}

func newChanTransport() *chanTransport {
	_, inmem := raft.NewInmemTransport("")
	return &chanTransport{Transport: inmem, ch: make(chan raft.RPC), closed: make(chan struct{})}
}

func (t *chanTransport) Consumer() <-chan raft.RPC { return t.ch }
func (t *chanTransport) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

// TestInspectorForwardsRPCsUnchanged: Raft gets every RPC the transport
// delivered, the same value in the same order, and its answers reach the
// sender's response channel; closing stops the goroutine and closes the
// wrapped transport.
func TestInspectorForwardsRPCsUnchanged(t *testing.T) {
	ct := newChanTransport()
	var seen []PeerObservation
	in := newInspector(ct, "self", raft.NewInmemStore(), func(o PeerObservation) { seen = append(seen, o) }, time.Now)
	in.attach(&fakeView{term: 5, state: raft.Follower})
	tr := in.transport()

	const n = 50
	type sent struct {
		cmd  any
		resp chan raft.RPCResponse
	}
	var sends []sent
	for i := range n {
		var cmd any
		switch i % 3 {
		case 0:
			cmd = &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("l")}, Term: 5, Entries: []*raft.Log{{Index: uint64(i + 1), Term: 5}}}
		case 1:
			cmd = &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("c")}, Term: 5}
		default:
			cmd = &raft.RequestPreVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("c")}, Term: 9}
		}
		sends = append(sends, sent{cmd: cmd, resp: make(chan raft.RPCResponse, 1)})
	}
	go func() {
		for _, s := range sends {
			ct.ch <- raft.RPC{Command: s.cmd, RespChan: s.resp}
		}
	}()
	for i, s := range sends {
		rpc := <-tr.Consumer()
		if rpc.Command != s.cmd {
			t.Fatalf("RPC %d: Raft got %T %p, want %T %p (same value, same order)", i, rpc.Command, rpc.Command, s.cmd, s.cmd)
		}
		rpc.Respond(i, nil)
		if got := <-s.resp; got.Response != i {
			t.Fatalf("RPC %d: the sender got %v", i, got.Response)
		}
	}
	if len(seen) != 0 {
		t.Fatalf("observations from correct RPCs: %+v", seen)
	}
	if err := tr.(raft.WithClose).Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ct.closed:
	default:
		t.Fatal("closing the inspecting transport left the wrapped one open")
	}
	<-in.done
	if err := tr.(raft.WithClose).Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestInspectorCloseAnswersPendingRPC: an RPC taken from the transport
// while Raft no longer reads is answered with ErrTransportShutdown and a
// response of its type when the inspector closes, and its goroutine ends.
func TestInspectorCloseAnswersPendingRPC(t *testing.T) {
	ct := newChanTransport()
	in := newInspector(ct, "self", raft.NewInmemStore(), nil, time.Now)
	resp := make(chan raft.RPCResponse, 1)
	ct.ch <- raft.RPC{Command: &raft.RequestVoteRequest{Term: 1}, RespChan: resp}
	if err := in.close(); err != nil {
		t.Fatal(err)
	}
	<-in.done
	r := <-resp
	if !errors.Is(r.Error, raft.ErrTransportShutdown) {
		t.Fatalf("pending RPC answered with %+v, want ErrTransportShutdown", r)
	}
	// A transport may read the response's type first (the in-memory
	// pipeline does, and panics on nil).
	if _, ok := r.Response.(*raft.RequestVoteResponse); !ok {
		t.Fatalf("pending RPC answered with a %T response, want *raft.RequestVoteResponse", r.Response)
	}
}

// TestInspectorKeepsPreVote: Raft runs pre-vote elections only when its
// transport offers the RPC; the inspecting transport offers it exactly
// when the wrapped one does, and always offers Close.
func TestInspectorKeepsPreVote(t *testing.T) {
	_, inmem := raft.NewInmemTransport("")
	in := newInspector(inmem, "self", raft.NewInmemStore(), nil, time.Now)
	got := in.transport()
	if _, ok := got.(raft.WithPreVote); !ok {
		t.Fatalf("inspecting %T gives %T, which hides the pre-vote RPC", inmem, got)
	}
	if _, ok := got.(raft.WithClose); !ok {
		t.Fatalf("%T hides Close", got)
	}
	if err := in.close(); err != nil {
		t.Fatal(err)
	}

	ct := newChanTransport()
	var noPreVote struct{ raft.Transport }
	noPreVote.Transport = ct
	in = newInspector(noPreVote, "self", raft.NewInmemStore(), nil, time.Now)
	defer in.close()
	if _, ok := in.transport().(raft.WithPreVote); ok {
		t.Fatal("the inspecting transport offers pre-votes its transport cannot send")
	}
}

// fakeView is a raftView with fixed answers.
type fakeView struct {
	term, commit, last uint64
	state              raft.RaftState
	leader             raft.ServerID
	contact            time.Time
	election           time.Duration
}

func (v *fakeView) CurrentTerm() uint64    { return v.term }
func (v *fakeView) CommitIndex() uint64    { return v.commit }
func (v *fakeView) LastIndex() uint64      { return v.last }
func (v *fakeView) State() raft.RaftState  { return v.state }
func (v *fakeView) LastContact() time.Time { return v.contact }
func (v *fakeView) ReloadableConfig() raft.ReloadableConfig {
	return raft.ReloadableConfig{ElectionTimeout: v.election}
}
func (v *fakeView) LeaderWithID() (raft.ServerAddress, raft.ServerID) {
	return raft.ServerAddress(v.leader + ":1"), v.leader
}

// logOf holds entries 1..n, entry i of term terms(i).
func logOf(t *testing.T, n uint64, terms func(uint64) uint64) raft.LogStore {
	t.Helper()
	s := raft.NewInmemStore()
	for i := uint64(1); i <= n; i++ {
		if err := s.StoreLog(&raft.Log{Index: i, Term: terms(i), Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func entries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term})
	}
	return out
}

// TestLogConflicts: an entry at or below the commit index whose term
// differs from the local one is a conflict (Raft §5.4, Leader
// Completeness: a leader holds every committed entry); one above the
// commit index is normal truncation; an RPC of an old term is refused by
// Raft and says nothing.
func TestLogConflicts(t *testing.T) {
	logs := logOf(t, 20, func(i uint64) uint64 {
		if i <= 10 {
			return 2
		}
		return 3
	}) // 1..10 term 2, 11..20 term 3
	hdr := raft.RPCHeader{ID: []byte("leader")}
	view := &fakeView{term: 4, commit: 15, last: 20}
	cases := []struct {
		name  string
		req   *raft.AppendEntriesRequest
		view  *fakeView
		want  []uint64 // conflicting indexes
		store raft.LogStore
	}{
		{"same terms resent", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4, Entries: append(entries(9, 10, 2), entries(11, 15, 3)...)}, view, nil, logs},
		{"committed entries rewritten", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4, Entries: entries(13, 18, 4)}, view, []uint64{13, 14, 15}, logs},
		{"only above the commit index (truncation)", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4, Entries: entries(16, 20, 4)}, view, nil, logs},
		{"old term", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, Entries: entries(13, 15, 1)}, view, nil, logs},
		{"higher term", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 7, Entries: entries(10, 11, 7)}, view, []uint64{10, 11}, logs},
		{"from self", &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("self")}, Term: 4, Entries: entries(13, 15, 4)}, view, nil, logs},
		{"no sender", &raft.AppendEntriesRequest{Term: 4, Entries: entries(13, 15, 4)}, view, nil, logs},
		{"heartbeat", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4, LeaderCommitIndex: 15}, view, nil, logs},
		{"not held (compacted)", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4, Entries: entries(3, 5, 4)}, view,
			nil, logOf(t, 0, nil)},
		{"beyond the local log", &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4, Entries: entries(13, 15, 4)}, &fakeView{term: 4, commit: 15, last: 12},
			nil, logs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := logConflicts(c.req, c.view, c.store, "self")
			var idx []uint64
			for _, o := range got {
				if o.Kind != ObservedLogConflict || o.From != "leader" || o.LocalTerm == o.EntryTerm || o.CommitIndex != c.view.commit {
					t.Fatalf("malformed observation %+v", o)
				}
				idx = append(idx, o.Index)
			}
			if fmt.Sprint(idx) != fmt.Sprint(c.want) {
				t.Fatalf("conflicts at %v, want %v", idx, c.want)
			}
		})
	}
}

// TestLogConflictsBounded: one AppendEntries costs at most
// maxConflictChecks log lookups, however many committed entries it
// rewrites.
func TestLogConflictsBounded(t *testing.T) {
	logs := logOf(t, 500, func(uint64) uint64 { return 1 })
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("leader")}, Term: 2, Entries: entries(1, 500, 2)}
	got := logConflicts(req, &fakeView{term: 2, commit: 500, last: 500}, logs, "self")
	if len(got) != maxConflictChecks {
		t.Fatalf("%d conflicts reported, want the bound %d", len(got), maxConflictChecks)
	}
}

// TestElectionDisruption: a real vote of a higher term while this node
// leads, or heard from its leader within the election timeout, is a
// disruption; a pre-vote is another RPC, and a leadership transfer, a
// vote with no leader known, a stale contact, the leader's own vote or an
// old term are not.
func TestElectionDisruption(t *testing.T) {
	now := time.Unix(1000, 0)
	follower := func(contactAgo time.Duration) *fakeView {
		return &fakeView{term: 5, state: raft.Follower, leader: "l", contact: now.Add(-contactAgo), election: time.Second}
	}
	vote := func(term uint64) *raft.RequestVoteRequest {
		return &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("c")}, Term: term}
	}
	cases := []struct {
		name string
		req  *raft.RequestVoteRequest
		view *fakeView
		want bool
	}{
		{"follower with a live leader", vote(6), follower(100 * time.Millisecond), true},
		{"leader", vote(9), &fakeView{term: 5, state: raft.Leader}, true},
		{"contact older than the election timeout", vote(6), follower(2 * time.Second), false},
		{"no contact yet", vote(6), &fakeView{term: 5, state: raft.Follower, leader: "l", election: time.Second}, false},
		{"no leader known", vote(6), &fakeView{term: 5, state: raft.Follower, contact: now, election: time.Second}, false},
		{"candidate", vote(6), &fakeView{term: 5, state: raft.Candidate}, false},
		{"same term", vote(5), follower(0), false},
		{"leadership transfer", &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("c")}, Term: 6, LeadershipTransfer: true}, follower(0), false},
		{"the leader itself", &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("l")}, Term: 6}, follower(0), false},
		{"from self", &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("self")}, Term: 6}, follower(0), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, ok := electionDisruption(c.req, c.view, "self", now)
			if ok != c.want {
				t.Fatalf("disruption = %v (%+v), want %v", ok, o, c.want)
			}
			if ok && (o.Kind != ObservedElectionDisruption || o.From != "c" || o.Term != c.req.Term || o.CurrentTerm != 5 || o.Leader == "") {
				t.Fatalf("malformed observation %+v", o)
			}
		})
	}
}

// TestEngineInspectsReceivedRPCs runs a cluster whose nodes inspect their
// RPCs: normal operation (an election, writes) reports nothing; a real
// vote of a higher term from a member while the leader is alive, and an
// AppendEntries that rewrites committed entries, are reported by the node
// that received them.
func TestEngineInspectsReceivedRPCs(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]PeerObservation{}
	c := newClusterFull(t, 3, fastRaft(), false, nil, func(node string, o PeerObservation) {
		mu.Lock()
		defer mu.Unlock()
		seen[node] = append(seen[node], o)
	})
	c.bootstrap()
	leader := c.leader()
	c.propose(5)
	c.converged(leader)
	mu.Lock()
	if len(seen) != 0 {
		t.Fatalf("a correct cluster reported %+v", seen)
	}
	mu.Unlock()
	if _, ok := c.nodes[0].e.misbehaveTransport(c.nodes[0].e.inspector.transport()).(raft.WithPreVote); !ok {
		t.Fatal("Raft's transport hides the pre-vote RPC")
	}

	var f, g *testNode
	for _, n := range c.nodes {
		switch {
		case n == leader:
		case f == nil:
			f = n
		default:
			g = n
		}
	}
	_, rogue := raft.NewInmemTransport("rogue:1")
	rogue.Connect(f.addr, f.trans)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(g.id), Addr: []byte(g.addr)}

	term := f.e.raft.CurrentTerm()
	var vr raft.RequestVoteResponse
	if err := rogue.RequestVote(raft.ServerID(f.id), f.addr, &raft.RequestVoteRequest{RPCHeader: hdr, Term: term + 3, LastLogIndex: 100, LastLogTerm: term}, &vr); err != nil {
		t.Fatal(err)
	}
	if vr.Granted {
		t.Fatal("a follower with a live leader granted the vote")
	}
	waitFor(t, "the disruption reported by "+f.id, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range seen[f.id] {
			if o.Kind == ObservedElectionDisruption && o.From == g.id && o.Term == term+3 && o.Leader == leader.id {
				return true
			}
		}
		return false
	})

	commit := f.e.raft.CommitIndex()
	var prev raft.Log
	if err := f.e.logs.GetLog(commit-2, &prev); err != nil {
		t.Fatal(err)
	}
	term = f.e.raft.CurrentTerm()
	ae := &raft.AppendEntriesRequest{RPCHeader: hdr, Term: term, PrevLogEntry: prev.Index, PrevLogTerm: prev.Term,
		Entries: entries(commit-1, commit, term+10), LeaderCommitIndex: commit}
	var ar raft.AppendEntriesResponse
	if err := rogue.AppendEntries(raft.ServerID(f.id), f.addr, ae, &ar); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var idx []uint64
	for _, o := range seen[f.id] {
		if o.Kind == ObservedLogConflict && o.From == g.id {
			idx = append(idx, o.Index)
		}
	}
	if fmt.Sprint(idx) != fmt.Sprint([]uint64{commit - 1, commit}) {
		t.Fatalf("log conflicts at %v, want [%d %d]", idx, commit-1, commit)
	}
	for node, os := range seen {
		if node != f.id {
			t.Fatalf("%s reported %+v; only %s received the RPCs", node, os, f.id)
		}
	}
}
