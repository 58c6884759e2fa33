package client

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// Behaviours of a fake bft replica.
const (
	honest      = "honest"
	wrongValue  = "wrong-value"  // signs a different outcome / value
	badSig      = "bad-sig"      // corrupts its signature
	impersonate = "impersonate"  // names another member as the signer
	unknownNode = "unknown-node" // signs as a node outside the committee
	silent      = "silent"       // answers 503 no_leader
	laggard     = "laggard"      // fast reads: answers at an older index
	stall       = "stall"        // never answers
	slow        = "slow"         // answers honestly after slowDelay
	slowWrong   = "slow-wrong"   // signs a different outcome after slowDelay
)

// slowDelay is how long a slow replica takes to answer.
const slowDelay = 150 * time.Millisecond

// fakeCommittee is a set of fake replicas sharing one "log".
type fakeCommittee struct {
	t       *testing.T
	members []CommitteeMember
	keys    []ed25519.PrivateKey
	mode    []atomic.Value // string behaviour per replica
	submits []atomic.Int64
	propose []atomic.Int64 // submits that asked this replica to propose
	// answered counts the slow replicas' answers, cancelled the requests
	// whose client went away while a slow replica was working on them.
	answered, cancelled atomic.Int64

	mu       sync.Mutex
	index    uint64 // last index; state value = index
	seqs     map[uint64]uint64
	proposed map[uint64]chan struct{} // closed once a replica ordered the seq
}

// fakeWatchFallback is how long a fake replica asked only to watch a write
// waits for another to order it before ordering it itself, as a real
// replica does after its fallback delay.
const fakeWatchFallback = time.Second

// order gives seq its log index, once: the first replica to order it
// takes the next index.
func (fc *fakeCommittee) order(seq uint64) uint64 {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	idx, ok := fc.seqs[seq]
	if !ok {
		fc.index++
		idx = fc.index
		fc.seqs[seq] = idx
		close(fc.proposedLocked(seq))
	}
	return idx
}

func (fc *fakeCommittee) proposedLocked(seq uint64) chan struct{} {
	ch, ok := fc.proposed[seq]
	if !ok {
		ch = make(chan struct{})
		fc.proposed[seq] = ch
	}
	return ch
}

func newFakeCommittee(t *testing.T, n int) *fakeCommittee {
	t.Helper()
	fc := &fakeCommittee{t: t, mode: make([]atomic.Value, n), submits: make([]atomic.Int64, n), propose: make([]atomic.Int64, n), seqs: map[uint64]uint64{}, proposed: map[uint64]chan struct{}{}, index: 10}
	for i := range n {
		pub, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		fc.keys = append(fc.keys, key)
		fc.mode[i].Store(honest)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fc.serve(i, w, r) }))
		t.Cleanup(srv.Close)
		fc.members = append(fc.members, CommitteeMember{ID: fmt.Sprintf("n%d", i+1), Endpoint: srv.URL, PublicKey: pub})
	}
	return fc
}

func (fc *fakeCommittee) set(i int, mode string) { fc.mode[i].Store(mode) }

func (fc *fakeCommittee) client(t *testing.T) *Client {
	t.Helper()
	return fc.clientHedging(t, 0)
}

// clientHedging is client with Config.HedgeDelay set to hedge.
func (fc *fakeCommittee) clientHedging(t *testing.T, hedge time.Duration) *Client {
	t.Helper()
	c, err := New(Config{
		HedgeDelay:     hedge,
		Committee:      fc.members,
		Key:            testKey(t),
		StartSeq:       1,
		RequestTimeout: 2 * time.Second,
		Retry:          RetryConfig{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sign fills in the signer fields of a reply as replica i behaves.
func (fc *fakeCommittee) signer(i int) (string, ed25519.PrivateKey, bool) {
	id, key, corrupt := fc.members[i].ID, fc.keys[i], false
	switch fc.mode[i].Load().(string) {
	case badSig:
		corrupt = true
	case impersonate:
		id = fc.members[(i+1)%len(fc.members)].ID
	case unknownNode:
		id = "intruder"
	}
	return id, key, corrupt
}

func corruptSig(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func (fc *fakeCommittee) serve(i int, w http.ResponseWriter, r *http.Request) {
	mode := fc.mode[i].Load().(string)
	if mode == stall {
		// Read the body first: only then does the server notice that
		// the client went away, which ends the request's context.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		return
	}
	if mode == silent {
		writeErr(w, http.StatusServiceUnavailable, string(wire.CodeNoLeader), "no leader", "")
		return
	}
	if mode == slow || mode == slowWrong {
		// Read the body first, so that the server notices a client
		// going away.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-time.After(slowDelay):
			fc.answered.Add(1)
		case <-r.Context().Done():
			fc.cancelled.Add(1)
			return
		}
	}
	id, key, corrupt := fc.signer(i)
	switch r.URL.Path {
	case "/v1/submit":
		fc.submits[i].Add(1)
		propose := r.URL.Query().Get(wire.SubmitQueryPropose) == "true"
		if propose {
			fc.propose[i].Add(1)
		}
		var env smr.Envelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			writeErr(w, http.StatusBadRequest, string(smr.CodeMalformed), err.Error(), "")
			return
		}
		if !propose {
			// A watcher answers once the write is ordered, like a real
			// replica that replies after applying it.
			fc.mu.Lock()
			ch := fc.proposedLocked(env.Seq)
			fc.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(fakeWatchFallback):
			case <-r.Context().Done():
				return
			}
		}
		idx := fc.order(env.Seq)
		res := smr.Result{Index: idx, Seq: env.Seq, Value: json.RawMessage(`{"n":1}`)}
		if mode == wrongValue || mode == slowWrong {
			res.Value = json.RawMessage(`{"n":666}`)
		}
		reply := wire.NewSubmitReply(id, env.Client, res)
		reply.Sign(key)
		if corrupt {
			reply.Signature = corruptSig(reply.Signature)
		}
		writeJSON(w, http.StatusOK, wire.SubmitResponse{Result: res, Reply: &reply})
	case "/v1/query":
		q := r.URL.Query()
		fc.mu.Lock()
		idx := fc.index
		fc.mu.Unlock()
		fast := q.Get("fast") == "true"
		if fast && mode == laggard {
			idx--
		}
		val := json.RawMessage(fmt.Sprintf(`{"highest_seq":%d}`, idx))
		if q.Get("kind") == string(smr.QueryClient) {
			val = json.RawMessage(`{"highest_seq":0}`)
		}
		if !fast {
			idx += uint64(i) // ordered reads: each replica's own barrier index
		}
		if mode == wrongValue {
			val = json.RawMessage(`{"highest_seq":666}`)
		}
		mode := wire.ReadOrdered
		if fast {
			mode = wire.ReadFast
		}
		reply := &wire.QueryReply{NodeID: id, Kind: smr.QueryKind(q.Get("kind")), Key: q.Get("key"), Nonce: q.Get("nonce"), Mode: mode, Index: idx, Value: val}
		reply.Sign(key)
		if corrupt {
			reply.Signature = corruptSig(reply.Signature)
		}
		writeJSON(w, http.StatusOK, wire.QueryResponse{Index: idx, Value: val, Reply: reply})
	default:
		writeErr(w, http.StatusNotFound, string(smr.CodeNotFound), "no such path", "")
	}
}

func TestBFTSubmitAcceptsFPlusOneMatching(t *testing.T) {
	fc := newFakeCommittee(t, 4)
	c := fc.client(t)
	res, err := c.SetConfig(ctxT(t), "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1 || res.Index != 11 || string(res.Value) != `{"n":1}` {
		t.Fatalf("result = %+v", res)
	}
	proposers := 0
	for i := range fc.propose {
		proposers += int(fc.propose[i].Load())
	}
	if proposers != 1 {
		t.Fatalf("%d replicas were asked to propose the first attempt, want 1", proposers)
	}
}

func TestBFTSubmitIgnoresLyingReplica(t *testing.T) {
	for _, mode := range []string{wrongValue, badSig, impersonate, unknownNode, silent} {
		t.Run(mode, func(t *testing.T) {
			fc := newFakeCommittee(t, 4)
			fc.set(0, mode)
			c := fc.client(t)
			for seq := 1; seq <= 3; seq++ {
				res, err := c.SetConfig(ctxT(t), "k", "v")
				if err != nil {
					t.Fatalf("write %d: %v", seq, err)
				}
				if string(res.Value) != `{"n":1}` || res.Seq != uint64(seq) {
					t.Fatalf("write %d accepted %+v", seq, res)
				}
			}
		})
	}
}

// TestBFTCountsIgnoredReplies: with two members silent no quorum can form,
// so every answer of the lying member is examined, ignored and counted.
func TestBFTCountsIgnoredReplies(t *testing.T) {
	for mode, count := range map[string]func(BFTStats) uint64{
		badSig:      func(s BFTStats) uint64 { return s.BadSignatures },
		impersonate: func(s BFTStats) uint64 { return s.WrongSigner },
		unknownNode: func(s BFTStats) uint64 { return s.WrongSigner },
	} {
		t.Run(mode, func(t *testing.T) {
			fc := newFakeCommittee(t, 4)
			fc.set(0, mode)
			fc.set(1, silent)
			fc.set(2, silent)
			c := fc.client(t)
			if _, err := c.SetConfig(ctxT(t), "k", "v"); !IsOutcomeUnknown(err) {
				t.Fatalf("err = %v, want outcome unknown", err)
			}
			if st := c.BFTStats(); count(st) == 0 {
				t.Fatalf("%s replies not counted: %+v", mode, st)
			}
		})
	}
}

func TestBFTSubmitNeedsFPlusOne(t *testing.T) {
	// Two liars agreeing with each other and two honest replicas, one of
	// which is down: the lie has f+1 = 2 signatures only if the client
	// wrongly counted one; the honest outcome has one. No outcome may be
	// reported.
	fc := newFakeCommittee(t, 4)
	fc.set(0, wrongValue)
	fc.set(1, silent)
	fc.set(2, silent)
	c := fc.client(t)
	_, err := c.SetConfig(ctxT(t), "k", "v")
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v, want outcome unknown", err)
	}
	// Two replicas that each lie differently: conflict reported.
	fc = newFakeCommittee(t, 4)
	fc.set(0, wrongValue)
	fc.set(1, silent)
	fc.set(2, silent)
	fc.set(3, honest)
	c = fc.client(t)
	_, err = c.SetConfig(ctxT(t), "k", "v")
	var ce *ConflictError
	if !IsOutcomeUnknown(err) || !errors.As(err, &ce) {
		t.Fatalf("err = %v, want outcome unknown with a ConflictError", err)
	}
	if len(ce.Groups) != 2 || c.BFTStats().Conflicts != 1 {
		t.Fatalf("conflict = %+v, stats %+v", ce, c.BFTStats())
	}
}

func TestBFTOrderedReadNeedsFPlusOneMatchingValues(t *testing.T) {
	fc := newFakeCommittee(t, 4)
	fc.set(2, wrongValue)
	c := fc.client(t)
	v, idx, err := c.Query(ctxT(t), smr.Query{Kind: smr.QueryConfig, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != `{"highest_seq":10}` {
		t.Fatalf("value = %s", v)
	}
	if idx != 10 && idx != 11 && idx != 13 { // the smallest index among the matching replies
		t.Fatalf("index = %d, want an honest replica's index", idx)
	}

	fc.set(0, badSig)
	fc.set(1, silent)
	if _, _, err := c.Query(ctxT(t), smr.Query{Kind: smr.QueryConfig, Key: "k"}); !IsUnavailable(err) {
		t.Fatalf("err = %v, want unavailable (only one honest answer)", err)
	}
}

func TestBFTFastReadNeedsQAtOneIndex(t *testing.T) {
	fc := newFakeCommittee(t, 4) // f = 1, q = 3
	c := fc.client(t)
	v, idx, err := c.Query(ctxT(t), smr.Query{Kind: smr.QueryConfig, Key: "k"}, FastRead())
	if err != nil || idx != 10 || string(v) != `{"highest_seq":10}` {
		t.Fatalf("fast read = %s %d %v", v, idx, err)
	}
	if st := c.BFTStats(); st.FastReadFallbacks != 0 {
		t.Fatalf("fell back: %+v", st)
	}

	// One replica behind and one lying: only two answers agree at one
	// index, fewer than q; the read falls back to the ordered read.
	fc.set(1, laggard)
	fc.set(3, badSig)
	v, _, err = c.Query(ctxT(t), smr.Query{Kind: smr.QueryConfig, Key: "k"}, FastRead())
	if err != nil || string(v) != `{"highest_seq":10}` {
		t.Fatalf("fast read with fallback = %s %v", v, err)
	}
	if st := c.BFTStats(); st.FastReadFallbacks != 1 {
		t.Fatalf("stats %+v, want one fallback", st)
	}
}

func TestBFTConfigValidation(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	pub2, _, _ := ed25519.GenerateKey(nil)
	base := func() []CommitteeMember {
		return []CommitteeMember{{ID: "a", Endpoint: "http://127.0.0.1:1", PublicKey: pub}, {ID: "b", Endpoint: "http://127.0.0.1:2", PublicKey: pub2}}
	}
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"dup id":      {func(c *Config) { c.Committee[1].ID = "a" }, "listed twice"},
		"empty id":    {func(c *Config) { c.Committee[0].ID = "" }, "node ID is empty"},
		"short key":   {func(c *Config) { c.Committee[0].PublicKey = pub[:5] }, "public key has 5 bytes"},
		"dup key":     {func(c *Config) { c.Committee[1].PublicKey = pub }, "another member"},
		"bad url":     {func(c *Config) { c.Committee[0].Endpoint = "ftp://x:1" }, "scheme"},
		"foreign ep":  {func(c *Config) { c.Endpoints = []string{"http://127.0.0.1:3"} }, "not the endpoint of a committee member"},
		"https no CA": {func(c *Config) { c.Committee[0].Endpoint = "https://127.0.0.1:1" }, "TLS is nil"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Committee: base()}
			tc.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	cfg := Config{Committee: base()}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.BFT() || len(c.Endpoints()) != 2 {
		t.Fatalf("BFT %v endpoints %v", c.BFT(), c.Endpoints())
	}
}

func TestSubmitReplySignBytes(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	r := wire.NewSubmitReply("n1", pub, smr.Result{Index: 3, Seq: 2, Value: json.RawMessage(`{ "a" : "<b>" }`)})
	r.Sign(key)
	// Through a JSON encoder and decoder the value is compacted and
	// escaped; the signature still verifies.
	b, _ := json.Marshal(r)
	var back wire.SubmitReply
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(pub); err != nil {
		t.Fatal(err)
	}
	dup := back
	dup.Duplicate = true
	if !dup.Match(&back) || dup.MatchKey() != back.MatchKey() {
		t.Fatal("duplicate flag must not take part in matching")
	}
	if dup.Verify(pub) == nil {
		t.Fatal("the duplicate flag is signed; changing it must break the signature")
	}
	other := back
	other.Index = 4
	if other.Match(&back) || other.Verify(pub) == nil {
		t.Fatal("index must match and be signed")
	}
	var qr wire.QueryReply
	if string(qr.SignBytes()[4:4+len(wire.QueryReplyTag)]) != wire.QueryReplyTag {
		t.Fatal("query reply sign bytes do not start with their tag")
	}
}

// TestBFTAsksFPlusOneFirst: with every replica answering in time, a write
// goes to f+1 replicas only (the primary and the next), not to all n.
func TestBFTAsksFPlusOneFirst(t *testing.T) {
	fc := newFakeCommittee(t, 4)
	c := fc.clientHedging(t, time.Hour)
	for seq := 1; seq <= 3; seq++ {
		if _, err := c.SetConfig(ctxT(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]int64, len(fc.submits))
	for i := range fc.submits {
		got[i] = fc.submits[i].Load()
	}
	// The primary is the member the client's key points to, then the next.
	p := int(binary.BigEndian.Uint16(c.PublicKey()) % 4)
	want := make([]int64, 4)
	want[p], want[(p+1)%4] = 3, 3
	if !slices.Equal(got, want) {
		t.Fatalf("submits per replica %v, want %v", got, want)
	}
}

// TestBFTHedgeAsksTheOthers: when one of the first f+1 replicas does not
// answer, the others are asked after the hedge delay and the write
// completes with their replies; a replica answering badly makes the client
// ask the others at once.
func TestBFTHedgeAsksTheOthers(t *testing.T) {
	for _, mode := range []string{stall, silent, wrongValue} {
		t.Run(mode, func(t *testing.T) {
			fc := newFakeCommittee(t, 4)
			c := fc.clientHedging(t, 20*time.Millisecond)
			p := primaryOf(c)
			fc.set((p+1)%4, mode) // the second of the first f+1 asked
			res, err := c.SetConfig(ctxT(t), "k", "v")
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Value) != `{"n":1}` {
				t.Fatalf("accepted %+v", res)
			}
			if fc.submits[(p+2)%4].Load()+fc.submits[(p+3)%4].Load() == 0 {
				t.Fatal("the replicas held back were never asked")
			}
		})
	}
}

// primaryOf is the replica c asks first to propose.
func primaryOf(c *Client) int { return int(c.bft.primary.Load()) % len(c.bft.members) }

func TestRingSplit(t *testing.T) {
	first, rest := ringSplit([]int{0, 1, 2, 3}, 2, 2)
	if fmt.Sprint(first, rest) != "[2 3] [0 1]" {
		t.Fatalf("ringSplit from 2: %v %v", first, rest)
	}
	first, rest = ringSplit([]int{0, 1, 3}, 2, 2)
	if fmt.Sprint(first, rest) != "[3 0] [1]" {
		t.Fatalf("ringSplit from 2 without 2: %v %v", first, rest)
	}
}

// TestBFTLateAnswersAreNotCancelled: once f+1 replicas decided a write,
// the requests still running are left to finish (cancelling an HTTP/1.1
// request closes its connection, and the next request pays a new TLS
// handshake), and a late signed answer that disagrees is still counted as
// a conflict.
func TestBFTLateAnswersAreNotCancelled(t *testing.T) {
	for _, mode := range []string{slow, slowWrong} {
		t.Run(mode, func(t *testing.T) {
			fc := newFakeCommittee(t, 4)
			c := fc.clientHedging(t, time.Millisecond)
			fc.set((primaryOf(c)+1)%4, mode) // a watcher, not the proposer
			res, err := c.SetConfig(ctxT(t), "k", "v")
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Value) != `{"n":1}` {
				t.Fatalf("accepted %+v", res)
			}
			if fc.answered.Load() != 0 {
				t.Fatalf("the call waited for the slow replica (%d answers before it returned)", fc.answered.Load())
			}
			want := uint64(0)
			if mode == slowWrong {
				want = 1
			}
			deadline := time.Now().Add(5 * time.Second)
			for fc.answered.Load()+fc.cancelled.Load() == 0 || c.BFTStats().Conflicts < want {
				if time.Now().After(deadline) {
					t.Fatalf("late answer: answered %d, cancelled %d, conflicts %d", fc.answered.Load(), fc.cancelled.Load(), c.BFTStats().Conflicts)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if got := fc.cancelled.Load(); got != 0 {
				t.Fatalf("%d late requests were cancelled", got)
			}
			if got := c.BFTStats().Conflicts; got != want {
				t.Fatalf("conflicts %d, want %d", got, want)
			}
		})
	}
}

// TestBFTHedgeDelayAdapts: the hedge waits a multiple of the recent
// latency of calls the first replicas decided, between Config.HedgeDelay
// and maxHedgeDelay, separately for writes and reads.
func TestBFTHedgeDelayAdapts(t *testing.T) {
	b := newCommittee(make([]CommitteeMember, 4))
	base := 20 * time.Millisecond
	if got := b.hedgeDelay(base, true); got != base {
		t.Fatalf("without samples: %v, want the base %v", got, base)
	}
	for range 50 {
		b.noteLatency(100*time.Millisecond, true)
	}
	if got, want := b.hedgeDelay(base, true), hedgeFactor*100*time.Millisecond; got < want-time.Millisecond || got > want+time.Millisecond {
		t.Fatalf("after 100 ms writes: %v, want about %v", got, want)
	}
	if got := b.hedgeDelay(base, false); got != base {
		t.Fatalf("reads follow writes: %v", got)
	}
	if got := b.hedgeDelay(time.Second, true); got != time.Second {
		t.Fatalf("below the base: %v", got)
	}
	for range 50 {
		b.noteLatency(10*time.Second, true)
	}
	if got := b.hedgeDelay(base, true); got != maxHedgeDelay {
		t.Fatalf("after 10 s writes: %v, want the cap %v", got, maxHedgeDelay)
	}
	for range 100 {
		b.noteLatency(time.Millisecond, true)
	}
	if got := b.hedgeDelay(base, true); got != base {
		t.Fatalf("after fast writes: %v, want the base %v", got, base)
	}
}
