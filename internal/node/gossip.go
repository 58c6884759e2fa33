package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/membership"
)

// Evidence gossip (DESIGN invariant 7): every node signs what its detector
// produced (evidence records it found, attestations it applied) as the
// messages of its own 2P-BFT-Log, and memberlist replicates the logs:
// push/pull state syncs carry frontiers and the messages a peer lacks,
// broadcasts carry new messages. A message that reaches the store is fed
// to the detector like a relayed record (handle) or a peer's attestation
// batch (attestation). The HTTP relay stays the fast path; gossip is the
// convergence path that also reaches the nodes the relay missed.
//
// Content of a message: one tag byte, then
//
//	gossipEvidence      evidence.Marshal form of one record
//	gossipAttestations  encodeAttestations form of a batch
const (
	gossipEvidence     byte = 1
	gossipAttestations byte = 2
)

// Bounds of evidence gossip.
const (
	gossipMaxContent   = 64 << 10 // bytes of one message
	gossipMaxPerAuthor = 1 << 14  // messages kept per member
	gossipMaxPacket    = 1 << 20  // bytes of one push/pull state
	// gossipAttestEvery is how often applied attestations are signed
	// into the own log (one message per chunk).
	gossipAttestEvery = time.Second
	// gossipMaxAttest bounds the attestations waiting to be signed.
	gossipMaxAttest = 4 * maxAttestationBatch
	// gossipOwnFile holds the own log under data_dir/detector.
	gossipOwnFile = "bftlog-own"
)

// evidenceGossip is the node's membership.Gossip.
type evidenceGossip struct {
	det     *detector
	rep     *bftlog.Replica
	log     *slog.Logger
	authors map[bftlog.Author]evidence.NodeID
	members atomic.Pointer[membership.Membership]

	ownMu sync.Mutex
	own   *os.File

	inMu sync.Mutex
	in   []*bftlog.Message // stored messages of other members, not yet fed
	wake chan struct{}

	attMu sync.Mutex
	att   []*evidence.ProposalAttestation

	fullLogged atomic.Bool
	proofs     gossipProofs // used by run only (detector_fork.go)
	metrics    struct {
		dropped  *prometheus.CounterVec
		received *prometheus.CounterVec
		appended prometheus.Counter
	}
}

var _ membership.Gossip = (*evidenceGossip)(nil)

// newEvidenceGossip builds the gossip of detector d and restores its own
// log from dir.
func newEvidenceGossip(d *detector, name, dir string, reg prometheus.Registerer) (*evidenceGossip, error) {
	if len(name) > bftlog.MaxGossipFrom {
		name = "" // peers then send this node everything, within bounds
	}
	g := &evidenceGossip{det: d, log: d.log.With("part", "gossip"), authors: map[bftlog.Author]evidence.NodeID{}, wake: make(chan struct{}, 1)}
	g.metrics.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_detector_gossip_dropped_total",
		Help: "Evidence gossip refused: packets (oversized, malformed) and messages (bad_signature, invalid, author_full, unknown_author, ...), by reason.",
	}, []string{"reason"})
	g.metrics.received = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_detector_gossip_received_total",
		Help: "Messages of other members' evidence logs taken from gossip and fed to the detector, by content (evidence, attestations, unknown).",
	}, []string{"content"})
	g.metrics.appended = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tandem_detector_gossip_appended_total",
		Help: "Messages signed into this node's own evidence log.",
	})
	if err := registerAll(reg, "gossip metrics", g.metrics.dropped, g.metrics.received, g.metrics.appended); err != nil {
		return nil, err
	}
	var authors []bftlog.Author
	for _, id := range d.members.IDs() {
		pub := d.members.Key(id)
		a, err := bftlog.AuthorOf(pub)
		if err != nil {
			return nil, fmt.Errorf("evidence gossip: member %s: %w", id, err)
		}
		authors = append(authors, a)
		g.authors[a] = id
	}
	rep, err := bftlog.NewReplica(bftlog.ReplicaConfig{
		Store:     bftlog.Config{MaxContentSize: gossipMaxContent, MaxMessagesPerAuthor: gossipMaxPerAuthor, MaxAuthors: max(len(authors), 1)},
		Key:       d.key,
		Name:      name,
		Authors:   authors,
		MaxPacket: gossipMaxPacket,
		OnAdded:   g.added,
		OnDrop:    g.dropped,
	})
	if err != nil {
		return nil, fmt.Errorf("evidence gossip: %w", err)
	}
	g.rep = rep
	if err := g.openOwn(filepath.Join(dir, gossipOwnFile)); err != nil {
		return nil, err
	}
	return g, nil
}

// openOwn restores the own log from path and keeps the file open for
// appending. Records are len u32 | message wire form; a torn last record
// (a crash during a write) is cut off.
func (g *evidenceGossip) openOwn(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("evidence gossip: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("evidence gossip: own log: %w", err)
	}
	var msgs []*bftlog.Message
	var good int64
	r := bufio.NewReader(f)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > gossipMaxContent+1<<16 {
			break
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		m, err := bftlog.DecodeMessage(buf)
		if err != nil {
			break
		}
		msgs = append(msgs, m)
		good += 4 + int64(n)
	}
	if st, err := f.Stat(); err == nil && st.Size() > good {
		g.log.Warn("own evidence log has a torn or unreadable tail; cutting it off", "file", path, "kept_bytes", good, "size", st.Size())
		if err := f.Truncate(good); err != nil {
			f.Close()
			return fmt.Errorf("evidence gossip: own log: %w", err)
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("evidence gossip: own log: %w", err)
	}
	if err := g.rep.Restore(msgs); err != nil {
		f.Close()
		return fmt.Errorf("evidence gossip: own log %s: %w", path, err)
	}
	g.own = f
	return nil
}

// persist writes m to the own log file and syncs it: a message is on disk
// before any peer can see it.
func (g *evidenceGossip) persist(m *bftlog.Message) error {
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	rec := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	if _, err := g.own.Write(append(rec, b...)); err != nil {
		return fmt.Errorf("own evidence log: %w", err)
	}
	if err := g.own.Sync(); err != nil {
		return fmt.Errorf("own evidence log: %w", err)
	}
	return nil
}

// attach connects the running membership (broadcasts go through it).
func (g *evidenceGossip) attach(m *membership.Membership) { g.members.Store(m) }

// close closes the own log file.
func (g *evidenceGossip) close() error {
	g.ownMu.Lock()
	defer g.ownMu.Unlock()
	return g.own.Close()
}

// appendContent signs content into the own log and broadcasts it.
func (g *evidenceGossip) appendContent(content []byte) {
	g.ownMu.Lock()
	m, err := g.rep.Append(content, g.persist)
	g.ownMu.Unlock()
	if err != nil {
		if errors.Is(err, bftlog.ErrAuthorFull) {
			if !g.fullLogged.Swap(true) {
				g.log.Error("own evidence log is full: gossip carries nothing new from this node (the HTTP relay still does)", "limit", gossipMaxPerAuthor)
			}
		} else {
			g.log.Warn("not signed into the own evidence log", "err", err)
		}
		return
	}
	g.metrics.appended.Inc()
	g.broadcast(m)
}

func (g *evidenceGossip) broadcast(m *bftlog.Message) {
	ms := g.members.Load()
	if ms == nil {
		return
	}
	if b, ok := g.rep.Broadcast(m, ms.MaxBroadcastSize()); ok {
		if err := ms.Broadcast(b); err != nil {
			g.log.Debug("evidence broadcast not queued", "err", err)
		}
	}
}

// evidence signs a record this node found (from is empty) into its own
// log; records from peers are in their authors' logs already. Safe on a
// nil g; called with the detector's lock held (it does not take it).
func (g *evidenceGossip) evidence(e *evidence.Evidence, from evidence.NodeID) {
	if g == nil || from != "" {
		return
	}
	b, err := evidence.Marshal(e)
	if err != nil {
		return
	}
	if 1+len(b) > gossipMaxContent {
		g.log.Debug("evidence record too large for the log; it travels by relay only", "id", e.ID().Short(), "bytes", len(b))
		return
	}
	g.appendContent(append([]byte{gossipEvidence}, b...))
}

// attestations queues attestations this node applied; run signs them into
// the own log. Safe on a nil g.
func (g *evidenceGossip) attestations(as []*evidence.ProposalAttestation) {
	if g == nil || len(as) == 0 {
		return
	}
	g.attMu.Lock()
	defer g.attMu.Unlock()
	room := gossipMaxAttest - len(g.att)
	if room < len(as) {
		g.metrics.dropped.WithLabelValues("attestation_queue_full").Add(float64(len(as) - max(room, 0)))
		as = as[:max(room, 0)]
	}
	g.att = append(g.att, as...)
}

// flushAttestations signs the queued attestations, in chunks that fit a
// message.
func (g *evidenceGossip) flushAttestations() {
	g.attMu.Lock()
	as := g.att
	g.att = nil
	g.attMu.Unlock()
	per := (gossipMaxContent - 1 - 2) / (2 + evidence.MaxAttestationSize)
	for len(as) > 0 {
		k := min(len(as), per)
		b, err := encodeAttestations(as[:k])
		as = as[k:]
		if err != nil {
			g.log.Error("attestations do not encode", "err", err)
			continue
		}
		g.appendContent(append([]byte{gossipAttestations}, b...))
	}
}

// added is the replica's OnAdded: other members' messages are queued for
// the detector. It runs under the replica's lock.
func (g *evidenceGossip) added(m *bftlog.Message) {
	if m.Author() == g.rep.Self() {
		return
	}
	g.inMu.Lock()
	g.in = append(g.in, m)
	g.inMu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// dropped is the replica's OnDrop.
func (g *evidenceGossip) dropped(reason string, err error) {
	g.metrics.dropped.WithLabelValues(reason).Inc()
	g.log.Debug("evidence gossip dropped", "reason", reason, "err", err)
}

// LocalState, MergeRemoteState and NotifyMsg implement membership.Gossip.
func (g *evidenceGossip) LocalState(join bool) []byte { return g.rep.State(join) }

func (g *evidenceGossip) MergeRemoteState(buf []byte, join bool) { g.rep.MergeState(buf) }

func (g *evidenceGossip) NotifyMsg(buf []byte) {
	for _, m := range g.rep.MergeMessages(buf) {
		g.broadcast(m) // pass new messages on once
	}
}

// run feeds gossiped messages to the detector and signs applied
// attestations until ctx ends.
func (g *evidenceGossip) run(ctx context.Context) {
	tick := time.NewTicker(gossipAttestEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			g.flushAttestations()
			g.takeProofs(ctx)
		case <-g.wake:
			g.inMu.Lock()
			in := g.in
			g.in = nil
			g.inMu.Unlock()
			for _, m := range in {
				g.feed(ctx, m)
			}
			g.takeProofs(ctx)
		}
	}
}

// feed hands one stored message of another member to the detector, which
// verifies what it carries as it verifies relayed records.
func (g *evidenceGossip) feed(ctx context.Context, m *bftlog.Message) {
	from := g.authors[m.Author()]
	c := m.Content()
	if len(c) == 0 {
		g.metrics.received.WithLabelValues("unknown").Inc()
		return
	}
	switch c[0] {
	case gossipEvidence:
		e, err := evidence.Unmarshal(c[1:])
		if err != nil {
			g.metrics.received.WithLabelValues("unknown").Inc()
			g.log.Debug("gossiped evidence does not decode", "author", string(from), "msg", m.ID().Short(), "err", err)
			return
		}
		g.metrics.received.WithLabelValues("evidence").Inc()
		_, _ = g.det.handle(ctx, e, from)
	case gossipAttestations:
		as, err := decodeAttestations(c[1:])
		if err != nil {
			g.metrics.received.WithLabelValues("unknown").Inc()
			g.log.Debug("gossiped attestations do not decode", "author", string(from), "msg", m.ID().Short(), "err", err)
			return
		}
		g.metrics.received.WithLabelValues("attestations").Inc()
		if g.det.slots == nil {
			return
		}
		for _, a := range as {
			if err := a.VerifySignature(g.det.members); err != nil {
				g.log.Debug("gossiped attestation does not verify", "author", string(from), "err", err)
				continue
			}
			g.det.metrics.attestations.Inc()
			g.det.attestation(ctx, a, from)
		}
	default:
		g.metrics.received.WithLabelValues("unknown").Inc()
	}
}
