package bftlog

import (
	"fmt"
	"maps"
	"slices"
)

// Frontier holds at most one Log per author: a replica's view of every log
// it tracks. It is bound to the Store that holds its messages and, like the
// Store, is not safe for concurrent use. Its size is O(authors): it holds a
// last id and at most one fork proof per author.
//
// The empty log of an author is never stored: an author is present once a
// message of it was seen.
type Frontier struct {
	store *Store
	logs  map[Author]Log
}

// NewFrontier returns an empty frontier over s.
func (s *Store) NewFrontier() *Frontier {
	return &Frontier{store: s, logs: make(map[Author]Log)}
}

// Store returns the store f is bound to.
func (f *Frontier) Store() *Store { return f.store }

// Update appends message m (a valid message of the store) to its author's
// log. The caller updates the frontier with every message the store
// accepts; a Store does not do it on its own.
func (f *Frontier) Update(m ID) error {
	r, err := f.store.rec(m)
	if err != nil {
		return fmt.Errorf("bftlog: frontier update: %w", err)
	}
	a := r.msg.author
	cur, ok := f.logs[a]
	if !ok {
		f.logs[a] = Log{Author: a, Last: m}
		return nil
	}
	cur, lr, err := f.store.logRecs(cur)
	if err != nil {
		return fmt.Errorf("bftlog: frontier update: %w", err) // cannot happen: logs are checked on entry
	}
	f.logs[a] = f.store.join(cur, lr, Log{Author: a, Last: m}, r)
	return nil
}

// MergeLogs merges each log into the log of its author, as Store.Merge does.
// It is how a replica takes in a peer's frontier: every log is checked
// against f's store first (Store.CheckLog), and if any fails nothing is
// merged and the error is returned; ErrUnknownMessage then names an id to
// fetch. Empty growing logs are ignored.
func (f *Frontier) MergeLogs(logs []Log) error {
	checked := make([]Log, 0, len(logs))
	lasts := make([]*record, 0, len(logs))
	for _, l := range logs {
		l, r, err := f.store.logRecs(l)
		if err != nil {
			return fmt.Errorf("bftlog: frontier merge: %w", err)
		}
		checked = append(checked, l)
		lasts = append(lasts, r)
	}
	for i, l := range checked {
		if l.Growing() && lasts[i] == nil {
			continue
		}
		cur, ok := f.logs[l.Author]
		if !ok {
			f.logs[l.Author] = l
			continue
		}
		cur, cr, _ := f.store.logRecs(cur)
		f.logs[l.Author] = f.store.join(cur, cr, l, lasts[i])
	}
	return nil
}

// Merge merges g into f (the least upper bound, author by author). g may be
// bound to another store; its logs must then be valid in f's store, as for
// MergeLogs. g is not modified.
func (f *Frontier) Merge(g *Frontier) error {
	return f.MergeLogs(g.Logs())
}

// LessEq reports whether f ≤ g: g has a log for every author f has, and each
// of f's logs is ≤ g's (Store.LogLessEq). g's logs must be valid in f's
// store.
func (f *Frontier) LessEq(g *Frontier) (bool, error) {
	for a, l1 := range f.logs {
		l2, ok := g.logs[a]
		if !ok {
			return false, nil
		}
		le, err := f.store.LogLessEq(l1, l2)
		if err != nil {
			return false, fmt.Errorf("bftlog: frontier compare: %w", err)
		}
		if !le {
			return false, nil
		}
	}
	return true, nil
}

// Equal reports whether f and g hold Equal logs for the same authors.
func (f *Frontier) Equal(g *Frontier) bool {
	return maps.EqualFunc(f.logs, g.logs, Log.Equal)
}

// Clone returns a copy of f bound to the same store.
func (f *Frontier) Clone() *Frontier {
	return &Frontier{store: f.store, logs: maps.Clone(f.logs)}
}

// Len returns the number of authors in f.
func (f *Frontier) Len() int { return len(f.logs) }

// Log returns author a's log; ok is false when f has none.
func (f *Frontier) Log(a Author) (Log, bool) {
	l, ok := f.logs[a]
	return l, ok
}

// Logs returns every log, sorted by author: the frontier's wire form. The
// slice is new.
func (f *Frontier) Logs() []Log {
	out := slices.Collect(maps.Values(f.logs))
	slices.SortFunc(out, func(x, y Log) int { return x.Author.Compare(y.Author) })
	return out
}

// Equivocators returns the shrinking logs, sorted by author: each names an
// author that forked its log, the earliest fork point known (Last) and a
// proof (Forks) that VerifyForkProof accepts.
func (f *Frontier) Equivocators() []Log {
	var out []Log
	for _, l := range f.Logs() {
		if !l.Growing() {
			out = append(out, l)
		}
	}
	return out
}

// Deps returns the deps for a new message by author self: the last message
// of every other author whose log is growing, sorted by author. An author
// whose log is shrinking is left out for good, which keeps the deps of
// self's successive messages from ever going back (ReasonDepRegression)
// as long as self builds each message from the frontier it has then.
func (f *Frontier) Deps(self Author) []Dep {
	var out []Dep
	for _, l := range f.Logs() {
		if l.Author != self && l.Growing() && !l.Last.IsZero() {
			out = append(out, Dep{Author: l.Author, ID: l.Last})
		}
	}
	return out
}
