package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// Accusations from what the HotStuff engine observes (bft mode), after the
// seed's table (DESIGN invariant 8):
//
//	engine Config.OnSignatureFailure ─┐ (non-blocking queue)
//	engine Config.OnVote ─────────────┤
//	engine Config.OnOmission ─────────┤
//	engine Config.OnProposalWait ─────┤ (detector_heartbeat.go)
//	checkpoint votes (any mode) ──────┴─> observe (run goroutine)
//	   signature failure of a sender ──> signed accusation (signature-failure),
//	                                     at most one per sender per sigAccuseEvery
//	   vote latencies per member (missing votes count as VoteWait) ──> p99 over
//	     the last latencyWindow > 500 ms ──> signed accusation (vote-latency-p99),
//	                                     at most one per member per latencyAccuseEvery
//	   forwarded commands a leader left out of proposals with room
//	                                 ──> signed accusation (selective-omission),
//	                                     at most one per leader per omitAccuseEvery
//	   a member's signed checkpoint for another state than a quorum certified
//	                                 ──> signed accusation (state-divergence),
//	                                     at most one per member per divergeAccuseEvery
//	accusations ──> handle: verify, store, relay, gossip, decide (like every record)
//
// An observation over an authenticated channel proves nothing to a third
// party, so each is only an accusation, which counts with f+1 distinct
// accusers (score.Book): f+1 members that saw bad signatures from X
// quarantine X (the table's "signature failure → quarantine"); f+1 members
// that saw X's votes late or never get X a warning, which never
// quarantines (the table's "vote latency → warning").

// Observation tuning.
const (
	// observeQueue bounds the observations the engine's loop hands over
	// before the detector takes them (a full queue drops them).
	observeQueue = 4096
	// sigAccuseEvery: at most one signature-failure accusation per sender
	// in this time; further failures are counted into the next one.
	sigAccuseEvery = 30 * time.Second
	// latencyWindow: the vote latencies the p99 is taken over are those
	// observed in this time, at most latencyMaxSamples of them, and at
	// least latencyMinSamples are needed.
	latencyWindow     = time.Minute
	latencyMaxSamples = 256
	latencyMinSamples = 16
	// latencyAccuseEvery: at most one vote-latency accusation per member
	// in this time.
	latencyAccuseEvery = 10 * time.Second
	// omitAccuseEvery: at most one selective-omission accusation per
	// leader in this time; further omissions are counted into the next.
	omitAccuseEvery = 10 * time.Second
	// divergeAccuseEvery: at most one state-divergence accusation per
	// member in this time; further diverging indexes are counted into the
	// next.
	divergeAccuseEvery = 30 * time.Second
)

// observation is one report of the engine. Votes, by far the most
// frequent, are kept inline; every other kind is one small value of its
// own type in other.
type observation struct {
	at   time.Time
	vote hsengine.VoteObservation // unless other is set
	// other is set for every kind but a vote.
	other observed
}

// observed is an observation of another kind than a vote: it applies its
// rule on the run goroutine.
type observed interface {
	observe(ctx context.Context, d *detector, now time.Time)
}

// The kinds of observed.
type (
	// sigFailure: a message of kind from whose own signature failed.
	sigFailure struct {
		from types.NodeID
		kind types.MsgType
	}
	// omission: commands a leader left out of proposals with room.
	omission hsengine.OmissionObservation
)

func (o sigFailure) observe(ctx context.Context, d *detector, now time.Time) {
	d.observeSignature(ctx, evidence.NodeID(o.from), o.kind, now)
}

func (o omission) observe(ctx context.Context, d *detector, now time.Time) {
	d.observeOmission(ctx, hsengine.OmissionObservation(o), now)
}

func (o divergence) observe(ctx context.Context, d *detector, now time.Time) {
	d.observeDivergence(ctx, o, now)
}

// divergence is a member's signed checkpoint at an index where a quorum
// certified another state.
type divergence struct {
	Signer           string
	Epoch, Index     uint64
	Signed, Quorum   [32]byte // the member's state hash, the quorum's
	QuorumSignatures int
}

// latencySample is one vote's latency.
type latencySample struct {
	at      time.Time
	latency time.Duration
	missing bool
}

// accuseLimit is when a member was last accused of one kind (zero:
// never): it allows one accusation per interval.
type accuseLimit struct{ at time.Time }

// allows reports whether an accusation at now is at least every after
// the last one.
func (l accuseLimit) allows(now time.Time, every time.Duration) bool {
	return l.at.IsZero() || now.Sub(l.at) >= every
}

// sigState is what the detector remembers of one sender's bad signatures.
type sigState struct {
	countState
	kinds map[types.MsgType]int64
}

// latState is what the detector remembers of one member's vote latencies.
type latState struct {
	samples latWindow
	accused accuseLimit
}

// countState is what the detector remembers of one member's omissions,
// divergences or bad signatures since its last accusation.
type countState struct {
	count   int64
	last    uint64 // divergences: the highest index counted
	accused accuseLimit
}

// observer is the detector's observation state, used by the run goroutine
// only (ch excepted).
type observer struct {
	ch      chan observation
	sig     map[evidence.NodeID]*sigState
	lat     map[evidence.NodeID]*latState
	omit    map[evidence.NodeID]*countState
	diverge map[evidence.NodeID]*countState
	wait    map[evidence.NodeID]*latState // proposal waits per leader (detector_heartbeat.go)
}

func newObserver() *observer {
	return &observer{ch: make(chan observation, observeQueue), sig: map[evidence.NodeID]*sigState{}, lat: map[evidence.NodeID]*latState{},
		omit: map[evidence.NodeID]*countState{}, diverge: map[evidence.NodeID]*countState{}, wait: map[evidence.NodeID]*latState{}}
}

// observeEngine makes a HotStuff engine built from cfg report signature
// failures and collected votes to d. Safe on a nil d (no detector).
func (d *detector) observeEngine(cfg *hsengine.Config) {
	if d == nil {
		return
	}
	cfg.OnSignatureFailure = d.onSignatureFailure
	cfg.OnVote = d.onVote
	cfg.OnOmission = d.onOmission
	cfg.OnProposalWait = d.onProposalWait
	cfg.OnConflict = d.onConflict
}

// onOmission is the engine's Config.OnOmission: it runs on the engine's
// loop and must not block.
func (d *detector) onOmission(o hsengine.OmissionObservation) {
	d.enqueueObservation(observation{at: d.clock(), other: omission(o)})
}

// onDivergence reports a member's checkpoint vote for another state than
// the one a quorum certified at its index. It must not block. Safe on a
// nil d (no detector).
func (d *detector) onDivergence(dv divergence) {
	if d == nil {
		return
	}
	d.enqueueObservation(observation{at: d.clock(), other: dv})
}

// onSignatureFailure is the engine's Config.OnSignatureFailure: it runs on
// the engine's loop and must not block.
func (d *detector) onSignatureFailure(from types.NodeID, kind types.MsgType) {
	d.enqueueObservation(observation{at: d.clock(), other: sigFailure{from: from, kind: kind}})
}

// onVote is the engine's Config.OnVote: it runs on the engine's loop and
// must not block.
func (d *detector) onVote(v hsengine.VoteObservation) {
	d.enqueueObservation(observation{at: d.clock(), vote: v})
}

func (d *detector) enqueueObservation(o observation) {
	select {
	case d.obs.ch <- o:
	default:
		d.metrics.observationsDropped.Inc()
	}
}

// observe turns one observation into an accusation when its rule says so.
func (d *detector) observe(ctx context.Context, o observation) {
	if o.other != nil {
		o.other.observe(ctx, d, o.at)
		return
	}
	d.observeVote(ctx, o.vote, o.at)
}

// accusable reports whether id is a member this node may accuse: another
// member, not quarantined already (one verdict is enough).
func (d *detector) accusable(id evidence.NodeID) bool {
	return id != d.self && d.members.Contains(id) && !d.manager.IsQuarantined(id)
}

// observeSignature counts a bad signature of from and accuses it, at most
// once per sigAccuseEvery (the value is the failures counted since the
// last accusation).
func (d *detector) observeSignature(ctx context.Context, from evidence.NodeID, kind types.MsgType, now time.Time) {
	if !d.accusable(from) {
		return
	}
	s := d.obs.sig[from]
	if s == nil {
		s = &sigState{kinds: map[types.MsgType]int64{}}
		d.obs.sig[from] = s
	}
	s.kinds[kind]++
	if d.accuseCount(ctx, &s.countState, from, 1, sigAccuseEvery, evidence.MetricSignatureFailure, func(int64) string {
		detail := "hotstuff messages from the sender whose own signature failed:"
		for _, k := range slices.Sorted(maps.Keys(s.kinds)) {
			detail += fmt.Sprintf(" %s=%d", k, s.kinds[k])
		}
		return detail
	}, now) {
		clear(s.kinds)
	}
}

// observeVote records a vote's latency (a missing vote counts with the
// time waited) and accuses the voter when the p99 of its recent votes is
// above the table's bound, at most once per latencyAccuseEvery.
func (d *detector) observeVote(ctx context.Context, v hsengine.VoteObservation, now time.Time) {
	d.observeLatency(ctx, d.obs.lat, evidence.NodeID(v.From), latencySample{at: now, latency: v.Latency, missing: v.Missing}, now,
		evidence.MetricVoteLatencyP99, func(c score.Config) int64 { return c.VoteLatencyP99.Threshold }, false, func(p99 time.Duration, n, missing int) string {
			return fmt.Sprintf("p99 %s over the %d hotstuff votes this node collected in the last %s; %d never arrived within %s",
				p99.Round(time.Millisecond), n, latencyWindow, missing, hsengine.VoteWait)
		})
}

// observeLatency adds smp to id's window in book and accuses id with
// metric when the p99 of the window (at least latencyMinSamples samples)
// is above the threshold of the scoring table in effect, at most once per
// latencyAccuseEvery; detail describes the p99 over n samples of which
// missing never came.
//
// With relative set, id is accused only while another member's window in
// book is full and its p99 within the bound: a delay every member shows
// has a common cause this node cannot pin on id.
func (d *detector) observeLatency(ctx context.Context, book map[evidence.NodeID]*latState, id evidence.NodeID, smp latencySample, now time.Time,
	metric evidence.Metric, threshold func(score.Config) int64, relative bool, detail func(p99 time.Duration, n, missing int) string) {
	if !d.accusable(id) {
		return
	}
	s := book[id]
	if s == nil {
		s = &latState{}
		book[id] = s
	}
	s.samples.add(now, smp, latencyWindow, latencyMaxSamples)
	if len(s.samples) < latencyMinSamples || !s.accused.allows(now, latencyAccuseEvery) {
		return
	}
	p99, missing := latencyP99(s.samples)
	bound := threshold(d.scoreConfig())
	if int64(p99) <= bound || (relative && !someoneWithin(book, id, bound)) {
		return
	}
	if d.accuse(ctx, id, metric, int64(p99), detail(p99, len(s.samples), missing), now) {
		s.accused = accuseLimit{now}
	}
}

// someoneWithin reports whether a member other than id has at least
// latencyMinSamples samples in book with a p99 of at most bound.
func someoneWithin(book map[evidence.NodeID]*latState, id evidence.NodeID, bound int64) bool {
	for other, s := range book {
		if other == id || len(s.samples) < latencyMinSamples {
			continue
		}
		if p99, _ := latencyP99(s.samples); int64(p99) <= bound {
			return true
		}
	}
	return false
}

// observeOmission counts the commands a leader left out and accuses it, at
// most once per omitAccuseEvery (the value is the commands counted since
// the last accusation).
func (d *detector) observeOmission(ctx context.Context, o hsengine.OmissionObservation, now time.Time) {
	id := evidence.NodeID(o.Leader)
	if !d.accusable(id) || o.Commands <= 0 {
		return
	}
	d.accuseCount(ctx, countIn(d.obs.omit, id), id, int64(o.Commands), omitAccuseEvery, evidence.MetricSelectiveOmission, func(n int64) string {
		return fmt.Sprintf("%d client requests this node forwarded to the leader were left out of its hotstuff proposals with room for them, made after the requests reached it (latest view %d)",
			n, o.View)
	}, now)
}

// observeDivergence counts the checkpoint indexes at which a member signed
// another state than a quorum certified (each index once) and accuses it,
// at most once per divergeAccuseEvery (the value is the indexes counted
// since the last accusation).
func (d *detector) observeDivergence(ctx context.Context, dv divergence, now time.Time) {
	id := evidence.NodeID(dv.Signer)
	if !d.accusable(id) {
		return
	}
	s := countIn(d.obs.diverge, id)
	var add int64
	if dv.Index > s.last {
		s.last, add = dv.Index, 1
	}
	d.accuseCount(ctx, s, id, add, divergeAccuseEvery, evidence.MetricStateDivergence, func(n int64) string {
		return fmt.Sprintf("%d checkpoint indexes at which the member signed another state than a quorum certified (latest: epoch %d index %d, signed %x, certified %x by %d members)",
			n, dv.Epoch, dv.Index, dv.Signed[:8], dv.Quorum[:8], dv.QuorumSignatures)
	}, now)
}

// countIn returns id's count in book, created empty when missing.
func countIn(book map[evidence.NodeID]*countState, id evidence.NodeID) *countState {
	s := book[id]
	if s == nil {
		s = &countState{}
		book[id] = s
	}
	return s
}

// accuseCount adds add to s, the count of id's offences of metric since
// its last accusation, and accuses id with that count unless it is 0 or
// id was accused within every; the count starts again after an
// accusation. detail describes the count. It reports whether id was
// accused.
func (d *detector) accuseCount(ctx context.Context, s *countState, id evidence.NodeID, add int64, every time.Duration,
	metric evidence.Metric, detail func(count int64) string, now time.Time) bool {
	s.count += add
	if s.count == 0 || !s.accused.allows(now, every) {
		return false
	}
	if !d.accuse(ctx, id, metric, s.count, detail(s.count), now) {
		return false
	}
	s.accused, s.count = accuseLimit{now}, 0
	return true
}

// latencyP99 returns the nearest-rank 99th percentile of the samples'
// latencies and how many of them are missing votes.
func latencyP99(samples []latencySample) (time.Duration, int) {
	ls := make([]time.Duration, len(samples))
	missing := 0
	for i, s := range samples {
		ls[i] = s.latency
		if s.missing {
			missing++
		}
	}
	slices.Sort(ls)
	rank := (99*len(ls) + 99) / 100 // ⌈0.99·n⌉
	return ls[max(rank-1, 0)], missing
}

// accuse signs an accusation of metric against accused and hands it to
// handle like any record; it reports whether it was taken.
func (d *detector) accuse(ctx context.Context, accused evidence.NodeID, metric evidence.Metric, value int64, detail string, now time.Time) bool {
	if len(detail) > evidence.MaxDetail {
		detail = detail[:evidence.MaxDetail]
	}
	a, err := evidence.SignAccusation(d.key, evidence.Accusation{Accuser: d.self, Accused: accused,
		Metric: metric, Value: value, Epoch: d.epoch.Load(), At: now.UnixNano(), Detail: detail})
	if err != nil {
		d.log.Error("accusation not signed", "err", err)
		return false
	}
	e, err := evidence.FromAccusation(a)
	if err != nil {
		d.log.Error("accusation does not encode", "err", err)
		return false
	}
	d.log.Warn("accusing a member", "accused", string(accused), "metric", metric.String(), "value", value, "detail", detail)
	res, _ := d.handle(ctx, e, "")
	return res == resultAdded
}
