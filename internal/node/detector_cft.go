package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

// The detector in cft mode (Raft):
//
//	Raft FSM: each applied entry's attestation check ──> detector (non-blocking queue)
//	  verified attestation ──> slot table (leader, epoch, term, seq) ──> conflict: leader-equivocation proof
//	                       └─> sent to every peer (POST /internal/attestations)
//	  leader-signed invalid client payload ──> invalid-client-signature proof
//	  missing or invalid attestation ──> signed accusation (signature failure) against the term's leader
//	proofs and accusations ──> the same path as in bft mode (verify, store, relay, decide)
//	quarantine (quarantine.ModeCFT) ──> cftQuarantine: refuse the member's Raft connections and
//	  peer requests; the leader removes it from the voters; a quarantined leader hands over
//	escalate ──> the hook set with setOnEscalate (consensus_mode auto); in plain cft it is logged once
//
// Nodes exchange the attestations they applied, so that a leader that
// sends different payloads for one slot to different followers is caught
// by whoever holds both.

// Tuning of the cft-mode detector.
const (
	// raftCheckQueue bounds the attestation checks waiting for the
	// detector (a full queue drops; the exchange makes up for a dropped
	// attestation only if another replica holds it).
	raftCheckQueue = 4096
	// maxSlots bounds the attestation slots remembered.
	maxSlots = 1 << 16
	// attestationFlushEvery is how often applied attestations are sent to
	// the peers.
	attestationFlushEvery = 100 * time.Millisecond
	// maxAttestationBatch bounds one exchange message.
	maxAttestationBatch = 2048
	// voterSyncEvery is how often the Raft leader removes quarantined
	// voters that are still in the configuration.
	voterSyncEvery = time.Second
)

// newCFTDetector creates the detector for cft mode (raftChecks connects it
// to a Raft engine's configuration). Without a public key for every
// initial member there is nothing to check attestations against: it
// returns nil (no detector) and says so once; the leader still signs.
func (n *Node) newCFTDetector(key ed25519.PrivateKey, logger *slog.Logger) (*detector, error) {
	ms, err := n.cfg.Members()
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.PublicKey == nil {
			logger.Warn("detector off: initial_members does not list every member's node public key (id=host:port/<hex key>); leader attestations are not checked", "member", m.ID)
			return nil, nil
		}
	}
	if len(ms) == 0 {
		logger.Warn("detector off: initial_members is empty, so no member public keys are known; leader attestations are not checked")
		return nil, nil
	}
	d, err := n.newDetector(key, logger)
	if err != nil {
		return nil, err
	}
	d.mode = quarantine.ModeCFT
	d.epoch.Store(cftEpoch)
	d.fromRaft = make(chan raftengine.AttestationCheck, raftCheckQueue)
	d.slots = newSlotTable(maxSlots)
	d.deliverAttestations = n.deliverAttestations
	d.hb = newHeartbeatPoller(d.self)
	bound, err := omitBound(n.cfg.Raft.MaxAppendEntries)
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	d.fwd = newForwardWatcher(bound, func(env *smr.Envelope) bool {
		res, err := n.fsm.Precheck(env)
		return res == nil && err == nil
	})
	return d, nil
}

// raftChecks makes a Raft engine built from rc check every entry's leader
// attestation against the members' keys and hand the checks to d.
func (d *detector) raftChecks(rc *raftengine.Config) {
	rc.Members = d.members
	rc.OnCheck = d.onRaftCheck
	rc.PeerID = transport.PeerID
	rc.OnPeerRPC = d.onPeerRPC
}

// cftEpoch is the epoch a cft cluster's attestations carry (one epoch
// until hand-overs exist).
const cftEpoch = 1

// quarantinedPeer reports whether peer id is quarantined on this node;
// its peer requests are refused.
func (n *Node) quarantinedPeer(id string) bool {
	return n.det != nil && n.det.manager.IsQuarantined(evidence.NodeID(id))
}

// cftQuarantine applies the quarantine list to the Raft engine.
type cftQuarantine struct {
	e    *raftengine.Engine
	self string
	log  *slog.Logger
}

var _ quarantineEngine = cftQuarantine{}

// SetQuarantined refuses the members' Raft connections on this node (so a
// quarantined leader loses its followers and another one is elected) and,
// on the leader, removes them from the voters. A quarantined leader that
// is this node hands leadership over.
func (q cftQuarantine) SetQuarantined(ctx context.Context, ids []types.NodeID) error {
	refused := make([]string, 0, len(ids))
	for _, id := range ids {
		if string(id) != q.self {
			refused = append(refused, string(id))
		}
	}
	q.e.SetRefused(refused)
	st := q.e.Status()
	if st.Role != "leader" {
		return nil
	}
	if len(refused) < len(ids) {
		q.log.Error("this node is quarantined and leads: handing leadership over")
		if err := q.e.TransferLeadership(ctx, ""); err != nil {
			return fmt.Errorf("transfer leadership away from a quarantined leader: %w", err)
		}
		return nil
	}
	return q.removeVoters(ctx, refused)
}

// removeVoters removes the members of ids that are still in the Raft
// configuration (leader only).
func (q cftQuarantine) removeVoters(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ms, err := q.e.Members(ctx)
	if err != nil {
		return fmt.Errorf("read the raft configuration: %w", err)
	}
	var errs []error
	for _, m := range ms {
		if !slices.Contains(ids, m.ID) {
			continue
		}
		if err := q.e.RemoveMember(ctx, m.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove quarantined member %s from the voters: %w", m.ID, err))
			continue
		}
		q.log.Warn("quarantined member removed from the raft voters", "member", m.ID)
	}
	return errors.Join(errs...)
}

func (q cftQuarantine) Status() consensus.Status { return q.e.Status() }

// setOnEscalate sets the hook called when a decision asks to escalate the
// cluster to BFT (consensus_mode auto). It gets a readable reason and the
// IDs of the evidence that justifies it. It runs with the detector's lock
// held and must not block. Without a hook (plain cft mode) the detector
// logs once that escalation needs consensus_mode auto.
func (d *detector) setOnEscalate(f func(reason string, ids []evidence.ID)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onEscalate = f
}

// escalateLocked hands an escalation to the hook. d.mu is held.
func (d *detector) escalateLocked(reason string, ids []evidence.ID) {
	d.metrics.escalations.Inc()
	if d.onEscalate != nil {
		d.onEscalate(reason, ids)
		return
	}
	if !d.escalateLogged {
		d.escalateLogged = true
		d.log.Warn("the detector asks to escalate to BFT, which needs consensus_mode auto; this node stays in cft", "reason", reason, "evidence", len(ids))
	}
}

// onRaftCheck is the Raft engine's Config.OnCheck: it runs on the FSM
// goroutine and must not block.
func (d *detector) onRaftCheck(c raftengine.AttestationCheck) {
	select {
	case d.fromRaft <- c:
	default:
		d.metrics.dropped.Inc()
	}
}

// raftCheck turns one applied entry's check into evidence.
func (d *detector) raftCheck(ctx context.Context, c raftengine.AttestationCheck) {
	switch {
	case c.Evidence != nil:
		_, _ = d.handle(ctx, c.Evidence, "")
	case c.Err != nil:
		d.accuseUnattested(ctx, c)
	case c.Attestation != nil:
		d.attestation(ctx, c.Attestation, "")
		d.outMu.Lock()
		if len(d.outbox) < maxAttestationBatch*4 {
			d.outbox = append(d.outbox, c.Attestation)
		}
		d.outMu.Unlock()
	}
}

// attestation records a verified attestation (applied here, or from peer
// from after verification) and turns a conflict into a proof.
func (d *detector) attestation(ctx context.Context, a *evidence.ProposalAttestation, from evidence.NodeID) {
	d.slotMu.Lock()
	other := d.slots.record(a)
	d.slotMu.Unlock()
	if other == nil || d.manager.IsQuarantined(a.Leader) {
		// Nothing new, or the leader is already out: one proof is enough
		// and each further slot would only add a record.
		return
	}
	e, err := evidence.NewLeaderEquivocation(other, a)
	if err != nil {
		d.log.Error("leader equivocation does not encode", "err", err)
		return
	}
	d.log.Warn("two attestations of one slot", "from", orSelf(from), "leader", string(a.Leader), "term", a.Term, "seq", a.Seq,
		"payloads", other.PayloadHash.Short()+" "+a.PayloadHash.Short())
	_, _ = d.handle(ctx, e, "")
}

// accuseUnattested signs an accusation (signature failure) against the
// leader of an entry whose attestation is missing or invalid: not a proof
// (anyone could strip an attestation), so it counts only with f+1
// accusers. One accusation per leader and term.
func (d *detector) accuseUnattested(ctx context.Context, c raftengine.AttestationCheck) {
	d.log.Warn("applied an entry without a valid leader attestation", "index", c.Index, "term", c.Term, "leader", c.Leader, "err", c.Err)
	if c.Leader == "" || c.Leader == string(d.self) || !d.members.Contains(evidence.NodeID(c.Leader)) {
		return
	}
	k := accusedTerm{leader: c.Leader, term: c.Term}
	if d.accused[k] {
		return
	}
	d.accused[k] = true
	detail := fmt.Sprintf("raft entry %d term %d: %v", c.Index, c.Term, c.Err)
	if len(detail) > evidence.MaxDetail {
		detail = detail[:evidence.MaxDetail]
	}
	a, err := evidence.SignAccusation(d.key, evidence.Accusation{Accuser: d.self, Accused: evidence.NodeID(c.Leader),
		Metric: evidence.MetricSignatureFailure, Value: 1, Epoch: d.epoch.Load(), At: d.clock().UnixNano(), Detail: detail})
	if err != nil {
		d.log.Error("accusation not signed", "err", err)
		return
	}
	e, err := evidence.FromAccusation(a)
	if err != nil {
		d.log.Error("accusation does not encode", "err", err)
		return
	}
	_, _ = d.handle(ctx, e, "")
}

type accusedTerm struct {
	leader string
	term   uint64
}

// runCFT is the cft-mode part of run: attestation checks, the exchange,
// and the voter removal on the leader. It returns when ctx ends.
func (d *detector) runCFT(ctx context.Context) {
	flush := time.NewTicker(attestationFlushEvery)
	defer flush.Stop()
	voters := time.NewTicker(voterSyncEvery)
	defer voters.Stop()
	heartbeat := time.NewTicker(hbPollEvery)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-d.fromRaft:
			d.raftCheck(ctx, c)
		case <-flush.C:
			d.flushAttestations(ctx)
		case <-voters.C:
			d.syncVoters(ctx)
		case <-heartbeat.C:
			d.cftTick(ctx)
		}
	}
}

// syncVoters makes the leader remove quarantined members still in the
// Raft configuration (a removal can fail, or leadership move, after the
// quarantine).
func (d *detector) syncVoters(ctx context.Context) {
	q, ok := d.currentEngine().(cftQuarantine)
	if !ok || len(d.manager.IDs()) == 0 || q.Status().Role != "leader" {
		return
	}
	d.pushQuarantine(ctx)
}

// flushAttestations sends the attestations applied since the last flush
// to every peer, best effort: a peer that does not answer misses them.
func (d *detector) flushAttestations(ctx context.Context) {
	d.outMu.Lock()
	batch := d.outbox
	d.outbox = nil
	d.outMu.Unlock()
	d.gossip.attestations(batch)
	for len(batch) > 0 {
		k := min(len(batch), maxAttestationBatch)
		body, err := encodeAttestations(batch[:k])
		batch = batch[k:]
		if err != nil {
			d.log.Error("attestations do not encode", "err", err)
			continue
		}
		for peer, addr := range d.peers {
			if d.manager.IsQuarantined(peer) {
				continue
			}
			d.exchange.Add(1)
			go func() {
				defer d.exchange.Done()
				actx, cancel := context.WithTimeout(ctx, relayTimeout)
				defer cancel()
				if err := d.deliverAttestations(actx, addr, body); err != nil {
					d.metrics.exchangeFails.Inc()
					d.log.Debug("attestation exchange failed", "peer", string(peer), "err", err)
				}
			}()
		}
	}
}
