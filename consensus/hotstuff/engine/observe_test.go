package engine

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// observeFixture is an engine with just what noteRejected needs: a
// committee of epoch 5 and a recorder of signature failures.
type observeFixture struct {
	e        *Engine
	keys     map[types.NodeID]ed25519.PrivateKey
	failures []string
}

func newObserveFixture(t *testing.T) *observeFixture {
	t.Helper()
	f := &observeFixture{keys: map[types.NodeID]ed25519.PrivateKey{}}
	var ms []types.Member
	for i := 1; i <= 4; i++ {
		id := types.NodeID(fmt.Sprintf("n%d", i))
		seed := sha256.Sum256([]byte("observe " + id))
		f.keys[id] = ed25519.NewKeyFromSeed(seed[:])
		ms = append(ms, types.Member{ID: id, PublicKey: f.keys[id].Public().(ed25519.PublicKey)})
	}
	c, err := types.NewCommittee(types.CommitteeConfig{Epoch: 5, Members: ms})
	if err != nil {
		t.Fatal(err)
	}
	f.e = &Engine{committee: c, stats: &counters{}, cfg: Config{ID: "n1", OnSignatureFailure: func(from types.NodeID, k types.MsgType) {
		f.failures = append(f.failures, string(from)+" "+k.String())
	}}}
	return f
}

func (f *observeFixture) vote(signer types.NodeID, epoch uint64, view types.View) *types.Vote {
	v := &types.Vote{View: view, Block: types.Hash{1, 2, 3}, Voter: signer}
	v.Sig = ed25519.Sign(f.keys[signer], types.VoteSignBytes(epoch, view, v.Block))
	return v
}

// reject hands m to noteRejected the way handleInbound does: only when
// the committee rejects it.
func (f *observeFixture) reject(from types.NodeID, m types.Message) {
	var err error
	switch m := m.(type) {
	case *types.Vote:
		err = f.e.committee.VerifyVote(m)
	case *types.Proposal:
		err = f.e.committee.VerifyBlockSig(m.Block, m.Block.Hash())
	case *types.Timeout:
		err = f.e.committee.VerifyTimeoutSig(m)
	}
	if err != nil {
		f.e.noteRejected(from, m, err)
	}
}

// TestSignatureFailuresReported: only a message whose own signature by
// its sender fails is reported — not a valid one, not one signed in the
// neighbouring epoch, not one relayed by someone else.
func TestSignatureFailuresReported(t *testing.T) {
	f := newObserveFixture(t)

	bad := f.vote("n2", 5, 9)
	bad.Sig[0] ^= 1
	f.reject("n2", bad) // reported

	f.reject("n2", f.vote("n2", 5, 9)) // valid: nothing
	f.reject("n2", f.vote("n2", 4, 9)) // previous epoch: a replica between epochs
	f.reject("n2", f.vote("n2", 6, 9)) // next epoch
	f.reject("n3", bad)                // n2's vote relayed by n3: says nothing of n3

	b := &types.Block{View: 4, Height: 1, Proposer: "n3"}
	b.Sig = ed25519.Sign(f.keys["n3"], types.ProposalSignBytes(5, 4, b.Hash()))
	b.Sig[10] ^= 1
	f.reject("n3", &types.Proposal{Block: b}) // reported

	to := &types.Timeout{View: 8, Sender: "n4", HighQC: types.QC{View: 3}}
	to.Sig = ed25519.Sign(f.keys["n2"], types.TimeoutSignBytes(5, 8, 3)) // n2's key, not n4's
	f.reject("n4", to)                                                   // reported

	want := []string{"n2 " + types.MsgVote.String(), "n3 " + types.MsgProposal.String(), "n4 " + types.MsgTimeout.String()}
	if fmt.Sprint(f.failures) != fmt.Sprint(want) {
		t.Fatalf("reported %v, want %v", f.failures, want)
	}
	if got := f.e.stats.signatureFailures.Load(); got != 3 {
		t.Fatalf("signature failure counter %d, want 3", got)
	}
}

// observations collects what each engine of a test cluster reports
// through one hook, by engine.
type observations[T any] struct {
	mu sync.Mutex
	by map[types.NodeID][]T
}

func newObservations[T any]() *observations[T] {
	return &observations[T]{by: map[types.NodeID][]T{}}
}

// hook returns the callback to give engine id.
func (o *observations[T]) hook(id types.NodeID) func(T) {
	return func(x T) {
		o.mu.Lock()
		o.by[id] = append(o.by[id], x)
		o.mu.Unlock()
	}
}

// of returns a copy of what engine id reported.
func (o *observations[T]) of(id types.NodeID) []T {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.by[id])
}

// countVotes returns the observations of from's votes: arrived and
// missing.
func countVotes(obs []VoteObservation, from types.NodeID) (arrived, missing int) {
	for _, o := range obs {
		if o.From != from {
			continue
		}
		if o.Missing {
			missing++
			if o.Latency < VoteWait {
				panic(fmt.Sprintf("missing vote reported after %s, before VoteWait", o.Latency))
			}
		} else {
			arrived++
		}
	}
	return arrived, missing
}

// TestVoteObservations: collectors report the votes that arrive, and a
// stopped member's votes as missing.
func TestVoteObservations(t *testing.T) {
	recs := newObservations[VoteObservation]()
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.Rotation = RotationRoundRobin
		cfg.OnVote = recs.hook(cfg.ID)
	})
	c.mustWrite(c.nodes[0], "a", "1")
	n4 := c.byID("node-4")
	waitFor(t, 20*time.Second, "votes of node-4 observed", func() (bool, string) {
		arrived := 0
		for _, nd := range c.nodes[:3] {
			a, _ := countVotes(recs.of(nd.id), n4.id)
			arrived += a
		}
		return arrived > 0, fmt.Sprintf("%d", arrived)
	})
	c.stop(n4)
	waitFor(t, 30*time.Second, "node-4's votes reported missing", func() (bool, string) {
		missing := 0
		for _, nd := range c.nodes[:3] {
			_, m := countVotes(recs.of(nd.id), n4.id)
			missing += m
		}
		return missing >= 3, fmt.Sprintf("%d", missing)
	})
	// Every running member's votes arrive at some collector.
	for _, voter := range c.nodes[:3] {
		arrived := 0
		for _, nd := range c.nodes[:3] {
			a, _ := countVotes(recs.of(nd.id), voter.id)
			arrived += a
		}
		if arrived == 0 {
			t.Fatalf("no vote of %s observed", voter.id)
		}
	}
}
