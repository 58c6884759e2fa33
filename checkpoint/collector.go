package checkpoint

import (
	"bytes"
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
	floor       uint64                   // the highest index Forget was given
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
// nothing; one with the signature bytes of the vote held is not verified
// again). An invalid vote returns the verification error. If v's signer
// already signed a different statement for the same (Kind, Epoch, Index),
// Add returns a *ConflictError holding both votes and does not count v.
func (c *Collector) Add(v Vote) (*Certificate, error) {
	sl := slotOf(v.Statement)
	if c.holds(sl, v) {
		return nil, nil // verified when it was added
	}
	if err := v.Verify(c.com); err != nil {
		return nil, fmt.Errorf("checkpoint collector: %w", err)
	}
	v = v.Clone()
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

// slotOf is the slot a vote for s takes.
func slotOf(s Statement) slot { return slot{s.Kind, s.Epoch, s.Index} }

// holds reports whether the collector holds v itself: the same signer,
// statement and signature bytes.
func (c *Collector) holds(sl slot, v Vote) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.bySlot[sl][v.Signer]
	return ok && bytes.Equal(prev.Sig, v.Sig) && prev.Statement.Equal(v.Statement)
}

// countedLocked is the number of t's signers that are not quarantined.
// The caller holds c.mu.
func (c *Collector) countedLocked(t *tally) int { return counted(t, c.quarantined) }

// counted is the number of t's signers not in ex.
func counted(t *tally, ex map[string]bool) int {
	n := 0
	for id := range t.votes {
		if !ex[id] {
			n++
		}
	}
	return n
}

// certLocked builds a certificate of form for t from the votes of its
// signers that are not quarantined. The caller holds c.mu.
func (c *Collector) certLocked(t *tally, form Form) *Certificate {
	return certFrom(t, form, c.quarantined)
}

// certFrom builds a certificate of form for t from the votes of its signers
// not in ex.
func certFrom(t *tally, form Form, ex map[string]bool) *Certificate {
	cert := &Certificate{Statement: t.st.clone(), Form: form, Sigs: make([]Signature, 0, len(t.votes))}
	for _, id := range slices.Sorted(maps.Keys(t.votes)) {
		if !ex[id] {
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

// Slot returns the votes held at the (kind, epoch, index) slot, ordered
// by signer, and the quorum certificate of the statement a quorum of
// members that are not quarantined signed there, or nil while none has.
// The returned votes are copies.
func (c *Collector) Slot(kind Kind, epoch, index uint64) (votes []Vote, quorum *Certificate) {
	sl := slot{kind, epoch, index}
	c.mu.Lock()
	defer c.mu.Unlock()
	signers := c.bySlot[sl]
	for _, id := range slices.Sorted(maps.Keys(signers)) {
		votes = append(votes, signers[id].Clone())
	}
	for _, t := range c.stmts {
		if slotOf(t.st) == sl && c.countedLocked(t) >= c.com.Quorum() {
			// Two statements with a quorum at one slot would need two
			// votes of one member, which Add refuses.
			return votes, c.certLocked(t, FormQuorum)
		}
	}
	return votes, nil
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
			out = append(out, v.Clone())
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
	c.floor = max(c.floor, below)
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

// Forgotten returns the highest index Forget was given: the votes below
// it that the collector held are gone.
func (c *Collector) Forgotten() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.floor
}

// CertifyUnswitched returns the hand-over certificate of epoch when the
// entry that should have ended the previous epoch was blocked (DESIGN
// invariant 10: the suspect is the Raft leader and the switch entry did
// not commit within view_change_timeout). Each member then signs the
// state it last applied, so the votes name different indices:
//   - a quorum certificate if a statement has a quorum of members that
//     are not quarantined (exactly as Certify);
//   - otherwise a fallback certificate for the statement at the highest
//     index among those signed by Committee.FallbackThreshold(k) distinct
//     members that are neither quarantined nor in suspects, k the number
//     of members in either set;
//   - otherwise nil.
//
// Votes of the suspects (the members the escalation's evidence accuses)
// never count for the fallback, as if they were quarantined: the verifier
// of such a certificate passes them with the quarantined members to
// Certificate.Verify. A member signs one hand-over statement per epoch
// (whether it applied the switch entry or stopped at its last applied
// index), and a switched and an unswitched vote that name the same index
// and state hash are the same statement and count together. Under the
// assumptions at Committee.FallbackThreshold, with the suspects faulty,
// two statements of one epoch never both reach the threshold at correct
// nodes, so "the highest" decides only against members that sign more
// than one state: a statement at a lower index never wins over a higher
// one, and two different statements at the highest index (which the
// threshold leaves no room for among members that sign one state per
// index) would be refused with ErrAmbiguous. A single
// member that is not a suspect cannot choose the genesis state: below
// f+1 its vote certifies nothing, and a correct member signs only the
// state it applied.
func (c *Collector) CertifyUnswitched(epoch uint64, suspects []string) (*Certificate, error) {
	if cert, err := c.Certify(KindHandoff, epoch, false); cert != nil || err != nil {
		return cert, err
	}
	ex := c.com.quarantinedSet(suspects)
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.quarantined {
		ex[id] = true
	}
	need := c.com.FallbackThreshold(len(ex))
	var best, tie *tally
	for _, t := range c.stmts {
		if t.st.Kind != KindHandoff || t.st.Epoch != epoch || counted(t, ex) < need {
			continue
		}
		switch {
		case best == nil || t.st.Index > best.st.Index:
			best, tie = t, nil
		case t.st.Index == best.st.Index:
			tie = t
		}
	}
	if best == nil {
		return nil, nil
	}
	if tie != nil {
		return nil, fmt.Errorf("checkpoint collector: %w: %s and %s at the highest index, the unswitched fallback needs %d", ErrAmbiguous, best.st, tie.st, need)
	}
	return certFrom(best, FormFallback, ex), nil
}
