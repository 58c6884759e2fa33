package client

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// Behaviours of a member of an smrCommittee.
const (
	memberHonest = iota
	memberLiar   // signs, validly, forged sync verdicts and dataset states
	memberDown   // answers 503
)

// smrCommittee is a bft committee in front of real state machines: every
// member has its own, the first member that receives an envelope orders
// it into the one shared log, every machine applies the log in order, and
// each member answers from its own machine with a reply signed by its
// node key, as a member of a bft cluster does.
type smrCommittee struct {
	t       *testing.T
	admin   ed25519.PrivateKey
	members []CommitteeMember
	keys    []ed25519.PrivateKey
	mode    []atomic.Int32

	mu  sync.Mutex
	sms []*smr.StateMachine
	idx uint64
}

func newSMRCommittee(t *testing.T, n int) *smrCommittee {
	t.Helper()
	seed := sha256.Sum256([]byte("replica-bft-test-admin"))
	c := &smrCommittee{t: t, admin: ed25519.NewKeyFromSeed(seed[:]), mode: make([]atomic.Int32, n)}
	for i := range n {
		sm, err := smr.New(smr.Genesis{AdminKeys: []ed25519.PublicKey{c.admin.Public().(ed25519.PublicKey)}})
		if err != nil {
			t.Fatal(err)
		}
		c.sms = append(c.sms, sm)
		nodeSeed := sha256.Sum256(fmt.Appendf(nil, "replica-bft-test-node-%d", i))
		key := ed25519.NewKeyFromSeed(nodeSeed[:])
		c.keys = append(c.keys, key)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(i, w, r) }))
		t.Cleanup(srv.Close)
		c.members = append(c.members, CommitteeMember{ID: fmt.Sprintf("n%d", i+1), Endpoint: srv.URL, PublicKey: key.Public().(ed25519.PublicKey)})
	}
	return c
}

// client returns a committee client signing with key.
func (c *smrCommittee) client(key ed25519.PrivateKey) *Client {
	c.t.Helper()
	cl, err := New(Config{
		Committee:      c.members,
		Key:            key,
		StartSeq:       1,
		RequestTimeout: 2 * time.Second,
		Retry:          RetryConfig{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func (c *smrCommittee) serve(i int, w http.ResponseWriter, r *http.Request) {
	mode := c.mode[i].Load()
	if mode == memberDown {
		writeErr(w, http.StatusServiceUnavailable, string(wire.CodeNoLeader), "stopped", "")
		return
	}
	switch r.URL.Path {
	case "/v1/submit":
		var env smr.Envelope
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			writeErr(w, http.StatusBadRequest, string(smr.CodeMalformed), err.Error(), "")
			return
		}
		res, err := c.submit(i, &env)
		if err != nil {
			e := err.(*smr.Error)
			writeJSON(w, http.StatusBadRequest, wire.ErrorBody{Code: e.Code, Message: e.Message})
			return
		}
		if cmd, _ := smr.DecodeCommand(env.Command); mode == memberLiar && cmd.Op == smr.OpSyncDataset {
			// Every change accepted, at a version of its own.
			var out smr.SyncOutcome
			if err := json.Unmarshal(res.Value, &out); err != nil {
				c.t.Errorf("sync outcome %s: %v", res.Value, err)
			}
			for _, rj := range out.Rejected {
				out.Accepted = append(out.Accepted, rj.Index)
			}
			out.Rejected, out.Version = nil, out.Version+100
			res.Value, _ = json.Marshal(out)
		}
		reply := wire.NewSubmitReply(c.members[i].ID, env.Client, res)
		reply.Sign(c.keys[i])
		if res.Code != smr.CodeOK {
			writeJSON(w, wire.StatusFor(res.Code), wire.ErrorBody{Code: res.Code, Message: res.Message, Result: &res, Reply: &reply})
			return
		}
		writeJSON(w, http.StatusOK, wire.SubmitResponse{Result: res, Reply: &reply})
	case "/v1/query":
		p := r.URL.Query()
		q := smr.Query{Kind: smr.QueryKind(p.Get("kind")), Key: p.Get("key")}
		c.mu.Lock()
		v, idx, err := c.sms[i].QueryAt(q)
		c.mu.Unlock()
		if err != nil {
			e := err.(*smr.Error)
			writeJSON(w, wire.StatusFor(e.Code), wire.ErrorBody{Code: e.Code, Message: e.Message})
			return
		}
		if mode == memberLiar && q.Kind == smr.QueryDataset {
			// A cell pushed to the top, which the agent would adopt.
			var info smr.DatasetInfo
			if err := json.Unmarshal(v, &info); err != nil {
				c.t.Errorf("dataset %s: %v", v, err)
			}
			info.Values = append(info.Values[:0:0], smr.CellInfo{Cell: info.Cells - 1, GlobalSeq: 1 << 62, Value: make([]byte, info.CellSize)})
			v, _ = json.Marshal(info)
		}
		readMode := wire.ReadOrdered
		if p.Get("fast") == "true" {
			readMode = wire.ReadFast
		}
		reply := &wire.QueryReply{NodeID: c.members[i].ID, Kind: q.Kind, Key: q.Key, Nonce: p.Get("nonce"), Mode: readMode, Index: idx, Value: v}
		reply.Sign(c.keys[i])
		writeJSON(w, http.StatusOK, wire.QueryResponse{Index: idx, Value: v, Reply: reply})
	default:
		writeErr(w, http.StatusNotFound, string(smr.CodeNotFound), "no such path", "")
	}
}

// submit orders env into the log unless member i's machine has executed
// it, applies it on every machine, and returns member i's result.
func (c *smrCommittee) submit(i int, env *smr.Envelope) (smr.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dup, err := c.sms[i].Precheck(env)
	if err != nil {
		return smr.Result{}, err
	}
	if dup != nil {
		return *dup, nil
	}
	c.idx++
	ent := smr.NewCommandEntry(int64(c.idx), *env)
	b, err := ent.MarshalBinary()
	if err != nil {
		c.t.Fatal(err)
	}
	var res smr.Result
	for j, sm := range c.sms {
		if r := sm.Apply(c.idx, b); j == i {
			res = r
		}
	}
	return res, nil
}

// TestReplicaSyncThroughCommitteeWithALiar: a replica that syncs through a
// bft committee takes its verdicts and its pulled state from f+1 matching
// signed replies. One member (the one asked to propose) signs forged
// verdicts (a not-invited relay accepted) and a forged dataset (a cell at
// a huge global seq): the replica shows the honest members' verdicts and
// cells. With that member down instead, syncs go on through the other
// three.
func TestReplicaSyncThroughCommitteeWithALiar(t *testing.T) {
	ctx := context.Background()
	com := newSMRCommittee(t, 4)
	com.mode[0].Store(memberLiar)
	alice, stranger := agentKey("alice"), agentKey("stranger")
	admin := com.client(com.admin)
	if _, err := admin.CreateDataset(ctx, DatasetSpec{Name: "doc", Cells: 4, CellSize: 8, Agents: []string{keyID(alice)}}); err != nil {
		t.Fatalf("CreateDataset: %v", err)
	}
	cl := com.client(alice)
	r, err := FetchReplica(ctx, cl, "doc", alice)
	if err != nil {
		t.Fatalf("FetchReplica: %v", err)
	}
	honest := func() []smr.Cell {
		com.mu.Lock()
		defer com.mu.Unlock()
		v, _, err := com.sms[1].QueryAt(smr.Query{Kind: smr.QueryDataset, Key: "doc"})
		if err != nil {
			t.Fatal(err)
		}
		var info smr.DatasetInfo
		if err := json.Unmarshal(v, &info); err != nil {
			t.Fatal(err)
		}
		out := freshCells(info.Cells, info.CellSize)
		for _, c := range info.Values {
			out[c.Cell] = smr.Cell{GlobalSeq: c.GlobalSeq, Value: c.Value}
		}
		return out
	}
	if remote, _ := r.Remote(); !sameCells(remote, honest()) {
		t.Fatalf("fetched cells %v, want the honest members' %v", remote, honest())
	}

	// Alice's change and a relayed change of an agent that was never
	// invited: the honest verdicts are accepted and not_invited.
	mustSet(t, r, 0, "a", 0)
	stray, err := smr.SignChange(stranger, r.Dataset().Ref(), smr.DatasetChange{LocalSeq: 1, Cell: 1, GlobalSeq: 1, Value: []byte("strayyyy")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Import(smr.DatasetSnapshot{Changes: []smr.DatasetChange{stray}}); err != nil {
		t.Fatalf("Import: %v", err)
	}
	rep := mustSync(t, r, cl)
	if rep.Accepted() != 1 || rep.Rejected() != 1 {
		t.Fatalf("verdicts %+v, want one accepted and one rejected", rep.Changes)
	}
	for _, v := range rep.Changes {
		if v.Own != (v.Verdict == VerdictAccepted) || (!v.Own && v.Reason != smr.RejectNotInvited) {
			t.Fatalf("verdict %+v", v)
		}
	}
	if remote, _ := r.Remote(); !sameCells(remote, honest()) || !sameCells(r.Cells(), honest()) {
		t.Fatalf("pulled cells %v, want the honest members' %v", remote, honest())
	}
	// Whether the liar's replies arrived before f+1 matching ones (and
	// were counted as a conflict) depends on timing; that they never
	// decide does not.
	if st := cl.BFTStats(); st.BadSignatures+st.WrongSigner+st.Mismatched != 0 {
		t.Fatalf("validly signed replies were ignored: %+v", st)
	}

	// The liar stops answering; the three others still sync.
	com.mode[0].Store(memberDown)
	mustSet(t, r, 2, "b", 0)
	if rep := mustSync(t, r, cl); rep.Accepted() != 1 || len(r.Pending()) != 0 {
		t.Fatalf("sync with a member down: %+v", rep)
	}
	if !sameCells(r.Cells(), honest()) {
		t.Fatalf("cells %v, want %v", r.Cells(), honest())
	}
}
