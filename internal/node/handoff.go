package node

import (
	"errors"
	"slices"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/smr"
)

// The hand-over's fallback (DESIGN invariant 10). A node that applied the
// switch waits view_change_timeout for a quorum of matching HANDOFF votes;
// after that it also accepts a fallback certificate:
// checkpoint.Committee.FallbackThreshold matching votes of distinct
// members that are not quarantined (f+1 once the faulty members are). A
// node that did not apply the switch accepts the fallback once
// view_change_timeout has passed since the first vote for the next epoch
// reached it. Votes of quarantined members never count, in either form.
// The timing only lets the quorum win when it can form; safety does not
// depend on it: no two conflicting certificates verify at correct nodes
// (the argument is at checkpoint.Committee.FallbackThreshold).
//
// When the switch entry is blocked (the rest of DESIGN invariant 10): the
// detector's decision asks for bft, the members its evidence accuses (the
// suspects) include the Raft leader, that leader is not quarantined (a
// quarantined leader's RPCs are refused, so the correct members elect
// another, which orders the switch), and the switch entry is not applied
// within view_change_timeout of the decision. The node then closes the
// gate at the index it applied last (gateUnswitched: the entries ordered
// after it are refused exactly as after a switch entry), records that
// the epoch ended unswitched and why, and signs HANDOFF(next epoch, that
// index, its state hash, bft, members) like any hand-over vote. The
// members stop at indices of their own, so the certificate is the
// statement at the highest index signed by FallbackThreshold members that
// are neither quarantined nor suspects (checkpoint.Collector.
// CertifyUnswitched; f+1 once the suspects are the f faulty members); a
// node whose state is behind or differs fetches the certified one.
//
// One vote per member and epoch, whatever the path: the gate and the
// switch entry both end the epoch by setting EndIndex under the
// selector's lock, and the gate reads the applied index while no entry is
// being applied (appliedFSM.applyMu). If the switch entry was applied
// first, the gate does nothing (a correct leader's barrier wins, the
// ordinary hand-over runs); if the gate closed first, the switch entry is
// refused like every later entry, and the node never signs the switched
// state. So a node signs exactly one hand-over statement for the next
// epoch — the switched one or the unswitched one — which is what the
// safety argument at checkpoint.Committee.FallbackThreshold needs. A
// switched and an unswitched vote for the same index and state hash are
// the same statement and count together, so members that applied the
// switch and members that stopped just before it still certify one
// state. Whether or not its own gate closed, a node whose decision
// accuses the Raft leader counts the suspects out of the fallback, so
// the members that applied a late switch entry and those that stopped
// before it reach the same certificate. Promise: with a correct Raft
// leader no acknowledged write is lost; otherwise only writes that only
// the accused leader applied before it acknowledged them can be lost,
// and the evidence names it. Assumption: the suspects are faulty (f+1
// members signed the accusations, so a correct one did). A quorum
// certificate still counts the suspects' votes: with a quorum, the
// argument at checkpoint.Committee.FallbackThreshold needs no exclusion,
// so it is verified against the quarantined members only, and a fallback
// certificate against the quarantined members and the suspects.

// certify returns the certificate of epoch that the votes held make under
// this node's current quarantine: a quorum certificate, or with fallback
// set a fallback certificate; nil if none forms yet.
func (s *selector) certify(epoch uint64, fallback bool) *checkpoint.Certificate {
	s.collector.SetQuarantined(s.n.quarantinedMembers())
	var cert *checkpoint.Certificate
	var err error
	if sus := s.suspectsOf(epoch); fallback && len(sus) > 0 {
		cert, err = s.collector.CertifyUnswitched(epoch, sus)
	} else {
		cert, err = s.collector.Certify(checkpoint.KindHandoff, epoch, fallback)
	}
	if err != nil {
		if errors.Is(err, checkpoint.ErrAmbiguous) {
			s.n.log.Error("hand-over votes certify two different states; waiting for more votes or a quarantine", "epoch", epoch, "err", err)
		}
		return nil
	}
	return cert
}

// fallbackTimeout is how long a hand-over waits for a quorum before it
// accepts the fallback: the node's view_change_timeout.
func (s *selector) fallbackTimeout() time.Duration {
	return s.n.Effective().ViewChangeTimeout
}

// noteVote records when the first vote for the next epoch arrived.
func (s *selector) noteVote(epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch == s.rec.Epoch+1 && s.firstVote.IsZero() {
		s.firstVote = time.Now()
	}
}

// laggardFallback is the run loop's check for a node that has not applied
// the switch: once view_change_timeout has passed since the first vote
// for the next epoch reached it, a fallback certificate the others' votes
// make is accepted (a quorum certificate arrives through certs at once).
func (s *selector) laggardFallback() *checkpoint.Certificate {
	s.mu.Lock()
	first, rec := s.firstVote, s.rec
	s.mu.Unlock()
	if rec.EndIndex != 0 || first.IsZero() || time.Since(first) < s.fallbackTimeout() {
		return nil
	}
	return s.certify(rec.Epoch+1, true)
}

// logCertificate says how the next epoch was certified: for the fallback,
// which members signed, which were quarantined, and who signed another
// state.
func (s *selector) logCertificate(cert *checkpoint.Certificate, own *checkpoint.Vote, waited time.Duration) {
	n := s.n
	st := cert.Statement
	if cert.Form == checkpoint.FormFallback {
		var others []string
		for _, v := range s.collector.Votes(checkpoint.KindHandoff, st.Epoch) {
			if !v.Statement.Equal(st) {
				others = append(others, v.Signer+"="+v.Statement.String())
			}
		}
		q, sus := s.n.quarantinedMembers(), s.suspectsOf(st.Epoch)
		n.log.Warn("hand-over by the fallback: no quorum of matching states within view_change_timeout; the state signed by enough members that are not quarantined (nor suspects of a blocked switch) starts the next epoch",
			"epoch", st.Epoch, "statement", st.String(), "signers", cert.Signers(),
			"threshold", s.committee.FallbackThreshold(len(s.uncounted(st.Epoch))), "quorum", s.committee.Quorum(),
			"quarantined", q, "suspects", sus, "other_states", others, "waited", waited.Round(time.Millisecond))
	}
	if own != nil && !own.Statement.Equal(cert.Statement) {
		n.log.Warn("this node's state at the end of the epoch differs from the certified state: it installs the certified state from a signer",
			"epoch", st.Epoch, "own", own.Statement.String(), "certified", st.String(), "form", cert.Form.String())
	}
}

// suspectsOf returns the members whose votes for epoch do not count in
// the fallback: the accused of an escalation against the Raft leader of
// the epoch before it; nil when there is none.
func (s *selector) suspectsOf(epoch uint64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.rec.Epoch+1 {
		return nil
	}
	return slices.Clone(s.suspects)
}

// uncounted is what a certificate of epoch is verified against as the
// members that do not count: the quarantined ones and the suspects.
func (s *selector) uncounted(epoch uint64) []string {
	ids := append(s.n.quarantinedMembers(), s.suspectsOf(epoch)...)
	slices.Sort(ids)
	return slices.Compact(ids)
}

// noteSuspects records that the escalation of the current epoch (epoch)
// for reason accuses the Raft leader, with the members its evidence
// names.
func (s *selector) noteSuspects(epoch uint64, leader string, accused []string, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec.Epoch != epoch || len(accused) == 0 {
		return
	}
	s.addSuspectsLocked(accused)
	if s.blockReason == "" {
		s.blockReason = blockedReason(leader, reason)
	}
}

// addSuspectsLocked adds ids to the suspects. s.mu is held.
func (s *selector) addSuspectsLocked(ids []string) {
	for _, id := range ids {
		if !slices.Contains(s.suspects, id) {
			s.suspects = append(s.suspects, id)
		}
	}
	slices.Sort(s.suspects)
}

// blockedReason is the reason an epoch ended without its switch entry
// records.
func blockedReason(leader, reason string) string {
	why := "detector: switch entry blocked by the Raft leader " + leader + "; " + reason
	if len(why) > smr.MaxSwitchReasonBytes {
		why = why[:smr.MaxSwitchReasonBytes]
	}
	return why
}

// gateUnswitched ends the cft epoch at the index this node applied last
// because the switch entry was blocked by leader, a suspect. It reports
// whether it ended the epoch: false when the epoch already ended (the
// switch entry was applied first, or the gate closed before), or changed.
// The end is durable before the hand-over starts.
func (s *selector) gateUnswitched(epoch uint64, leader string, suspects []string, reason string) bool {
	f := s.n.fsm
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	idx := f.AppliedIndex()
	s.mu.Lock()
	if s.rec.Epoch != epoch || s.rec.Mode != smr.ModeCFT || s.rec.EndIndex != 0 || idx == 0 {
		s.mu.Unlock()
		return false
	}
	why := blockedReason(leader, reason)
	s.rec.EndIndex = idx
	s.rec.Next = &nextEpochTo{Epoch: epoch + 1, Mode: smr.ModeBFT, Reason: why, Escalated: true}
	s.rec.BlockedBy = leader
	s.rec.Suspects = slices.Clone(suspects)
	s.addSuspectsLocked(suspects)
	rec := s.rec
	s.mu.Unlock()
	if err := s.n.saveEpochRecord(rec); err != nil {
		s.n.log.Error("the unswitched end of the epoch could not be recorded; the hand-over goes on, but a restart before it completes replays the epoch", "epoch", epoch, "err", err)
	}
	s.n.log.Error("ESCALATION BLOCKED: the Raft leader accused by the detector did not order the switch to bft within view_change_timeout; this node stops applying Raft entries and signs its last applied state for the bft epoch",
		"epoch", epoch, "index", idx, "leader", leader, "suspects", suspects, "next_epoch", epoch+1, "reason", why,
		"view_change_timeout", s.fallbackTimeout())
	select {
	case s.ended <- struct{}{}:
	default:
	}
	return true
}
