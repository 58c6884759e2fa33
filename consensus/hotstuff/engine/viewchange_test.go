package engine

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/sim"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// viewChangeShell is an Engine reduced to what onViewChangeRequest and
// maybeForceViewChange use: a real core, the committee, the request
// bookkeeping and a clock the test moves. Nothing runs in the background.
type viewChangeShell struct {
	e   *Engine
	ids []types.NodeID
	now time.Time
}

func newViewChangeShell(t *testing.T, n int) *viewChangeShell {
	t.Helper()
	ids := make([]types.NodeID, n)
	for i := range ids {
		ids[i] = types.NodeID(fmt.Sprintf("n%d", i))
	}
	keys := sim.NewKeys(ids, 1, false)
	genesis := types.NewGenesis([]byte("view-change-test"))
	com, err := types.NewCommittee(types.CommitteeConfig{Epoch: 1, Members: keys.Members, Genesis: genesis.Hash(), Scheme: keys.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	verifier := types.NewQCCache(com, 64)
	rules, err := core.NewSafety(safety.NewMemStore(), keys.Signers[ids[0]], com, verifier, core.ThreeChain)
	if err != nil {
		t.Fatal(err)
	}
	cc := core.DefaultConfig()
	cc.ID, cc.Committee, cc.Genesis, cc.Safety, cc.Verifier = ids[0], com, genesis, rules, verifier
	co, err := core.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	s := &viewChangeShell{ids: ids, now: time.Unix(1_000_000, 0)}
	s.e = &Engine{
		cfg:       Config{ID: ids[0], ViewChangeTimeout: time.Second, Clock: func() time.Time { return s.now }},
		log:       slog.New(slog.DiscardHandler),
		committee: com,
		core:      co,
		stats:     &counters{},
		viewReqAt: map[types.NodeID]time.Time{},
		viewReqs:  map[types.NodeID]types.View{},
	}
	return s
}

// timedOut reports whether the replica gave up its view, and checks that
// it then signed and queued a timeout for it (and only then).
func (s *viewChangeShell) timedOut(t *testing.T) bool {
	t.Helper()
	st := s.e.core.Status()
	sent := false
	if s.e.core.HasReady() {
		rd := s.e.core.Ready()
		for _, m := range rd.Messages {
			if to, ok := m.Msg.(*types.Timeout); ok && to.View == st.View {
				sent = true
			}
		}
		s.e.core.Advance()
	}
	if sent && !st.TimedOut {
		t.Fatalf("a timeout was sent for view %d but the view is not timed out", st.View)
	}
	return st.TimedOut
}

// TestLoneViewChangeRequesterMovesNobody: one member asking for a view
// change, however often, does not make a replica leave its view; f+1
// distinct members (the replica itself may be one) do.
func TestLoneViewChangeRequesterMovesNobody(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			s := newViewChangeShell(t, n)
			f := s.e.committee.F()
			v := s.e.core.View()
			lone := s.ids[1]
			// The lone requester asks again and again, also once each
			// rate-limit window has passed.
			for range 5 {
				s.e.onViewChangeRequest(lone, v)
				s.now = s.now.Add(2 * s.e.cfg.ViewChangeTimeout)
			}
			// Requests for other views never count towards this one.
			s.e.onViewChangeRequest(s.ids[2], v+1)
			s.e.onViewChangeRequest(s.ids[2], v-1)
			if s.timedOut(t) || s.e.core.View() != v {
				t.Fatalf("one requester moved the replica (view %d, timed out %v)", s.e.core.View(), s.e.core.Status().TimedOut)
			}
			// f more distinct members: f+1 in all.
			for i := 2; i < 2+f; i++ {
				if s.timedOut(t) {
					t.Fatalf("timed out after %d distinct requesters, want %d", i-1, f+1)
				}
				s.e.onViewChangeRequest(s.ids[i], v)
			}
			if !s.timedOut(t) {
				t.Fatalf("%d distinct requesters did not make the replica time out view %d", f+1, v)
			}
		})
	}
}

// TestOwnViewChangeRequestNeedsAPeer: the replica's own request (what
// TransferLeadership records) is one of the f+1, not enough alone.
func TestOwnViewChangeRequestNeedsAPeer(t *testing.T) {
	s := newViewChangeShell(t, 4)
	v := s.e.core.View()
	s.e.viewReqs[s.e.cfg.ID] = v
	s.e.maybeForceViewChange(v)
	if s.timedOut(t) {
		t.Fatal("the replica's own request alone made it leave its view")
	}
	s.e.onViewChangeRequest(s.ids[3], v)
	if !s.timedOut(t) {
		t.Fatal("its own request and one peer's (f+1 = 2) did not make it leave its view")
	}
}
