package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/fsutil"
)

// Re-sync of a replica whose own state diverged (DESIGN invariant 8:
// "state divergence → re-sync or quarantine").
//
//	checkpointer.diverged: a verified certificate (q members that are not
//	  quarantined) for another state at an index this node applied
//	detector decision: f+1 members accuse this node of state divergence
//	  ──> look for such a certificate (fetch the newest stable one)
//	        │ resyncGuard.decide: not when this node signed the certified
//	        │ state; one re-sync at a time; a second divergence within
//	        │ resyncStayOutWindow of a completed re-sync: stay out
//	        ▼
//	out of service (readiness false, reads and writes refused), log line,
//	tandem_resyncs_total; this node signs no checkpoint again at an index
//	it applied before the re-sync (a second signature there would be a
//	checkpoint equivocation)
//	        ▼ cft (resync_cft.go)
//	leave the Raft voters through the leader ──> stop Raft, move its
//	storage aside, reset the state machine ──> rejoin through the leader
//	as a non-voter with an empty log (InstallSnapshot or the log) ──>
//	caught up: promoted to voter through the leader ──> in service
//	        ▼
//	confirmed when a stable checkpoint above the re-sync index certifies
//	this node's own state
//
// The node never installs anything on the word of the detector or of a
// peer: the re-sync starts only from a certificate that verified against
// the committee and contradicts this node's own signed state, and the
// state it rebuilds comes from the Raft leader (the log of a quorum), as
// for any new member. Its identity stays: node key, TLS, evidence store
// and quarantine list are untouched.
//
// A node that diverges again within resyncStayOutWindow of a completed
// re-sync is not a correct node that met a one-off fault (bad memory,
// disk, a bug that repeats): it stays out of service and says so as an
// error, and does not re-sync again. It keeps signing its own (diverging)
// checkpoints, so its peers keep accusing it, and persisting divergence
// quarantines it (docs/detector.md, Scoring). A restart by the operator
// clears the stay-out.

// Re-sync tuning.
const (
	// resyncStayOutWindow: a divergence this soon after a completed
	// re-sync keeps the node out instead of re-syncing again.
	resyncStayOutWindow = time.Hour
	// resyncRetryMin and resyncRetryMax bound the back-off between the
	// attempts of one re-sync step (the leader unreachable, an election).
	resyncRetryMin = 250 * time.Millisecond
	resyncRetryMax = 10 * time.Second
	// resyncCatchUpTimeout bounds the wait for a rejoined non-voter to
	// apply the log up to the leader's commit index before it asks again.
	resyncCatchUpTimeout = 2 * time.Minute
	// resyncStateName is the re-sync record under data_dir.
	resyncStateName = "resync.json"
)

// resyncReport is a verified certificate for another state at an index
// this node applied: what a re-sync starts from.
type resyncReport struct {
	Epoch, Index uint64
	Own          [32]byte // this node's state hash at Index
	Certified    [32]byte // the certificate's
	Signers      []string // the certificate's signers
	At           time.Time
}

// resyncPhase is where the node's re-sync stands.
type resyncPhase uint8

const (
	resyncIdle    resyncPhase = iota // in service
	resyncRunning                    // re-syncing: out of service
	resyncOut                        // diverged again: out of service for good
)

// resyncVerdict is what resyncGuard.decide says about a report.
type resyncVerdict uint8

const (
	verdictIgnore resyncVerdict = iota
	verdictStart
	verdictStayOut
)

// resyncGuard decides whether a report starts a re-sync. It is pure: the
// caller serialises it and hands it the time.
type resyncGuard struct {
	self   string
	window time.Duration
	phase  resyncPhase
	// lastDone is when the last re-sync completed (zero: none did) and
	// doneIndex the applied index this node rejoined at (reports at or
	// below it are about the state before the re-sync).
	lastDone  time.Time
	doneIndex uint64
}

// decide returns the verdict on r at now, and why.
func (g *resyncGuard) decide(r resyncReport, now time.Time) (resyncVerdict, string) {
	switch {
	case r.Own == r.Certified || slices.Contains(r.Signers, g.self):
		return verdictIgnore, "this node signed the certified state: it is part of the quorum, not diverged"
	case g.phase == resyncRunning:
		return verdictIgnore, "a re-sync is under way"
	case g.phase == resyncOut:
		return verdictIgnore, "this node stays out after diverging again"
	case !g.lastDone.IsZero() && r.Index <= g.doneIndex:
		return verdictIgnore, "the certificate is about the state before the last re-sync"
	case !g.lastDone.IsZero() && now.Sub(g.lastDone) < g.window:
		return verdictStayOut, fmt.Sprintf("diverged again %s after a completed re-sync (less than %s)", now.Sub(g.lastDone).Round(time.Second), g.window)
	}
	return verdictStart, ""
}

// resyncRecord is data_dir/resync.json: what a restart must know.
type resyncRecord struct {
	// Epoch and SignedUpTo: this node signs no checkpoint of Epoch at an
	// index at or below SignedUpTo (it may have signed another state
	// there before a re-sync).
	Epoch      uint64 `json:"epoch"`
	SignedUpTo uint64 `json:"signed_up_to"`
	// Rejoining: the Raft storage was reset and the node has not been
	// promoted back to voter yet; a restart resumes there.
	Rejoining bool `json:"rejoining,omitempty"`
	// Index, Certified and Own describe the divergence.
	Index     uint64    `json:"index"`
	Certified string    `json:"certified"`
	Own       string    `json:"own"`
	Since     time.Time `json:"since"`
}

// resyncer runs this node's re-syncs.
type resyncer struct {
	n       *Node
	log     *slog.Logger
	path    string
	metrics *resyncMetrics
	kick    chan struct{}

	// unready is the reason the node is out of service ("" in service).
	unready atomic.Pointer[string]
	// hold: checkpoints of epoch holdEpoch at or below holdUpTo are not
	// signed (read on the apply goroutine).
	holdEpoch, holdUpTo atomic.Uint64

	mu         sync.Mutex
	guard      resyncGuard
	pending    *resyncReport        // newest report the loop has not taken
	look       bool                 // the detector asked: look for a certificate
	seen       map[evidence.ID]bool // accusations already looked into
	rec        *resyncRecord        // the record on disk (nil: none)
	confirm    uint64               // a stable checkpoint above this confirms the last re-sync (0: none)
	divergedAt time.Time            // when the last re-sync's divergence was reported
}

// newResyncer builds the re-sync of n and reads its record. It returns
// nil when checkpoints are off: without them no divergence is seen.
func (n *Node) newResyncer() (*resyncer, error) {
	if n.ckpt == nil {
		return nil, nil
	}
	m, err := newResyncMetrics(n.registry)
	if err != nil {
		return nil, err
	}
	r := &resyncer{
		n: n, log: n.log.With("component", "resync"), path: filepath.Join(n.cfg.DataDir, resyncStateName), metrics: m,
		kick: make(chan struct{}, 1), seen: map[evidence.ID]bool{},
		guard: resyncGuard{self: n.cfg.NodeID, window: resyncStayOutWindow},
	}
	b, err := os.ReadFile(r.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("re-sync record: %w", err)
	default:
		var rec resyncRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("re-sync record %s is damaged: %w (it names the checkpoint indexes this node must not sign again; restore it, or wipe data_dir)", r.path, err)
		}
		r.rec = &rec
		r.holdEpoch.Store(rec.Epoch)
		r.holdUpTo.Store(rec.SignedUpTo)
		if rec.Rejoining {
			r.setUnready(fmt.Sprintf("re-syncing after a state divergence at index %d", rec.Index))
		}
	}
	return r, nil
}

// --- hooks (nil-safe) ---

// diverged is the checkpointer's report of a certificate for another
// state at an index this node applied. It must not block.
func (r *resyncer) diverged(own checkpoint.Statement, cert *checkpoint.Certificate) {
	if r == nil {
		return
	}
	rep := &resyncReport{Epoch: own.Epoch, Index: own.Index, Own: own.StateHash, Certified: cert.Statement.StateHash,
		Signers: cert.Signers(), At: time.Now()}
	r.mu.Lock()
	if r.pending == nil || rep.Index > r.pending.Index {
		r.pending = rep
	}
	r.mu.Unlock()
	r.poke()
}

// accused is the detector's decision hook: f+1 members accuse this node of
// state divergence. The node looks for a certificate that contradicts its
// own state (it never re-syncs on accusations alone); each accusation is
// looked into once.
func (r *resyncer) accused(dec score.Decision) {
	if r == nil {
		return
	}
	fresh := false
	r.mu.Lock()
	for _, rs := range dec.Reasons {
		if rs.Action != score.ActionResync || string(rs.Node) != r.n.cfg.NodeID {
			continue
		}
		for _, e := range rs.Evidence {
			if id := e.ID(); !r.seen[id] {
				r.seen[id] = true
				fresh = true
			}
		}
	}
	if fresh {
		r.look = true
	}
	r.mu.Unlock()
	if fresh {
		r.poke()
	}
}

// holds reports whether this node must not sign the checkpoint of epoch
// at index: it may have signed another state there before a re-sync.
// Called on the apply goroutine.
func (r *resyncer) holds(epoch, index uint64) bool {
	return r != nil && r.holdEpoch.Load() == epoch && index <= r.holdUpTo.Load()
}

// serving returns an error wrapping api.ErrUnavailable while the node is
// out of service.
func (r *resyncer) serving() error {
	if r == nil {
		return nil
	}
	if why := r.unready.Load(); why != nil && *why != "" {
		return fmt.Errorf("%w: %s", api.ErrUnavailable, *why)
	}
	return nil
}

func (r *resyncer) setUnready(why string) {
	r.unready.Store(&why)
	if why == "" {
		r.metrics.active.Set(0)
	} else {
		r.metrics.active.Set(1)
	}
}

func (r *resyncer) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// --- the loop ---

// run takes the reports until ctx ends. A re-sync interrupted by a
// restart after the Raft storage was reset resumes at the rejoin.
func (r *resyncer) run(ctx context.Context) error {
	r.n.det.setOnResync(r.accused)
	if rec := r.record(); rec != nil && rec.Rejoining {
		r.log.Warn("resuming an interrupted re-sync: rejoining through the leader", "index", rec.Index)
		r.mu.Lock()
		r.guard.phase = resyncRunning
		r.mu.Unlock()
		r.finish(ctx, resyncReport{Epoch: rec.Epoch, Index: rec.Index, At: rec.Since}, r.rejoinCFT(ctx))
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-t.C:
			r.checkConfirmed()
			continue
		}
		r.mu.Lock()
		rep, look := r.pending, r.look
		r.pending, r.look = nil, false
		r.mu.Unlock()
		if look && rep == nil {
			r.lookForCertificate(ctx)
		}
		if rep != nil {
			r.handle(ctx, *rep)
		}
	}
}

// handle decides on one report and acts on it.
func (r *resyncer) handle(ctx context.Context, rep resyncReport) {
	r.mu.Lock()
	v, why := r.guard.decide(rep, time.Now())
	if v == verdictStart {
		r.guard.phase = resyncRunning
	} else if v == verdictStayOut {
		r.guard.phase = resyncOut
	}
	r.mu.Unlock()
	args := []any{"index", rep.Index, "epoch", rep.Epoch, "certified_hash", hex.EncodeToString(rep.Certified[:]),
		"own_hash", hex.EncodeToString(rep.Own[:]), "signers", rep.Signers}
	switch v {
	case verdictIgnore:
		r.log.Info("state divergence reported, no re-sync: "+why, args...)
		return
	case verdictStayOut:
		r.metrics.resyncs.WithLabelValues("stayed_out").Inc()
		r.setUnready(fmt.Sprintf("state diverged again at index %d after a re-sync; out of service until an operator restarts this node", rep.Index))
		r.log.Error("STATE DIVERGED AGAIN: this node stays out of service and does not re-sync again; its peers will quarantine it if it keeps diverging; check its memory, disk and build, then restart it: "+why, args...)
		return
	}
	r.metrics.resyncs.WithLabelValues("started").Inc()
	r.setUnready(fmt.Sprintf("re-syncing after a state divergence at index %d", rep.Index))
	r.log.Error("state divergence: a quorum certified another state at an index this node applied; re-syncing: out of service until the state is rebuilt from the cluster", args...)
	r.finish(ctx, rep, r.resync(ctx, rep))
}

// finish records the outcome of a re-sync.
func (r *resyncer) finish(ctx context.Context, rep resyncReport, err error) {
	if err != nil {
		r.mu.Lock()
		r.guard.phase = resyncOut
		r.mu.Unlock()
		if ctx.Err() != nil {
			return // stopping; a restart resumes from the record
		}
		r.metrics.resyncs.WithLabelValues("failed").Inc()
		r.setUnready("re-sync failed: " + err.Error())
		r.log.Error("re-sync failed: this node stays out of service; restart it to try again", "index", rep.Index, "err", err)
		return
	}
	applied := r.n.fsm.AppliedIndex()
	r.mu.Lock()
	r.guard.phase = resyncIdle
	r.guard.lastDone = time.Now()
	r.guard.doneIndex = applied
	r.confirm, r.divergedAt = applied, rep.At
	r.mu.Unlock()
	r.metrics.resyncs.WithLabelValues("rejoined").Inc()
	r.setUnready("")
	idx, sum := r.n.fsm.Hash()
	r.log.Warn("re-sync complete: the state was rebuilt from the cluster and this node serves again", "diverged_index", rep.Index,
		"applied_index", idx, "state_hash", hex.EncodeToString(sum[:]), "took", time.Since(rep.At).Round(time.Millisecond))
}

// checkConfirmed logs once that a stable checkpoint above the re-sync
// certifies this node's own state (a stable checkpoint is stored only
// when it matches this node's capture).
func (r *resyncer) checkConfirmed() {
	r.mu.Lock()
	after, since := r.confirm, r.divergedAt
	r.mu.Unlock()
	if after == 0 {
		return
	}
	s := r.n.ckpt.stable.Load()
	if s == nil || s.Statement.Index <= after {
		return
	}
	r.mu.Lock()
	r.confirm = 0
	r.mu.Unlock()
	r.metrics.resyncs.WithLabelValues("confirmed").Inc()
	r.log.Info("re-sync confirmed: a stable checkpoint certifies this node's own state", "statement", s.Statement.String(),
		"signers", s.Signers(), "since_divergence", time.Since(since).Round(time.Millisecond))
}

// lookForCertificate fetches the newest stable checkpoint from the peers
// (verified against the committee) and hands it to the checkpointer,
// which compares it with this node's own capture at its index and reports
// a divergence if they differ.
func (r *resyncer) lookForCertificate(ctx context.Context) {
	c := r.n.ckpt
	fctx, cancel := context.WithTimeout(ctx, r.n.Effective().StateTransferTimeout)
	defer cancel()
	cert, _, _, err := c.fetchVerified(fctx, 1, periodicCheckpoint)
	if err != nil {
		r.log.Warn("accused of state divergence, but no peer served a verified stable checkpoint to compare with; no re-sync", "err", err)
		return
	}
	r.log.Warn("accused of state divergence by f+1 members: comparing this node's state with the newest stable checkpoint", "statement", cert.Statement.String())
	c.offer(cert)
}

// resync rebuilds this node's state from the cluster.
func (r *resyncer) resync(ctx context.Context, rep resyncReport) error {
	if r.n.bftMode() {
		return r.resyncBFT(ctx, rep)
	}
	return r.resyncCFT(ctx, rep)
}

// record returns the re-sync record (nil: none).
func (r *resyncer) record() *resyncRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec
}

// saveRecord writes rec durably and applies its hold.
func (r *resyncer) saveRecord(rec resyncRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	// The hold applies before anything else: the checkpoints it covers
	// must not be signed even if the write fails.
	r.holdEpoch.Store(rec.Epoch)
	r.holdUpTo.Store(rec.SignedUpTo)
	if err := fsutil.WriteFile(r.path, b); err != nil {
		return fmt.Errorf("re-sync record: %w", err)
	}
	r.mu.Lock()
	r.rec = &rec
	r.mu.Unlock()
	return nil
}

// saveDiverged saves the record of the re-sync of rep (rejoining: the
// Raft storage is about to be reset): from here on this node signs no
// checkpoint of the epoch at or below the diverged index or the index it
// applied last, whichever is higher.
func (r *resyncer) saveDiverged(rep resyncReport, rejoining bool) error {
	c := r.n.ckpt
	return r.saveRecord(resyncRecord{Epoch: c.epoch(), SignedUpTo: max(c.applied.Load(), rep.Index), Rejoining: rejoining,
		Index: rep.Index, Certified: hex.EncodeToString(rep.Certified[:]), Own: hex.EncodeToString(rep.Own[:]), Since: rep.At})
}

// dropOwnVotes forgets this node's checkpoints that wait for a
// certificate: they sign the diverged state, and sending them again only
// repeats the divergence to the peers.
func (c *checkpointer) dropOwnVotes() {
	c.mu.Lock()
	clear(c.captures)
	c.mu.Unlock()
}

// backoff waits d (doubled for the next call up to resyncRetryMax) or
// until ctx ends.
func backoff(ctx context.Context, d *time.Duration) error {
	t := time.NewTimer(*d)
	defer t.Stop()
	*d = min(*d*2, resyncRetryMax)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

type resyncMetrics struct {
	resyncs *prometheus.CounterVec
	active  prometheus.Gauge
}

func newResyncMetrics(reg prometheus.Registerer) (*resyncMetrics, error) {
	m := &resyncMetrics{
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_resyncs_total",
			Help: "Re-syncs of this node's diverged state, by outcome: started, rejoined (rebuilt and in service), confirmed (a later stable checkpoint certifies the rebuilt state), failed, stayed_out (diverged again soon after a re-sync).",
		}, []string{"outcome"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_resync_out_of_service",
			Help: "1 while this node is out of service because its state diverged (re-syncing, or staying out), else 0.",
		}),
	}
	for _, o := range []string{"started", "rejoined", "confirmed", "failed", "stayed_out"} {
		m.resyncs.WithLabelValues(o)
	}
	if err := registerAll(reg, "re-sync metrics", m.resyncs, m.active); err != nil {
		return nil, err
	}
	return m, nil
}

// setOnResync sets the hook told of every decision that asks this node to
// re-sync. Safe on a nil d.
func (d *detector) setOnResync(f func(score.Decision)) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.onResync = f
	d.mu.Unlock()
}
