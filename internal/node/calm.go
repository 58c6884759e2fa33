package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

// Automatic de-escalation (consensus_mode auto, auto_deescalate_after > 0;
// DESIGN invariants 8 and 10). A bft epoch that the detector's escalation
// started ends again after a calm period:
//
//	each member, once calm ──> signs CALM(epoch, time) with its node key
//	                      ──> exchanges it over the peer port (/internal/calm)
//	f+1 statements of distinct members ──> switch entry to cft carrying them
//	                                   ──> ordered by HotStuff; every replica checks them
//
// A member is calm when its epoch is a bft epoch reached by escalation, it
// holds at least one member quarantined (the offender), it is not itself
// quarantined, and neither the epoch's start nor the detector's last
// anomaly (calmAnomaly) is more recent than auto_deescalate_after.
//
// Every replica checks the entry from its bytes and the epoch record alone
// (selector.checkCalm): each statement is for the ending epoch, signed by
// a distinct member of it with its configured node key, and at least f+1
// of them, so at least one correct member was calm; the state machine
// checks that each is fresh by the cluster's time (smr.CalmMaxAge). One
// Byzantine member can therefore not force the switch, and since f+1
// correct members suffice and every correct member proposes it, it cannot
// block it either. The next Raft epoch runs with the members that are not
// quarantined (selector.nextMembers).

// Calm tuning that is not configurable.
const (
	pathCalm = "/internal/calm"
	// calmRefresh is how old this node's own statement may get before it
	// signs a new one.
	calmRefresh = smr.CalmMaxAge / 4
	// calmUsable is how old a statement may be to go into a switch entry
	// (the state machine accepts up to smr.CalmMaxAge).
	calmUsable = smr.CalmMaxAge / 2
	// calmProposeEvery spaces this node's proposals of the switch.
	calmProposeEvery = 2 * time.Second
)

// noteAnomalyLocked records the time of a decision that found an anomaly:
// a member newly quarantined, or a member not quarantined with a positive
// score or a proof. Offences of members already quarantined do not count:
// they are dealt with, and the next cft epoch runs without them. A score
// needs f+1 accusers (score.Decide), so one liar cannot keep the cluster
// from being calm. d.mu is held.
func (d *detector) noteAnomalyLocked(dec score.Decision, quarantined []evidence.NodeID, newly []quarantine.Entry, now time.Time) {
	if len(newly) > 0 {
		d.lastAnomaly = now
		return
	}
	for _, s := range dec.Scores {
		if (s.Score > 0 || s.Proven) && !slices.Contains(quarantined, s.Node) {
			d.lastAnomaly = now
			return
		}
	}
}

// calmAnomaly returns when the detector last found an anomaly (zero if
// never since the node started).
func (d *detector) calmAnomaly() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastAnomaly
}

// calmPool holds the calm statements of one epoch, one per member: this
// node's own and the latest its peers sent. Safe for concurrent use.
type calmPool struct {
	mu    sync.Mutex
	epoch uint64
	by    map[string]smr.CalmStatement
}

// put keeps c, the newest statement of its signer, dropping the statements
// of another epoch.
func (p *calmPool) put(c smr.CalmStatement) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoch != c.Epoch || p.by == nil {
		p.epoch, p.by = c.Epoch, map[string]smr.CalmStatement{}
	}
	if old, ok := p.by[c.Signer]; !ok || c.Time > old.Time {
		p.by[c.Signer] = c
	}
}

// get returns signer's statement for epoch.
func (p *calmPool) get(epoch uint64, signer string) (smr.CalmStatement, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoch != epoch {
		return smr.CalmStatement{}, false
	}
	c, ok := p.by[signer]
	return c, ok
}

// drop forgets signer's statement.
func (p *calmPool) drop(signer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.by, signer)
}

// usable returns the statements for epoch signed within calmUsable before
// now (and not after now+smr.CalmMaxAhead), sorted by signer.
func (p *calmPool) usable(epoch uint64, now time.Time) []smr.CalmStatement {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoch != epoch {
		return nil
	}
	var out []smr.CalmStatement
	for _, c := range p.by {
		if c.Time >= now.Add(-calmUsable).UnixNano() && c.Time <= now.Add(smr.CalmMaxAhead).UnixNano() {
			out = append(out, c)
		}
	}
	smr.SortCalm(out)
	return out
}

// calmNeeded is the number of statements a de-escalation of an epoch with
// members needs: f+1, f = ⌊(n−1)/3⌋.
func calmNeeded(members []string) int { return (len(members)-1)/3 + 1 }

// calmState says whether this node is calm in the epoch of rec after the
// calm period d, and if not why (for the debug log).
func (s *selector) calmState(rec epochRecord, d time.Duration, now time.Time) (calm bool, why string, quarantined []string) {
	switch {
	case d <= 0:
		return false, "auto_deescalate_after is 0", nil
	case rec.Mode != smr.ModeBFT:
		return false, "the epoch runs cft", nil
	case !rec.Escalated:
		return false, "the epoch was not reached by the detector's escalation", nil
	case rec.EndIndex != 0:
		return false, "the epoch is ending", nil
	case s.n.det == nil:
		return false, "no detector", nil
	}
	quarantined = s.n.quarantinedMembers()
	if len(quarantined) == 0 {
		return false, "no member is quarantined", nil
	}
	if slices.Contains(quarantined, s.n.cfg.NodeID) {
		return false, "this node is quarantined", quarantined
	}
	since := rec.Since
	if a := s.n.det.calmAnomaly(); a.After(since) {
		since = a
	}
	if calmFor := now.Sub(since); calmFor < d {
		return false, fmt.Sprintf("calm for %s of %s", calmFor.Round(time.Millisecond), d), quarantined
	}
	return true, "", quarantined
}

// runCalm runs beside a bft epoch until ctx ends (the epoch ends): while
// this node is calm it keeps a fresh signed statement, exchanges it with
// its peers, and once it holds enough it proposes the switch back to cft.
func (s *selector) runCalm(ctx context.Context, rec epochRecord) {
	n := s.n
	var lastPropose time.Time
	logged := false
	for {
		d := n.Effective().AutoDeescalateAfter
		tick := min(max(d/4, 100*time.Millisecond), time.Second)
		if d <= 0 {
			tick = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(tick):
		}
		if cur := s.record(); cur.Epoch != rec.Epoch || cur.EndIndex != 0 {
			return
		}
		rec := s.record()
		now := time.Now()
		calm, why, quarantined := s.calmState(rec, d, now)
		if !calm {
			s.calm.drop(n.cfg.NodeID)
			if why != "" && rec.Escalated {
				n.log.Debug("not calm", "epoch", rec.Epoch, "why", why)
			}
			continue
		}
		own, ok := s.calm.get(rec.Epoch, n.cfg.NodeID)
		if !ok || now.Sub(time.Unix(0, own.Time)) >= calmRefresh {
			c, err := smr.SignCalm(n.signKey, n.cfg.NodeID, rec.Epoch, now.UnixNano())
			if err != nil {
				n.log.Error("calm statement not signed", "err", err)
				continue
			}
			s.calm.put(c)
			own = c
			if !logged {
				logged = true
				n.log.Info("calm: no anomaly for the calm period with the offender quarantined; signed a calm statement", "epoch", rec.Epoch,
					"auto_deescalate_after", d, "quarantined", quarantined)
			}
		}
		s.exchangeCalm(ctx, rec.Epoch, own)
		stmts := s.calm.usable(rec.Epoch, time.Now())
		if need := calmNeeded(rec.Members); len(stmts) < need || time.Since(lastPropose) < calmProposeEvery {
			continue
		}
		lastPropose = time.Now()
		s.proposeCalm(ctx, rec, d, quarantined, stmts)
	}
}

// proposeCalm orders the switch back to cft through the epoch's HotStuff
// engine. Every calm member may propose it; the first one ordered ends the
// epoch, and the gate refuses the others.
func (s *selector) proposeCalm(ctx context.Context, rec epochRecord, d time.Duration, quarantined []string, stmts []smr.CalmStatement) {
	n := s.n
	b := n.bftEng()
	if b == nil {
		return
	}
	signers := make([]string, len(stmts))
	for i, c := range stmts {
		signers[i] = c.Signer
	}
	sw := &smr.EpochSwitch{Epoch: rec.Epoch + 1, Mode: smr.ModeCFT, Calm: stmts,
		Reason: fmt.Sprintf("calm for %s after quarantining %s", d, strings.Join(quarantined, ", "))}
	pctx, cancel := context.WithTimeout(ctx, 4*n.Effective().ViewChangeTimeout+time.Second)
	defer cancel()
	res, err := b.ProposeEpochSwitch(pctx, sw)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		n.log.Warn("de-escalation to cft not ordered yet", "epoch", rec.Epoch+1, "err", err)
	case res.Code != smr.CodeOK:
		n.log.Debug("de-escalation to cft not taken", "code", res.Code, "message", res.Message)
	default:
		n.log.Warn("de-escalating to cft after a calm period", "epoch", rec.Epoch+1, "reason", sw.Reason, "signers", signers, "index", res.Index)
	}
}

// checkCalm checks the calm statements of a switch entry against the epoch
// record rec of the epoch it ends: each from a distinct member of that
// epoch (smr checked distinct and the epoch), signed with the member's
// configured key, at least f+1 of them. A switch without statements
// passes. The verdict depends on the entry's bytes and rec only, so every
// replica reaches the same one.
func (s *selector) checkCalm(rec epochRecord, sw *smr.EpochSwitch) error {
	if len(sw.Calm) == 0 {
		return nil
	}
	for _, c := range sw.Calm {
		if !slices.Contains(rec.Members, c.Signer) {
			return fmt.Errorf("calm statement of %q, which is not a member of epoch %d", c.Signer, rec.Epoch)
		}
		key, ok := s.committee.Key(c.Signer)
		if !ok {
			return fmt.Errorf("calm statement of %q, which has no node key", c.Signer)
		}
		if err := c.Verify(key); err != nil {
			return err
		}
		if c.Epoch != rec.Epoch {
			return fmt.Errorf("calm statement of %q for epoch %d, but the switch ends epoch %d", c.Signer, c.Epoch, rec.Epoch)
		}
	}
	if need := calmNeeded(rec.Members); len(sw.Calm) < need {
		return fmt.Errorf("%d calm statements; a de-escalation of epoch %d (%d members) needs %d from distinct members", len(sw.Calm), rec.Epoch, len(rec.Members), need)
	}
	return nil
}

// exchangeCalm sends this node's statement to every peer that is not
// quarantined and keeps the statements they answer with (verified).
func (s *selector) exchangeCalm(ctx context.Context, epoch uint64, own smr.CalmStatement) {
	n := s.n
	body, err := json.Marshal(own)
	if err != nil {
		return
	}
	path := pathCalm + "?epoch=" + strconv.FormatUint(epoch, 10)
	postToPeers(ctx, n, s.members, path, body, 64<<10, n.quarantinedPeer, func(peer string, theirs []smr.CalmStatement) {
		for _, c := range theirs {
			if c.Signer != peer {
				continue // a peer answers with its own statement only
			}
			if err := s.takeCalm(c); err != nil {
				n.log.Debug("calm statement refused", "peer", peer, "err", err)
			}
		}
	})
}

// takeCalm verifies a peer's statement against the current epoch and
// keeps it.
func (s *selector) takeCalm(c smr.CalmStatement) error {
	rec := s.record()
	if c.Epoch != rec.Epoch || rec.Mode != smr.ModeBFT {
		return fmt.Errorf("calm statement for epoch %d; this node is in epoch %d (%s)", c.Epoch, rec.Epoch, rec.Mode)
	}
	key, ok := s.committee.Key(c.Signer)
	if !ok || !slices.Contains(rec.Members, c.Signer) {
		return fmt.Errorf("calm statement of %q, which is not a member of epoch %d", c.Signer, rec.Epoch)
	}
	if err := c.Verify(key); err != nil {
		return err
	}
	now := time.Now()
	if c.Time < now.Add(-smr.CalmMaxAge).UnixNano() || c.Time > now.Add(smr.CalmMaxAhead).UnixNano() {
		return fmt.Errorf("calm statement of %s signed at %s is not fresh", c.Signer, time.Unix(0, c.Time).UTC().Format(time.RFC3339Nano))
	}
	s.calm.put(c)
	return nil
}

// registerCalmRPC serves the calm statement exchange: a member posts its
// own statement (or nothing) and gets this node's own for the epoch asked
// (an empty list when it is not calm).
func (n *Node) registerCalmRPC(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathCalm, func(w http.ResponseWriter, r *http.Request) {
		body, ok := n.memberBody(w, r, 4<<10, "calm statements are taken only from members that are not quarantined", "calm statement")
		if !ok {
			return
		}
		epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
		if err != nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "calm: epoch query parameter: %v", err))
			return
		}
		if len(body) > 0 {
			var c smr.CalmStatement
			if err := json.Unmarshal(body, &c); err != nil {
				writeRPCError(w, smr.Errorf(smr.CodeMalformed, "calm statement: %v", err))
				return
			}
			if from := transport.PeerIDFromContext(r.Context()); c.Signer != from {
				writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "calm statement signed by %q sent by %q: members send their own statements", c.Signer, from))
				return
			}
			if err := n.sel.takeCalm(c); err != nil {
				n.log.Debug("calm statement refused", "peer", c.Signer, "err", err)
			}
		}
		mine := []smr.CalmStatement{}
		if c, ok := n.sel.calm.get(epoch, n.cfg.NodeID); ok {
			mine = append(mine, c)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(mine)
	})
}
