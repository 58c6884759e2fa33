package bftlog

import (
	"fmt"
	"slices"
)

// Log is the replicated state of one author's log: a value, interpreted
// against a Store that holds its messages.
//
//   - Growing (Forks == nil): Last is the newest message of the author's
//     single chain (zero for an empty log).
//   - Shrinking (Forks != nil): the author forked; Last is the earliest
//     fork point known (zero when two first messages conflict) and Forks is
//     a proof of a fork right after Last: Forks.A and Forks.B both have
//     prev Last. Once shrinking, a log never grows again.
//
// Logs built by a Store are canonical (see Store.Merge), so two replicas
// that saw the same messages hold Equal logs.
type Log struct {
	Author Author
	Last   ID
	Forks  *ForkProof
}

// NewLog returns the empty (growing) log of author a.
func NewLog(a Author) Log { return Log{Author: a} }

// Growing reports whether l has no known fork.
func (l Log) Growing() bool { return l.Forks == nil }

// Equal reports whether l and o are the same state: same author, last, phase
// and proof messages.
func (l Log) Equal(o Log) bool {
	return l.Author == o.Author && l.Last == o.Last && l.Forks.Equal(o.Forks)
}

func (l Log) String() string {
	if l.Growing() {
		return fmt.Sprintf("log(%s growing last %s)", l.Author.Short(), l.Last.Short())
	}
	return fmt.Sprintf("log(%s shrinking last %s %v)", l.Author.Short(), l.Last.Short(), l.Forks)
}

// CheckLog checks that l is a valid log state for this store:
//
//   - Last is zero or a valid stored message by l.Author;
//   - if shrinking: Forks.A and Forks.B are stored messages by l.Author
//     whose prev is Last, with A.ID() < B.ID().
//
// Errors wrap ErrInvalidLog, or ErrUnknownMessage when an id is not stored
// (the caller may fetch it and retry).
func (s *Store) CheckLog(l Log) error {
	_, _, err := s.logRecs(l)
	return err
}

// logRecs checks l and returns it with its proof messages replaced by the
// store's copies (a caller's copy may carry another, possibly bad,
// signature: ids do not cover signatures), and the record of its last
// message (nil for none).
func (s *Store) logRecs(l Log) (Log, *record, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("bftlog: log of %s: %w: %s", l.Author.Short(), ErrInvalidLog, fmt.Sprintf(format, args...))
	}
	var last *record
	if !l.Last.IsZero() {
		r, err := s.rec(l.Last)
		if err != nil {
			return l, nil, fmt.Errorf("bftlog: log of %s: last: %w", l.Author.Short(), err)
		}
		if r.msg.author != l.Author {
			return l, nil, fail("last %s is by %s", l.Last.Short(), r.msg.author.Short())
		}
		last = r
	}
	if l.Forks == nil {
		return l, last, nil
	}
	if l.Forks.A == nil || l.Forks.B == nil {
		return l, nil, fail("fork proof lacks a message")
	}
	var stored [2]*Message
	for i, m := range []*Message{l.Forks.A, l.Forks.B} {
		r, err := s.rec(m.id)
		if err != nil {
			return l, nil, fmt.Errorf("bftlog: log of %s: fork proof: %w", l.Author.Short(), err)
		}
		if r.msg.author != l.Author {
			return l, nil, fail("fork proof message %s is by %s", m.id.Short(), r.msg.author.Short())
		}
		if r.msg.prev != l.Last {
			return l, nil, fail("fork proof message %s follows %s, not last %s", m.id.Short(), r.msg.prev.Short(), l.Last.Short())
		}
		stored[i] = r.msg
	}
	if l.Forks.A.id.Compare(l.Forks.B.id) >= 0 {
		return l, nil, fail("fork proof messages %s and %s are not in canonical (increasing id) order", l.Forks.A.id.Short(), l.Forks.B.id.Short())
	}
	if stored[0] != l.Forks.A || stored[1] != l.Forks.B {
		l.Forks = &ForkProof{A: stored[0], B: stored[1]}
	}
	return l, last, nil
}

// LogLessEq reports whether l1 ≤ l2 (DESIGN, 2P-BFT-Log):
//
//   - both growing: l1.Last ≤ l2.Last;
//   - growing ≤ shrinking, always; shrinking ≤ growing, never;
//   - both shrinking: l2.Last ≤ l1.Last (an earlier fork is larger).
//
// The order looks at last and phase only: two shrinking logs with the same
// last and different proofs are ≤ each other. Both logs must be valid for
// the store and have the same author.
func (s *Store) LogLessEq(l1, l2 Log) (bool, error) {
	if l1.Author != l2.Author {
		return false, fmt.Errorf("bftlog: compare logs of %s and %s: %w", l1.Author.Short(), l2.Author.Short(), ErrAuthorMismatch)
	}
	l1, r1, err := s.logRecs(l1)
	if err != nil {
		return false, err
	}
	l2, r2, err := s.logRecs(l2)
	if err != nil {
		return false, err
	}
	return logLessEq(l1, r1, l2, r2), nil
}

func logLessEq(l1 Log, r1 *record, l2 Log, r2 *record) bool {
	switch {
	case l1.Growing() && l2.Growing():
		return lessEqRec(r1, r2)
	case l1.Growing():
		return true
	case l2.Growing():
		return false
	default:
		return lessEqRec(r2, r1)
	}
}

// Append returns the log l after message m (DESIGN, 2P-BFT-Log):
//
//   - growing: last ≤ m → last := m; m ≤ last → unchanged; concurrent →
//     last := LogPrefix(last, m), forks := ForkProof(last, m);
//   - shrinking: m concurrent with last (an earlier fork) → last :=
//     LogPrefix, forks := that proof; otherwise last stays.
//
// Append(l, m) is Merge(l, the growing log whose last is m), so the proof
// kept is canonical as described at Merge: when m is after a shrinking
// log's last, its branch may replace one of the proof's messages.
// m must be a valid stored message by l.Author and l a valid log.
func (s *Store) Append(l Log, m ID) (Log, error) {
	r, err := s.rec(m)
	if err != nil {
		return l, fmt.Errorf("bftlog: append to log of %s: %w", l.Author.Short(), err)
	}
	if r.msg.author != l.Author {
		return l, fmt.Errorf("bftlog: append message %s by %s to log of %s: %w", m.Short(), r.msg.author.Short(), l.Author.Short(), ErrAuthorMismatch)
	}
	l, lr, err := s.logRecs(l)
	if err != nil {
		return l, err
	}
	return s.join(l, lr, Log{Author: l.Author, Last: m}, r), nil
}

// Merge returns the least upper bound of l1 and l2 (DESIGN, 2P-BFT-Log): if
// both are shrinking or their lasts are concurrent, last := LogPrefix of the
// two lasts and forks := a proof at that point; otherwise the larger of the
// two.
//
// Choice of proof. DESIGN leaves open which proof a shrinking log keeps; we
// keep a canonical one so that merging is commutative, associative and
// idempotent on the whole value and replicas that saw the same messages
// hold identical logs. Among the first messages after last of all branches
// the log has seen (through Append or Merge), Forks holds the two with the
// smallest ids. So when last does not move, a merge may still swap a proof
// message for a smaller one; LogLessEq ignores that choice.
//
// Both logs must be valid for the store and have the same author.
func (s *Store) Merge(l1, l2 Log) (Log, error) {
	if l1.Author != l2.Author {
		return l1, fmt.Errorf("bftlog: merge logs of %s and %s: %w", l1.Author.Short(), l2.Author.Short(), ErrAuthorMismatch)
	}
	l1, r1, err := s.logRecs(l1)
	if err != nil {
		return l1, err
	}
	l2, r2, err := s.logRecs(l2)
	if err != nil {
		return l1, err
	}
	return s.join(l1, r1, l2, r2), nil
}

// join merges two valid logs of one author; r1, r2 are their last records.
func (s *Store) join(l1 Log, r1 *record, l2 Log, r2 *record) Log {
	// The empty log is the bottom of the order.
	if l1.Growing() && r1 == nil {
		return l2
	}
	if l2.Growing() && r2 == nil {
		return l1
	}
	rel := compareRec(r1, r2)
	if rel == relConcurrent {
		p := prefixRec(r1, r2)
		return Log{Author: l1.Author, Last: idOf(p), Forks: newForkProof(childToward(p, r1), childToward(p, r2))}
	}
	switch {
	case l1.Growing() && l2.Growing():
		if rel == relLess {
			return l2
		}
		return l1
	case !l1.Growing() && !l2.Growing():
		switch rel {
		case relEqual:
			return s.refine(l1, l2.Forks.A, l2.Forks.B)
		case relLess: // l1's fork is earlier; l2's branch starts after l1.Last
			return s.refine(l1, childToward(r1, r2).msg)
		default:
			return s.refine(l2, childToward(r2, r1).msg)
		}
	case l2.Growing(): // l1 shrinking
		if rel == relGreater || rel == relEqual {
			return l1
		}
		return s.refine(l1, childToward(r1, r2).msg)
	default: // l1 growing, l2 shrinking
		if rel == relLess || rel == relEqual {
			return l2
		}
		return s.refine(l2, childToward(r2, r1).msg)
	}
}

// refine returns shrinking log l with its proof replaced by the two
// smallest-id messages among the proof and extra (all first messages after
// l.Last).
func (s *Store) refine(l Log, extra ...*Message) Log {
	cands := append([]*Message{l.Forks.A, l.Forks.B}, extra...)
	slices.SortFunc(cands, func(x, y *Message) int { return x.id.Compare(y.id) })
	cands = slices.CompactFunc(cands, func(x, y *Message) bool { return x.id == y.id })
	if cands[0].id == l.Forks.A.id && cands[1].id == l.Forks.B.id {
		return l
	}
	return Log{Author: l.Author, Last: l.Last, Forks: &ForkProof{A: cands[0], B: cands[1]}}
}
