package checkpoint

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// ConflictError reports a member that signed two different statements for
// the same (Kind, Epoch, Index): a provable equivocation, since both votes
// carry valid signatures of the same member. First is the vote the
// collector already held, Second the one just offered, which was not
// counted.
type ConflictError struct {
	First, Second Vote
}

func (e *ConflictError) Error() string {
	s := e.First.Statement
	return fmt.Sprintf("checkpoint equivocation: %q signed two statements for %s epoch %d index %d: state %x vs %x",
		e.First.Signer, s.Kind, s.Epoch, s.Index, s.StateHash, e.Second.Statement.StateHash)
}

// slot is what one member may sign only once.
type slot struct {
	kind  Kind
	epoch uint64
	index uint64
}

// tally is the support of one statement.
type tally struct {
	st      Statement
	votes   map[string]Vote // signer -> vote
	certDue bool            // a certificate was already returned
}

// Collector gathers votes and forms certificates. It keeps every valid vote
// until Forget drops its index, including votes of quarantined members,
// which never count toward a certificate (SetQuarantined). Safe for
// concurrent use.
type Collector struct {
	com *Committee

	mu          sync.Mutex
	quarantined map[string]bool          // committee members whose votes do not count
	bySlot      map[slot]map[string]Vote // slot -> signer -> the vote counted
	stmts       map[[32]byte]*tally      // statement digest -> support
}

// NewCollector returns a collector that counts votes of com's members.
func NewCollector(c *Committee) *Collector {
	return &Collector{com: c, quarantined: map[string]bool{}, bySlot: make(map[slot]map[string]Vote), stmts: make(map[[32]byte]*tally)}
}

// SetQuarantined replaces the set of members whose votes do not count
// (IDs outside the committee are ignored). The votes already held stay;
// a member taken out of the set counts again. It returns nothing: ask
// Certify for what the held votes certify under the new set.
func (c *Collector) SetQuarantined(ids []string) {
	q := c.com.quarantinedSet(ids)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quarantined = q
}

// Add verifies v and keeps it. It returns the quorum certificate the first
// time v's statement reaches a quorum of distinct signers that are not
// quarantined, and nil otherwise (a repeated vote is accepted and changes
// nothing). An invalid vote returns the verification error. If v's signer
// already signed a different statement for the same (Kind, Epoch, Index),
// Add returns a *ConflictError holding both votes and does not count v.
func (c *Collector) Add(v Vote) (*Certificate, error) {
	if err := v.Verify(c.com); err != nil {
		return nil, fmt.Errorf("checkpoint collector: %w", err)
	}
	v = Vote{Statement: v.Statement.clone(), Signer: v.Signer, Sig: slices.Clone(v.Sig)}
	sl := slot{v.Statement.Kind, v.Statement.Epoch, v.Statement.Index}
	d := v.Statement.Digest()

	c.mu.Lock()
	defer c.mu.Unlock()
	signers := c.bySlot[sl]
	if prev, ok := signers[v.Signer]; ok {
		if prev.Statement.Equal(v.Statement) {
			return nil, nil
		}
		return nil, &ConflictError{First: prev, Second: v}
	}
	if signers == nil {
		signers = make(map[string]Vote)
		c.bySlot[sl] = signers
	}
	signers[v.Signer] = v
	t := c.stmts[d]
	if t == nil {
		t = &tally{st: v.Statement, votes: make(map[string]Vote)}
		c.stmts[d] = t
	}
	t.votes[v.Signer] = v
	if t.certDue || c.countedLocked(t) < c.com.Quorum() {
		return nil, nil
	}
	t.certDue = true
	return c.certLocked(t, FormQuorum), nil
}

// countedLocked is the number of t's signers that are not quarantined.
// The caller holds c.mu.
func (c *Collector) countedLocked(t *tally) int {
	n := 0
	for id := range t.votes {
		if !c.quarantined[id] {
			n++
		}
	}
	return n
}

// certLocked builds a certificate of form for t from the votes of its
// signers that are not quarantined. The caller holds c.mu.
func (c *Collector) certLocked(t *tally, form Form) *Certificate {
	cert := &Certificate{Statement: t.st.clone(), Form: form, Sigs: make([]Signature, 0, len(t.votes))}
	for _, id := range slices.Sorted(maps.Keys(t.votes)) {
		if !c.quarantined[id] {
			cert.Sigs = append(cert.Sigs, Signature{Signer: id, Sig: slices.Clone(t.votes[id].Sig)})
		}
	}
	return cert
}

// ErrAmbiguous is wrapped by Certify's error when two different
// statements of one kind and epoch both reach the threshold: more faulty
// members than the committee tolerates, or a quarantine that missed one.
var ErrAmbiguous = errors.New("two statements reach the certificate threshold")

// Certify returns the certificate that the votes held for (kind, epoch)
// make, counting only signers that are not quarantined:
//   - a quorum certificate if a statement has a quorum (Committee.Quorum);
//   - otherwise, if fallback is set and kind is KindHandoff, a fallback
//     certificate if a statement has Committee.FallbackThreshold signers
//     (with the number of quarantined members; DESIGN invariant 10);
//   - otherwise nil.
//
// The certificate carries the signatures of every counted signer of the
// statement. If two statements reach the same threshold, Certify returns
// an error wrapping ErrAmbiguous naming both, and no certificate. The
// caller decides when the fallback is allowed (the hand-over: after
// view_change_timeout without a quorum).
func (c *Collector) Certify(kind Kind, epoch uint64, fallback bool) (*Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	type threshold struct {
		form Form
		need int
	}
	thresholds := []threshold{{FormQuorum, c.com.Quorum()}}
	if fallback && kind == KindHandoff {
		thresholds = append(thresholds, threshold{FormFallback, c.com.FallbackThreshold(len(c.quarantined))})
	}
	for _, th := range thresholds {
		var found *tally
		for _, t := range c.stmts {
			if t.st.Kind != kind || t.st.Epoch != epoch || c.countedLocked(t) < th.need {
				continue
			}
			if found != nil {
				return nil, fmt.Errorf("checkpoint collector: %w: %s and %s, %s needs %d", ErrAmbiguous, found.st, t.st, th.form, th.need)
			}
			found = t
		}
		if found != nil {
			return c.certLocked(found, th.form), nil
		}
	}
	return nil, nil
}

// Dissent returns, for the (kind, epoch, index) slot, the statement a
// quorum of members that are not quarantined signed, with the votes held
// there of every member that signed another statement (the signed
// evidence of a divergence from the quorum), ordered by signer. ok is
// false when no statement at the slot has a quorum. The returned votes are
// copies.
func (c *Collector) Dissent(kind Kind, epoch, index uint64) (quorum *Certificate, dissent []Vote, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var found *tally
	for _, t := range c.stmts {
		if t.st.Kind == kind && t.st.Epoch == epoch && t.st.Index == index && c.countedLocked(t) >= c.com.Quorum() {
			found = t
			break // two statements with a quorum at one slot would need two votes of one member, which Add refuses
		}
	}
	if found == nil {
		return nil, nil, false
	}
	for _, id := range slices.Sorted(maps.Keys(c.bySlot[slot{kind, epoch, index}])) {
		v := c.bySlot[slot{kind, epoch, index}][id]
		if !v.Statement.Equal(found.st) {
			dissent = append(dissent, Vote{Statement: v.Statement.clone(), Signer: v.Signer, Sig: slices.Clone(v.Sig)})
		}
	}
	return c.certLocked(found, FormQuorum), dissent, true
}

// Support returns the number of distinct members that are not quarantined
// whose valid vote for exactly s was counted: what the fallback threshold
// is compared with.
func (c *Collector) Support(s Statement) int {
	d := s.Digest()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.stmts[d]; t != nil {
		return c.countedLocked(t)
	}
	return 0
}

// Votes returns the counted votes of the given kind and epoch, ordered by
// index and then signer. The returned votes are copies.
func (c *Collector) Votes(kind Kind, epoch uint64) []Vote {
	c.mu.Lock()
	var out []Vote
	for sl, signers := range c.bySlot {
		if sl.kind != kind || sl.epoch != epoch {
			continue
		}
		for _, v := range signers {
			out = append(out, Vote{Statement: v.Statement.clone(), Signer: v.Signer, Sig: slices.Clone(v.Sig)})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Vote) int {
		return cmp.Or(cmp.Compare(a.Statement.Index, b.Statement.Index), cmp.Compare(a.Signer, b.Signer))
	})
	return out
}

// Forget drops every vote and statement with Index < below, of every kind
// and epoch. A statement forgotten and voted for again can form a second
// certificate.
func (c *Collector) Forget(below uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for sl := range c.bySlot {
		if sl.index < below {
			delete(c.bySlot, sl)
		}
	}
	for d, t := range c.stmts {
		if t.st.Index < below {
			delete(c.stmts, d)
		}
	}
}
