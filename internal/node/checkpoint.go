package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// Periodic checkpoints (DESIGN invariant 12), in every consensus mode.
//
// Every engine applies through appliedFSM on one goroutine. When the
// applied index crosses a multiple of checkpoint_interval, the hook
// (captured, on that goroutine) takes the state hash and a snapshot of the
// state at exactly that index and signs CHECKPOINT(epoch, index, hash).
// All replicas apply the same index sequence, so they cross at the same
// index. The checkpoint loop (run) sends the vote to every member on the
// peer port (POST /internal/checkpoint/vote); q matching votes of members
// that are not quarantined make a certificate. A certificate for a state
// this node holds itself, with the same hash, is stable: it is stored with
// the snapshot in data_dir/checkpoints (checkpoint.Store keeps the newest
// two), and the log is compacted behind it (checkpoint_compact.go). A
// certificate for another hash at an index this node captured is a state
// divergence: logged as an error and counted, never stored.
//
// A peer answers a vote with its newest stable certificate when that is at
// or above the vote's index, so a node that fell behind learns the
// certificate the others formed without them keeping old votes; it uses
// it once it has applied that index itself. Own votes that are not stable
// yet are sent again every checkpointRetryEvery.

// Paths and limits.
const (
	checkpointStoreName  = "checkpoints"
	pathCheckpointVote   = "/internal/checkpoint/vote"
	pathCheckpointState  = "/internal/checkpoint/state"
	checkpointRetryEvery = time.Second
	// maxCaptures bounds the own checkpoints (vote and snapshot) kept
	// while they wait for a certificate, and the certificates kept while
	// they wait for this node to apply their index.
	maxCaptures = 4
	// voteWindowIntervals bounds how far beyond its applied index a node
	// keeps peers' votes, in checkpoint intervals.
	voteWindowIntervals = 4
)

// capture is this node's own checkpoint at one index, waiting for its
// certificate.
type capture struct {
	vote checkpoint.Vote
	snap []byte
}

// checkpointer runs the periodic checkpoints of one node.
type checkpointer struct {
	n         *Node
	log       *slog.Logger
	self      string
	key       ed25519.PrivateKey
	committee *checkpoint.Committee
	peers     []config.Member // the other members
	collector *checkpoint.Collector
	store     *checkpoint.Store
	metrics   *checkpointMetrics

	// last is the last index the hook saw; only the apply goroutine
	// touches it.
	last uint64
	// applied mirrors last for the other goroutines.
	applied atomic.Uint64
	iv      atomic.Uint64 // checkpoint_interval in effect
	stable  atomic.Pointer[checkpoint.Certificate]
	kick    chan struct{} // something new for the loop; capacity 1

	mu       sync.Mutex
	captures map[uint64]capture                 // own checkpoints not yet stable, by index
	certs    map[uint64]*checkpoint.Certificate // verified certificates not yet matched, by index

	dissent dissentRelay // dissenting votes sent to the peers (detector_ckpteq.go)
}

// newCheckpointer builds the checkpoints of n. It returns nil (and logs
// why) when a member of initial_members has no public key: the
// certificates need every member's key.
func (n *Node) newCheckpointer(key ed25519.PrivateKey) (*checkpointer, error) {
	ms, err := n.cfg.Members()
	if err != nil {
		return nil, err
	}
	keys := make(map[string]ed25519.PublicKey, len(ms))
	var peers []config.Member
	for _, m := range ms {
		if m.PublicKey == nil {
			n.log.Info("periodic checkpoints are off: initial_members does not list every member's node public key (id=host:port/key)", "member", m.ID)
			return nil, nil
		}
		keys[m.ID] = m.PublicKey
		if m.ID != n.cfg.NodeID {
			peers = append(peers, m)
		}
	}
	if _, ok := keys[n.cfg.NodeID]; !ok {
		n.log.Info("periodic checkpoints are off: this node is not in initial_members")
		return nil, nil
	}
	com, err := checkpoint.NewCommittee(keys)
	if err != nil {
		return nil, fmt.Errorf("checkpoint committee: %w", err)
	}
	st, err := checkpoint.OpenStore(filepath.Join(n.cfg.DataDir, checkpointStoreName), smr.SnapshotInfo)
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	log := n.log.With("component", "checkpoint")
	st.SetLogger(log)
	m, err := newCheckpointMetrics(n.registry)
	if err != nil {
		return nil, err
	}
	c := &checkpointer{
		n: n, log: log, self: n.cfg.NodeID, key: key, committee: com, peers: peers,
		collector: checkpoint.NewCollector(com), store: st, metrics: m,
		kick: make(chan struct{}, 1), captures: map[uint64]capture{}, certs: map[uint64]*checkpoint.Certificate{},
		dissent: newDissentRelay(),
	}
	c.iv.Store(n.cfg.CheckpointInterval)
	cert, err := st.LatestCertificate()
	switch {
	case errors.Is(err, checkpoint.ErrNone):
	case err != nil:
		log.Warn("no intact stable checkpoint on disk", "err", err)
	default:
		c.stable.Store(cert)
		c.collector.Forget(cert.Statement.Index) // no vote held before the restart
		m.stableIndex.Set(float64(cert.Statement.Index))
		log.Info("last stable checkpoint", "statement", cert.Statement.String(), "signers", cert.Signers())
	}
	return c, nil
}

// interval is checkpoint_interval in effect. The apply goroutine must not
// ask Effective: a reload holds its lock while it waits for the HotStuff
// loop, which is the apply goroutine; run refreshes iv instead.
func (c *checkpointer) interval() uint64 { return c.iv.Load() }

// epoch is the epoch a checkpoint statement names: the running epoch in
// auto mode, cftEpoch for a cluster that never switches.
func (c *checkpointer) epoch() uint64 {
	if c.n.sel != nil {
		return c.n.sel.record().Epoch
	}
	return cftEpoch
}

// captured is the apply hook: the apply goroutine calls it after applying
// index. When index crosses a multiple of checkpoint_interval it signs the
// state at index and hands it to the loop; it never blocks on the loop.
func (c *checkpointer) captured(index uint64, sm *smr.StateMachine) {
	prev := c.last
	c.last = index
	// applied is published after the capture is stored (match relies
	// on it).
	defer c.applied.Store(index)
	iv := c.interval()
	if iv == 0 || index <= prev || index/iv == prev/iv {
		return
	}
	if c.n.resync.holds(c.epoch(), index) {
		return // signed before a re-sync, perhaps for another state
	}
	idx, sum := sm.Hash()
	snap, err := sm.Snapshot()
	if err != nil || idx != index {
		c.log.Error("checkpoint not taken: the state machine did not give the state at the checkpoint index", "index", index, "state_index", idx, "err", err)
		return
	}
	st := checkpoint.Statement{Kind: checkpoint.KindCheckpoint, Epoch: c.epoch(), Index: index, StateHash: sum}
	v, err := checkpoint.Sign(c.key, c.self, st)
	if err != nil {
		c.log.Error("checkpoint not signed", "statement", st.String(), "err", err)
		return
	}
	c.mu.Lock()
	c.captures[index] = capture{vote: v, snap: snap}
	trimOldest(c.captures, maxCaptures)
	c.mu.Unlock()
	c.poke()
}

// restored is the hook after a snapshot was installed: the state jumped
// to index, and no multiple of the interval before it is captured.
func (c *checkpointer) restored(index uint64) {
	c.last = index
	c.applied.Store(index)
}

func (c *checkpointer) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// trimOldest deletes the lowest keys of m until it has at most max.
func trimOldest[V any](m map[uint64]V, max int) {
	if len(m) <= max {
		return
	}
	keys := slices.Sorted(maps.Keys(m))
	for _, k := range keys[:len(keys)-max] {
		delete(m, k)
	}
}

// run sends own votes, matches certificates and stores the stable
// checkpoints until ctx ends.
func (c *checkpointer) run(ctx context.Context) error {
	t := time.NewTicker(checkpointRetryEvery)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.fetchLatest(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.runDissentRelay(ctx)
	}()
	sent := map[uint64]bool{} // own votes sent at least once
	for {
		resend := false
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-t.C:
			resend = true
			c.iv.Store(c.n.Effective().CheckpointInterval)
		}
		for _, v := range c.pending() {
			if cert, err := c.addVote(ctx, v); err != nil {
				c.log.Warn("own checkpoint vote refused", "statement", v.Statement.String(), "err", err)
			} else if cert != nil {
				c.offer(cert)
			}
		}
		c.match(ctx)
		// Send the newest own vote that is not stable yet: once to start
		// the round, then again on every tick until it is stable.
		if v, ok := c.newestPending(); ok && (resend || !sent[v.Statement.Index]) {
			sent[v.Statement.Index] = true
			trimOldest(sent, maxCaptures)
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.broadcast(ctx, v)
				c.poke()
			}()
		}
	}
}

// pending returns the own votes waiting for a certificate, oldest first.
func (c *checkpointer) pending() []checkpoint.Vote {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]checkpoint.Vote, 0, len(c.captures))
	for _, k := range slices.Sorted(maps.Keys(c.captures)) {
		out = append(out, c.captures[k].vote)
	}
	return out
}

func (c *checkpointer) newestPending() (checkpoint.Vote, bool) {
	p := c.pending()
	if len(p) == 0 {
		return checkpoint.Vote{}, false
	}
	return p[len(p)-1], true
}

// addVote counts a vote (own, a peer's, or a dissenting vote a peer
// relayed) under the current quarantine; a vote at or below the stable
// checkpoint's index is a late vote.
func (c *checkpointer) addVote(ctx context.Context, v checkpoint.Vote) (*checkpoint.Certificate, error) {
	if v.Statement.Kind != checkpoint.KindCheckpoint {
		return nil, fmt.Errorf("a %s vote is not a checkpoint vote", v.Statement.Kind)
	}
	if s := c.stable.Load(); s != nil && v.Statement.Index <= s.Statement.Index {
		c.lateVote(ctx, v, s)
		return nil, nil // settled already
	}
	if limit := c.applied.Load() + voteWindowIntervals*max(c.interval(), 1); v.Statement.Index > limit {
		return nil, fmt.Errorf("checkpoint vote for index %d, beyond this node's window (applied %d + %d intervals)", v.Statement.Index, c.applied.Load(), voteWindowIntervals)
	}
	cert, _, err := c.count(ctx, v)
	return cert, err
}

// count adds v to the collector under the current quarantine (add) and,
// once it is held or has proven a conflict, compares the votes at its
// slot (compareSlot). quorum reports whether a statement at the slot has
// a quorum.
func (c *checkpointer) count(ctx context.Context, v checkpoint.Vote) (cert *checkpoint.Certificate, quorum bool, err error) {
	c.collector.SetQuarantined(c.n.quarantinedMembers())
	cert, ce, err := c.add(ctx, v)
	if err != nil && ce == nil {
		return nil, false, err
	}
	return cert, c.compareSlot(v.Statement, ce), err
}

// add adds v to the collector. A vote that conflicts with another vote of
// its signer for the index becomes checkpoint-equivocation evidence
// (equivocated) and is returned as ce, with the collector's error.
func (c *checkpointer) add(ctx context.Context, v checkpoint.Vote) (cert *checkpoint.Certificate, ce *checkpoint.ConflictError, err error) {
	cert, err = c.collector.Add(v)
	if errors.As(err, &ce) {
		c.equivocated(ctx, ce)
	}
	return cert, ce, err
}

// compareSlot compares, in one pass, the votes the collector holds at
// st's slot with the statement a quorum signed there and with this node's
// own vote there. A vote for another state than the quorum's is a state
// divergence (DESIGN invariant 8): it is reported to the detector and
// relayed to the peers, so that a peer holding another vote of the same
// member for the index can prove an equivocation. A vote for another
// state than this node's own is relayed too: a member that sent this node
// one state may have sent the others another, and a quorum to compare
// with may never form here (a peer whose own vote completes a certificate
// does not send it). The member of a conflict (ce: two signed states for
// the index) is proven already and is neither reported nor relayed.
// compareSlot reports whether a statement at the slot has a quorum.
func (c *checkpointer) compareSlot(st checkpoint.Statement, ce *checkpoint.ConflictError) (quorum bool) {
	if c.n.det == nil {
		return false
	}
	votes, q := c.collector.Slot(st.Kind, st.Epoch, st.Index)
	var own *checkpoint.Statement
	for _, v := range votes {
		if v.Signer == c.self {
			own = &v.Statement
		}
	}
	for _, v := range votes {
		if ce != nil && v.Signer == ce.First.Signer {
			continue
		}
		againstQuorum := q != nil && !v.Statement.Equal(q.Statement)
		if againstQuorum {
			c.n.det.onDivergence(divergenceOf(v, q))
		}
		if againstQuorum || (own != nil && !v.Statement.Equal(*own)) {
			c.relayDissent(v)
		}
	}
	return q != nil
}

// lateVote checks v, a vote at or below the index of the stable
// checkpoint s, for what it still proves; it counts toward no
// certificate. The collector keeps the votes above the previous stable
// checkpoint (Forgotten), so a late vote there is counted as before the
// index became stable: a conflict with the vote its signer gave before is
// an equivocation, and a vote against the quorum or this node's own vote
// is a divergence. At the stable index itself v is also compared with s,
// the quorum's word: if s carries its signer's signature, another state
// there is an equivocation; otherwise, when the collector holds no quorum
// there to compare with, a divergence.
func (c *checkpointer) lateVote(ctx context.Context, v checkpoint.Vote, s *checkpoint.Certificate) {
	if c.n.det == nil || v.Statement.Index < c.collector.Forgotten() {
		return
	}
	st := v.Statement
	dissents := st.Index == s.Statement.Index && st.Kind == s.Statement.Kind && st.Epoch == s.Statement.Epoch && !st.Equal(s.Statement)
	if dissents {
		if ce := conflictWithCertificate(v, s, c.committee); ce != nil {
			c.equivocated(ctx, ce)
			return
		}
	}
	// The collector verifies v: only a member's own signature is evidence.
	if _, quorum, err := c.count(ctx, v); err != nil || quorum || !dissents {
		return
	}
	c.n.det.onDivergence(divergenceOf(v, s))
	c.relayDissent(v)
}

// divergenceOf is the detector's report of v against the quorum's
// certificate.
func divergenceOf(v checkpoint.Vote, quorum *checkpoint.Certificate) divergence {
	return divergence{Signer: v.Signer, Epoch: v.Statement.Epoch, Index: v.Statement.Index,
		Signed: v.Statement.StateHash, Quorum: quorum.Statement.StateHash, QuorumSignatures: len(quorum.Sigs)}
}

// offer keeps a certificate until this node has captured its index.
// The caller verified it (the collector's are made of verified votes).
func (c *checkpointer) offer(cert *checkpoint.Certificate) {
	if s := c.stable.Load(); s != nil && cert.Statement.Index <= s.Statement.Index {
		return
	}
	c.mu.Lock()
	c.certs[cert.Statement.Index] = cert
	trimOldest(c.certs, maxCaptures)
	c.mu.Unlock()
	c.poke()
}

// match stores every certificate that certifies a state this node
// captured, newest last, and reports the ones that certify another state.
func (c *checkpointer) match(ctx context.Context) {
	c.mu.Lock()
	type pair struct {
		cert *checkpoint.Certificate
		own  capture
	}
	var ready []pair
	// Own checkpoints at or below the stable one are settled: the one at
	// its index must be the certified state (a checkpoint fetched by
	// state transfer is checked here once this node applied its index).
	var behind []checkpoint.Statement
	if s := c.stable.Load(); s != nil {
		for idx, own := range c.captures {
			if idx > s.Statement.Index {
				continue
			}
			if idx == s.Statement.Index && !own.vote.Statement.Equal(s.Statement) {
				behind = append(behind, own.vote.Statement)
			}
			delete(c.captures, idx)
		}
		for _, st := range behind {
			c.diverged(st, s) // takes no lock
		}
	}
	for _, idx := range slices.Sorted(maps.Keys(c.certs)) {
		cert := c.certs[idx]
		own, ok := c.captures[idx]
		if !ok {
			// The hook stores a capture before it publishes its index:
			// an index applied without one will never have one (a
			// snapshot installed past it, or trimmed).
			if idx <= c.applied.Load() {
				delete(c.certs, idx)
			}
			continue
		}
		delete(c.certs, idx)
		if !own.vote.Statement.Equal(cert.Statement) {
			c.diverged(own.vote.Statement, cert) // takes no lock
			continue
		}
		ready = append(ready, pair{cert, own})
	}
	c.mu.Unlock()
	for _, p := range ready {
		c.settle(ctx, p.cert, p.own.snap)
	}
}

// diverged reports a certificate for a state other than this node's at
// the same index.
func (c *checkpointer) diverged(own checkpoint.Statement, cert *checkpoint.Certificate) {
	c.metrics.divergence.Inc()
	c.log.Error("state divergence: a quorum certified another state at an index this node applied; this node's state is not stored as a checkpoint",
		"index", own.Index, "own", own.String(), "certified", cert.Statement.String(), "signers", cert.Signers())
	c.n.resync.diverged(own, cert)
}

// settle stores a stable checkpoint with its snapshot, forgets what is
// below it and compacts the log.
func (c *checkpointer) settle(ctx context.Context, cert *checkpoint.Certificate, snap []byte) {
	if s := c.stable.Load(); s != nil && cert.Statement.Index <= s.Statement.Index {
		return
	}
	if err := c.store.Save(cert, snap); err != nil {
		c.log.Error("stable checkpoint not stored", "statement", cert.Statement.String(), "err", err)
		return
	}
	prev := c.stable.Swap(cert)
	c.metrics.stableIndex.Set(float64(cert.Statement.Index))
	c.log.Info("stable checkpoint", "statement", cert.Statement.String(), "signers", cert.Signers())
	c.mu.Lock()
	for idx := range c.captures {
		if idx <= cert.Statement.Index {
			delete(c.captures, idx)
		}
	}
	c.mu.Unlock()
	// The store keeps the previous checkpoint: forget only the votes
	// below it.
	if prev != nil {
		c.collector.Forget(prev.Statement.Index + 1)
	}
	c.compact(ctx, prev, cert)
}

// quarantinedMembers returns the members this node holds quarantined,
// sorted.
func (n *Node) quarantinedMembers() []string {
	if n.det == nil || n.det.manager == nil {
		return nil
	}
	var ids []string
	for _, id := range n.det.manager.IDs() {
		ids = append(ids, string(id))
	}
	slices.Sort(ids)
	return ids
}

// status is the last stable checkpoint for /v1/status.
func (c *checkpointer) status() *api.CheckpointStatus {
	cert := c.stable.Load()
	if cert == nil {
		return nil
	}
	return &api.CheckpointStatus{
		Epoch:     cert.Statement.Epoch,
		Index:     cert.Statement.Index,
		StateHash: hex.EncodeToString(cert.Statement.StateHash[:]),
		Signers:   cert.Signers(),
		Form:      cert.Form.String(),
	}
}

// CheckpointStatus implements the status field of the last stable
// checkpoint; nil while there is none or checkpoints are off.
func (n *Node) CheckpointStatus() *api.CheckpointStatus {
	if n.ckpt == nil {
		return nil
	}
	return n.ckpt.status()
}

type checkpointMetrics struct {
	stableIndex prometheus.Gauge
	divergence  prometheus.Counter
	rejected    *prometheus.CounterVec
}

func newCheckpointMetrics(r prometheus.Registerer) (*checkpointMetrics, error) {
	m := &checkpointMetrics{
		stableIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_checkpoint_stable_index",
			Help: "Log index of the last stable checkpoint (certified by a quorum and stored with its snapshot).",
		}),
		divergence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_checkpoint_divergence_total",
			Help: "Checkpoint certificates for a state other than this node's at the same index.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_checkpoint_transfer_rejected_total",
			Help: "Checkpoints a peer served that were refused, by reason (a forged certificate, a tampered snapshot, a malformed answer, ...); unreachable peers and peers without one are not counted.",
		}, []string{"reason"}),
	}
	if err := registerAll(r, "checkpoint metrics", m.stableIndex, m.divergence, m.rejected); err != nil {
		return nil, err
	}
	return m, nil
}
