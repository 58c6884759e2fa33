package bftlog

import (
	"fmt"
	"slices"
)

// record is the store's view of one valid message.
type record struct {
	msg    *Message
	id     ID
	prev   *record // nil for a first message
	jump   *record // skip pointer for ancestor queries; a first message points to itself
	height int     // 0 for a first message, prev.height+1 otherwise
	// latest holds, for each author this author's chain depends on, the
	// newest dep on it along the chain up to and including this message,
	// sorted by author. It is shared with prev when this message has no
	// deps, and never modified after the record is built.
	latest []latestDep
}

type latestDep struct {
	author Author
	dep    *record // the message depended on
	src    *record // the message of this chain that carries the dep
}

type authorState struct {
	count   int           // valid messages stored
	invalid *InvalidProof // the first invalid message seen, if any
}

// Store is an in-memory message graph: it validates messages, keeps the
// valid ones and at most one invalid-message proof per author, and answers
// the order queries that logs and frontiers are built on.
//
// A Store is not safe for concurrent use; the caller serialises calls. It
// keeps every message it accepts (bounded by Config) and never drops one.
type Store struct {
	cfg     Config
	recs    map[ID]*record
	order   []*record // insertion order: predecessors always come first
	authors map[Author]*authorState
	invalid map[ID]*InvalidProof
}

// NewStore returns an empty store bounded by cfg.
func NewStore(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bftlog: new store: %w", err)
	}
	return &Store{
		cfg:     cfg,
		recs:    make(map[ID]*record),
		authors: make(map[Author]*authorState),
		invalid: make(map[ID]*InvalidProof),
	}, nil
}

// Add validates m and stores it. It returns nil when m is stored or was
// already stored (Add is idempotent). Otherwise, in the order checked:
//
//   - ErrMalformed: m was not built by NewMessage or DecodeMessage.
//   - ErrTooLarge: the content exceeds Config.MaxContentSize.
//   - *InvalidError, if m is the store's invalid proof for its author.
//   - *SignatureError (ErrBadSignature): the signature does not verify.
//   - *InvalidError (ErrInvalid), ReasonSelfDep: m depends on its own author.
//   - *InvalidPredecessorError: prev or a dep is a known invalid message.
//   - *MissingDepsError (ErrMissingDeps): prev or deps are not stored yet;
//     the caller fetches the listed ids, adds them, and retries.
//   - *InvalidError, ReasonPrevAuthor / ReasonDepAuthor /
//     ReasonDepRegression: see InvalidReason.
//   - *LimitError (ErrAuthorFull, ErrTooManyAuthors): a bound is reached.
//
// A correctly signed message that is invalid is kept as the author's
// InvalidProof if the author has none yet (InvalidError.Kept); it never
// becomes a valid message, and messages built on it get
// ErrInvalidPredecessor. Messages built on an invalid message that was not
// kept stay missing forever: the caller must drop them when the
// predecessor it fetched fails with an error other than ErrMissingDeps.
//
// The store takes m; m is immutable, so the caller may keep using it.
func (s *Store) Add(m *Message) error {
	if m == nil || m.pre == nil {
		return fmt.Errorf("bftlog: add: %w: message not built by NewMessage or DecodeMessage", ErrMalformed)
	}
	if err := m.checkFields(len(m.content)); err != nil {
		return fmt.Errorf("bftlog: add message %s: %w", m.id.Short(), err)
	}
	if len(m.content) > s.cfg.MaxContentSize {
		return fmt.Errorf("bftlog: add message %s: %w: %d bytes, at most %d allowed", m.id.Short(), ErrTooLarge, len(m.content), s.cfg.MaxContentSize)
	}
	if _, ok := s.recs[m.id]; ok {
		return nil
	}
	if p, ok := s.invalid[m.id]; ok {
		return &InvalidError{ID: m.id, Author: m.author, Reason: p.Reason, Detail: p.Detail, Kept: true}
	}
	if err := m.VerifySignature(); err != nil {
		return err
	}
	for _, d := range m.deps {
		if d.Author == m.author {
			return s.reject(m, ReasonSelfDep, nil, fmt.Sprintf("dep %s is on the author's own log", d.ID.Short()))
		}
	}

	// Predecessors must be validated first: this is what rules out cycles.
	var missing []ID
	var prev *record
	if !m.prev.IsZero() {
		if r, ok := s.recs[m.prev]; ok {
			prev = r
		} else if _, bad := s.invalid[m.prev]; bad {
			return &InvalidPredecessorError{ID: m.id, Predecessor: m.prev}
		} else {
			missing = append(missing, m.prev)
		}
	}
	deps := make([]*record, len(m.deps))
	for i, d := range m.deps {
		if r, ok := s.recs[d.ID]; ok {
			deps[i] = r
		} else if _, bad := s.invalid[d.ID]; bad {
			return &InvalidPredecessorError{ID: m.id, Predecessor: d.ID}
		} else {
			missing = append(missing, d.ID)
		}
	}
	if len(missing) > 0 {
		return &MissingDepsError{ID: m.id, Missing: missing}
	}

	if prev != nil && prev.msg.author != m.author {
		return s.reject(m, ReasonPrevAuthor, []*Message{prev.msg},
			fmt.Sprintf("prev %s is by %s", prev.id.Short(), prev.msg.author.Short()))
	}
	for i, d := range m.deps {
		if got := deps[i].msg.author; got != d.Author {
			return s.reject(m, ReasonDepAuthor, []*Message{deps[i].msg},
				fmt.Sprintf("dep %s is claimed to be by %s but is by %s", d.ID.Short(), d.Author.Short(), got.Short()))
		}
	}
	if prev != nil {
		for i, d := range m.deps {
			j, ok := slices.BinarySearchFunc(prev.latest, d.Author, func(l latestDep, a Author) int { return l.author.Compare(a) })
			if !ok {
				continue
			}
			old := prev.latest[j]
			if !lessEqRec(old.dep, deps[i]) {
				return s.reject(m, ReasonDepRegression, regressionWitness(prev, old, deps[i]),
					fmt.Sprintf("dep on %s is %s, but earlier message %s depends on %s, which is not before it",
						d.Author.Short(), d.ID.Short(), old.src.id.Short(), old.dep.id.Short()))
			}
		}
	}

	st := s.authors[m.author]
	if st == nil && len(s.authors) >= s.cfg.MaxAuthors {
		return &LimitError{Err: ErrTooManyAuthors, ID: m.id, Author: m.author, Limit: s.cfg.MaxAuthors}
	}
	if st != nil && st.count >= s.cfg.MaxMessagesPerAuthor {
		return &LimitError{Err: ErrAuthorFull, ID: m.id, Author: m.author, Limit: s.cfg.MaxMessagesPerAuthor}
	}
	if st == nil {
		st = &authorState{}
		s.authors[m.author] = st
	}
	st.count++

	r := &record{msg: m, id: m.id, prev: prev}
	if prev == nil {
		r.jump = r
	} else {
		r.height = prev.height + 1
		// Skew-binary skip pointers: ancestor queries take O(log height).
		if j := prev.jump; prev.height-j.height == j.height-j.jump.height {
			r.jump = j.jump
		} else {
			r.jump = prev
		}
	}
	r.latest = mergeLatest(prev, r, deps)
	s.recs[m.id] = r
	s.order = append(s.order, r)
	return nil
}

// mergeLatest computes r.latest from prev.latest and r's own deps.
func mergeLatest(prev, r *record, deps []*record) []latestDep {
	var base []latestDep
	if prev != nil {
		base = prev.latest
	}
	if len(deps) == 0 {
		return base
	}
	out := make([]latestDep, 0, len(base)+len(deps))
	i, j := 0, 0
	for i < len(base) || j < len(deps) {
		switch {
		case j == len(deps) || (i < len(base) && base[i].author.Compare(deps[j].msg.author) < 0):
			out = append(out, base[i])
			i++
		case i == len(base) || deps[j].msg.author.Compare(base[i].author) < 0:
			out = append(out, latestDep{author: deps[j].msg.author, dep: deps[j], src: r})
			j++
		default: // same author: the new dep replaces the old one
			out = append(out, latestDep{author: deps[j].msg.author, dep: deps[j], src: r})
			i++
			j++
		}
	}
	return out
}

// reject records m as its author's invalid proof if the author has none
// and returns the matching *InvalidError.
func (s *Store) reject(m *Message, reason InvalidReason, witness []*Message, detail string) error {
	st := s.authors[m.author]
	if st == nil && len(s.authors) < s.cfg.MaxAuthors {
		st = &authorState{}
		s.authors[m.author] = st
	}
	kept := false
	if st != nil && st.invalid == nil {
		st.invalid = &InvalidProof{Message: m, Reason: reason, Detail: detail, Witness: witness}
		s.invalid[m.id] = st.invalid
		kept = true
	}
	return &InvalidError{ID: m.id, Author: m.author, Reason: reason, Detail: detail, Kept: kept}
}

// regressionWitness collects the messages that show that dep newDep does not
// follow old.dep: the chain from prev down to old.src, and the chains of
// both deps down to their last common message (exclusive) or to the root.
func regressionWitness(prev *record, old latestDep, newDep *record) []*Message {
	var w []*Message
	for r := prev; ; r = r.prev {
		w = append(w, r.msg)
		if r == old.src {
			break
		}
	}
	p := prefixRec(old.dep, newDep)
	for _, top := range []*record{newDep, old.dep} {
		for r := top; r != nil && r != p; r = r.prev {
			w = append(w, r.msg)
		}
	}
	return w
}

// Get returns the valid message with the given id.
func (s *Store) Get(id ID) (*Message, bool) {
	r, ok := s.recs[id]
	if !ok {
		return nil, false
	}
	return r.msg, true
}

// Has reports whether id is a valid message of the store.
func (s *Store) Has(id ID) bool {
	_, ok := s.recs[id]
	return ok
}

// Len returns the number of valid messages stored.
func (s *Store) Len() int { return len(s.recs) }

// Count returns the number of valid messages stored for author a.
func (s *Store) Count(a Author) int {
	if st := s.authors[a]; st != nil {
		return st.count
	}
	return 0
}

// Messages returns the valid messages in the order they were added, which
// puts every message after its predecessors: adding them in this order to
// another store never yields ErrMissingDeps. The slice is new; the messages
// are shared (and immutable).
func (s *Store) Messages() []*Message {
	out := make([]*Message, len(s.order))
	for i, r := range s.order {
		out[i] = r.msg
	}
	return out
}

// Invalid returns the invalid-message proofs, one per author at most, sorted
// by author. The proofs are shared and must not be modified.
func (s *Store) Invalid() []*InvalidProof {
	out := make([]*InvalidProof, 0, len(s.invalid))
	for _, p := range s.invalid {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y *InvalidProof) int { return x.Message.author.Compare(y.Message.author) })
	return out
}

// InvalidProofOf returns author a's invalid-message proof, if any.
func (s *Store) InvalidProofOf(a Author) (*InvalidProof, bool) {
	if st := s.authors[a]; st != nil && st.invalid != nil {
		return st.invalid, true
	}
	return nil, false
}

func (s *Store) rec(id ID) (*record, error) {
	r, ok := s.recs[id]
	if !ok {
		return nil, &UnknownMessageError{ID: id}
	}
	return r, nil
}

// recPair looks up two messages of one author.
func (s *Store) recPair(m1, m2 ID) (*record, *record, error) {
	r1, err := s.rec(m1)
	if err != nil {
		return nil, nil, err
	}
	r2, err := s.rec(m2)
	if err != nil {
		return nil, nil, err
	}
	if r1.msg.author != r2.msg.author {
		return nil, nil, fmt.Errorf("bftlog: messages %s (by %s) and %s (by %s): %w",
			m1.Short(), r1.msg.author.Short(), m2.Short(), r2.msg.author.Short(), ErrAuthorMismatch)
	}
	return r1, r2, nil
}

// LessEq reports whether m1 ≤ m2 in the author order: m1 is m2 or on m2's
// prev-chain. Both must be valid messages of the store by one author
// (ErrUnknownMessage, ErrAuthorMismatch otherwise).
func (s *Store) LessEq(m1, m2 ID) (bool, error) {
	r1, r2, err := s.recPair(m1, m2)
	if err != nil {
		return false, err
	}
	return lessEqRec(r1, r2), nil
}

// Concurrent reports whether neither m1 ≤ m2 nor m2 ≤ m1: the author forked
// its log. Errors as for LessEq.
func (s *Store) Concurrent(m1, m2 ID) (bool, error) {
	r1, r2, err := s.recPair(m1, m2)
	if err != nil {
		return false, err
	}
	return compareRec(r1, r2) == relConcurrent, nil
}

// LogPrefix returns the last message common to the prev-chains of m1 and m2
// (their greatest lower bound), or the zero ID if they share none. Errors
// as for LessEq.
func (s *Store) LogPrefix(m1, m2 ID) (ID, error) {
	r1, r2, err := s.recPair(m1, m2)
	if err != nil {
		return ID{}, err
	}
	return idOf(prefixRec(r1, r2)), nil
}

// ForkProof returns the first message of each branch after LogPrefix(m1,
// m2), in canonical order. It returns ErrNotConcurrent when m1 and m2 are
// ordered. Other errors as for LessEq.
func (s *Store) ForkProof(m1, m2 ID) (*ForkProof, error) {
	r1, r2, err := s.recPair(m1, m2)
	if err != nil {
		return nil, err
	}
	if compareRec(r1, r2) != relConcurrent {
		return nil, fmt.Errorf("bftlog: fork proof of %s and %s: %w", m1.Short(), m2.Short(), ErrNotConcurrent)
	}
	p := prefixRec(r1, r2)
	return newForkProof(childToward(p, r1), childToward(p, r2)), nil
}

func idOf(r *record) ID {
	if r == nil {
		return ID{}
	}
	return r.id
}

func heightOf(r *record) int {
	if r == nil {
		return -1 // "none" sits below every first message
	}
	return r.height
}

// ancestorAt returns r's ancestor-or-self at height h (nil for h < 0).
// It requires h <= r.height.
func ancestorAt(r *record, h int) *record {
	if h < 0 {
		return nil
	}
	for r.height > h {
		if r.jump.height >= h {
			r = r.jump
		} else {
			r = r.prev
		}
	}
	return r
}

// lessEqRec reports a ≤ b on one author's chain; nil ("none") is below all.
func lessEqRec(a, b *record) bool {
	if a == nil {
		return true
	}
	if b == nil || a.height > b.height {
		return false
	}
	return ancestorAt(b, a.height) == a
}

type relation int

const (
	relEqual relation = iota
	relLess
	relGreater
	relConcurrent
)

func compareRec(a, b *record) relation {
	switch {
	case a == b:
		return relEqual
	case lessEqRec(a, b):
		return relLess
	case lessEqRec(b, a):
		return relGreater
	default:
		return relConcurrent
	}
}

// prefixRec returns the greatest common ancestor-or-self of a and b, or nil.
func prefixRec(a, b *record) *record {
	if a == nil || b == nil {
		return nil
	}
	if a.height > b.height {
		a = ancestorAt(a, b.height)
	} else {
		b = ancestorAt(b, a.height)
	}
	// Equal heights give equal jump heights: the skip structure depends on
	// the height alone.
	for a != b {
		if a.height == 0 {
			return nil // two different first messages
		}
		if a.jump != b.jump {
			a, b = a.jump, b.jump
		} else {
			a, b = a.prev, b.prev
		}
	}
	return a
}

// childToward returns the message right after p on r's chain (p < r).
func childToward(p, r *record) *record {
	return ancestorAt(r, heightOf(p)+1)
}
