package bftlog

import (
	"fmt"
)

// ForkProof is a self-contained proof that an author equivocated: two
// different messages, both signed by the author, with the same prev (both
// first messages when prev is none). A correct author never signs two
// messages after the same predecessor, so the pair is irrefutable.
//
// Proofs built by this package are canonical: A.ID() < B.ID().
type ForkProof struct {
	A, B *Message
}

// newForkProof builds the canonical proof from two first-branch records.
func newForkProof(a, b *record) *ForkProof {
	if b.id.Compare(a.id) < 0 {
		a, b = b, a
	}
	return &ForkProof{A: a.msg, B: b.msg}
}

// Author returns the equivocating author.
func (p *ForkProof) Author() Author { return p.A.author }

// Point returns the message both branches follow (the zero ID when the fork
// is between two first messages).
func (p *ForkProof) Point() ID { return p.A.prev }

// Equal reports whether p and q hold the same two messages in the same order.
func (p *ForkProof) Equal(q *ForkProof) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.A.id == q.A.id && p.B.id == q.B.id
}

func (p *ForkProof) String() string {
	if p == nil {
		return "none"
	}
	return fmt.Sprintf("fork(%s after %s: %s | %s)", p.A.author.Short(), p.A.prev.Short(), p.A.id.Short(), p.B.id.Short())
}

// VerifyForkProof checks p using nothing but p:
//
//   - both messages are present and well formed;
//   - both have the same author;
//   - both have the same prev (both none counts as the same);
//   - they are different messages (different ids);
//   - both signatures verify under that author's key.
//
// It returns nil when p proves equivocation and an error wrapping
// ErrInvalidProof otherwise. Either order of A and B is accepted.
func VerifyForkProof(p *ForkProof) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("bftlog: fork proof: %w: %s", ErrInvalidProof, fmt.Sprintf(format, args...))
	}
	if p == nil || p.A == nil || p.B == nil || p.A.pre == nil || p.B.pre == nil {
		return fail("missing message")
	}
	if p.A.author != p.B.author {
		return fail("messages %s and %s have different authors %s and %s", p.A.id.Short(), p.B.id.Short(), p.A.author.Short(), p.B.author.Short())
	}
	if p.A.prev != p.B.prev {
		return fail("messages %s and %s have different prevs %s and %s", p.A.id.Short(), p.B.id.Short(), p.A.prev.Short(), p.B.prev.Short())
	}
	if p.A.id == p.B.id {
		return fail("both messages are %s", p.A.id.Short())
	}
	for _, m := range []*Message{p.A, p.B} {
		if err := m.VerifySignature(); err != nil {
			return fmt.Errorf("bftlog: fork proof: %w: %w", ErrInvalidProof, err)
		}
	}
	return nil
}

// InvalidReason names the validity rule a correctly signed message breaks.
type InvalidReason int

// Invalid reasons. Each names the evidence a proof carries in its Witness.
const (
	// ReasonSelfDep: a dep is on the message's own author (the own log is
	// reached through prev only). Witness: none.
	ReasonSelfDep InvalidReason = iota + 1
	// ReasonPrevAuthor: prev is a message of another author. Witness: prev.
	ReasonPrevAuthor
	// ReasonDepAuthor: a dep names an author, but the message it points to
	// is by another author. Witness: that message.
	ReasonDepAuthor
	// ReasonDepRegression: a dep on author b does not follow (is older
	// than, or concurrent with) the dep on b of an earlier message on the
	// author's prev-chain. Witness: the prev-chain from prev down to that
	// earlier message, and the chains of both deps down to their last
	// common message (exclusive) or their first message.
	ReasonDepRegression
)

func (r InvalidReason) String() string {
	switch r {
	case ReasonSelfDep:
		return "dep on own author"
	case ReasonPrevAuthor:
		return "prev by another author"
	case ReasonDepAuthor:
		return "dep author mismatch"
	case ReasonDepRegression:
		return "dep older than an earlier dep"
	default:
		return fmt.Sprintf("InvalidReason(%d)", int(r))
	}
}

// InvalidProof is a correctly signed message that breaks a validity rule,
// with the predecessors (Witness) that show it. VerifyInvalidProof re-checks
// it without any store. Witness messages are identified by their ids (the
// hash of their content), so their own signatures do not matter.
type InvalidProof struct {
	Message *Message
	Reason  InvalidReason
	Detail  string // human-readable explanation; not verified
	Witness []*Message
}

// Author returns the misbehaving author.
func (p *InvalidProof) Author() Author { return p.Message.author }

// VerifyInvalidProof checks that p.Message is signed by its author and breaks
// the rule p.Reason names, using only p. It returns nil when the proof holds
// and an error wrapping ErrInvalidProof otherwise.
func VerifyInvalidProof(p *InvalidProof) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("bftlog: invalid-message proof: %w: %s", ErrInvalidProof, fmt.Sprintf(format, args...))
	}
	if p == nil || p.Message == nil || p.Message.pre == nil {
		return fail("missing message")
	}
	m := p.Message
	if err := m.VerifySignature(); err != nil {
		return fmt.Errorf("bftlog: invalid-message proof: %w: %w", ErrInvalidProof, err)
	}
	w := make(map[ID]*Message, len(p.Witness))
	for _, x := range p.Witness {
		if x == nil || x.pre == nil {
			return fail("witness holds a zero message")
		}
		w[x.id] = x
	}
	switch p.Reason {
	case ReasonSelfDep:
		for _, d := range m.deps {
			if d.Author == m.author {
				return nil
			}
		}
		return fail("message %s has no dep on its own author", m.id.Short())
	case ReasonPrevAuthor:
		if m.prev.IsZero() {
			return fail("message %s has no prev", m.id.Short())
		}
		pm, ok := w[m.prev]
		if !ok {
			return fail("witness lacks prev %s", m.prev.Short())
		}
		if pm.author == m.author {
			return fail("prev %s is by the same author", m.prev.Short())
		}
		return nil
	case ReasonDepAuthor:
		for _, d := range m.deps {
			if dm, ok := w[d.ID]; ok && dm.author != d.Author {
				return nil
			}
		}
		return fail("witness shows no dep of %s by an author other than the one named", m.id.Short())
	case ReasonDepRegression:
		for _, d := range m.deps {
			old, ok := earlierDep(w, m, d.Author)
			if ok && notLessEq(w, old, d.ID, d.Author) {
				return nil
			}
		}
		return fail("witness shows no dep of %s that fails to follow an earlier dep", m.id.Short())
	default:
		return fail("unknown reason %d", int(p.Reason))
	}
}

// earlierDep walks m's prev-chain through w and returns the dep on b of the
// nearest message that has one. Every message walked must be by m's author.
func earlierDep(w map[ID]*Message, m *Message, b Author) (ID, bool) {
	id := m.prev
	for range len(w) {
		x, ok := w[id]
		if !ok || x.author != m.author {
			return ID{}, false
		}
		if d, ok := x.DepOn(b); ok {
			return d, true
		}
		if x.prev.IsZero() {
			return ID{}, false
		}
		id = x.prev
	}
	return ID{}, false
}

// notLessEq reports whether w proves that old is not on the prev-chain of
// dep (nor equal to it), both being messages of author b. It does when
// dep's chain is complete down to a first message without meeting old, or
// when old's chain meets dep's chain strictly below old (old is newer than,
// or concurrent with, dep).
func notLessEq(w map[ID]*Message, old, dep ID, b Author) bool {
	onDep := make(map[ID]bool)
	complete := false
	id := dep
	for range len(w) + 1 {
		onDep[id] = true
		x, ok := w[id]
		if !ok {
			break
		}
		if x.author != b {
			return false
		}
		if x.prev.IsZero() {
			complete = true
			break
		}
		id = x.prev
	}
	if onDep[old] {
		return false
	}
	if complete {
		return true
	}
	id = old
	for range len(w) + 1 {
		if onDep[id] {
			return true
		}
		x, ok := w[id]
		if !ok || x.author != b || x.prev.IsZero() {
			return false
		}
		id = x.prev
	}
	return false
}
