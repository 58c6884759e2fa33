package node

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/detector/store"
	"github.com/tandem-consensus/tandem/quarantine"
)

// The detector (DESIGN invariants 7–9) in bft mode (for cft mode see
// detector_cft.go):
//
//	HotStuff core proofs ─┐                       ┌─> relay to every peer (peer port)
//	peers' relayed proofs ┴─> verify (score.Book) ┼─> evidence store (data_dir/detector/evidence)
//	                                              └─> decide → quarantine.Decide → Manager (durable)
//	                                                   → engine.SetQuarantined on this replica
//
// Every node verifies every record itself before it acts; a record that
// does not verify changes nothing. Irrefutable proofs need only the
// offender's own signatures, so every correct node that holds one reaches
// the same verdict: the relay makes sure they all hold it.

// Detector tuning that is not configurable.
const (
	// engineEvidenceQueue bounds the proofs the engine's loop hands over
	// before the detector takes them (the core reports one per offence
	// and view; a full queue drops, which only delays detection).
	engineEvidenceQueue = 256
	// maxRelayPending bounds the records waiting for one peer.
	maxRelayPending = 1024
	// relayTimeout bounds one delivery attempt.
	relayTimeout = 5 * time.Second
	// relayRetryMin and relayRetryMax bound the backoff between delivery
	// attempts to a peer that did not answer.
	relayRetryMin = 250 * time.Millisecond
	relayRetryMax = 30 * time.Second
	// pruneEvery is how often old accusations are pruned from the book.
	pruneEvery = time.Minute
)

// quarantineEngine is what the detector needs from the consensus engine.
type quarantineEngine interface {
	SetQuarantined(ctx context.Context, ids []types.NodeID) error
	Status() consensus.Status
}

// detector is one node's detector. Its exported-to-the-node methods are
// safe for concurrent use; mu serialises the book and the decisions.
type detector struct {
	log     *slog.Logger
	self    evidence.NodeID
	key     ed25519.PrivateKey
	epoch   atomic.Uint64
	members *evidence.Members
	peers   map[evidence.NodeID]string // peer addresses of the other members
	scfg    score.Config
	store   *store.Store
	manager *quarantine.Manager
	clock   func() time.Time
	// deliver sends an encoded record to a peer's evidence endpoint.
	deliver func(ctx context.Context, addr string, body []byte) error
	metrics *detectorMetrics

	engineMu sync.Mutex
	engine   quarantineEngine
	// repush is set when the engine did not take the list; run retries.
	repush atomic.Bool
	// pushMu orders the hand-overs, so that an older list never
	// overwrites a newer one in the engine.
	pushMu sync.Mutex

	fromEngine chan *types.Evidence
	obs        *observer // engine observations (detector_observe.go)
	relays     map[evidence.NodeID]*relay
	gossip     *evidenceGossip // signs found records into the own log (gossip.go); nil-safe

	mu   sync.Mutex
	book *score.Book
	// mode is the consensus mode quarantine decisions are made for.
	mode quarantine.Mode
	// onEscalate, escalateLogged and escalated (guarded by mu): see
	// setOnEscalate.
	onEscalate     func(reason string, ids []evidence.ID)
	escalateLogged bool
	escalated      map[evidence.ID]bool
	// onResync (guarded by mu) is told of every decision that asks this
	// node to re-sync (resync.go).
	onResync func(score.Decision)
	// lastAnomaly (guarded by mu) is when a decision last found an
	// anomaly of a member that is not quarantined, or quarantined one
	// (calm.go).
	lastAnomaly time.Time

	// cft mode only (nil in bft mode): see detector_cft.go.
	fromRaft            chan raftengine.AttestationCheck
	slotMu              sync.Mutex
	slots               *slotTable
	deliverAttestations func(ctx context.Context, addr string, body []byte) error
	outMu               sync.Mutex
	outbox              []*evidence.ProposalAttestation
	exchange            sync.WaitGroup
	accused             map[accusedTerm]bool // used by the run goroutine only
	hb                  *heartbeatPoller     // used by the cft goroutine only (detector_heartbeat.go)
	fwd                 *forwardWatcher      // forwarded writes watched for omission (detector_cftomit.go)

	conflicts *conflictWatch // log conflicts, both modes (detector_cftconflict.go)
}

// detectorConfig is what newDetector needs.
type detectorConfig struct {
	Self      evidence.NodeID
	Key       ed25519.PrivateKey
	Epoch     uint64
	Members   []evidence.Member
	PeerAddrs map[evidence.NodeID]string
	Score     score.Config
	DataDir   string
	Logger    *slog.Logger
	Registry  prometheus.Registerer
	Clock     func() time.Time
	Deliver   func(ctx context.Context, addr string, body []byte) error
	Alerters  []quarantine.Alerter
	// DisruptiveElectionsPerHour is disruptive_elections_per_hour (0:
	// the default).
	DisruptiveElectionsPerHour int
}

// newDetector opens the evidence store and the quarantine list under
// DataDir/detector and rebuilds the book from the stored evidence. A
// damaged quarantine list is an error: the node does not start with its
// quarantines forgotten.
func newDetector(c detectorConfig) (*detector, error) {
	if err := c.Score.Validate(); err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	members, err := evidence.NewMembers(c.Members)
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	d := &detector{
		log:        c.Logger.With("component", "detector"),
		self:       c.Self,
		key:        c.Key,
		members:    members,
		peers:      c.PeerAddrs,
		scfg:       c.Score,
		clock:      c.Clock,
		deliver:    c.Deliver,
		fromEngine: make(chan *types.Evidence, engineEvidenceQueue),
		obs:        newObserver(),
		relays:     map[evidence.NodeID]*relay{},
		mode:       quarantine.ModeBFT,
		escalated:  map[evidence.ID]bool{},
		accused:    map[accusedTerm]bool{},
		conflicts:  newConflictWatch(cmp.Or(c.DisruptiveElectionsPerHour, config.Default().DisruptiveElectionsPerHour)),
	}
	d.metrics, err = newDetectorMetrics(c.Registry)
	if err != nil {
		return nil, err
	}
	d.epoch.Store(c.Epoch)
	dir := filepath.Join(c.DataDir, "detector")
	if d.store, err = store.Open(filepath.Join(dir, "evidence")); err != nil {
		return nil, err
	}
	alerters := append([]quarantine.Alerter{quarantine.SlogAlerter{Logger: d.log}, quarantine.AlertFunc(d.metrics.alert)}, c.Alerters...)
	if d.manager, err = quarantine.Open(filepath.Join(dir, "quarantine.db"), quarantine.Options{Alerters: alerters}); err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	if d.book, err = score.NewBook(c.Score, members); err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	d.book.Forgive(d.manager.Forgiven()...)
	recs, bad, err := d.store.Load()
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	for _, e := range bad {
		d.log.Error("stored evidence record is unusable; it is left in place and ignored", "err", e)
	}
	now := d.clock()
	for _, e := range recs {
		if _, err := d.book.Add(e, now); err != nil {
			d.log.Warn("stored evidence record no longer counts", "id", e.ID().Short(), "err", err)
		}
	}
	for id := range d.peers {
		d.relays[id] = newRelay()
	}
	d.metrics.quarantined(d.manager.IDs(), members.IDs())
	return d, nil
}

// attach connects the engine the quarantine list is applied to.
func (d *detector) attach(e quarantineEngine) {
	d.engineMu.Lock()
	d.engine = e
	d.engineMu.Unlock()
}

// onEngineEvidence is the engine's Config.OnEvidence: it runs on the
// engine's loop and must not block.
func (d *detector) onEngineEvidence(ev *types.Evidence) {
	select {
	case d.fromEngine <- ev:
	default:
		d.metrics.dropped.Inc()
		d.log.Warn("detector queue full: dropping a proof from the engine (the core reports each offence again in later views)", "kind", ev.Kind.String(), "offender", string(ev.Offender))
	}
}

// run applies the stored quarantine list to the engine, offers every
// stored proof to the peers again (one may have missed it), then takes the
// engine's proofs until ctx ends. The relays run beside it.
func (d *detector) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	if d.fromRaft != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.exchange.Wait()
			d.runCFT(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.misbehave(ctx)
	}()
	for id, r := range d.relays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.runRelay(ctx, id, r)
		}()
	}
	d.pushQuarantine(ctx)
	d.mu.Lock()
	for _, e := range d.book.Evidence() {
		d.relayLocked(e, "")
	}
	d.decideLocked(ctx)
	d.mu.Unlock()

	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			if d.repush.Load() {
				d.pushQuarantine(ctx)
			}
		case ev := <-d.fromEngine:
			e, err := evidence.FromHotStuff(ev, d.epoch.Load())
			if err != nil {
				d.log.Error("the engine reported evidence that does not encode", "kind", ev.Kind.String(), "err", err)
				continue
			}
			_, _ = d.handle(ctx, e, "")
		case o := <-d.obs.ch:
			d.observe(ctx, o)
		case <-prune.C:
			d.mu.Lock()
			if n := d.book.Prune(d.clock()); n > 0 {
				d.syncStoreLocked()
			}
			d.mu.Unlock()
		}
	}
}

// handleResult says what became of a record.
type handleResult string

const (
	resultAdded    handleResult = "added"
	resultKnown    handleResult = "known"
	resultRejected handleResult = "rejected"
)

// handle verifies a record (from this node's engine when from is empty, or
// relayed by peer from), keeps it, relays it, and acts on the new decision.
// A record that does not verify is rejected and changes nothing.
func (d *detector) handle(ctx context.Context, e *evidence.Evidence, from evidence.NodeID) (handleResult, error) {
	source := "local"
	if from != "" {
		source = "peer"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	added, err := d.book.Add(e, d.clock())
	switch {
	case err != nil:
		d.metrics.evidence.WithLabelValues(e.Kind.String(), source, string(resultRejected)).Inc()
		d.log.Warn("evidence rejected", "from", orSelf(from), "kind", e.Kind.String(), "offender", string(e.Offender), "err", err)
		return resultRejected, err
	case !added:
		d.metrics.evidence.WithLabelValues(e.Kind.String(), source, string(resultKnown)).Inc()
		return resultKnown, nil
	}
	d.metrics.evidence.WithLabelValues(e.Kind.String(), source, string(resultAdded)).Inc()
	d.log.Warn("evidence verified", "from", orSelf(from), "id", e.ID().Short(), "kind", e.Kind.String(), "offender", string(e.Offender), "summary", e.Summary())
	if err := d.store.Put(e); err != nil {
		d.log.Error("evidence not persisted (it counts until the node restarts)", "id", e.ID().Short(), "err", err)
	}
	d.relayLocked(e, from)
	d.gossip.evidence(e, from)
	d.decideLocked(ctx)
	return resultAdded, nil
}

func orSelf(id evidence.NodeID) string {
	if id == "" {
		return "self"
	}
	return string(id)
}

// decideLocked runs the decision over the book and applies what it asks
// for: the durable quarantine list first, then the engine. d.mu is held.
func (d *detector) decideLocked(ctx context.Context) {
	now := d.clock()
	dec := d.book.Decide(now)
	d.metrics.threat.Set(dec.Threat)
	d.metrics.scores(dec.Scores, d.members.IDs())
	st := quarantine.State{Self: d.self, Mode: d.mode, Quarantined: d.manager.IDs()}
	if eng := d.currentEngine(); eng != nil {
		st.Leader = evidence.NodeID(eng.Status().LeaderID)
	}
	a := quarantine.Decide(quarantine.Policy{Config: d.scfg, Members: d.members, Forgiven: d.manager.Forgiven(), Now: now}, dec, st)
	d.noteAnomalyLocked(dec, st.Quarantined, a.Quarantine, now)
	for _, r := range a.Refused {
		d.log.Warn("quarantine refused: the decision does not re-justify", "node", string(r.Node), "err", r.Err)
	}
	for _, n := range a.Warn {
		d.log.Info("detector warning", "node", string(n))
	}
	if a.Escalate {
		d.escalateIfNewLocked(dec)
	}
	if a.Resync && d.onResync != nil {
		d.onResync(dec)
	}
	if len(a.Quarantine) == 0 && len(a.AddEvidence) == 0 {
		return
	}
	if err := d.manager.Apply(a); err != nil {
		d.log.Error("quarantine not applied: the list could not be persisted", "err", err)
		return
	}
	if a.SelfQuarantined {
		d.log.Error("this node is quarantined by verified evidence against its own key: its operator must investigate (a leaked or misused node key)")
	}
	if len(a.Quarantine) > 0 {
		d.metrics.quarantined(d.manager.IDs(), d.members.IDs())
		d.pushQuarantine(ctx)
	}
}

// escalateIfNewLocked calls the escalation hook when the evidence behind
// the decision's escalating reasons includes a record not escalated on
// before, so one offence escalates once. d.mu is held.
func (d *detector) escalateIfNewLocked(dec score.Decision) {
	var ids []evidence.ID
	var reasons []string
	fresh := false
	for _, r := range dec.Reasons {
		if r.Action < score.ActionEscalate {
			continue
		}
		reasons = append(reasons, string(r.Node)+": "+r.Text)
		for _, e := range r.Evidence {
			id := e.ID()
			ids = append(ids, id)
			if !d.escalated[id] {
				d.escalated[id] = true
				fresh = true
			}
		}
	}
	if fresh {
		d.escalateLocked(strings.Join(reasons, "; "), ids)
	}
}

func (d *detector) currentEngine() quarantineEngine {
	d.engineMu.Lock()
	defer d.engineMu.Unlock()
	return d.engine
}

// pushQuarantine hands the durable list to the engine.
func (d *detector) pushQuarantine(ctx context.Context) {
	eng := d.currentEngine()
	if eng == nil {
		return
	}
	d.pushMu.Lock()
	defer d.pushMu.Unlock()
	ids := d.manager.IDs()
	tids := make([]types.NodeID, len(ids))
	for i, id := range ids {
		tids[i] = types.NodeID(id)
	}
	// Not bound to ctx: ctx may be a peer's request, which must not cut
	// the hand-over short.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := eng.SetQuarantined(cctx, tids)
	d.repush.Store(err != nil && !errors.Is(err, consensus.ErrStopped))
	if err != nil && !errors.Is(err, consensus.ErrStopped) {
		d.log.Error("the engine did not take the quarantine list; retrying", "err", err)
	}
}

// syncStoreLocked removes stored records the book no longer keeps (pruned
// or forgiven). d.mu is held.
func (d *detector) syncStoreLocked() {
	keep := map[evidence.ID]bool{}
	for _, e := range d.book.Evidence() {
		keep[e.ID()] = true
	}
	ids, err := d.store.IDs()
	if err != nil {
		d.log.Warn("evidence store", "err", err)
		return
	}
	for _, id := range ids {
		if !keep[id] {
			if err := d.store.Remove(id); err != nil {
				d.log.Warn("evidence store", "err", err)
			}
		}
	}
}

// --- operator actions and views (admin API) ---

// errNoSuchEvidence is reported by evidenceByID.
var (
	errNoSuchEvidence = errors.New("no such evidence")
)

// lift lifts node's quarantine on this node (an operator's decision): the
// entry moves to the history, its offences are forgiven so the same
// proofs do not quarantine it again, and the engine takes the node back.
func (d *detector) lift(ctx context.Context, node evidence.NodeID, operator string) (quarantine.LiftRecord, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	rec, err := d.manager.Lift(quarantine.LiftRequest{Node: node, Operator: operator, At: now, Offenses: d.book.Offenses(node)})
	if err != nil {
		return rec, err
	}
	d.book.Forgive(rec.Forgiveness)
	d.syncStoreLocked()
	d.metrics.quarantined(d.manager.IDs(), d.members.IDs())
	d.pushQuarantine(ctx)
	return rec, nil
}

// evidenceList returns every record the book keeps, sorted by ID.
func (d *detector) evidenceList() []*evidence.Evidence {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.book.Evidence()
}

// evidenceByID returns one record: from the book, or from the evidence of
// a quarantine entry or lift record.
func (d *detector) evidenceByID(id evidence.ID) (*evidence.Evidence, error) {
	d.mu.Lock()
	e, ok := d.book.Get(id)
	d.mu.Unlock()
	if ok {
		return e, nil
	}
	for _, en := range d.manager.List() {
		for _, e := range en.Evidence {
			if e.ID() == id {
				return e, nil
			}
		}
	}
	for _, l := range d.manager.History() {
		for _, e := range l.Entry.Evidence {
			if e.ID() == id {
				return e, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s", errNoSuchEvidence, id)
}

// verify re-checks e against the member keys.
func (d *detector) verify(e *evidence.Evidence) error { return evidence.Verify(e, d.members) }

// --- metrics and alerts ---

type detectorMetrics struct {
	evidence *prometheus.CounterVec
	alerts   *prometheus.CounterVec
	node     *prometheus.GaugeVec
	count    prometheus.Gauge
	threat   prometheus.Gauge
	dropped  prometheus.Counter
	score    *prometheus.GaugeVec
	// observationsDropped counts engine observations dropped on a full
	// queue.
	observationsDropped prometheus.Counter
	relayed             *prometheus.CounterVec
	relayFails          prometheus.Counter
	// cft mode
	attestations  prometheus.Counter
	exchangeFails prometheus.Counter
	escalations   prometheus.Counter
}

func newDetectorMetrics(r prometheus.Registerer) (*detectorMetrics, error) {
	m := &detectorMetrics{
		evidence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_detector_evidence_total",
			Help: "Evidence records examined by the detector, by kind, source (local or peer) and result (added, known, rejected).",
		}, []string{"kind", "source", "result"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_quarantine_alerts_total",
			Help: "Changes of the quarantine list: quarantined, evidence (more evidence against a quarantined node), lifted.",
		}, []string{"kind"}),
		node: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_quarantined",
			Help: "1 while the member is quarantined on this node, else 0.",
		}, []string{"member"}),
		count: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_quarantined_members",
			Help: "Members quarantined on this node.",
		}),
		threat: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_detector_threat_level",
			Help: "The cluster threat level: the highest anomaly score of any member, in [0, 1].",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_detector_dropped_total",
			Help: "Proofs from the engine dropped because the detector's queue was full.",
		}),
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_detector_score",
			Help: "Each member's anomaly score on this node, in [0, 1]: 1 with a verified proof, otherwise the score its f+1 top accusers give it.",
		}, []string{"member"}),
		observationsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_detector_observations_dropped_total",
			Help: "Signature failures and vote latencies from the engine dropped because the detector's queue was full.",
		}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_detector_relayed_total",
			Help: "Evidence records delivered to peers, by the peer's answer (added, known, rejected).",
		}, []string{"result"}),
		relayFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_detector_relay_failures_total",
			Help: "Evidence deliveries to peers that failed and will be retried.",
		}),
		attestations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_detector_peer_attestations_total",
			Help: "Raft leader attestations received from peers and compared with this node's (cft mode).",
		}),
		exchangeFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_detector_attestation_exchange_failures_total",
			Help: "Attestation batches a peer did not take (cft mode; not retried).",
		}),
		escalations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_detector_escalations_total",
			Help: "Decisions that asked to escalate the cluster from cft to bft on new evidence.",
		}),
	}
	if err := registerAll(r, "detector metrics", m.evidence, m.alerts, m.node, m.count, m.threat, m.dropped, m.score, m.observationsDropped, m.relayed, m.relayFails,
		m.attestations, m.exchangeFails, m.escalations); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *detectorMetrics) alert(a quarantine.Alert) {
	m.alerts.WithLabelValues(a.Kind.String()).Inc()
}

// scores sets every member's score gauge (0 when it has none).
func (m *detectorMetrics) scores(ss []score.NodeScore, all []evidence.NodeID) {
	for _, id := range all {
		v := 0.0
		for _, s := range ss {
			if s.Node == id {
				v = s.Score
			}
		}
		m.score.WithLabelValues(string(id)).Set(v)
	}
}

func (m *detectorMetrics) quarantined(q, all []evidence.NodeID) {
	m.count.Set(float64(len(q)))
	for _, id := range all {
		v := 0.0
		if slices.Contains(q, id) {
			v = 1
		}
		m.node.WithLabelValues(string(id)).Set(v)
	}
}
