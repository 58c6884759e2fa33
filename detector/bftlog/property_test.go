package bftlog

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// world is a random message graph drawn by rapid: several authors, some
// Byzantine. Honest authors keep one chain and build their deps so that
// they never go back. Byzantine authors fork at random points (sometimes
// several times, sometimes at none) and may sign invalid messages; nothing
// valid is ever built on an invalid message.
type world struct {
	keys  []tkey
	byz   []bool
	msgs  []*genMsg
	valid [][]int // per author, indices of its valid messages
	tip   []int   // per author, its latest valid message (-1: none)
	badBy map[int]bool
}

type genMsg struct {
	m      *Message
	author int
	parent int // -1: none
	depth  int
	deps   map[int]int // author -> message index
	valid  bool
}

const (
	badSelfDep = iota
	badDepAuthor
	badRegression
	badPrevAuthor
	badKinds
)

func drawWorld(t *rapid.T) *world {
	n := rapid.IntRange(2, 4).Draw(t, "authors")
	w := &world{badBy: map[int]bool{}}
	for i := range n {
		w.keys = append(w.keys, newKey(i))
		// Author 0 is always honest, author n-1 always Byzantine.
		w.byz = append(w.byz, i == n-1 || (i > 0 && rapid.Bool().Draw(t, fmt.Sprintf("byz%d", i))))
		w.valid = append(w.valid, nil)
		w.tip = append(w.tip, -1)
	}
	steps := rapid.IntRange(3, 22).Draw(t, "steps")
	for step := range steps {
		a := rapid.IntRange(0, n-1).Draw(t, "author")
		if w.byz[a] && rapid.IntRange(0, 9).Draw(t, "bad?") == 0 {
			w.addInvalid(t, a, step)
			continue
		}
		parent := w.tip[a]
		if w.byz[a] && rapid.IntRange(0, 2).Draw(t, "fork?") == 0 {
			// Fork: build after any earlier message, or start a new first
			// message; often at a point that already forked, for 3-way forks.
			if points := w.forkPoints(a); len(points) > 0 && rapid.Bool().Draw(t, "same point?") {
				parent = rapid.SampledFrom(points).Draw(t, "fork point")
			} else {
				parent = rapid.SampledFrom(append([]int{-1}, w.valid[a]...)).Draw(t, "fork parent")
			}
		}
		deps := map[int]int{}
		for b := range n {
			if b == a || len(w.valid[b]) == 0 || !rapid.Bool().Draw(t, "dep?") {
				continue
			}
			cands := w.depCandidates(parent, b, true)
			deps[b] = rapid.SampledFrom(cands).Draw(t, "dep")
		}
		w.build(t, a, parent, deps, step, true, nil)
	}
	return w
}

// forkPoints returns the messages of a (or -1 for none) that already have
// at least two valid successors.
func (w *world) forkPoints(a int) []int {
	children := map[int]int{}
	for _, i := range w.valid[a] {
		children[w.msgs[i].parent]++
	}
	var out []int
	for p, c := range children {
		if c >= 2 {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// isAncOrEq reports x ≤ y in the model (-1 is below everything).
func (w *world) isAncOrEq(x, y int) bool {
	if x == -1 {
		return true
	}
	for ; y != -1; y = w.msgs[y].parent {
		if y == x {
			return true
		}
	}
	return false
}

// prevDep returns the dep on b of the nearest message on the chain ending at
// p (-1 when none).
func (w *world) prevDep(p, b int) int {
	for ; p != -1; p = w.msgs[p].parent {
		if d, ok := w.msgs[p].deps[b]; ok {
			return d
		}
	}
	return -1
}

// depCandidates returns b's valid messages that a message after parent may
// (follow=true) or may not (follow=false) depend on.
func (w *world) depCandidates(parent, b int, follow bool) []int {
	old := w.prevDep(parent, b)
	var out []int
	for _, x := range w.valid[b] {
		if w.isAncOrEq(old, x) == follow {
			out = append(out, x)
		}
	}
	return out
}

func (w *world) build(t *rapid.T, a, parent int, deps map[int]int, step int, valid bool, raw []Dep) {
	var prev ID
	depth := 0
	if parent != -1 {
		prev = w.msgs[parent].m.ID()
		depth = w.msgs[parent].depth + 1
	}
	content := fmt.Appendf(nil, "step %d", step)
	var m *Message
	if raw != nil || !valid {
		slices.SortFunc(raw, func(x, y Dep) int { return x.Author.Compare(y.Author) })
		m = signRaw(w.keys[a], prev, raw, content)
	} else {
		var ds []Dep
		for b, x := range deps {
			ds = append(ds, Dep{Author: w.keys[b].a, ID: w.msgs[x].m.ID()})
		}
		var err error
		if m, err = NewMessage(w.keys[a].priv, prev, ds, content); err != nil {
			t.Fatalf("build: %v", err)
		}
	}
	w.msgs = append(w.msgs, &genMsg{m: m, author: a, parent: parent, depth: depth, deps: deps, valid: valid})
	if valid {
		i := len(w.msgs) - 1
		w.valid[a] = append(w.valid[a], i)
		w.tip[a] = i
	} else {
		w.badBy[a] = true
	}
}

// addInvalid signs a message that breaks one validity rule, if the graph
// so far allows that kind.
func (w *world) addInvalid(t *rapid.T, a, step int) {
	kind := rapid.IntRange(0, badKinds-1).Draw(t, "bad kind")
	parent := w.tip[a]
	others := func() []int {
		var out []int
		for b := range w.keys {
			if b != a && len(w.valid[b]) > 0 {
				out = append(out, b)
			}
		}
		return out
	}()
	switch kind {
	case badSelfDep:
		if len(w.valid[a]) == 0 {
			return
		}
		x := rapid.SampledFrom(w.valid[a]).Draw(t, "self dep")
		w.build(t, a, parent, nil, step, false, []Dep{{Author: w.keys[a].a, ID: w.msgs[x].m.ID()}})
	case badDepAuthor:
		if len(others) == 0 {
			return
		}
		c := rapid.SampledFrom(others).Draw(t, "real author")
		x := rapid.SampledFrom(w.valid[c]).Draw(t, "dep")
		var claimed []int
		for b := range w.keys {
			if b != a && b != c {
				claimed = append(claimed, b)
			}
		}
		if len(claimed) == 0 {
			return
		}
		b := rapid.SampledFrom(claimed).Draw(t, "claimed author")
		w.build(t, a, parent, nil, step, false, []Dep{{Author: w.keys[b].a, ID: w.msgs[x].m.ID()}})
	case badRegression:
		var bs []int
		for _, b := range others {
			if len(w.depCandidates(parent, b, false)) > 0 {
				bs = append(bs, b)
			}
		}
		if len(bs) == 0 {
			return
		}
		b := rapid.SampledFrom(bs).Draw(t, "regress on")
		x := rapid.SampledFrom(w.depCandidates(parent, b, false)).Draw(t, "older dep")
		w.build(t, a, parent, nil, step, false, []Dep{{Author: w.keys[b].a, ID: w.msgs[x].m.ID()}})
	case badPrevAuthor:
		if len(others) == 0 {
			return
		}
		b := rapid.SampledFrom(others).Draw(t, "prev author")
		x := rapid.SampledFrom(w.valid[b]).Draw(t, "foreign prev")
		var prev ID = w.msgs[x].m.ID()
		m := signRaw(w.keys[a], prev, nil, fmt.Appendf(nil, "step %d", step))
		w.msgs = append(w.msgs, &genMsg{m: m, author: a, parent: -2, valid: false})
		w.badBy[a] = true
	}
}

// expected returns the log every correct replica must end with for author
// a, from the model alone: growing at the deepest message if a never
// forked, else shrinking at the shallowest fork point with the two smallest
// ids among its children as proof.
func (w *world) expected(a int) (Log, bool) {
	if len(w.valid[a]) == 0 {
		return Log{}, false
	}
	children := map[int][]ID{}
	for _, i := range w.valid[a] {
		children[w.msgs[i].parent] = append(children[w.msgs[i].parent], w.msgs[i].m.ID())
	}
	point, found := 0, false
	for p, cs := range children {
		if len(cs) < 2 {
			continue
		}
		depth := -1
		if p != -1 {
			depth = w.msgs[p].depth
		}
		if !found || depth < w.depthOf(point) {
			point, found = p, true
		}
	}
	l := Log{Author: w.keys[a].a}
	if !found {
		l.Last = w.msgs[w.tipOfChain(a)].m.ID()
		return l, true
	}
	if point != -1 {
		l.Last = w.msgs[point].m.ID()
	}
	cs := slices.Clone(children[point])
	slices.SortFunc(cs, ID.Compare)
	l.Forks = &ForkProof{A: w.byID(cs[0]), B: w.byID(cs[1])}
	return l, true
}

func (w *world) depthOf(i int) int {
	if i == -1 {
		return -1
	}
	return w.msgs[i].depth
}

func (w *world) tipOfChain(a int) int {
	best := w.valid[a][0]
	for _, i := range w.valid[a] {
		if w.msgs[i].depth > w.msgs[best].depth {
			best = i
		}
	}
	return best
}

func (w *world) byID(id ID) *Message {
	for _, g := range w.msgs {
		if g.m.ID() == id {
			return g.m
		}
	}
	return nil
}

func (w *world) forked(a int) bool {
	l, ok := w.expected(a)
	return ok && !l.Growing()
}

// replica is one correct node: its own store and frontier, fed messages in
// its own order, buffering those whose predecessors have not arrived.
type replica struct {
	s       *Store
	f       *Frontier
	queue   []*Message // still to deliver, in delivery order
	pending []*Message // delivered, waiting for predecessors
	invalid map[ID]bool
}

func newReplica(t *rapid.T, order []*Message) *replica {
	s, err := NewStore(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &replica{s: s, f: s.NewFrontier(), queue: order, invalid: map[ID]bool{}}
}

// add adds m and updates the frontier; it reports whether m left the
// pending state (stored or judged invalid).
func (r *replica) add(t *rapid.T, m *Message) bool {
	err := r.s.Add(m)
	var ie *InvalidError
	switch {
	case err == nil:
		before := r.f.Clone()
		if err := r.f.Update(m.ID()); err != nil {
			t.Fatalf("update: %v", err)
		}
		if le, err := before.LessEq(r.f); err != nil || !le {
			t.Fatalf("Update not monotone (%v)", err)
		}
		return true
	case errors.As(err, &ie):
		r.invalid[m.ID()] = true
		return true
	case errors.Is(err, ErrMissingDeps):
		return false
	default:
		t.Fatalf("add %v: unexpected error %v", m, err)
		return false
	}
}

func (r *replica) deliverNext(t *rapid.T) {
	m := r.queue[0]
	r.queue = r.queue[1:]
	if !r.add(t, m) {
		r.pending = append(r.pending, m)
		return
	}
	for progress := true; progress; {
		progress = false
		for i := 0; i < len(r.pending); i++ {
			if r.add(t, r.pending[i]) {
				r.pending = slices.Delete(r.pending, i, i+1)
				progress = true
				i--
			}
		}
	}
}

// syncFrom fetches every valid message q holds and merges q's frontier.
func (r *replica) syncFrom(t *rapid.T, q *replica) {
	for _, m := range q.s.Messages() {
		if err := r.s.Add(m); err != nil {
			t.Fatalf("sync add %v: %v", m, err)
		}
	}
	before := r.f.Clone()
	if err := r.f.Merge(q.f); err != nil {
		t.Fatalf("frontier merge: %v", err)
	}
	// q's frontier, seen through r's store (which now holds q's messages).
	qf := r.s.NewFrontier()
	if err := qf.MergeLogs(q.f.Logs()); err != nil {
		t.Fatalf("import q's frontier: %v", err)
	}
	for _, f := range []*Frontier{before, qf} {
		if le, err := f.LessEq(r.f); err != nil || !le {
			t.Fatalf("frontier Merge not monotone (%v)", err)
		}
	}
}

// TestPropertyReplicasConverge: replicas that receive the same messages in
// any order, with any pattern of frontier merges in between, end with
// identical frontiers; every fork is detected at the earliest fork point
// with a proof VerifyForkProof accepts; honest authors are never reported;
// every author that signed an invalid message has a verifiable
// invalid-message proof, and no other author has one.
func TestPropertyReplicasConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t)
		all := make([]*Message, len(w.msgs))
		for i, g := range w.msgs {
			all[i] = g.m
		}
		nr := rapid.IntRange(2, 3).Draw(t, "replicas")
		reps := make([]*replica, nr)
		for i := range reps {
			reps[i] = newReplica(t, rapid.Permutation(all).Draw(t, fmt.Sprintf("order%d", i)))
		}
		for {
			var busy []int
			for i, r := range reps {
				if len(r.queue) > 0 {
					busy = append(busy, i)
				}
			}
			if len(busy) == 0 {
				break
			}
			if rapid.IntRange(0, 5).Draw(t, "event") == 0 {
				i := rapid.IntRange(0, nr-1).Draw(t, "to")
				j := rapid.IntRange(0, nr-1).Draw(t, "from")
				if i != j {
					reps[i].syncFrom(t, reps[j])
				}
				continue
			}
			reps[rapid.SampledFrom(busy).Draw(t, "deliver to")].deliverNext(t)
		}

		for ri, r := range reps {
			if len(r.pending) != 0 {
				t.Fatalf("replica %d: %d messages still pending", ri, len(r.pending))
			}
			for _, g := range w.msgs {
				if g.valid != r.s.Has(g.m.ID()) || g.valid == r.invalid[g.m.ID()] {
					t.Fatalf("replica %d: message %v valid=%v, stored=%v", ri, g.m, g.valid, r.s.Has(g.m.ID()))
				}
			}
			if !r.f.Equal(reps[0].f) {
				t.Fatalf("replica %d frontier %v differs from replica 0's %v", ri, r.f.Logs(), reps[0].f.Logs())
			}
			for a := range w.keys {
				want, ok := w.expected(a)
				got, gotOK := r.f.Log(w.keys[a].a)
				if ok != gotOK || (ok && !got.Equal(want)) {
					t.Fatalf("replica %d author %d (byz=%v): log %v, want %v", ri, a, w.byz[a], got, want)
				}
			}
			eq := r.f.Equivocators()
			var forked []Author
			for a := range w.keys {
				if w.forked(a) {
					forked = append(forked, w.keys[a].a)
				}
			}
			slices.SortFunc(forked, Author.Compare)
			if len(eq) != len(forked) {
				t.Fatalf("replica %d: %d equivocators, want %d", ri, len(eq), len(forked))
			}
			for i, l := range eq {
				if l.Author != forked[i] {
					t.Fatalf("replica %d: equivocator %s, want %s", ri, l.Author.Short(), forked[i].Short())
				}
				if err := VerifyForkProof(l.Forks); err != nil {
					t.Fatalf("replica %d: proof of %s: %v", ri, l.Author.Short(), err)
				}
				if l.Forks.Point() != l.Last {
					t.Fatalf("proof not at last")
				}
			}
			inv := r.s.Invalid()
			if len(inv) != len(w.badBy) {
				t.Fatalf("replica %d: %d invalid proofs, want %d", ri, len(inv), len(w.badBy))
			}
			for _, p := range inv {
				a := slices.IndexFunc(w.keys, func(k tkey) bool { return k.a == p.Author() })
				if !w.badBy[a] || !w.byz[a] {
					t.Fatalf("replica %d: author %d reported invalid", ri, a)
				}
				if err := VerifyInvalidProof(p); err != nil {
					t.Fatalf("replica %d: invalid proof of author %d: %v", ri, a, err)
				}
			}
		}
	})
}

// logsWorld draws a world and a store holding all its valid messages.
func logsWorld(t *rapid.T) (*world, *Store) {
	w := drawWorld(t)
	s, err := NewStore(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range w.msgs {
		if g.valid {
			if err := s.Add(g.m); err != nil {
				t.Fatalf("add: %v", err)
			}
		}
	}
	return w, s
}

// drawLog appends a random subset of author a's valid messages, in random
// order, to the empty log.
func drawLog(t *rapid.T, w *world, s *Store, a int, label string) Log {
	l := NewLog(w.keys[a].a)
	if len(w.valid[a]) == 0 {
		return l
	}
	ids := rapid.SliceOfN(rapid.SampledFrom(w.valid[a]), 0, 6).Draw(t, label)
	for _, i := range ids {
		next, err := s.Append(l, w.msgs[i].m.ID())
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		if le, err := s.LogLessEq(l, next); err != nil || !le {
			t.Fatalf("Append not monotone: %v ≰ %v (%v)", l, next, err)
		}
		l = next
	}
	return l
}

// TestPropertyLogMerge: on random logs of one author (often a forking one),
// Merge is commutative, associative and idempotent on the whole value (last,
// phase and proof), its result is ≥ both inputs, and LogLessEq is a
// preorder that is antisymmetric on (last, phase).
func TestPropertyLogMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w, s := logsWorld(t)
		a := rapid.IntRange(0, len(w.keys)-1).Draw(t, "log author")
		l1, l2, l3 := drawLog(t, w, s, a, "l1"), drawLog(t, w, s, a, "l2"), drawLog(t, w, s, a, "l3")
		merge := func(x, y Log) Log {
			m, err := s.Merge(x, y)
			if err != nil {
				t.Fatalf("merge: %v", err)
			}
			return m
		}
		le := func(x, y Log) bool {
			b, err := s.LogLessEq(x, y)
			if err != nil {
				t.Fatalf("lesseq: %v", err)
			}
			return b
		}
		m12 := merge(l1, l2)
		if !m12.Equal(merge(l2, l1)) {
			t.Fatalf("not commutative: %v vs %v", m12, merge(l2, l1))
		}
		if x, y := merge(m12, l3), merge(l1, merge(l2, l3)); !x.Equal(y) {
			t.Fatalf("not associative: %v vs %v", x, y)
		}
		if !merge(l1, l1).Equal(l1) {
			t.Fatalf("not idempotent")
		}
		if !le(l1, m12) || !le(l2, m12) {
			t.Fatalf("merge %v not ≥ inputs %v, %v", m12, l1, l2)
		}
		if err := s.CheckLog(m12); err != nil {
			t.Fatalf("merge result invalid: %v", err)
		}
		if !m12.Growing() {
			if err := VerifyForkProof(m12.Forks); err != nil {
				t.Fatalf("merge proof: %v", err)
			}
		}
		// Order laws.
		if !le(l1, l1) {
			t.Fatalf("not reflexive")
		}
		if le(l1, l2) && le(l2, l1) && (l1.Last != l2.Last || l1.Growing() != l2.Growing()) {
			t.Fatalf("not antisymmetric on (last, phase): %v, %v", l1, l2)
		}
		if le(l1, l2) && le(l2, l3) && !le(l1, l3) {
			t.Fatalf("not transitive")
		}
		// A merged log is ≤ its result merged with anything.
		if !le(m12, merge(m12, l3)) {
			t.Fatalf("merge not monotone in its result")
		}
	})
}

// TestPropertyFrontierMerge: the same laws for frontiers, and merging the
// frontiers of two message sets gives the frontier of their union.
func TestPropertyFrontierMerge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w, s := logsWorld(t)
		var valid []ID
		for _, g := range w.msgs {
			if g.valid {
				valid = append(valid, g.m.ID())
			}
		}
		draw := func(label string) (*Frontier, []ID) {
			f := s.NewFrontier()
			if len(valid) == 0 {
				return f, nil // every drawn message was invalid: empty frontiers
			}
			ids := rapid.SliceOfN(rapid.SampledFrom(valid), 0, 10).Draw(t, label)
			for _, id := range ids {
				if err := f.Update(id); err != nil {
					t.Fatal(err)
				}
			}
			return f, ids
		}
		merge := func(x, y *Frontier) *Frontier {
			m := x.Clone()
			if err := m.Merge(y); err != nil {
				t.Fatal(err)
			}
			return m
		}
		le := func(x, y *Frontier) bool {
			b, err := x.LessEq(y)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		f1, ids1 := draw("f1")
		f2, ids2 := draw("f2")
		f3, _ := draw("f3")
		m12 := merge(f1, f2)
		if !m12.Equal(merge(f2, f1)) {
			t.Fatalf("not commutative")
		}
		if !merge(m12, f3).Equal(merge(f1, merge(f2, f3))) {
			t.Fatalf("not associative")
		}
		if !merge(f1, f1).Equal(f1) {
			t.Fatalf("not idempotent")
		}
		if !le(f1, m12) || !le(f2, m12) {
			t.Fatalf("merge not ≥ inputs")
		}
		union := s.NewFrontier()
		for _, id := range rapid.Permutation(append(slices.Clone(ids1), ids2...)).Draw(t, "union order") {
			if err := union.Update(id); err != nil {
				t.Fatal(err)
			}
		}
		if !union.Equal(m12) {
			t.Fatalf("merge of frontiers %v differs from frontier of the union %v", m12.Logs(), union.Logs())
		}
	})
}
