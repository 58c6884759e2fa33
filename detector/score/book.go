package score

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
)

// ErrStale is returned by Book.Add for an accusation older than MaxAge or
// dated more than MaxClockSkew after now. It is dropped; the accuser is not
// blamed (clocks drift, gossip is late).
var ErrStale = errors.New("accusation outside its time window")

// Book keeps the verified evidence a node knows, bounded, and decides from
// it. It is pure state: no goroutines, no clock (now is an argument), and
// not safe for concurrent use — the caller serialises calls.
//
// Bounds: per offender at most MaxProofsPerNode offences (one proof each);
// per (accuser, accused, metric) the MaxPerPair newest accusations;
// accusations older than MaxAge are pruned. With n members a Book holds at
// most n·MaxProofsPerNode proofs and n²·7·MaxPerPair accusations.
type Book struct {
	cfg      Config
	members  *evidence.Members
	byID     map[evidence.ID]*evidence.Evidence
	offenses map[string]evidence.ID // offence key → the proof kept
	forgiven []Forgiveness
}

// NewBook returns an empty book for members.
func NewBook(c Config, members *evidence.Members) (*Book, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if members == nil {
		return nil, fmt.Errorf("%w: no member set", ErrInvalidConfig)
	}
	return &Book{cfg: c, members: members, byID: map[evidence.ID]*evidence.Evidence{}, offenses: map[string]evidence.ID{}}, nil
}

// Members returns the member set the book verifies against.
func (b *Book) Members() *evidence.Members { return b.members }

// Add verifies e and keeps it. It returns added=false, nil when e is
// already known, forgiven, a further proof of a known offence, or over a
// bound (a full pair keeps its newest accusations; a proof beyond
// MaxProofsPerNode offences is dropped). Errors: evidence.ErrInvalidEvidence
// (through *evidence.VerifyError) when e does not verify, ErrStale for an
// accusation outside its time window.
func (b *Book) Add(e *evidence.Evidence, now time.Time) (added bool, err error) {
	if err := evidence.Verify(e, b.members); err != nil {
		return false, err
	}
	enc, err := evidence.Marshal(e)
	if err != nil {
		return false, err
	}
	id := evidence.IDOf(enc)
	if _, ok := b.byID[id]; ok || isForgiven(e, b.forgiven) {
		return false, nil
	}
	if e.Irrefutable() {
		key := e.OffenseKey()
		if _, ok := b.offenses[key]; ok {
			return false, nil
		}
		n := 0
		for _, x := range b.byID {
			if x.Irrefutable() && x.Offender == e.Offender {
				n++
			}
		}
		if n >= b.cfg.MaxProofsPerNode {
			return false, nil
		}
		b.offenses[key] = id
		b.byID[id] = e
		return true, nil
	}
	a := e.Accusation
	if age := now.Sub(a.Time()); age > b.cfg.MaxAge || age < -b.cfg.MaxClockSkew {
		return false, fmt.Errorf("score: accusation by %q of %q (%s) at %v, now %v: %w", a.Accuser, a.Accused, a.Metric, a.Time().UTC(), now.UTC(), ErrStale)
	}
	var pair []*evidence.Evidence
	for _, x := range b.byID {
		if y := x.Accusation; y != nil && y.Accuser == a.Accuser && y.Accused == a.Accused && y.Metric == a.Metric {
			pair = append(pair, x)
		}
	}
	if len(pair) >= b.cfg.MaxPerPair {
		slices.SortFunc(pair, func(x, y *evidence.Evidence) int {
			return cmp.Or(cmp.Compare(x.Accusation.At, y.Accusation.At), x.ID().Compare(y.ID()))
		})
		oldest := pair[0]
		if oldest.Accusation.At > a.At || (oldest.Accusation.At == a.At && oldest.ID().Compare(id) > 0) {
			return false, nil
		}
		delete(b.byID, oldest.ID())
	}
	b.byID[id] = e
	return true, nil
}

// Prune drops accusations older than MaxAge at now and returns how many.
func (b *Book) Prune(now time.Time) int {
	n := 0
	for id, e := range b.byID {
		if a := e.Accusation; a != nil && now.Sub(a.Time()) > b.cfg.MaxAge {
			delete(b.byID, id)
			n++
		}
	}
	return n
}

// SetMembers replaces the member set (a new epoch) and drops evidence that
// no longer verifies against it; it returns how many records it dropped.
func (b *Book) SetMembers(m *evidence.Members) int {
	b.members = m
	n := 0
	for id, e := range b.byID {
		if evidence.Verify(e, m) != nil {
			b.drop(id, e)
			n++
		}
	}
	return n
}

func (b *Book) drop(id evidence.ID, e *evidence.Evidence) {
	delete(b.byID, id)
	if e.Irrefutable() {
		delete(b.offenses, e.OffenseKey())
	}
}

// Offenses returns the offence keys of every proof against node the book
// holds, sorted: what a lift of node should forgive.
func (b *Book) Offenses(node NodeID) []string {
	var out []string
	for _, e := range b.byID {
		if e.Offender == node && e.Irrefutable() {
			out = append(out, e.OffenseKey())
		}
	}
	slices.Sort(out)
	return out
}

// Lift records an operator's lift of node's quarantine at time at: every
// offence the book holds a proof of, and every accusation against node
// dated at or before at, is forgiven and dropped. It returns the
// Forgiveness, which the caller persists (package quarantine keeps it) and
// hands back to Forgive after a restart.
func (b *Book) Lift(node NodeID, at time.Time) Forgiveness {
	f := Forgiveness{Node: node, At: at, Offenses: b.Offenses(node)}
	b.Forgive(f)
	return f
}

// Forgive applies lifts (for example those restored from the quarantine
// store at start-up): covered evidence is dropped now and ignored when it
// arrives again.
func (b *Book) Forgive(fs ...Forgiveness) {
	b.forgiven = append(b.forgiven, fs...)
	for id, e := range b.byID {
		if isForgiven(e, fs) {
			b.drop(id, e)
		}
	}
}

// Len returns the number of records kept.
func (b *Book) Len() int { return len(b.byID) }

// Evidence returns every record kept, sorted by ID. The slice is new; the
// records are shared and must not be modified.
func (b *Book) Evidence() []*evidence.Evidence {
	return b.filter(func(*evidence.Evidence) bool { return true })
}

// Against returns the records whose offender is node, sorted by ID.
func (b *Book) Against(node NodeID) []*evidence.Evidence {
	return b.filter(func(e *evidence.Evidence) bool { return e.Offender == node })
}

// Get returns the record with the given ID.
func (b *Book) Get(id evidence.ID) (*evidence.Evidence, bool) {
	e, ok := b.byID[id]
	return e, ok
}

func (b *Book) filter(keep func(*evidence.Evidence) bool) []*evidence.Evidence {
	ids := make([]evidence.ID, 0, len(b.byID))
	for id, e := range b.byID {
		if keep(e) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, evidence.ID.Compare)
	out := make([]*evidence.Evidence, len(ids))
	for i, id := range ids {
		out[i] = b.byID[id]
	}
	return out
}

// Decide returns Decide over the book's evidence and lifts at now.
func (b *Book) Decide(now time.Time) Decision {
	return Decide(b.cfg, Input{Members: b.members, Evidence: b.Evidence(), Forgiven: b.forgiven, Now: now})
}
