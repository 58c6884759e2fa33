package engine

import (
	"slices"
	"time"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/core"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/smr"
)

// Selective omission (Config.OnOmission): a command handed over on this
// replica and forwarded to a leader, which that leader left out of a
// proposal it made after it had the command, with room for it.
//
// "After it had the command" is established causally, not by a clock. A
// replica votes for a view's block by sending its vote to the leader of
// the next view, on the same ordered connection it forwards commands on.
// If this replica sent command c to leader L, then sent L its vote for
// view u, and L's proposal for view u+1 is justified by a QC of view u that
// holds this replica's vote, then L took c in before it could form that QC
// and propose: a correct L had c queued when it proposed (unless its queue
// was full, which its blocks would show by being full). The proposal
// counts against L for c when all of these hold:
//
//   - it is L's own proposal (sender = proposer), accepted by the core,
//     with no TC, and its QC is of the view just before it and holds this
//     replica's vote;
//   - this replica's vote for the QC's view was sent to L after c was
//     (every earlier vote to L was of a lower view), and it was sent by
//     this run of the engine (not before a restart);
//   - no frame was dropped by this replica's transport, and none of its
//     outgoing connections ended, since c was sent (a dropped frame may
//     have been c; a frame written just before its connection broke, to a
//     peer that crashed or restarted, may be lost without an error while
//     the vote goes on the next connection);
//   - the block has room for c: fewer than MaxBatch commands, and c fits
//     in core.DefaultMaxBatchBytes with them;
//   - it does not carry c (by command key, so a copy of the same client
//     request made by another replica counts as c), and no block of a
//     lower view that carries c was seen, proposed or committed;
//   - when this replica has committed the proposal's parent (so it has
//     applied every ancestor of the proposal: a copy of c in one of them
//     has taken c out of the in-flight commands), c is still in flight or
//     was seen only in blocks of higher views. It waits at most
//     omissionGrace for that commit; a proposal whose parent does not
//     commit by then counts for nothing.
//
// So a correct leader is never reported when it was busy (full blocks), did
// not lead (no proposal of its own), had not received c (the vote that
// followed c is not in its QC, or a frame was dropped), or left c out
// because a block of its chain already carried it, and a connection that
// broke after c was written (a restart of L, or a reset) voids the proof:
// c may have been lost with it while the vote went on the next one. Each
// forward of c to L is reported at most
// once (a later forward may be reported again). Votes sent to every peer
// (the collector is a suspect) prove nothing: another replica may form the
// QC with them and hand it to L ahead of c.
//
// Probes. The forwarding alone rarely gives that proof: a command handed
// over goes to the leaders of the view this replica is in and of the next
// two (and into its own queue), so a correct one of them orders it before L's
// turn, or it reaches L after the vote that L's next QC holds. Clients that
// write again as soon as a write commits hand their commands over at the
// same phase of the view, view after view, so whether a replica ever sees
// a provable omission was a matter of timing, and the replica that leads
// just before L never could. So each replica holds one command at a time
// as a probe (takeProbe, while the views go on fast, a vote in n views
// within ViewChangeTimeout, and other commands keep the chain busy), for
// the next peer T in turn: it forwards it to
// T alone, keeps it out of its own queue and from every other leader, and
// releases it (probeDue: queued and forwarded as usual) once its vote for
// the view before T's next turn went to T, once past that turn, or after
// ViewChangeTimeout/2; a command of the probe's client releases it first,
// and a probe committed meanwhile (T led earlier) is dropped. Only T can
// order the probe before T's turn: a correct T does, an omitting T is
// proven by the rule above whenever T's QC holds this replica's vote.

// OmissionObservation is what one sweep found against one leader.
type OmissionObservation struct {
	// Leader is the member that proposed without the commands.
	Leader types.NodeID
	// Commands is how many commands forwarded to Leader it left out of
	// proposals with room for them.
	Commands int
	// View is the highest view of such a proposal.
	View types.View
}

// omissionGraceFactor: a proposal's verdict waits for its parent to commit
// at most this many view change timeouts (omissionGrace).
const omissionGraceFactor = 10

// recentVotes is how many views of own votes per peer the tracker keeps.
const recentVotes = 16

// omitLeg is one forward of a command to one leader.
type omitLeg struct {
	// floor is the highest view of this replica's votes sent to the leader
	// before the command: a vote of a higher view was sent after it.
	floor types.View
	// drops is the transport's dropped-frame count when it was sent.
	drops uint64
}

// omitCmd is one command handed over on this replica.
type omitCmd struct {
	size int
	// minView is the lowest view of an accepted block seen carrying the
	// command; 0 when none was.
	minView types.View
	legs    map[types.NodeID]omitLeg
}

// omitCandidate is a proposal that left a command out, waiting for its
// parent (of view view−1: proposal takes only proposals justified by the
// view just before) to commit.
type omitCandidate struct {
	leader types.NodeID
	key    types.Hash
	view   types.View // the proposal's
	at     time.Time
}

// omissionTracker is the loop-owned state of the omission observation.
// Its methods are pure bookkeeping (no engine, no clock of its own), so
// that the rule above can be tested on its own.
type omissionTracker struct {
	self     types.NodeID
	maxBatch int
	maxBytes int
	grace    time.Duration
	cmds     map[types.Hash]*omitCmd
	// votes holds the views of the last own votes sent to each peer, in
	// the order sent. Own votes go out in views that never decrease (a
	// vote is of a view above every earlier one, a resend is of the
	// latest), so the last is the highest.
	votes map[types.NodeID][]types.View
	cands []omitCandidate

	// The probe (see "Probes" above).
	probe     *omitProbe
	pace      time.Duration // a probe is taken only after a vote in n views within pace (fast)
	maxHold   time.Duration // the longest a probe is held: pace/2
	lastVoted types.View    // the highest view of an own vote
	voteTimes []time.Time   // when the last recentVotes own votes of new views went out
	nextProbe int           // the rotation position of the next probe's target
	loaded    types.View    // the highest view of an accepted block with commands
	probes    int           // probes taken (tests read it after Stop)
}

// omitProbe is a command handed over here and held back as a probe.
type omitProbe struct {
	cmd    []byte
	key    types.Hash
	client string // the client key of its envelope
	target types.NodeID
	turn   types.View // the view target leads, the first it can order cmd in
	at     time.Time  // when it was held
}

func newOmissionTracker(self types.NodeID, maxBatch int, grace, pace time.Duration) *omissionTracker {
	return &omissionTracker{self: self, maxBatch: maxBatch, maxBytes: core.DefaultMaxBatchBytes, grace: grace, pace: pace, maxHold: pace / 2,
		cmds: map[types.Hash]*omitCmd{}, votes: map[types.NodeID][]types.View{}}
}

// voteTo is the highest view of an own vote sent to to, 0 when none was.
func (t *omissionTracker) voteTo(to types.NodeID) types.View {
	vs := t.votes[to]
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1]
}

// sent records that the command key (of size bytes) went to each of to,
// when the transport had dropped drops frames in all. A leg is kept from
// its first send, and started again when frames were dropped since.
func (t *omissionTracker) sent(key types.Hash, size int, to []types.NodeID, drops uint64) {
	c := t.cmds[key]
	if c == nil {
		if len(t.cmds) >= maxInflight {
			return
		}
		c = &omitCmd{size: size, legs: map[types.NodeID]omitLeg{}}
		t.cmds[key] = c
	}
	for _, id := range to {
		if id == t.self {
			continue
		}
		if l, ok := c.legs[id]; !ok || l.drops != drops {
			c.legs[id] = omitLeg{floor: t.voteTo(id), drops: drops}
		}
	}
}

// voted records an own vote of view v sent to to.
func (t *omissionTracker) voted(to types.NodeID, v types.View) {
	vs := append(t.votes[to], v)
	if len(vs) > recentVotes {
		vs = slices.Delete(vs, 0, len(vs)-recentVotes)
	}
	t.votes[to] = vs
}

// ownVote records that an own vote of view v went out at now (once per
// vote, whatever it was sent to).
func (t *omissionTracker) ownVote(v types.View, now time.Time) {
	if v <= t.lastVoted {
		return
	}
	t.lastVoted = v
	t.voteTimes = append(t.voteTimes, now)
	if len(t.voteTimes) > recentVotes {
		t.voteTimes = slices.Delete(t.voteTimes, 0, len(t.voteTimes)-recentVotes)
	}
}

// fast reports whether this replica voted in n views within pace before
// now: the views go on fast enough for a probe to be held without
// delaying it by more than a few views (an idle cluster's leaders wait
// IdlePropose, by default ViewChangeTimeout/2, before each empty block).
func (t *omissionTracker) fast(now time.Time, n int) bool {
	if n <= 0 || len(t.voteTimes) < n {
		return false
	}
	return now.Sub(t.voteTimes[len(t.voteTimes)-n]) <= t.pace
}

// probeTarget picks the target of a probe taken in view now: the next
// peer in the rotation (peers, sorted, without this replica) that leads a
// view turn no later than 2·len(peers)+1 views on, with turn−1 above the
// highest view this replica voted in (the vote for turn−1 goes to the
// target after the probe). leader is the leader rotation.
func (t *omissionTracker) probeTarget(peers []types.NodeID, now types.View, leader func(types.View) types.NodeID) (types.NodeID, types.View, bool) {
	first := max(now+1, t.lastVoted+2)
	for i := range peers {
		id := peers[(t.nextProbe+i)%len(peers)]
		for w := first; w <= now+types.View(2*len(peers)+1); w++ {
			if leader(w) == id {
				t.nextProbe = (t.nextProbe + i + 1) % len(peers)
				return id, w, true
			}
		}
	}
	return "", 0, false
}

// sawBlock records an accepted block: the highest view of one with
// commands tells whether other commands keep the chain busy.
func (t *omissionTracker) sawBlock(b *types.Block) {
	if len(b.Payload) > 0 {
		t.loaded = max(t.loaded, b.View)
	}
}

// busy reports whether a probe may be taken at now in view, with n
// members: the views go on fast (fast) and a block of view or the one
// before carries commands.
func (t *omissionTracker) busy(now time.Time, view types.View, n int) bool {
	return t.loaded+1 >= view && t.fast(now, n)
}

// takeProbe holds cmd, of command key key and client client, handed over
// at now in view, as the probe when none is held, the views go on fast
// (fast, with the members: peers and this replica), a block of this view
// or the one before carries commands (others keep the chain busy, so
// holding this one does not leave the leaders idle: a client writing
// alone, one write at a time, is never held) and a target leads a view
// soon enough (probeTarget); it returns the target, to which the caller
// forwards cmd alone.
func (t *omissionTracker) takeProbe(cmd []byte, key types.Hash, client string, now time.Time, view types.View,
	peers []types.NodeID, leader func(types.View) types.NodeID) (types.NodeID, bool) {
	if t.probe != nil || !t.busy(now, view, len(peers)+1) {
		return "", false
	}
	target, turn, ok := t.probeTarget(peers, view, leader)
	if !ok {
		return "", false
	}
	t.probe = &omitProbe{cmd: cmd, key: key, client: client, target: target, turn: turn, at: now}
	t.probes++
	return target, true
}

// release returns the held probe and forgets it.
func (t *omissionTracker) release() *omitProbe {
	p := t.probe
	t.probe = nil
	return p
}

// probeDue reports whether the held probe is to be released at now, in
// view: the vote for the view before its target's turn went to the
// target, this replica is past that turn, or it was held maxHold.
func (t *omissionTracker) probeDue(now time.Time, view types.View) bool {
	p := t.probe
	return p != nil && (t.voteTo(p.target) >= p.turn-1 || view >= p.turn || now.Sub(p.at) > t.maxHold)
}

// proposal records a proposal the core accepted from from (or this
// replica's own), whose payload's command keys are keys, when the
// transport had dropped drops frames in all, and keeps the commands it
// left out as candidates.
func (t *omissionTracker) proposal(from types.NodeID, p *types.Proposal, keys []types.Hash, drops uint64, now time.Time) {
	if p == nil || p.Block == nil {
		return
	}
	t.sawBlock(p.Block)
	if len(t.cmds) == 0 {
		return
	}
	b := p.Block
	for _, k := range keys {
		t.carried(k, b.View)
	}
	leader := b.Proposer
	if leader != from || leader == t.self || p.TC != nil || b.Justify.View+1 != b.View ||
		len(b.Payload) >= t.maxBatch || !slices.Contains(b.Justify.Signers(), t.self) {
		return
	}
	floor := b.Justify.View // this replica's vote in the QC is of this view
	if !slices.Contains(t.votes[leader], floor) {
		return // not sent to the leader since this tracker started
	}
	in := make(map[types.Hash]bool, len(keys))
	for _, k := range keys {
		in[k] = true
	}
	bytes := 0
	for _, cmd := range b.Payload {
		bytes += len(cmd)
	}
	for k, c := range t.cmds {
		l, ok := c.legs[leader]
		if !ok || in[k] || floor <= l.floor || l.drops != drops || bytes+c.size > t.maxBytes ||
			(c.minView != 0 && c.minView < b.View) {
			continue
		}
		delete(c.legs, leader)
		t.cands = append(t.cands, omitCandidate{leader: leader, key: k, view: b.View, at: now})
	}
}

// carried records that an accepted block of view v carries the command
// key k: one this replica saw proposed, or committed (whether or not it
// saw it proposed).
func (t *omissionTracker) carried(k types.Hash, v types.View) {
	if c := t.cmds[k]; c != nil && (c.minView == 0 || v < c.minView) {
		c.minView = v
	}
}

// sweep decides the candidates whose proposal's parent is committed here
// (committed is the view of the last committed block) and drops those
// that waited longer than grace; inflight reports whether a command is
// still in flight here. It forgets the commands no longer in flight and no
// longer needed, and returns the omissions found, by leader.
func (t *omissionTracker) sweep(now time.Time, committed types.View, inflight func(types.Hash) bool) []OmissionObservation {
	var out []OmissionObservation
	idx := map[types.NodeID]int{}
	keep := t.cands[:0]
	waiting := map[types.Hash]bool{}
	for _, cd := range t.cands {
		c := t.cmds[cd.key]
		switch {
		case c == nil, c.minView != 0 && c.minView < cd.view:
			// A block of a lower view carries it: not an omission.
		case committed < cd.view-1: // the parent is not committed
			if now.Sub(cd.at) <= t.grace {
				keep = append(keep, cd)
				waiting[cd.key] = true
			}
		case !inflight(cd.key) && c.minView == 0:
			// Committed in a block this replica did not see proposed:
			// maybe an ancestor of the proposal.
		default:
			i, ok := idx[cd.leader]
			if !ok {
				i = len(out)
				idx[cd.leader] = i
				out = append(out, OmissionObservation{Leader: cd.leader})
			}
			out[i].Commands++
			out[i].View = max(out[i].View, cd.view)
		}
	}
	clear(t.cands[len(keep):])
	t.cands = keep
	for k := range t.cmds {
		if !waiting[k] && !inflight(k) {
			delete(t.cmds, k)
		}
	}
	return out
}

// --- engine hooks ---

// netDrops counts the events after which a frame this replica sent may
// not have arrived: frames the transport dropped, and outgoing connections
// that ended (a frame written just before a connection broke can be lost
// without an error, and the next frame then goes on a new connection, so
// the order "c, then the vote" no longer says that c arrived).
func (e *Engine) netDrops() uint64 {
	n := &e.stats.net
	return n.droppedQueue.Load() + n.droppedWrite.Load() + n.connsEnded.Load()
}

// noteForwarded records commands, of command keys keys, sent to to (every
// peer when nil) for the omission observation; only commands handed over
// here are tracked.
func (e *Engine) noteForwarded(cmds [][]byte, keys []types.Hash, to []types.NodeID) {
	if e.omit == nil {
		return
	}
	if to == nil {
		to = make([]types.NodeID, 0, len(e.addrs))
		for id := range e.addrs {
			to = append(to, id)
		}
	}
	drops := e.netDrops()
	for i, k := range keys {
		if _, ok := e.inflight[k]; ok {
			e.omit.sent(k, len(cmds[i]), to, drops)
		}
	}
}

// noteOwnVote records an own vote as it is sent.
func (e *Engine) noteOwnVote(m core.Outbound) {
	v, ok := m.Msg.(*types.Vote)
	if e.omit == nil || !ok || v.Voter != e.cfg.ID {
		return
	}
	e.omit.ownVote(v.View, e.cfg.Clock())
	if m.To != "" {
		e.omit.voted(m.To, v.View)
	}
	// A vote sent to every peer (the collector is a suspect) counts for
	// nothing: any replica may form a QC with it and hand it to the
	// leader, ahead of the commands this replica sent the leader.
}

// noteLeaderProposal records a proposal the core accepted from from, or
// this replica's own (from = its ID); keys caches its payload's command
// keys (payloadKeys).
func (e *Engine) noteLeaderProposal(from types.NodeID, p *types.Proposal, keys *[]types.Hash) {
	if e.omit == nil || p.Block == nil {
		return
	}
	if len(e.omit.cmds) == 0 {
		e.omit.sawBlock(p.Block)
		return
	}
	e.omit.proposal(from, p, payloadKeys(p.Block, keys), e.netDrops(), e.cfg.Clock())
}

// noteCommittedCommand records that the committed block b carries the
// command key k.
func (e *Engine) noteCommittedCommand(b *types.Block, k types.Hash) {
	if e.omit != nil && len(e.omit.cmds) > 0 {
		e.omit.carried(k, b.View)
	}
}

// sweepOmissions reports the omissions whose proposals are decided.
func (e *Engine) sweepOmissions() {
	if e.omit == nil {
		return
	}
	committed := e.status.Load().core.CommittedView
	for _, o := range e.omit.sweep(e.cfg.Clock(), committed, func(k types.Hash) bool { _, ok := e.inflight[k]; return ok }) {
		e.cfg.OnOmission(o)
	}
}

// omissionTrackerFor returns the tracker of an engine built from cfg, nil
// when nothing observes omissions.
func omissionTrackerFor(cfg Config) *omissionTracker {
	if cfg.OnOmission == nil {
		return nil
	}
	return newOmissionTracker(cfg.ID, cfg.MaxBatch, omissionGraceFactor*cfg.ViewChangeTimeout, cfg.ViewChangeTimeout)
}

// holdProbe takes cmd, a command handed over here, as the probe when the
// tracker takes it (takeProbe), cmd is a client command entry not in
// flight yet and the core's queue is at most half full: it forwards cmd
// to the probe's target alone and keeps it from the core until
// releaseProbe. A command of the held probe's client releases the probe
// first, so that a client's commands reach the core in the order they
// came. It reports whether it took cmd.
func (e *Engine) holdProbe(cmd []byte) bool {
	t := e.omit
	if t == nil {
		return false
	}
	if t.probe != nil {
		if client, ok := commandClient(cmd); ok && client == t.probe.client {
			e.releaseProbe(t.release())
		}
		return false
	}
	// The cheap conditions first: most commands are not taken, and
	// commandClient decodes the whole entry.
	now, view := e.cfg.Clock(), e.core.View()
	if len(e.inflight) >= maxInflight || !t.busy(now, view, len(e.addrs)) {
		return false
	}
	client, ok := commandClient(cmd)
	if !ok {
		return false
	}
	h := commandKey(cmd)
	if _, ok := e.inflight[h]; ok {
		return false
	}
	if st := e.core.Status(); 2*(st.Pending+1) > e.coreCfg.MaxPending {
		return false
	}
	target, ok := t.takeProbe(cmd, h, client, now, view, e.otherMembers(), e.core.Leader)
	if !ok {
		return false
	}
	e.inflight[h] = &inflightCmd{cmd: cmd, sent: e.ticks, born: e.ticks}
	e.noteForwarded([][]byte{cmd}, []types.Hash{h}, []types.NodeID{target})
	for _, f := range e.commandFrames([][]byte{cmd}) {
		e.net.send(target, f)
	}
	return true
}

// stepProbe releases the held probe when it is due (probeDue).
func (e *Engine) stepProbe() {
	if e.omit != nil && e.omit.probeDue(e.cfg.Clock(), e.core.View()) {
		e.releaseProbe(e.omit.release())
	}
}

// releaseProbe hands p, the probe just released, to the core and forwards
// it like any command handed over here (to the leaders now, to every peer
// lazily), unless it was committed meanwhile (it is no longer in flight:
// queued again, it would be tracked as a new command no block carries).
func (e *Engine) releaseProbe(p *omitProbe) {
	if _, ok := e.inflight[p.key]; !ok {
		// Committed meanwhile: the target, or a copy handed over
		// elsewhere, ordered it before the target's turn.
		return
	}
	if err := e.core.Propose(p.cmd); err != nil {
		delete(e.inflight, p.key)
		e.log.Warn("a held command could not be queued", "err", err)
		return
	}
	e.inflight[p.key].born = e.ticks
	e.lazy = append(e.lazy, p.key)
	e.outCmds = append(e.outCmds, p.cmd)
	e.outKeys = append(e.outKeys, p.key)
}

// otherMembers returns the members but this replica, sorted.
func (e *Engine) otherMembers() []types.NodeID {
	peers := make([]types.NodeID, 0, len(e.addrs))
	for id := range e.addrs {
		if id != e.cfg.ID {
			peers = append(peers, id)
		}
	}
	slices.Sort(peers)
	return peers
}

// commandClient returns the client key of cmd when it is a client
// command entry.
func commandClient(cmd []byte) (string, bool) {
	if isReadMarker(cmd) {
		return "", false
	}
	var ent smr.Entry
	if ent.UnmarshalBinary(cmd) != nil || ent.Kind != smr.EntryCommand {
		return "", false
	}
	return string(ent.Env.Client), true
}
