package core_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/pacemaker"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

func variants() []core.Variant { return []core.Variant{core.ThreeChain, core.TwoChain} }

// TestNormalCaseCommitsInOrder: with a fault-free network every replica
// commits the same commands in the same order, each once, in blocks of at
// most MaxBatch, and no view ends by timeout (the leader proposes as soon as
// it has the previous view's QC).
func TestNormalCaseCommitsInOrder(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.String(), func(t *testing.T) {
			c := newCluster(t, 4, v)
			want := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
			c.propose(want...)
			for range 20 {
				c.tick()
			}
			for _, id := range c.ids {
				if got := c.commands(id); !slices.Equal(got, want) {
					t.Fatalf("%s committed %q, want %q", id, got, want)
				}
				for _, b := range c.committed[id] {
					if len(b.Payload) > 4 {
						t.Fatalf("block of %d commands, max batch is 4", len(b.Payload))
					}
				}
				for _, e := range c.events[id] {
					if e.Kind == core.EventViewChange && e.Detail == "TC" {
						t.Fatalf("%s changed view by timeout in a fault-free run: %+v", id, e)
					}
				}
			}
		})
	}
}

// blocks is a BlockSource over a map.
type blocks map[types.Hash]*types.Block

func (m blocks) Get(h types.Hash) (*types.Block, bool) { b, ok := m[h]; return b, ok }

// TestCommitRules. Chains (view in parentheses; each block's QC is for its
// parent):
//
//	g(0) ─ a(1) ─ b(2) ─ c(3) ─ d(4)
//	        └─ e(3) ─ f(5) ─ h(6)
//
// 3-chain: a QC for c commits a (a ← b ← c consecutive); a QC for d commits
// b; a QC for h commits nothing (e → f skips view 4). 2-chain: a QC for b
// commits a; a QC for f commits nothing (gap); a QC for h commits f.
func TestCommitRules(t *testing.T) {
	m := blocks{}
	names := map[string]types.Hash{}
	g := types.NewGenesis(nil)
	m[g.Hash()], names["g"] = g, g.Hash()
	add := func(name, parent string, view types.View) {
		p := m[names[parent]]
		b := &types.Block{Parent: names[parent], View: view, Height: p.Height + 1, Justify: types.QC{View: p.View, Block: names[parent]}}
		m[b.Hash()], names[name] = b, b.Hash()
	}
	add("a", "g", 1)
	add("b", "a", 2)
	add("c", "b", 3)
	add("d", "c", 4)
	add("e", "a", 3)
	add("f", "e", 5)
	add("h", "f", 6)
	qc := func(name string) types.QC { return types.QC{View: m[names[name]].View, Block: names[name]} }
	for _, tc := range []struct {
		rule core.CommitRule
		qc   string
		want string // "" = nothing
	}{
		{core.ThreeChainCommit{}, "c", "a"},
		{core.ThreeChainCommit{}, "d", "b"},
		{core.ThreeChainCommit{}, "b", "g"},
		{core.ThreeChainCommit{}, "h", ""},
		{core.ThreeChainCommit{}, "a", ""},
		{core.TwoChainCommit{}, "b", "a"},
		{core.TwoChainCommit{}, "e", ""},
		{core.TwoChainCommit{}, "f", ""},
		{core.TwoChainCommit{}, "h", "f"},
	} {
		got, ok := tc.rule.Commit(m, qc(tc.qc))
		if (tc.want == "") == ok || ok && got != names[tc.want] {
			t.Errorf("%T on QC(%s): got %v %v, want %q", tc.rule, tc.qc, got, ok, tc.want)
		}
	}
}

// TestReadyAdvance: Ready returns the same work until Advance; Advance
// clears exactly what was handed out.
func TestReadyAdvance(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	leader := c.cores["n1"] // leader of view 1
	if err := leader.Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	rd1 := leader.Ready()
	rd2 := leader.Ready()
	if len(rd1.Messages) == 0 || len(rd1.Messages) != len(rd2.Messages) || len(rd1.Blocks) != 1 || rd1.Safety == nil {
		t.Fatalf("ready: %d messages, %d blocks, safety %v; again %d messages", len(rd1.Messages), len(rd1.Blocks), rd1.Safety != nil, len(rd2.Messages))
	}
	var kinds []types.MsgType
	for _, o := range rd1.Messages {
		kinds = append(kinds, o.Msg.MsgType())
	}
	if !slices.Contains(kinds, types.MsgProposal) || !slices.Contains(kinds, types.MsgVote) {
		t.Fatalf("leader's first Ready has %v, want a proposal and its own vote", kinds)
	}
	if rd1.Safety.LastProposal == nil || rd1.Safety.LastVotedView != 1 {
		t.Fatalf("safety data in Ready: %+v", rd1.Safety)
	}
	// Work produced between Ready and Advance survives the Advance.
	leader.ForceViewChange()
	leader.Advance()
	if !leader.HasReady() {
		t.Fatal("Advance dropped work produced after Ready")
	}
	rd3 := leader.Ready()
	if !slices.ContainsFunc(rd3.Messages, func(o core.Outbound) bool { return o.Msg.MsgType() == types.MsgTimeout }) {
		t.Fatalf("after Advance: %d messages, no timeout: %v", len(rd3.Messages), rd3.Messages)
	}
	leader.Advance()
	if leader.HasReady() {
		t.Fatal("Advance left work behind")
	}
}

// TestQuarantinedLeaderViewChange: quarantining the current leader times
// the view out at once; the rotation skips it and its messages are ignored.
func TestQuarantinedLeaderViewChange(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	for _, id := range c.ids {
		c.cores[id].SetQuarantined([]types.NodeID{"n1"}) // n1 leads view 1
		c.collect(id)
	}
	c.deliver(100000)
	for _, id := range c.ids {
		if id == "n1" {
			continue
		}
		st := c.cores[id].Status()
		if st.View != 2 || st.Leader == "n1" {
			t.Fatalf("%s: view %d leader %s after quarantining n1", id, st.View, st.Leader)
		}
	}
	c.propose("after")
	for range 10 {
		c.tick()
	}
	if got := c.commands("n0"); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("n0 committed %q", got)
	}
	for _, b := range c.committed["n0"] {
		if b.Proposer == "n1" {
			t.Fatal("a quarantined member's block was committed")
		}
	}
}

// TestForceViewChange: forcing on a quorum changes the view through a TC.
func TestForceViewChange(t *testing.T) {
	c := newCluster(t, 4, core.TwoChain)
	for _, id := range c.ids[:3] {
		c.cores[id].ForceViewChange()
		c.collect(id)
	}
	c.deliver(100000)
	for _, id := range c.ids {
		if v := c.cores[id].View(); v != 2 {
			t.Fatalf("%s in view %d after a forced view change, want 2", id, v)
		}
	}
}

// TestAlertAfterRetries: views whose leader is down time out with backoff;
// after MaxRetries consecutive ones the core raises an alert, and the next
// QC clears it.
func TestAlertAfterRetries(t *testing.T) {
	rot := func(ms []types.NodeID) leaderrotation.Rotation {
		return &leaderrotation.Fixed{Schedule: map[types.View]types.NodeID{1: "n3", 2: "n3", 3: "n3", 4: "n3"}, Fallback: leaderrotation.NewRoundRobin(ms)}
	}
	c := newCluster(t, 4, core.ThreeChain, withRotation(rot))
	c.down["n3"] = true
	for range 200 {
		c.tick()
	}
	var kinds []core.EventKind
	for _, e := range c.events["n0"] {
		if e.Kind == core.EventAlert || e.Kind == core.EventAlertCleared {
			kinds = append(kinds, e.Kind)
		}
	}
	if !slices.Equal(kinds, []core.EventKind{core.EventAlert, core.EventAlertCleared}) {
		t.Fatalf("alert events %v, want alert then cleared", kinds)
	}
	if st := c.cores["n0"].Status(); st.Alert || st.CommittedHeight == 0 {
		t.Fatalf("status after recovery: %+v", st)
	}
}

// signedBlock builds a block for view on genesis, signed by proposer.
func (c *cluster) signedBlock(view types.View, proposer types.NodeID, cmds ...string) *types.Block {
	b := &types.Block{Parent: c.genesis.Hash(), View: view, Height: 1, Justify: types.GenesisQC(c.genesis.Hash()), Proposer: proposer}
	for _, x := range cmds {
		b.Payload = append(b.Payload, []byte(x))
	}
	sig, err := c.keys.Signers[proposer].Sign(types.ProposalSignBytes(1, view, b.Hash()))
	if err != nil {
		c.t.Fatal(err)
	}
	b.Sig = sig
	return b
}

func (c *cluster) signedVote(voter types.NodeID, view types.View, h types.Hash) *types.Vote {
	sig, _ := c.keys.Signers[voter].Sign(types.VoteSignBytes(1, view, h))
	return &types.Vote{View: view, Block: h, Voter: voter, Sig: sig}
}

// TestEvidence: two proposals of one leader for one view, two votes of one
// member in one view, and a block with an invalid command each produce
// verifiable evidence naming the signer; the replica votes only for the
// first valid proposal.
func TestEvidence(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	n0 := c.cores["n0"]
	a, b := c.signedBlock(1, "n1", "a"), c.signedBlock(1, "n1", "b")
	for _, blk := range []*types.Block{a, b} {
		if err := n0.Step("n1", &types.Proposal{Block: blk}); err != nil {
			t.Fatal(err)
		}
	}
	rd := n0.Ready()
	votes := 0
	for _, o := range rd.Messages {
		if v, ok := o.Msg.(*types.Vote); ok {
			votes++
			if v.Block != a.Hash() {
				t.Fatal("voted for the second proposal")
			}
		}
	}
	if votes != 1 {
		t.Fatalf("%d votes for view 1", votes)
	}
	c.events["n0"] = append(c.events["n0"], rd.Events...)
	n0.Advance()

	n2 := c.cores["n2"] // leader of view 2 collects view-1 votes
	for _, v := range []*types.Vote{c.signedVote("n3", 1, a.Hash()), c.signedVote("n3", 1, b.Hash())} {
		if err := n2.Step("n3", v); err != nil {
			t.Fatal(err)
		}
	}
	n3 := c.cores["n3"]
	bad := c.signedBlock(1, "n1", "ok", "bad:evil")
	if err := n3.Step("n1", &types.Proposal{Block: bad}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[types.NodeID]types.EvidenceKind{"n0": types.EquivocatingProposal, "n2": types.DuplicateVote, "n3": types.InvalidPayload} {
		c.collect(id)
		evs := c.evidence(id)
		if len(evs) != 1 || evs[0].Kind != want {
			t.Fatalf("%s: evidence %v, want one %s", id, evs, want)
		}
		if err := evs[0].Verify(c.committee, n3Validator{}); err != nil {
			t.Fatalf("%s: evidence does not verify: %v", id, err)
		}
		offender := map[types.EvidenceKind]types.NodeID{types.EquivocatingProposal: "n1", types.DuplicateVote: "n3", types.InvalidPayload: "n1"}[want]
		if evs[0].Offender != offender {
			t.Fatalf("%s: evidence names %s, want %s", id, evs[0].Offender, offender)
		}
	}
	if st := n3.Status(); st.LastVotedView != 0 || st.TreeSize != 1 {
		t.Fatalf("n3 voted for or stored the invalid block: %+v", st)
	}
}

type n3Validator struct{}

func (n3Validator) Validate(cmd []byte) error {
	if len(cmd) > 4 && string(cmd[:4]) == "bad:" {
		return errors.New("bad")
	}
	return nil
}

// TestStepRejects: messages from non-members and proposals from a member
// that does not lead the view are errors.
func TestStepRejects(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	n0 := c.cores["n0"]
	if err := n0.Step("zz", &types.BlockRequest{}); !errors.Is(err, core.ErrNotMember) {
		t.Fatalf("non-member: %v", err)
	}
	if err := n0.Step("n2", &types.Proposal{Block: c.signedBlock(1, "n2")}); !errors.Is(err, core.ErrNotLeader) {
		t.Fatalf("proposal from a non-leader: %v", err)
	}
	forged := c.signedBlock(1, "n1")
	forged.Payload = [][]byte{[]byte("changed after signing")}
	if err := n0.Step("n1", &types.Proposal{Block: forged}); !errors.Is(err, types.ErrBadSignature) {
		t.Fatalf("altered block: %v", err)
	}
	if err := n0.Propose([]byte("bad:x")); !errors.Is(err, core.ErrInvalidCommand) {
		t.Fatalf("invalid command: %v", err)
	}
	small := newCluster(t, 4, core.ThreeChain, func(cfg *core.Config) { cfg.MaxPending = 4 })
	if err := small.cores["n0"].Propose([]byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5")); !errors.Is(err, core.ErrQueueFull) {
		t.Fatalf("queue full: %v", err)
	}
}

// TestDedupUncommittedAncestors: a command already in an uncommitted
// ancestor is not proposed again, even by a leader that still has it
// queued.
func TestDedupUncommittedAncestors(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	// Only n1 (view 1) and n2 (view 2) know the command; deliver view 1's
	// proposal, then let n2 propose while the command is uncommitted.
	for _, id := range []types.NodeID{"n1", "n2"} {
		if err := c.cores[id].Propose([]byte("x")); err != nil {
			t.Fatal(err)
		}
		c.collect(id)
	}
	for range 10 {
		c.tick()
	}
	if got := c.commands("n0"); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("committed %q, want x once", got)
	}
	if st := c.cores["n2"].Status(); st.Pending != 0 {
		t.Fatalf("n2 still has %d queued after the command committed", st.Pending)
	}
}

// TestRestartFromPersistedState: a replica that crashes and restarts from
// its safety data, committed log and block store rejoins and keeps
// committing the same sequence as the others.
func TestRestartFromPersistedState(t *testing.T) {
	for _, v := range variants() {
		t.Run(v.String(), func(t *testing.T) {
			c := newCluster(t, 4, v)
			c.propose("a", "b", "c")
			for range 10 {
				c.tick()
			}
			before := c.cores["n0"].Status()
			if before.CommittedHeight == 0 {
				t.Fatal("nothing committed before the crash")
			}
			c.down["n0"] = true
			c.propose("d", "e")
			for range 10 {
				c.tick()
			}
			c.restart("n0", v)
			if st := c.cores["n0"].Status(); st.CommittedHash != before.CommittedHash || st.LastVotedView != before.LastVotedView {
				t.Fatalf("restored status %+v, before the crash %+v", st, before)
			}
			c.propose("f")
			for range 30 {
				c.tick()
			}
			want := []string{"a", "b", "c", "d", "e", "f"}
			for _, id := range c.ids {
				if got := c.commands(id); !slices.Equal(got, want) {
					t.Fatalf("%s committed %q, want %q", id, got, want)
				}
			}
		})
	}
}

// TestSyncCatchUp: a replica cut off while the others commit many blocks
// fetches the missing blocks (BlockRequest/BlockResponse) once it hears
// from them again, and commits the same chain.
func TestSyncCatchUp(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	c.drop = func(from, to types.NodeID, m types.Message) bool { return from == "n3" || to == "n3" }
	for i := range 40 {
		c.propose(string(rune('A'+i%26)) + string(rune('a'+i/26)))
		c.tick()
	}
	if h := c.cores["n3"].Status().CommittedHeight; h != 0 {
		t.Fatalf("isolated n3 committed %d blocks", h)
	}
	c.drop = nil
	for range 40 {
		c.tick()
	}
	ref := c.commands("n0")
	if len(ref) != 40 {
		t.Fatalf("n0 committed %d commands, want 40", len(ref))
	}
	if got := c.commands("n3"); !slices.Equal(got, ref) {
		t.Fatalf("n3 caught up to %d commands, n0 has %d", len(got), len(ref))
	}
}

func TestConfigValidate(t *testing.T) {
	c := newCluster(t, 4, core.ThreeChain)
	base := func() core.Config {
		cfg := core.DefaultConfig()
		cfg.ID, cfg.Committee, cfg.Genesis = "n0", c.committee, c.genesis
		rules, err := core.NewSafety(c.stores["n0"], c.keys.Signers["n0"], c.committee, nil, core.ThreeChain)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Safety = rules
		return cfg
	}
	if cfg := base(); cfg.Validate() != nil {
		t.Fatal(cfg.Validate())
	}
	for name, mut := range map[string]func(*core.Config){
		"not a member":      func(c *core.Config) { c.ID = "zz" },
		"other genesis":     func(c *core.Config) { c.Genesis = types.NewGenesis([]byte("x")) },
		"batch 0":           func(c *core.Config) { c.MaxBatch = 0 },
		"pending < batch":   func(c *core.Config) { c.MaxPending = c.MaxBatch - 1 },
		"idle >= timeout":   func(c *core.Config) { c.IdlePropose = c.Pacemaker.ViewTimeout },
		"sync batch 0":      func(c *core.Config) { c.SyncBatch = 0 },
		"bad pacemaker":     func(c *core.Config) { c.Pacemaker.MaxRetries = 0 },
		"unknown variant":   func(c *core.Config) { c.Variant = 9 },
		"no safety":         func(c *core.Config) { c.Safety = nil },
		"negative retained": func(c *core.Config) { c.RetainCommitted = -1 },
	} {
		cfg := base()
		mut(&cfg)
		if cfg.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := core.New(cfg); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
	for s, want := range map[string]core.Variant{"": core.ThreeChain, "3chain": core.ThreeChain, "two-chain-hotstuff": core.TwoChain} {
		if v, err := core.ParseVariant(s); err != nil || v != want {
			t.Errorf("ParseVariant(%q) = %v, %v", s, v, err)
		}
	}
	if _, err := core.ParseVariant("pbft"); err == nil {
		t.Error("unknown variant parsed")
	}
}

// TestIdleLeaderPropagatesCommit: once a leader forms the QC that commits a
// block with commands, it proposes the next block at once even though it
// has nothing more to order, so the other replicas learn of the commit
// from that block's justify instead of an IdlePropose delay later (with a
// long idle delay a write would otherwise be visible on the replica that
// formed the QC long before the replica the client used).
func TestIdleLeaderPropagatesCommit(t *testing.T) {
	for _, v := range []core.Variant{core.ThreeChain, core.TwoChain} {
		t.Run(v.String(), func(t *testing.T) {
			c := newCluster(t, 4, v, func(cfg *core.Config) {
				cfg.Pacemaker = pacemaker.Config{ViewTimeout: 40, ResendInterval: 10, MaxRetries: 2}
				cfg.IdlePropose = 30
			})
			// Let the cluster go idle first (past the genesis views).
			for range 100 {
				c.tick()
			}
			c.propose("write")
			first := -1
			for i := range 60 {
				c.tick()
				n := 0
				for _, id := range c.ids {
					if slices.Contains(c.commands(id), "write") {
						n++
					}
				}
				if n > 0 && first < 0 {
					first = i
				}
				if n == len(c.ids) {
					if i-first > 1 {
						t.Fatalf("the first replica committed the write at tick %d, the last at tick %d (idle delay 30)", first, i)
					}
					return
				}
			}
			t.Fatalf("not every replica committed the write (first at tick %d)", first)
		})
	}
}

// TestBlocksBoundedInBytes: a block's commands never exceed MaxBatchBytes,
// however many are queued, so a proposal always fits the transport's
// frames; every command still commits, in order.
func TestBlocksBoundedInBytes(t *testing.T) {
	const limit = types.MaxCommandBytes
	c := newCluster(t, 4, core.ThreeChain, func(cfg *core.Config) { cfg.MaxBatchBytes = limit })
	big := func(tag byte) string { return string(bytes.Repeat([]byte{tag}, limit/2+1)) }
	want := []string{big('a'), big('b'), big('c')}
	c.propose(want...)
	for range 30 {
		c.tick()
	}
	for _, id := range c.ids {
		if got := c.commands(id); !slices.Equal(got, want) {
			t.Fatalf("%s committed %d commands, want the 3 large ones in order", id, len(got))
		}
		for _, b := range c.committed[id] {
			size := 0
			for _, cmd := range b.Payload {
				size += len(cmd)
			}
			if size > limit {
				t.Fatalf("block of %d command bytes, limit %d", size, limit)
			}
		}
	}
}

// TestDedupByCommandKey: commands with one CommandKey (one request wrapped
// differently by different replicas) are queued once, ordered once, and
// leave every replica's queue when one of them commits.
func TestDedupByCommandKey(t *testing.T) {
	// The key is the command without its first byte.
	key := func(cmd []byte) types.Hash { return types.CommandHash(cmd[1:]) }
	c := newCluster(t, 4, core.ThreeChain, func(cfg *core.Config) { cfg.CommandKey = key })
	if err := c.cores["n2"].Propose([]byte("ax"), []byte("bx")); err != nil {
		t.Fatal(err)
	}
	if st := c.cores["n2"].Status(); st.Pending != 1 {
		t.Fatalf("n2 queued %d commands of one request, want 1", st.Pending)
	}
	for i, id := range []types.NodeID{"n1", "n2", "n3"} {
		if err := c.cores[id].Propose([]byte{byte('c' + i), 'x'}, []byte{byte('c' + i), 'y'}); err != nil {
			t.Fatal(err)
		}
		c.collect(id)
	}
	for range 20 {
		c.tick()
	}
	got := c.commands("n0")
	var xs, ys int
	for _, cmd := range got {
		switch cmd[1:] {
		case "x":
			xs++
		case "y":
			ys++
		}
	}
	if xs != 1 || ys != 1 {
		t.Fatalf("committed %q, want one x and one y", got)
	}
	for _, id := range []types.NodeID{"n1", "n2", "n3"} {
		if st := c.cores[id].Status(); st.Pending != 0 {
			t.Errorf("%s still has %d queued after the requests committed", id, st.Pending)
		}
	}
}

// TestBatchDelay: a leader holding fewer than MaxBatch commands waits up to
// BatchDelay ticks into its view for more, so two writes a tick apart share
// one block; without the delay the first is proposed alone at once; a
// leader holding MaxBatch commands proposes at once whatever the delay.
func TestBatchDelay(t *testing.T) {
	// blockWith returns the first stored block holding cmd on any replica.
	blockWith := func(c *cluster, cmd string) []string {
		for _, id := range c.ids {
			for _, b := range c.stored[id] {
				var p []string
				for _, x := range b.Payload {
					p = append(p, string(x))
				}
				if slices.Contains(p, cmd) {
					return p
				}
			}
		}
		return nil
	}
	// freshView starts a cluster, lets it go idle and returns right after
	// a view began, so its leader has waited nothing in it yet.
	freshView := func(delay, maxBatch int) *cluster {
		c := newCluster(t, 4, core.ThreeChain, func(cfg *core.Config) {
			cfg.Pacemaker = pacemaker.Config{ViewTimeout: 60, ResendInterval: 10, MaxRetries: 2}
			cfg.IdlePropose = 30
			cfg.BatchDelay = delay
			cfg.MaxBatch = maxBatch
		})
		for range 100 {
			c.tick()
		}
		v := c.cores[c.ids[0]].View()
		for range 100 {
			c.tick()
			if c.cores[c.ids[0]].View() != v {
				return c
			}
		}
		t.Fatal("no view change while idle")
		return nil
	}
	t.Run("no delay", func(t *testing.T) {
		c := freshView(0, 256)
		c.propose("a")
		c.deliver(100000)
		c.tick()
		c.propose("b")
		for range 60 {
			c.tick()
		}
		if got := blockWith(c, "a"); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("without a batch delay the first write was proposed in %v, want alone", got)
		}
	})
	t.Run("delay gathers", func(t *testing.T) {
		c := freshView(10, 256)
		c.propose("a")
		c.deliver(100000)
		if got := blockWith(c, "a"); got != nil {
			t.Fatalf("proposed %v at once despite a 10-tick batch delay", got)
		}
		c.tick()
		c.propose("b")
		for range 60 {
			c.tick()
		}
		if got := blockWith(c, "a"); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("with a batch delay the writes went into %v, want one block [a b]", got)
		}
		for _, id := range c.ids {
			if got := c.commands(id); !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("%s committed %v", id, got)
			}
		}
	})
	t.Run("full batch at once", func(t *testing.T) {
		c := freshView(10, 2)
		c.propose("a", "b")
		c.deliver(100000)
		if got := blockWith(c, "a"); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("a full batch was not proposed at once: %v", got)
		}
	})
}
