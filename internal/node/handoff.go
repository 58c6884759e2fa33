package node

import (
	"errors"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
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

// certify returns the certificate of epoch that the votes held make under
// this node's current quarantine: a quorum certificate, or with fallback
// set a fallback certificate; nil if none forms yet.
func (s *selector) certify(epoch uint64, fallback bool) *checkpoint.Certificate {
	s.collector.SetQuarantined(s.n.quarantinedMembers())
	cert, err := s.collector.Certify(checkpoint.KindHandoff, epoch, fallback)
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
		q := s.n.quarantinedMembers()
		n.log.Warn("hand-over by the fallback: no quorum of matching states within view_change_timeout; the state signed by enough members that are not quarantined starts the next epoch",
			"epoch", st.Epoch, "statement", st.String(), "signers", cert.Signers(),
			"threshold", s.committee.FallbackThreshold(len(q)), "quorum", s.committee.Quorum(),
			"quarantined", q, "other_states", others, "waited", waited.Round(time.Millisecond))
	}
	if own != nil && !own.Statement.Equal(cert.Statement) {
		n.log.Warn("this node's state at the end of the epoch differs from the certified state: it installs the certified state from a signer",
			"epoch", st.Epoch, "own", own.Statement.String(), "certified", st.String(), "form", cert.Form.String())
	}
}
