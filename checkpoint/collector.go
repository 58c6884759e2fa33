package checkpoint

import (
	"cmp"
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
// until Forget drops its index. Safe for concurrent use.
type Collector struct {
	com *Committee

	mu     sync.Mutex
	bySlot map[slot]map[string]Vote // slot -> signer -> the vote counted
	stmts  map[[32]byte]*tally      // statement digest -> support
}

// NewCollector returns a collector that counts votes of com's members.
func NewCollector(c *Committee) *Collector {
	return &Collector{com: c, bySlot: make(map[slot]map[string]Vote), stmts: make(map[[32]byte]*tally)}
}

// Add verifies v and counts it. It returns the certificate the first time
// v's statement reaches a quorum of distinct signers, and nil otherwise (a
// repeated vote is accepted and changes nothing). An invalid vote returns
// the verification error. If v's signer already signed a different
// statement for the same (Kind, Epoch, Index), Add returns a
// *ConflictError holding both votes and does not count v.
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
	if t.certDue || len(t.votes) < c.com.Quorum() {
		return nil, nil
	}
	t.certDue = true
	cert := &Certificate{Statement: t.st.clone(), Sigs: make([]Signature, 0, len(t.votes))}
	for _, id := range slices.Sorted(maps.Keys(t.votes)) {
		cert.Sigs = append(cert.Sigs, Signature{Signer: id, Sig: slices.Clone(t.votes[id].Sig)})
	}
	return cert, nil
}

// Support returns the number of distinct members whose valid vote for
// exactly s was counted: what an "f+1 matching hashes" rule counts.
func (c *Collector) Support(s Statement) int {
	d := s.Digest()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.stmts[d]; t != nil {
		return len(t.votes)
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
