package quarantine

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/internal/fsutil"
)

// Sentinel errors of Manager.
var (
	// ErrNotQuarantined is returned by Lift for a node that is not
	// quarantined.
	ErrNotQuarantined = errors.New("node is not quarantined")
	// ErrNoOperator is returned by Lift without an operator name: only an
	// explicit, attributed operator action lifts a quarantine.
	ErrNoOperator = errors.New("lift needs an operator")
	// ErrInvalidEntry is returned by Apply and Quarantine for an entry the
	// store cannot hold (empty node ID, oversized reason, evidence that
	// does not encode).
	ErrInvalidEntry = errors.New("invalid quarantine entry")
)

// Defaults for Options.
const (
	DefaultMaxEvidencePerEntry = 32
	DefaultMaxHistory          = 256
)

// Options configures a Manager. The zero value is usable.
type Options struct {
	// Alerters receive every change after it is durable.
	Alerters []Alerter
	// MaxEvidencePerEntry bounds the evidence kept per entry (the first
	// ones are kept, proofs before accusations). 0 means
	// DefaultMaxEvidencePerEntry.
	MaxEvidencePerEntry int
	// MaxHistory is the number of lift records that keep their evidence;
	// older records keep only their forgiveness. 0 means
	// DefaultMaxHistory.
	MaxHistory int
}

// LiftRequest is an operator's lift (`tandem admin quarantine lift`).
type LiftRequest struct {
	Node     NodeID
	Operator string    // who lifts: required, at most 255 bytes
	At       time.Time // when
	// Offenses are further offence keys to forgive beyond those of the
	// entry's evidence, typically score.Book.Offenses(Node): every offence
	// the node's book knows.
	Offenses []string
}

// LiftRecord is a lifted quarantine, kept for forensics and so that its
// forgiveness survives restarts.
type LiftRecord struct {
	Entry       Entry
	Operator    string
	LiftedAt    time.Time
	Forgiveness score.Forgiveness
}

// Manager is the persisted quarantine list that the transport and the
// engines ask (IsQuarantined). It is safe for concurrent use; it starts no
// goroutines and keeps no file open. Every change is durable (fsynced)
// before the method returns and before any alert.
type Manager struct {
	path string
	opts Options

	mu     sync.RWMutex
	active map[NodeID]Entry
	lifted []LiftRecord
}

// Open loads the store at path, or starts empty if the file does not
// exist (a leftover temporary file from an interrupted write is removed).
// A file that exists but cannot be read back is a *CorruptionError
// (ErrCorrupt): Open never silently resets the list.
func Open(path string, opts Options) (*Manager, error) {
	if opts.MaxEvidencePerEntry <= 0 {
		opts.MaxEvidencePerEntry = DefaultMaxEvidencePerEntry
	}
	if opts.MaxHistory <= 0 {
		opts.MaxHistory = DefaultMaxHistory
	}
	m := &Manager{path: path, opts: opts, active: map[NodeID]Entry{}}
	if err := os.Remove(path + fsutil.TempSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("quarantine: remove stale %s%s: %w", path, fsutil.TempSuffix, err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("quarantine: read %s: %w", path, err)
	}
	active, lifted, err := decodeFile(path, b)
	if err != nil {
		return nil, err
	}
	for _, e := range active {
		m.active[e.Node] = e
	}
	m.lifted = lifted
	return m, nil
}

// Path returns the store file.
func (m *Manager) Path() string { return m.path }

// IsQuarantined reports whether id is quarantined.
func (m *Manager) IsQuarantined(id NodeID) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.active[id]
	return ok
}

// IDs returns the quarantined nodes, sorted (for State.Quarantined and the
// HotStuff core's SetQuarantined).
func (m *Manager) IDs() []NodeID {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]NodeID, 0, len(m.active))
	for id := range m.active {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// List returns the active entries sorted by node. The entries are copies;
// their evidence records are shared and must not be modified.
func (m *Manager) List() []Entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.sortedActive()
}

func (m *Manager) sortedActive() []Entry {
	out := make([]Entry, 0, len(m.active))
	for _, e := range m.active {
		e.Evidence = slices.Clone(e.Evidence)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// Get returns id's active entry.
func (m *Manager) Get(id NodeID) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.active[id]
	e.Evidence = slices.Clone(e.Evidence)
	return e, ok
}

// History returns the lift records, oldest first.
func (m *Manager) History() []LiftRecord {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.lifted)
}

// Forgiven returns the forgiveness of every lift, for score.Book.Forgive
// and quarantine.Policy.
func (m *Manager) Forgiven() []score.Forgiveness {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]score.Forgiveness, len(m.lifted))
	for i, l := range m.lifted {
		out[i] = l.Forgiveness
	}
	return out
}

// Quarantine adds one entry (for example from an Action built elsewhere).
// It returns false if the node is already quarantined, in which case the
// entry's new evidence is merged into the existing one.
func (m *Manager) Quarantine(e Entry) (added bool, err error) {
	ad, _, err := m.apply([]Entry{e}, nil)
	return len(ad) == 1, err
}

// Apply persists an Action's Quarantine and AddEvidence entries (other
// fields are for the engines) and alerts. On error nothing changed.
func (m *Manager) Apply(a Action) error {
	_, _, err := m.apply(a.Quarantine, a.AddEvidence)
	return err
}

func (m *Manager) apply(newEntries, more []Entry) (added, grown []Entry, err error) {
	for _, e := range append(slices.Clone(newEntries), more...) {
		if err := checkEntry(e); err != nil {
			return nil, nil, fmt.Errorf("quarantine: %w: %w", ErrInvalidEntry, err)
		}
	}
	m.mu.Lock()
	next := make(map[NodeID]Entry, len(m.active)+len(newEntries))
	for id, e := range m.active {
		next[id] = e
	}
	for _, e := range newEntries {
		cur, ok := next[e.Node]
		if !ok {
			e.Evidence = m.bound(nil, e.Evidence)
			next[e.Node] = e
			added = append(added, e)
			continue
		}
		if merged := m.bound(cur.Evidence, e.Evidence); len(merged) > len(cur.Evidence) {
			grown = append(grown, Entry{Node: e.Node, Since: e.Since, Reason: e.Reason, Evidence: merged[len(cur.Evidence):]})
			cur.Evidence = merged
			next[e.Node] = cur
		}
	}
	for _, e := range more {
		cur, ok := next[e.Node]
		if !ok {
			continue // lifted meanwhile: not re-quarantined through AddEvidence
		}
		if merged := m.bound(cur.Evidence, e.Evidence); len(merged) > len(cur.Evidence) {
			grown = append(grown, Entry{Node: e.Node, Since: e.Since, Reason: e.Reason, Evidence: merged[len(cur.Evidence):]})
			cur.Evidence = merged
			next[e.Node] = cur
		}
	}
	if len(added) == 0 && len(grown) == 0 {
		m.mu.Unlock()
		return nil, nil, nil
	}
	if err := m.persist(next, m.lifted); err != nil {
		m.mu.Unlock()
		return nil, nil, err
	}
	m.active = next
	m.mu.Unlock()
	for _, e := range added {
		m.alert(Alert{Kind: AlertQuarantined, Node: e.Node, Reason: e.Reason, At: e.Since, Evidence: idsOf(e.Evidence)})
	}
	for _, e := range grown {
		m.alert(Alert{Kind: AlertEvidence, Node: e.Node, Reason: e.Reason, At: e.Since, Evidence: idsOf(e.Evidence)})
	}
	return added, grown, nil
}

// bound returns cur followed by the records of extra it lacks, proofs
// first, at most MaxEvidencePerEntry in all. cur is not modified.
func (m *Manager) bound(cur, extra []*evidence.Evidence) []*evidence.Evidence {
	out := slices.Clone(cur)
	have := map[evidence.ID]bool{}
	for _, e := range cur {
		have[e.ID()] = true
	}
	sorted := slices.Clone(extra)
	slices.SortStableFunc(sorted, func(a, b *evidence.Evidence) int {
		if a.Irrefutable() == b.Irrefutable() {
			return 0
		}
		if a.Irrefutable() {
			return -1
		}
		return 1
	})
	for _, e := range sorted {
		if len(out) >= m.opts.MaxEvidencePerEntry {
			break
		}
		if id := e.ID(); !have[id] {
			have[id] = true
			out = append(out, e)
		}
	}
	return out
}

func idsOf(evs []*evidence.Evidence) []evidence.ID {
	out := make([]evidence.ID, len(evs))
	for i, e := range evs {
		out[i] = e.ID()
	}
	return out
}

// Lift clears req.Node's quarantine. Only this call does: no decision,
// restart or evidence ever un-quarantines a node. The entry moves to the
// history with the operator, the time, and the forgiveness (offence keys
// of its proofs plus req.Offenses; accusations dated up to req.At), which
// the caller hands to score.Book.Forgive so the same offences do not
// quarantine the node again. Errors: ErrNoOperator, ErrNotQuarantined, or
// a write error (then nothing changed).
func (m *Manager) Lift(req LiftRequest) (LiftRecord, error) {
	if req.Operator == "" || len(req.Operator) > maxOperator {
		return LiftRecord{}, fmt.Errorf("quarantine: lift %q: %w (operator name of 1 to %d bytes, got %d)", req.Node, ErrNoOperator, maxOperator, len(req.Operator))
	}
	if len(req.Offenses) > maxOffenses {
		return LiftRecord{}, fmt.Errorf("quarantine: lift %q: %w: %d offences, at most %d", req.Node, ErrInvalidEntry, len(req.Offenses), maxOffenses)
	}
	for _, o := range req.Offenses {
		if len(o) > maxOffenseLn {
			return LiftRecord{}, fmt.Errorf("quarantine: lift %q: %w: offence key of %d bytes, at most %d", req.Node, ErrInvalidEntry, len(o), maxOffenseLn)
		}
	}
	m.mu.Lock()
	e, ok := m.active[req.Node]
	if !ok {
		m.mu.Unlock()
		return LiftRecord{}, fmt.Errorf("quarantine: lift %q: %w", req.Node, ErrNotQuarantined)
	}
	rec := LiftRecord{Entry: e, Operator: req.Operator, LiftedAt: req.At, Forgiveness: forgivenessOf(e, req.At, req.Offenses)}
	next := make(map[NodeID]Entry, len(m.active))
	for id, x := range m.active {
		if id != req.Node {
			next[id] = x
		}
	}
	lifted := append(slices.Clone(m.lifted), rec)
	if extra := len(lifted) - m.opts.MaxHistory; extra > 0 {
		for i := range extra {
			lifted[i].Entry.Evidence = nil
		}
	}
	if err := m.persist(next, lifted); err != nil {
		m.mu.Unlock()
		return LiftRecord{}, err
	}
	m.active, m.lifted = next, lifted
	m.mu.Unlock()
	m.alert(Alert{Kind: AlertLifted, Node: req.Node, Reason: e.Reason, Operator: req.Operator, At: req.At, Evidence: idsOf(e.Evidence)})
	return rec, nil
}

// forgivenessOf returns the forgiveness of lifting e at at: the offence keys
// of e's proofs and extra, sorted and distinct.
func forgivenessOf(e Entry, at time.Time, extra []string) score.Forgiveness {
	f := score.Forgiveness{Node: e.Node, At: at, Offenses: slices.Clone(extra)}
	for _, ev := range e.Evidence {
		if ev.Irrefutable() {
			f.Offenses = append(f.Offenses, ev.OffenseKey())
		}
	}
	slices.Sort(f.Offenses)
	f.Offenses = slices.Compact(f.Offenses)
	return f
}

// persist writes the state durably; m.mu is held.
func (m *Manager) persist(active map[NodeID]Entry, lifted []LiftRecord) error {
	list := make([]Entry, 0, len(active))
	for _, e := range active {
		list = append(list, e)
	}
	slices.SortFunc(list, func(a, b Entry) int { return cmp.Compare(a.Node, b.Node) })
	data, err := encodeFile(list, lifted)
	if err != nil {
		return fmt.Errorf("quarantine: encode %s: %w: %w", m.path, ErrInvalidEntry, err)
	}
	if err := fsutil.WriteFile(m.path, data); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	return nil
}

func (m *Manager) alert(a Alert) {
	for _, al := range m.opts.Alerters {
		al.Alert(a)
	}
}

// Export returns the active entries and the lift history as indented JSON
// (evidence in its JSON form, which carries the canonical encoding), for
// `tandem admin quarantine list` and forensics.
func (m *Manager) Export() ([]byte, error) {
	type jsonEntry struct {
		Node     NodeID               `json:"node"`
		Since    time.Time            `json:"since"`
		Reason   string               `json:"reason"`
		Evidence []*evidence.Evidence `json:"evidence"`
	}
	type jsonLift struct {
		jsonEntry
		Operator string    `json:"operator"`
		LiftedAt time.Time `json:"lifted_at"`
		Offenses []string  `json:"forgiven_offenses"`
	}
	m.mu.RLock()
	active := m.sortedActive()
	lifted := slices.Clone(m.lifted)
	m.mu.RUnlock()
	out := struct {
		Quarantined []jsonEntry `json:"quarantined"`
		Lifted      []jsonLift  `json:"lifted"`
	}{Quarantined: []jsonEntry{}, Lifted: []jsonLift{}}
	for _, e := range active {
		out.Quarantined = append(out.Quarantined, jsonEntry{e.Node, e.Since.UTC(), e.Reason, e.Evidence})
	}
	for _, l := range lifted {
		out.Lifted = append(out.Lifted, jsonLift{jsonEntry{l.Entry.Node, l.Entry.Since.UTC(), l.Entry.Reason, l.Entry.Evidence}, l.Operator, l.LiftedAt.UTC(), l.Forgiveness.Offenses})
	}
	return json.MarshalIndent(out, "", "  ")
}
