package core

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/leaderrotation"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/safety"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// maxFutureViews bounds how far ahead of the current view votes and
// timeouts are collected (a Byzantine member cannot make us store
// unbounded future views).
const maxFutureViews = 1024

// --- output helpers ---

// send queues m for to; messages to this replica are delivered locally.
func (c *Core) send(to types.NodeID, m types.Message) {
	if to == c.id {
		c.inbox = append(c.inbox, inboxMsg{from: c.id, msg: m})
		return
	}
	c.msgs = append(c.msgs, Outbound{To: to, Msg: m})
}

// broadcast queues m for every other member and delivers it locally too
// when self is true.
func (c *Core) broadcast(m types.Message, self bool) {
	c.msgs = append(c.msgs, Outbound{Msg: m})
	if self {
		c.inbox = append(c.inbox, inboxMsg{from: c.id, msg: m})
	}
}

// drain processes locally delivered messages until none are left.
func (c *Core) drain() {
	for len(c.inbox) > 0 {
		m := c.inbox[0]
		c.inbox = c.inbox[1:]
		if err := c.handle(m.from, m.msg); err != nil {
			// Own messages and re-examined proposals that were held for
			// their parent; the latter may legitimately fail now.
			lvl := slog.LevelDebug
			if m.from == c.id {
				lvl = slog.LevelError
			}
			c.log.Log(context.Background(), lvl, "queued message rejected", "type", typeOf(m.msg), "from", string(m.from), "err", err)
		}
	}
	c.inbox = nil
}

func (c *Core) event(e Event) { c.events = append(c.events, e) }

func (c *Core) report(ev *types.Evidence) {
	k := evKey{kind: ev.Kind, offender: ev.Offender, view: ev.View}
	if c.evidence[k] {
		return
	}
	c.evidence[k] = true
	c.log.Warn("evidence of misbehaviour", "kind", ev.Kind.String(), "offender", string(ev.Offender), "view", ev.View)
	c.event(Event{Kind: EventEvidence, View: ev.View, Evidence: ev, Detail: ev.Kind.String()})
}

func (c *Core) leader(v types.View) types.NodeID { return c.rotation.Leader(v) }

func (c *Core) handle(from types.NodeID, m types.Message) error {
	switch m := m.(type) {
	case *types.Proposal:
		return c.onProposal(from, m)
	case *types.Vote:
		return c.onVote(from, m)
	case *types.Timeout:
		return c.onTimeout(from, m)
	case *types.BlockRequest:
		c.onBlockRequest(from, m)
		return nil
	case *types.BlockResponse:
		return c.onBlockResponse(from, m)
	case *types.SyncInfo:
		return c.onSync(from, m)
	default:
		return fmt.Errorf("unknown message type %T: %w", m, types.ErrMalformed)
	}
}

// --- proposals ---

func (c *Core) checkSigner(id types.NodeID, what string) (drop bool, err error) {
	if !c.committee.IsMember(id) {
		return true, fmt.Errorf("%s signed by %q: %w", what, id, ErrNotMember)
	}
	return c.quarantined[id], nil
}

// recordBlock remembers the first signed block per (view, proposer) and
// reports equivocation when a different one shows up.
func (c *Core) recordBlock(b *types.Block, h types.Hash) {
	root, _ := c.tree.Root()
	if b.View <= root.View && b.View+64 < c.view {
		return
	}
	k := propKey{view: b.View, proposer: b.Proposer}
	prev, ok := c.proposals[k]
	if !ok {
		c.proposals[k] = seenBlock{block: b, hash: h}
		return
	}
	if prev.hash != h {
		c.report(&types.Evidence{Kind: types.EquivocatingProposal, Offender: b.Proposer, View: b.View, Blocks: [2]*types.Block{prev.block, b}})
	}
}

func (c *Core) onProposal(from types.NodeID, p *types.Proposal) error {
	b := p.Block
	if b == nil || b.View == 0 {
		return fmt.Errorf("proposal from %q without a block or for view 0: %w", from, ErrInvalidBlock)
	}
	if drop, err := c.checkSigner(b.Proposer, "proposal"); drop {
		return err
	}
	h := b.Hash()
	if err := c.committee.VerifyBlockSig(b, h); err != nil {
		return fmt.Errorf("proposal from %q: %w", from, err)
	}
	c.recordBlock(b, h)
	if b.Justify.Block != b.Parent || b.Justify.View >= b.View {
		return fmt.Errorf("proposal view %d by %q: justify QC (view %d) does not certify the parent in an earlier view: %w", b.View, b.Proposer, b.Justify.View, ErrInvalidBlock)
	}
	if err := c.verifier.VerifyQC(b.Justify); err != nil {
		return fmt.Errorf("proposal view %d by %q: justify: %w", b.View, b.Proposer, err)
	}
	if p.TC != nil {
		if p.TC.View+1 != b.View {
			return fmt.Errorf("proposal view %d by %q carries a TC for view %d: %w", b.View, b.Proposer, p.TC.View, ErrInvalidBlock)
		}
		if err := c.verifier.VerifyTC(p.TC); err != nil {
			return fmt.Errorf("proposal view %d by %q: %w", b.View, b.Proposer, err)
		}
	}
	if b.View+2 < c.view && from != c.id {
		c.maybeSync(from)
	}
	c.processQC(b.Justify, from)
	if p.TC != nil {
		c.processTC(p.TC, from)
	}
	if l := c.leader(b.View); l != b.Proposer {
		return fmt.Errorf("proposal view %d by %q, leader is %q: %w", b.View, b.Proposer, l, ErrNotLeader)
	}
	if c.tree.Contains(h) {
		c.tryVote(b, h, p.TC)
		return nil
	}
	if !c.tree.Contains(b.Parent) {
		root, _ := c.tree.Root()
		if b.Height <= root.Height+1 {
			return nil // forks off below the committed block: can never commit
		}
		c.addOrphan(orphanProposal{p: p, hash: h, from: from}, b.Parent)
		c.fetch(b.Parent, from)
		return nil
	}
	for i, cmd := range b.Payload {
		if err := c.validator.Validate(cmd); err != nil {
			c.report(&types.Evidence{Kind: types.InvalidPayload, Offender: b.Proposer, View: b.View,
				Blocks: [2]*types.Block{b}, Command: i, Reason: err.Error()})
			return nil
		}
	}
	if err := c.insert(b, h); err != nil {
		return fmt.Errorf("proposal view %d by %q: %w", b.View, b.Proposer, err)
	}
	c.tryVote(b, h, p.TC)
	return nil
}

func (c *Core) addOrphan(o orphanProposal, parent types.Hash) {
	if c.nOrphans >= c.cfg.MaxOrphans {
		return
	}
	for _, x := range c.orphans[parent] {
		if x.hash == o.hash {
			return
		}
	}
	c.orphans[parent] = append(c.orphans[parent], o)
	c.nOrphans++
}

// insert adds a verified block to the tree, hands it to the shell, and
// processes whatever was waiting for it.
func (c *Core) insert(b *types.Block, h types.Hash) error {
	ok, err := c.tree.Insert(b, h)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBlock, err)
	}
	if !ok {
		return nil
	}
	c.newBlocks = append(c.newBlocks, b)
	delete(c.wants, h)
	// The justify QC of every block in the tree is run through the commit
	// rule, however the block arrived: commits are then a function of the
	// tree, and a replica that fetched a chain commits what the chain's QCs
	// commit even if it never saw them as its high QC.
	c.tryCommit(b.Justify)
	// Children fetched earlier.
	stack := []types.Hash{h}
	for len(stack) > 0 {
		ph := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, kh := range c.looseKids[ph] {
			kb := c.loose[kh]
			delete(c.loose, kh)
			if kb == nil {
				continue
			}
			if ok, err := c.tree.Insert(kb, kh); err == nil && ok {
				c.newBlocks = append(c.newBlocks, kb)
				delete(c.wants, kh)
				stack = append(stack, kh)
				c.noteQC(kb.Justify)
				c.tryCommit(kb.Justify)
			}
		}
		delete(c.looseKids, ph)
		// Proposals waiting for this parent.
		if os := c.orphans[ph]; len(os) > 0 {
			delete(c.orphans, ph)
			c.nOrphans -= len(os)
			for _, o := range os {
				c.inbox = append(c.inbox, inboxMsg{from: o.from, msg: o.p})
			}
		}
	}
	// A QC we could not use before may now be usable.
	if !c.pendQC.IsZero() && c.tree.Contains(c.pendQC.Block) {
		qc := c.pendQC
		c.pendQC = types.QC{}
		c.processQC(qc, "")
	} else {
		c.noteQC(b.Justify)
	}
	return nil
}

// tryVote votes for b if it is the current view's proposal.
func (c *Core) tryVote(b *types.Block, h types.Hash, tc *types.TC) {
	if b.View != c.view || c.pm.TimedOut() {
		return
	}
	if c.lastVote != nil && c.lastVote.View == b.View && c.lastVote.Block == h {
		return // already voted for this block; the safety kernel decides the rest
	}
	parent, ok := c.tree.Get(b.Parent)
	if !ok {
		return
	}
	v, err := c.safety.Vote(safety.Candidate{Block: b, Hash: h, Certified: parent, TC: tc})
	if err != nil {
		var ns *safety.NotSafeToVoteError
		if errors.As(err, &ns) {
			c.log.Debug("not voting", "view", b.View, "err", err)
		} else {
			c.log.Error("vote failed", "view", b.View, "err", err)
		}
		return
	}
	c.cast(v)
}

// cast records v as this replica's vote and sends it to the collector, the
// leader of the next view.
func (c *Core) cast(v *types.Vote) {
	c.safetyDirty = true
	c.lastVote = v
	if next := c.leader(v.View + 1); c.suspects[next] {
		// The collector let a view time out and has been silent since:
		// every replica gets the vote and forms the QC itself, instead of
		// waiting a view timeout for a collector that is probably down.
		c.broadcast(v, true)
	} else {
		c.send(next, v)
	}
}

// --- votes ---

func (c *Core) onVote(from types.NodeID, v *types.Vote) error {
	if drop, err := c.checkSigner(v.Voter, "vote"); drop {
		return err
	}
	if v.View+2 < c.view || v.View > c.view+maxFutureViews {
		return nil
	}
	if err := c.committee.VerifyVote(v); err != nil {
		return fmt.Errorf("vote from %q: %w", from, err)
	}
	k := voteKey{view: v.View, voter: v.Voter}
	if prev, ok := c.firstVote[k]; ok {
		if prev.Block != v.Block {
			c.report(&types.Evidence{Kind: types.DuplicateVote, Offender: v.Voter, View: v.View, Votes: [2]*types.Vote{prev, v}})
		}
		return nil
	}
	c.firstVote[k] = v
	c.checkConflict(v, from)
	if c.qcFormed[v.View] {
		return nil
	}
	byBlock := c.votes[v.View]
	if byBlock == nil {
		byBlock = map[types.Hash]map[types.NodeID]*types.Vote{}
		c.votes[v.View] = byBlock
	}
	set := byBlock[v.Block]
	if set == nil {
		set = map[types.NodeID]*types.Vote{}
		byBlock[v.Block] = set
	}
	set[v.Voter] = v
	if len(set) < c.committee.Quorum() {
		return nil
	}
	c.qcFormed[v.View] = true
	qc := types.QC{View: v.View, Block: v.Block, Sigs: make([]types.PartialSig, 0, len(set))}
	for id, sv := range set {
		qc.Sigs = append(qc.Sigs, types.PartialSig{Signer: id, Sig: sv.Sig})
	}
	slices.SortFunc(qc.Sigs, func(a, b types.PartialSig) int { return cmp.Compare(a.Signer, b.Signer) })
	c.log.Debug("QC formed", "view", qc.View, "block", qc.Block.String())
	c.processQC(qc, from)
	return nil
}

// checkConflict fetches the block of a vote when this replica saw a
// different proposal from the same view's leader: if the leader
// equivocated, the fetched block (signed by it) completes the evidence.
func (c *Core) checkConflict(v *types.Vote, from types.NodeID) {
	if c.tree.Contains(v.Block) {
		return
	}
	seen, ok := c.proposals[propKey{view: v.View, proposer: c.leader(v.View)}]
	if !ok || seen.hash == v.Block {
		return
	}
	c.fetchN(v.Block, from, 1)
}

// --- certificates and views ---

// processQC takes a verified QC into account: high QC, commits, view.
func (c *Core) processQC(qc types.QC, from types.NodeID) {
	if !c.tree.Contains(qc.Block) {
		root, _ := c.tree.Root()
		if qc.View <= root.View {
			return // certifies a committed ancestor or a dead fork
		}
		if qc.View > c.pendQC.View {
			c.pendQC = qc
		}
		c.fetch(qc.Block, from)
		c.advanceView(qc.View+1, true, "QC (block being fetched)")
		return
	}
	if qc.View > c.highQC.View {
		c.highQC = qc
	}
	c.tryCommit(qc)
	c.advanceView(qc.View+1, true, "QC")
	c.tryPropose()
}

// processTC takes a verified TC into account.
func (c *Core) processTC(tc *types.TC, from types.NodeID) {
	if c.highTC == nil || tc.View > c.highTC.View {
		c.highTC = tc
	}
	c.processQC(tc.HighQC, from)
	if tc.View == c.view {
		c.suspectOnTimeout() // a quorum gave up on our view
	}
	c.advanceView(tc.View+1, false, "TC")
	c.tryPropose()
}

// advanceView enters view v if it is above the current view.
func (c *Core) advanceView(v types.View, byQC bool, why string) {
	if v <= c.view {
		if byQC && v == c.view {
			c.pm.Progress()
			c.updateAlert()
		}
		return
	}
	c.view = v
	c.viewFrom = c.steps
	c.pm.Enter(v, byQC)
	c.myTO = nil
	c.event(Event{Kind: EventViewChange, View: v, Detail: why})
	c.updateAlert()
	// Forget vote and timeout collections of views that cannot matter any
	// more.
	for w := range c.votes {
		if w+2 < v {
			delete(c.votes, w)
			delete(c.qcFormed, w)
		}
	}
	for k := range c.firstVote {
		if k.view+2 < v {
			delete(c.firstVote, k)
		}
	}
	for w := range c.timeouts {
		if w+2 < v {
			delete(c.timeouts, w)
			delete(c.tcFormed, w)
		}
	}
	// A suspected leader has sent nothing since it let a view of ours time
	// out: waiting a whole view timeout for its proposal would most likely
	// be waiting for a crashed replica. Time the view out now. Only for a
	// view entered through a QC: the previous view then went well, so the
	// skipped view is the only one lost; after a TC the leader gets its
	// chance (blame after a failed view is not reliable enough to skip two
	// views in a row). This only costs liveness, and only this replica's
	// vote in this view if the leader is in fact up (any message from it
	// clears the suspicion).
	if l := c.leader(v); byQC && l != c.id && c.suspects[l] && c.pm.TimeoutNow() {
		c.log.Debug("leader suspected: timing the view out at once", "view", v, "leader", string(l))
		c.sendTimeout()
	}
}

// suspectOnTimeout runs when the current view times out (its timer
// expired, f+1 members timed it out, or a TC for it arrived): it suspects
// the member whose job it was to make progress, if nothing at all came from
// that member since the view began. If this replica voted in the view, the
// proposal came and the votes went to the next view's leader, which did
// not turn them into a proposal; if no proposal came from the view's
// leader, the leader is suspected. A suspect is cleared by the next message
// received from it (Step).
//
// Suspicion changes only timing and who receives votes: votes for blocks
// the suspect is to collect are broadcast (every replica can then form the
// QC), and views it leads time out as soon as they start. Neither changes
// what a replica signs, so safety does not depend on it; a correct member
// suspected wrongly is cleared by its next message.
func (c *Core) suspectOnTimeout() {
	var s types.NodeID
	switch {
	case c.lastVote != nil && c.lastVote.View == c.view:
		s = c.leader(c.view + 1)
	default:
		l := c.leader(c.view)
		if _, ok := c.proposals[propKey{view: c.view, proposer: l}]; !ok {
			s = l
		}
	}
	if s == "" || s == c.id || c.suspects[s] || c.heard[s] >= c.viewFrom {
		return
	}
	c.suspects[s] = true
	c.log.Info("suspecting a member of being down: it let a view time out", "view", c.view, "member", string(s))
}

func (c *Core) suspectList() []types.NodeID {
	if len(c.suspects) == 0 {
		return nil
	}
	out := make([]types.NodeID, 0, len(c.suspects))
	for id := range c.suspects {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (c *Core) updateAlert() {
	a := c.pm.Alert()
	if a == c.alert {
		return
	}
	c.alert = a
	if a {
		c.log.Warn("view change retries exhausted", "view", c.view, "consecutive", c.pm.Consecutive())
		c.event(Event{Kind: EventAlert, View: c.view, Detail: fmt.Sprintf("%d consecutive views timed out", c.pm.Consecutive())})
	} else {
		c.event(Event{Kind: EventAlertCleared, View: c.view, Detail: "progress resumed"})
	}
}

// tryCommit applies the commit rule to qc.
func (c *Core) tryCommit(qc types.QC) {
	h, ok := c.commit.Commit(c.tree, qc)
	if !ok {
		return
	}
	root, rh := c.tree.Root()
	if h == rh {
		return
	}
	b, ok := c.tree.Get(h)
	if !ok || b.Height <= root.Height {
		return
	}
	path, err := c.tree.PathFromRoot(h)
	if err != nil {
		c.log.Error("commit path", "err", err)
		return
	}
	// The QC certifying h: the justify of h's child on the way to qc.Block,
	// or qc itself.
	cert := qc
	for x := qc.Block; x != h; {
		xb, _ := c.tree.Get(x)
		if xb.Parent == h {
			cert = xb.Justify
			break
		}
		x = xb.Parent
	}
	obs, _ := c.rotation.(leaderrotation.CommitObserver)
	for i, cb := range path {
		c.committed = append(c.committed, cb)
		if obs != nil {
			obs.Committed(cb)
		}
		for _, cmd := range cb.Payload {
			c.forgetCommand(cmd)
		}
		// A block's hash is its child's Parent field.
		ch := h
		if i+1 < len(path) {
			ch = path[i+1].Parent
		}
		c.retain(cb, ch)
	}
	c.commitQC = cert
	c.rootQC = cert
	if _, err := c.tree.Prune(h); err != nil {
		c.log.Error("prune", "err", err)
	}
	c.log.Debug("committed", "height", b.Height, "view", b.View, "blocks", len(path))
	// Drop bookkeeping below the new root.
	for k := range c.proposals {
		if k.view+64 < b.View {
			delete(c.proposals, k)
		}
	}
	for k := range c.evidence {
		if k.view+1024 < b.View {
			delete(c.evidence, k)
		}
	}
	for ph, os := range c.orphans {
		keep := os[:0]
		for _, o := range os {
			if o.p.Block.Height > b.Height {
				keep = append(keep, o)
			}
		}
		c.nOrphans -= len(os) - len(keep)
		if len(keep) == 0 {
			delete(c.orphans, ph)
		} else {
			c.orphans[ph] = keep
		}
	}
	for lh, lb := range c.loose {
		if lb.Height <= b.Height {
			delete(c.loose, lh)
		}
	}
	delete(c.wants, h)
	if c.pendQC.View <= b.View {
		c.pendQC = types.QC{}
	}
}

// forgetCommand takes a committed command out of the queue (by its key)
// and remembers its exact bytes as committed.
func (c *Core) forgetCommand(cmd []byte) {
	if q := c.queued[c.cfg.CommandKey(cmd)]; q != nil {
		delete(c.queued, q.key)
		q.dead = true
		c.dead++
		if c.dead > len(c.queue)/2 {
			c.queue = slices.DeleteFunc(c.queue, func(q *queued) bool { return q.dead })
			c.dead = 0
		}
	}
	h := types.CommandHash(cmd)
	if c.recentCmds[h] {
		return
	}
	c.recentCmds[h] = true
	c.recentOrder = append(c.recentOrder, h)
	if limit := max(c.cfg.MaxPending, 1024); len(c.recentOrder) > limit {
		delete(c.recentCmds, c.recentOrder[0])
		c.recentOrder = c.recentOrder[1:]
	}
}

func (c *Core) retain(b *types.Block, h types.Hash) {
	if c.cfg.RetainCommitted == 0 {
		return
	}
	c.retained[h] = b
	c.retainOrder = append(c.retainOrder, h)
	if len(c.retainOrder) > c.cfg.RetainCommitted {
		delete(c.retained, c.retainOrder[0])
		c.retainOrder = c.retainOrder[1:]
	}
}

// --- timeouts ---

// sendTimeout signs and broadcasts a timeout for the current view, and
// re-broadcasts this view's vote so that every replica can still form the
// QC if the next leader is down.
func (c *Core) sendTimeout() {
	var lastTC *types.TC
	if c.highTC != nil && c.highTC.View+1 == c.view {
		lastTC = c.highTC
	}
	t, err := c.safety.SignTimeout(c.view, c.highQC, lastTC)
	if err != nil {
		c.log.Warn("cannot sign timeout", "view", c.view, "err", err)
		return
	}
	c.safetyDirty = true
	t.LastTC = lastTC
	c.myTO = t
	// The vote goes first: where the QC can still form, it then forms
	// before the TC, and the next view is entered through it.
	if c.lastVote != nil && c.lastVote.View == c.view {
		c.broadcast(c.lastVote, true)
	}
	c.broadcast(t, true)
}

// resend repeats this view's timeout (with the newest high QC) and vote,
// for message loss. The safety kernel returns the stored timeout when the
// high QC has not changed.
func (c *Core) resend() { c.sendTimeout() }

func (c *Core) onTimeout(from types.NodeID, t *types.Timeout) error {
	if drop, err := c.checkSigner(t.Sender, "timeout"); drop {
		return err
	}
	if t.View > c.view+maxFutureViews {
		return nil
	}
	if t.View+1 < c.view {
		if from != c.id {
			c.maybeSync(from)
		}
		return nil
	}
	if err := c.committee.VerifyTimeoutSig(t); err != nil {
		return fmt.Errorf("timeout from %q: %w", from, err)
	}
	if err := c.verifier.VerifyQC(t.HighQC); err != nil {
		return fmt.Errorf("timeout view %d from %q: high QC: %w", t.View, t.Sender, err)
	}
	if t.LastTC != nil {
		if t.LastTC.View+1 != t.View {
			return fmt.Errorf("timeout view %d from %q: last TC for view %d: %w", t.View, t.Sender, t.LastTC.View, types.ErrInvalidCertificate)
		}
		if err := c.verifier.VerifyTC(t.LastTC); err != nil {
			return fmt.Errorf("timeout view %d from %q: last TC: %w", t.View, t.Sender, err)
		}
	}
	c.processQC(t.HighQC, from)
	if t.LastTC != nil {
		c.processTC(t.LastTC, from)
	}
	set := c.timeouts[t.View]
	if set == nil {
		set = map[types.NodeID]*types.Timeout{}
		c.timeouts[t.View] = set
	}
	if prev, ok := set[t.Sender]; ok && prev.HighQC.View >= t.HighQC.View {
		return nil
	}
	set[t.Sender] = t
	if !c.tcFormed[t.View] && len(set) >= c.committee.Quorum() {
		c.tcFormed[t.View] = true
		tc := &types.TC{View: t.View, Sigs: make([]types.TimeoutSig, 0, len(set))}
		for id, st := range set {
			tc.Sigs = append(tc.Sigs, types.TimeoutSig{Signer: id, HighQCView: st.HighQC.View, Sig: st.Sig})
		}
		slices.SortFunc(tc.Sigs, func(a, b types.TimeoutSig) int { return cmp.Compare(a.Signer, b.Signer) })
		// The high QC is the first (in signer order) of the highest view, so
		// the TC is a function of the timeouts alone.
		for i, ts := range tc.Sigs {
			if hq := set[ts.Signer].HighQC; i == 0 || hq.View > tc.HighQC.View {
				tc.HighQC = hq
			}
		}
		c.log.Debug("TC formed", "view", tc.View, "highQC", tc.HighQC.View)
		c.processTC(tc, from)
		return nil
	}
	// f+1 timeouts for our view: at least one correct replica gave up on
	// it, so join rather than wait for our own timer.
	if t.View == c.view && len(set) > c.committee.F() && c.pm.TimeoutNow() {
		c.suspectOnTimeout()
		c.sendTimeout()
	}
	return nil
}

// --- view sync ---

func (c *Core) maybeSync(to types.NodeID) {
	if last, ok := c.syncSentAt[to]; ok && c.now-last < c.cfg.Pacemaker.ResendInterval {
		return
	}
	c.syncSentAt[to] = c.now
	s := &types.SyncInfo{HighQC: c.highQC}
	if c.highTC != nil && c.highTC.View > c.highQC.View {
		s.TC = c.highTC
	}
	c.send(to, s)
}

func (c *Core) onSync(from types.NodeID, s *types.SyncInfo) error {
	if err := c.verifier.VerifyQC(s.HighQC); err != nil {
		return fmt.Errorf("sync from %q: high QC: %w", from, err)
	}
	if s.TC != nil {
		if err := c.verifier.VerifyTC(s.TC); err != nil {
			return fmt.Errorf("sync from %q: %w", from, err)
		}
	}
	c.processQC(s.HighQC, from)
	if s.TC != nil {
		c.processTC(s.TC, from)
	}
	return nil
}

// --- proposing ---

// tryPropose proposes in the current view if this replica leads it, has
// not proposed yet, and holds the QC or TC for the previous view (and the
// block of its high QC).
func (c *Core) tryPropose() {
	if c.proposed >= c.view || c.leader(c.view) != c.id || c.quarantined[c.id] {
		return
	}
	var tc *types.TC
	if c.highQC.View+1 != c.view {
		if c.highTC == nil || c.highTC.View+1 != c.view || c.highQC.View < c.highTC.HighQC.View {
			return
		}
		tc = c.highTC
	}
	if c.pendQC.View > c.highQC.View {
		return // a newer QC's block is still being fetched
	}
	parent, ok := c.tree.Get(c.highQC.Block)
	if !ok {
		return
	}
	cmds := c.selectCommands(c.highQC.Block)
	if len(cmds) == 0 && c.cfg.IdlePropose > 0 && c.pm.Elapsed() < c.cfg.IdlePropose && !c.pendingPayload(c.highQC.Block) {
		return // nothing to order yet: wait a little (Tick retries)
	}
	if n := len(cmds); n > 0 && n < c.cfg.MaxBatch && c.pm.Elapsed() < min(c.cfg.BatchDelay, c.cfg.Pacemaker.ViewTimeout/2) {
		return // room for more: gather until the batch delay (Tick retries)
	}
	b := &types.Block{
		Parent:   c.highQC.Block,
		View:     c.view,
		Height:   parent.Height + 1,
		Justify:  c.highQC,
		Proposer: c.id,
		Payload:  cmds,
	}
	// The leader votes for its own block with the same save that records
	// the proposal (the self-delivered proposal then finds the vote cast).
	var (
		sig  []byte
		vote *types.Vote
		err  error
	)
	if c.pm.TimedOut() {
		sig, err = c.safety.SignProposal(b)
	} else {
		sig, vote, err = c.safety.ProposeAndVote(safety.Candidate{Block: b, Hash: b.Hash(), Certified: parent, TC: tc})
	}
	if err != nil {
		c.log.Error("cannot sign proposal", "view", c.view, "err", err)
		return
	}
	c.safetyDirty = true
	b.Sig = sig
	c.proposed = c.view
	c.log.Debug("proposing", "view", b.View, "height", b.Height, "cmds", len(cmds))
	c.broadcast(&types.Proposal{Block: b, TC: tc}, true)
	if vote != nil {
		c.cast(vote)
	}
}

// pendingPayload reports whether a block with commands lies between the
// root and h, root included: an uncommitted one needs more blocks on top to
// commit, and a committed root with commands was committed by a QC that
// only this replica may hold yet (the next block's justify carries it to
// the others, who would otherwise commit it an idle delay later).
func (c *Core) pendingPayload(h types.Hash) bool {
	root, rh := c.tree.Root()
	for x := h; x != rh; {
		b, ok := c.tree.Get(x)
		if !ok {
			return false
		}
		if len(b.Payload) > 0 {
			return true
		}
		x = b.Parent
	}
	return len(root.Payload) > 0 && root.View > 0
}

// selectCommands picks up to MaxBatch queued commands that are not already
// in an uncommitted ancestor of parent.
func (c *Core) selectCommands(parent types.Hash) [][]byte {
	if len(c.queued) == 0 {
		return nil
	}
	inChain := map[types.Hash]bool{}
	_, rh := c.tree.Root()
	for x := parent; x != rh; {
		b, ok := c.tree.Get(x)
		if !ok {
			break
		}
		for _, cmd := range b.Payload {
			inChain[c.cfg.CommandKey(cmd)] = true
		}
		x = b.Parent
	}
	limit := c.cfg.MaxBatchBytes
	if limit <= 0 {
		limit = DefaultMaxBatchBytes
	}
	var out [][]byte
	size := 0
	for _, q := range c.queue {
		if len(out) >= c.cfg.MaxBatch {
			break
		}
		if q.dead || inChain[q.key] {
			continue
		}
		if size+len(q.cmd) > limit && len(out) > 0 {
			break // the rest goes in the next block
		}
		out = append(out, q.cmd)
		size += len(q.cmd)
	}
	return out
}

// --- block sync ---

// fetch asks for block h (and ancestors) unless it is known or already
// being fetched; hint is a peer likely to have it.
func (c *Core) fetch(h types.Hash, hint types.NodeID) { c.fetchN(h, hint, uint16(c.cfg.SyncBatch)) }

// fetchN is fetch asking for at most n blocks per request.
func (c *Core) fetchN(h types.Hash, hint types.NodeID, n uint16) {
	if c.tree.Contains(h) {
		return
	}
	if _, ok := c.loose[h]; ok {
		return
	}
	w, ok := c.wants[h]
	if ok {
		w.count = max(w.count, n)
		if hint != "" && hint != c.id && !slices.Contains(w.hints, hint) {
			w.hints = append(w.hints, hint)
		}
		return
	}
	if len(c.wants) >= c.cfg.MaxOrphans {
		return
	}
	w = &want{count: n}
	if hint != "" && hint != c.id {
		w.hints = append(w.hints, hint)
	}
	c.wants[h] = w
	c.ask(h, w)
}

func (c *Core) ask(h types.Hash, w *want) {
	var to types.NodeID
	if w.tries < len(w.hints) {
		to = w.hints[w.tries]
	} else {
		ms := c.committee.Members()
		for i := range ms {
			m := ms[(w.tries+i)%len(ms)]
			if m != c.id && !c.quarantined[m] {
				to = m
				break
			}
		}
	}
	w.tries++
	w.lastAsk = c.now
	c.log.Debug("requesting block", "hash", h.String(), "from", string(to), "try", w.tries)
	if to != "" {
		c.send(to, &types.BlockRequest{Hash: h, Count: w.count})
	}
}

func (c *Core) retryWants() {
	if len(c.wants) == 0 {
		return
	}
	// Visit in hash order: the requests sent must not depend on map order.
	hs := make([]types.Hash, 0, len(c.wants))
	for h := range c.wants {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b types.Hash) int { return bytes.Compare(a[:], b[:]) })
	for _, h := range hs {
		w := c.wants[h]
		if c.tree.Contains(h) {
			delete(c.wants, h)
			continue
		}
		if c.now-w.lastAsk >= c.cfg.Pacemaker.ResendInterval {
			c.ask(h, w)
		}
	}
}

func (c *Core) lookup(h types.Hash) (*types.Block, bool) {
	if b, ok := c.tree.Get(h); ok {
		return b, true
	}
	b, ok := c.retained[h]
	return b, ok
}

func (c *Core) onBlockRequest(from types.NodeID, r *types.BlockRequest) {
	n := min(int(r.Count), types.MaxBlocksPerResponse, c.cfg.SyncBatch*2)
	resp := &types.BlockResponse{}
	for h := r.Hash; len(resp.Blocks) < n; {
		b, ok := c.lookup(h)
		if !ok || b.View == 0 {
			break
		}
		resp.Blocks = append(resp.Blocks, b)
		h = b.Parent
	}
	if len(resp.Blocks) > 0 {
		c.send(from, resp)
	}
}

func (c *Core) onBlockResponse(from types.NodeID, r *types.BlockResponse) error {
	root, _ := c.tree.Root()
	c.log.Debug("block response", "from", string(from), "blocks", len(r.Blocks))
	var accepted []types.Hash
	wanted := false
	for i, b := range r.Blocks {
		h := b.Hash()
		_, w := c.wants[h]
		chained := i > 0 && wanted && r.Blocks[i-1].Parent == h
		if !w && !chained {
			wanted = false
			continue
		}
		wanted = true
		if c.tree.Contains(h) || b.Height <= root.Height || b.View == 0 {
			continue
		}
		if err := c.committee.VerifyBlockSig(b, h); err != nil {
			return fmt.Errorf("block response from %q: %w", from, err)
		}
		if b.Justify.Block != b.Parent || b.Justify.View >= b.View {
			return fmt.Errorf("block response from %q: block %s: %w", from, h, ErrInvalidBlock)
		}
		if err := c.verifier.VerifyQC(b.Justify); err != nil {
			return fmt.Errorf("block response from %q: block %s: %w", from, h, err)
		}
		c.recordBlock(b, h)
		if _, ok := c.loose[h]; !ok {
			if len(c.loose) >= c.cfg.MaxOrphans {
				break
			}
			c.loose[h] = b
			c.looseKids[b.Parent] = append(c.looseKids[b.Parent], h)
		}
		accepted = append(accepted, h)
	}
	// Connect whatever now has its parent; fetch the rest's ancestors.
	for i := len(accepted) - 1; i >= 0; i-- {
		h := accepted[i]
		b, ok := c.loose[h]
		if !ok {
			continue
		}
		if c.tree.Contains(b.Parent) {
			delete(c.loose, h)
			kids := c.looseKids[b.Parent]
			if j := slices.Index(kids, h); j >= 0 {
				kids = slices.Delete(kids, j, j+1)
			}
			if len(kids) == 0 {
				delete(c.looseKids, b.Parent)
			} else {
				c.looseKids[b.Parent] = kids
			}
			if err := c.insert(b, h); err != nil {
				return fmt.Errorf("block response from %q: %w", from, err)
			}
		} else if b.Height > root.Height+1 {
			delete(c.wants, h)
			c.fetch(b.Parent, from)
		}
	}
	return nil
}
