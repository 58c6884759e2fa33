package quarantine

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

type recorder struct {
	mu     sync.Mutex
	alerts []Alert
	m      *Manager
	seen   []bool // IsQuarantined(node) at alert time
}

func (r *recorder) Alert(a Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.alerts = append(r.alerts, a)
	if r.m != nil {
		r.seen = append(r.seen, r.m.IsQuarantined(a.Node)) // must not deadlock
	}
}

func open(t *testing.T, path string, opts Options) *Manager {
	t.Helper()
	m, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func entry(t *testing.T, node NodeID, evs ...*evidence.Evidence) Entry {
	return Entry{Node: node, Since: t0, Reason: "because " + string(node), Evidence: evs}
}

func evidenceIDs(es []*evidence.Evidence) []evidence.ID {
	out := make([]evidence.ID, len(es))
	for i, e := range es {
		out[i] = e.ID()
	}
	return out
}

// TestManagerPersists: entries, their evidence and the lift history survive
// a reopen, byte for byte.
func TestManagerPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quarantine.db")
	m := open(t, path, Options{})
	if m.IsQuarantined("n2") || len(m.List()) != 0 {
		t.Fatal("new store not empty")
	}
	p := proof(t, "n2", 1)
	acc := accuse(t, "n0", "n3", evidence.MetricSignatureFailure, t0)
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n2", p), entry(t, "n3", acc)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lift(LiftRequest{Node: "n3", Operator: "alice", At: t0.Add(time.Hour), Offenses: []string{"extra"}}); err != nil {
		t.Fatal(err)
	}
	m2 := open(t, path, Options{})
	if !m2.IsQuarantined("n2") || m2.IsQuarantined("n3") || !slices.Equal(m2.IDs(), []NodeID{"n2"}) {
		t.Fatalf("after reopen: %v", m2.IDs())
	}
	got, ok := m2.Get("n2")
	if !ok || got.Reason != "because n2" || !got.Since.Equal(t0) || !slices.Equal(evidenceIDs(got.Evidence), []evidence.ID{p.ID()}) {
		t.Fatalf("entry after reopen: %+v", got)
	}
	h := m2.History()
	if len(h) != 1 || h[0].Operator != "alice" || !h[0].LiftedAt.Equal(t0.Add(time.Hour)) || h[0].Entry.Node != "n3" ||
		!slices.Equal(evidenceIDs(h[0].Entry.Evidence), []evidence.ID{acc.ID()}) {
		t.Fatalf("history after reopen: %+v", h)
	}
	f := m2.Forgiven()
	if len(f) != 1 || f[0].Node != "n3" || !slices.Equal(f[0].Offenses, []string{"extra"}) || !f[0].At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("forgiveness after reopen: %+v", f)
	}
	a, _ := os.ReadFile(path)
	if err := m2.Apply(Action{Quarantine: []Entry{entry(t, "n2", p)}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(a, b) {
		t.Fatal("a no-op Apply rewrote the store differently")
	}
}

// TestManagerLiftOnlyByOperator: nothing but an explicit Lift with an
// operator name removes an entry — not an empty decision, not a restart,
// not further evidence, not a lift without an operator.
func TestManagerLiftOnlyByOperator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	rec := &recorder{}
	m := open(t, path, Options{Alerters: []Alerter{rec}})
	rec.m = m
	p1 := proof(t, "n1", 1)
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n1", p1)}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(Action{}); err != nil {
		t.Fatal(err)
	}
	m = open(t, path, Options{Alerters: []Alerter{rec}})
	rec.m = m
	if !m.IsQuarantined("n1") {
		t.Fatal("restart lifted the quarantine")
	}
	if _, err := m.Lift(LiftRequest{Node: "n1", At: t0}); !errors.Is(err, ErrNoOperator) {
		t.Fatalf("lift without operator: %v", err)
	}
	if _, err := m.Lift(LiftRequest{Node: "n2", Operator: "bob", At: t0}); !errors.Is(err, ErrNotQuarantined) {
		t.Fatalf("lift of a free node: %v", err)
	}
	if !m.IsQuarantined("n1") {
		t.Fatal("failed lifts lifted")
	}
	p2 := proof(t, "n1", 2)
	if err := m.Apply(Action{AddEvidence: []Entry{entry(t, "n1", p2)}}); err != nil {
		t.Fatal(err)
	}
	lr, err := m.Lift(LiftRequest{Node: "n1", Operator: "bob", At: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lr.Forgiveness.Offenses, sortedKeys(p1, p2)) {
		t.Fatalf("forgiveness %v", lr.Forgiveness.Offenses)
	}
	// Further evidence for a lifted node does not re-quarantine it; a new
	// Quarantine entry (a new, re-justified decision) does.
	if err := m.Apply(Action{AddEvidence: []Entry{entry(t, "n1", proof(t, "n1", 3))}}); err != nil {
		t.Fatal(err)
	}
	if m.IsQuarantined("n1") {
		t.Fatal("AddEvidence re-quarantined a lifted node")
	}
	kinds := []AlertKind{}
	for _, a := range rec.alerts {
		kinds = append(kinds, a.Kind)
	}
	if !slices.Equal(kinds, []AlertKind{AlertQuarantined, AlertEvidence, AlertLifted}) {
		t.Fatalf("alerts %v", kinds)
	}
	if !slices.Equal(rec.seen, []bool{true, true, false}) {
		t.Fatalf("alerts ran before the change was visible: %v", rec.seen)
	}
	if rec.alerts[2].Operator != "bob" {
		t.Fatalf("lift alert %+v", rec.alerts[2])
	}
}

func sortedKeys(es ...*evidence.Evidence) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.OffenseKey())
	}
	slices.Sort(out)
	return out
}

// TestManagerLiftForgivesInBook: the lift's forgiveness, restored into a
// fresh score.Book after a restart, keeps re-gossiped proofs of the same
// offence from quarantining the node again.
func TestManagerLiftForgivesInBook(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	m := open(t, path, Options{})
	p := proof(t, "n1", 1)
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n1", p)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lift(LiftRequest{Node: "n1", Operator: "carol", At: t0}); err != nil {
		t.Fatal(err)
	}
	m = open(t, path, Options{})
	book, err := score.NewBook(score.Default(), cluster(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	book.Forgive(m.Forgiven()...)
	if added, err := book.Add(p, t0); err != nil || added {
		t.Fatalf("forgiven proof added=%v err=%v", added, err)
	}
	if d := book.Decide(t0); len(d.Quarantine) != 0 {
		t.Fatalf("re-quarantined: %v", d.Quarantine)
	}
}

// TestManagerCorruption: a damaged store is a clear *CorruptionError, the
// file is left alone, and nothing starts empty.
func TestManagerCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.db")
	m := open(t, path, Options{})
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n1", proof(t, "n1", 1)), entry(t, "n2")}}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	endFrame := 8 + 1 + 4
	cases := map[string][]byte{
		"flipped byte":      flip(good, len(good)/2),
		"flipped checksum":  flip(good, len(magic)+1+4),
		"bad magic":         flip(good, 0),
		"bad version":       flip(good, len(magic)),
		"cut mid-frame":     good[:len(good)-3],
		"cut at a frame":    good[:len(good)-endFrame],
		"garbage after":     append(slices.Clone(good), 1, 2, 3),
		"empty":             {},
		"magic only":        []byte(magic),
		"huge frame length": append([]byte(magic+"\x01"), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".db")
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(p, Options{})
			var ce *CorruptionError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Path != p {
				t.Fatalf("Open = %v, want a *CorruptionError", err)
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(after, data) {
				t.Fatal("Open changed a corrupt file")
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := slices.Clone(b)
	c[i] ^= 0x40
	return c
}

func TestManagerStaleTempRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	if err := os.WriteFile(path+".tmp", []byte("half a write"), 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, path, Options{})
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file: %v", err)
	}
}

// TestManagerWriteFailureChangesNothing: when the store cannot be written,
// Apply fails and the in-memory list is unchanged.
func TestManagerWriteFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	m := open(t, filepath.Join(dir, "missing", "q.db"), Options{})
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n1")}}); err == nil {
		t.Fatal("Apply succeeded without a directory")
	}
	if m.IsQuarantined("n1") {
		t.Fatal("failed Apply changed the list")
	}
	if err := m.Apply(Action{Quarantine: []Entry{{Node: "", Since: t0}}}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("empty node: %v", err)
	}
}

func TestManagerBoundsEvidence(t *testing.T) {
	m := open(t, filepath.Join(t.TempDir(), "q.db"), Options{MaxEvidencePerEntry: 3})
	var evs []*evidence.Evidence
	for i := range 3 {
		evs = append(evs, accuse(t, nodeID(i+1), "n0", evidence.MetricSignatureFailure, t0))
	}
	evs = append(evs, proof(t, "n0", 1), proof(t, "n0", 2))
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n0", evs...)}}); err != nil {
		t.Fatal(err)
	}
	e, _ := m.Get("n0")
	if len(e.Evidence) != 3 || !e.Evidence[0].Irrefutable() || !e.Evidence[1].Irrefutable() {
		t.Fatalf("kept %d records, proofs first: %v", len(e.Evidence), e.Evidence)
	}
}

func TestManagerExport(t *testing.T) {
	m := open(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	p := proof(t, "n1", 1)
	if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n1", p)}}); err != nil {
		t.Fatal(err)
	}
	b, err := m.Export()
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Quarantined []struct {
			Node     NodeID               `json:"node"`
			Evidence []*evidence.Evidence `json:"evidence"`
		} `json:"quarantined"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Quarantined) != 1 || out.Quarantined[0].Node != "n1" || out.Quarantined[0].Evidence[0].ID() != p.ID() {
		t.Fatalf("export %s", b)
	}
	if err := evidence.Verify(out.Quarantined[0].Evidence[0], cluster(t, 4)); err != nil {
		t.Fatalf("exported evidence does not verify: %v", err)
	}
}

// TestManagerConcurrent: readers (the transport) run while entries are
// applied and lifted; run with -race.
func TestManagerConcurrent(t *testing.T) {
	m := open(t, filepath.Join(t.TempDir(), "q.db"), Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_ = m.IsQuarantined("n1")
					_ = m.List()
				}
			}
		}()
	}
	for i := range 5 {
		if err := m.Apply(Action{Quarantine: []Entry{entry(t, "n1")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Lift(LiftRequest{Node: "n1", Operator: "op", At: t0.Add(time.Duration(i))}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(m.History()) != 5 {
		t.Fatalf("history %d", len(m.History()))
	}
}

// FuzzDecodeFile: no panic on any file image; whatever decodes re-encodes
// to an image that decodes to the same state.
func FuzzDecodeFile(f *testing.F) {
	img, err := encodeFile([]Entry{{Node: "n1", Since: t0, Reason: "r", Evidence: []*evidence.Evidence{proof(f, "n1", 1)}}},
		[]LiftRecord{{Entry: Entry{Node: "n2", Since: t0}, Operator: "op", LiftedAt: t0, Forgiveness: score.Forgiveness{Offenses: []string{"k"}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(img)
	f.Add([]byte(magic + "\x01"))
	f.Fuzz(func(t *testing.T, in []byte) {
		active, lifted, err := decodeFile("fuzz", in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		out, err := encodeFile(active, lifted)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		a2, l2, err := decodeFile("fuzz", out)
		if err != nil || len(a2) != len(active) || len(l2) != len(lifted) {
			t.Fatalf("re-encoded image: %v", err)
		}
	})
}
