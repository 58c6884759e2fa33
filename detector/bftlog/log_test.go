package bftlog

import (
	"errors"
	"testing"
)

// forkGraph builds author a's tree used by most log cases:
//
//	a1 ─ a2 ─ x3 ─ x4
//	 │    ├── y3 ─ y4
//	 │    └── w3
//	 └── z2
//	r1            (a second first message of a: a fork at none)
//
// and an honest chain of b: b1 ─ b2 ─ b3.
func forkGraph(t *testing.T) *graph {
	g := newGraph(t)
	g.add("a1", "a", "")
	g.add("a2", "a", "a1")
	g.add("x3", "a", "a2")
	g.add("x4", "a", "x3")
	g.add("y3", "a", "a2")
	g.add("y4", "a", "y3")
	g.add("w3", "a", "a2")
	g.add("z2", "a", "a1")
	g.add("r1", "a", "")
	g.add("b1", "b", "")
	g.add("b2", "b", "b1")
	g.add("b3", "b", "b2")
	return g
}

// TestMessageOrder covers Store.LessEq, Concurrent, LogPrefix and ForkProof
// on forkGraph.
func TestMessageOrder(t *testing.T) {
	g := forkGraph(t)
	cases := []struct {
		m1, m2     string
		le, ge     bool
		prefix     string // "" = none
		fork1, fix string // fork proof branch heads when concurrent
	}{
		{m1: "a1", m2: "a1", le: true, ge: true, prefix: "a1"},
		{m1: "a1", m2: "x4", le: true, prefix: "a1"},
		{m1: "x4", m2: "a2", ge: true, prefix: "a2"},
		{m1: "x4", m2: "y4", prefix: "a2", fork1: "x3", fix: "y3"},
		{m1: "x3", m2: "w3", prefix: "a2", fork1: "x3", fix: "w3"},
		{m1: "y4", m2: "z2", prefix: "a1", fork1: "a2", fix: "z2"},
		{m1: "r1", m2: "x4", prefix: "", fork1: "r1", fix: "a1"},
	}
	for _, tc := range cases {
		m1, m2 := g.id(tc.m1), g.id(tc.m2)
		le, err := g.s.LessEq(m1, m2)
		wantErr(t, err, nil)
		ge, _ := g.s.LessEq(m2, m1)
		conc, _ := g.s.Concurrent(m1, m2)
		if le != tc.le || ge != tc.ge || conc != (!tc.le && !tc.ge) {
			t.Errorf("%s vs %s: le=%v ge=%v conc=%v, want le=%v ge=%v", tc.m1, tc.m2, le, ge, conc, tc.le, tc.ge)
		}
		p, err := g.s.LogPrefix(m1, m2)
		wantErr(t, err, nil)
		if p != g.id(tc.prefix) {
			t.Errorf("LogPrefix(%s, %s) = %s, want %s", tc.m1, tc.m2, g.name(p), tc.prefix)
		}
		fp, err := g.s.ForkProof(m1, m2)
		if tc.fork1 == "" {
			wantErr(t, err, ErrNotConcurrent)
			continue
		}
		wantErr(t, err, nil)
		want := g.shrinking("a", tc.prefix, tc.fork1, tc.fix).Forks
		if !fp.Equal(want) || fp.Point() != p {
			t.Errorf("ForkProof(%s, %s) = %v, want %v", tc.m1, tc.m2, fp, want)
		}
		wantErr(t, VerifyForkProof(fp), nil)
	}
	// Different authors have no order; unknown ids are reported.
	if _, err := g.s.LessEq(g.id("a1"), g.id("b1")); !errors.Is(err, ErrAuthorMismatch) {
		t.Errorf("cross-author LessEq = %v", err)
	}
	var ue *UnknownMessageError
	if _, err := g.s.LogPrefix(g.id("a1"), ID{9}); !errors.As(err, &ue) || ue.ID != (ID{9}) {
		t.Errorf("unknown id: %v", err)
	}
}

// TestAppend checks Append on forkGraph against DESIGN's rules. Each case
// starts from the log reached by appending `from` to an empty log.
func TestAppend(t *testing.T) {
	cases := []struct {
		name string
		from []string
		m    string
		want string
	}{
		// a1 ─ a2 ─ x3: growing, last ≤ m → last := m
		{"growing extends", []string{"a1", "a2"}, "x3", "growing(last=x3)"},
		{"growing skips ahead", []string{"a1"}, "x4", "growing(last=x4)"},
		// m ≤ last → unchanged
		{"growing ignores older", []string{"x4"}, "a2", "growing(last=x4)"},
		{"growing ignores equal", []string{"x4"}, "x4", "growing(last=x4)"},
		// a2 ─ x3 ─ x4 / a2 ─ y3: concurrent → prefix a2, proof {x3, y3}
		{"growing finds fork", []string{"x4"}, "y3", "shrinking(last=a2, forks=[x3 y3])"},
		// r1 vs a1: two first messages → last none
		{"fork at none", []string{"x4"}, "r1", "shrinking(last=none, forks=[a1 r1])"},
		// shrinking at a2; m ≤ last → unchanged
		{"shrinking ignores prefix", []string{"x4", "y4"}, "a1", "shrinking(last=a2, forks=[x3 y3])"},
		// shrinking at a2; m on a known branch → unchanged
		{"shrinking ignores known branch", []string{"x4", "y4"}, "x3", "shrinking(last=a2, forks=[x3 y3])"},
		// shrinking at a2, m = z2 concurrent with a2 → earlier fork at a1
		{"shrinking finds earlier fork", []string{"x4", "y3"}, "z2", "shrinking(last=a1, forks=[a2 z2])"},
		{"shrinking finds fork at none", []string{"x4", "z2"}, "r1", "shrinking(last=none, forks=[a1 r1])"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := forkGraph(t)
			l := g.logFrom("a", tc.from...)
			got, err := g.s.Append(l, g.id(tc.m))
			wantErr(t, err, nil)
			if g.show(got) != tc.want {
				t.Fatalf("Append(%s, %s) = %s, want %s", g.show(l), tc.m, g.show(got), tc.want)
			}
			if le, _ := g.s.LogLessEq(l, got); !le {
				t.Fatalf("Append is not monotone: %s ≰ %s", g.show(l), g.show(got))
			}
			if !got.Growing() {
				wantErr(t, VerifyForkProof(got.Forks), nil)
				wantErr(t, g.s.CheckLog(got), nil)
			}
		})
	}
}

// TestAppendRefinesProof shows the canonical proof choice: with three
// branches x3, y3, w3 after a2, the proof holds the two smallest ids
// whatever the order they were seen in.
//
//	a2 ─ x3
//	 ├── y3
//	 └── w3
func TestAppendRefinesProof(t *testing.T) {
	g := forkGraph(t)
	orders := [][]string{
		{"x3", "y3", "w3"}, {"w3", "y3", "x3"}, {"y3", "w3", "x3"}, {"x4", "w3", "y4"},
	}
	var first Log
	for i, o := range orders {
		l := g.logFrom("a", o...)
		if i == 0 {
			first = l
		} else if !l.Equal(first) {
			t.Fatalf("order %v gives %s, order %v gives %s", o, g.show(l), orders[0], g.show(first))
		}
	}
	if first.Last != g.id("a2") {
		t.Fatalf("last = %s, want a2", g.name(first.Last))
	}
}

// TestAppendErrors checks the argument checks of Append.
func TestAppendErrors(t *testing.T) {
	g := forkGraph(t)
	la := g.logFrom("a", "a1")
	if _, err := g.s.Append(la, g.id("b1")); !errors.Is(err, ErrAuthorMismatch) {
		t.Errorf("append b's message to a's log: %v", err)
	}
	if _, err := g.s.Append(la, ID{1}); !errors.Is(err, ErrUnknownMessage) {
		t.Errorf("append unknown: %v", err)
	}
	bad := Log{Author: g.key("a").a, Last: g.id("b1")}
	if _, err := g.s.Append(bad, g.id("a1")); !errors.Is(err, ErrInvalidLog) {
		t.Errorf("append to a log whose last is another author's: %v", err)
	}
	// A proof that does not start at last, or is not canonical, is refused.
	notAtLast := g.shrinking("a", "a1", "x3", "y3")
	if err := g.s.CheckLog(notAtLast); !errors.Is(err, ErrInvalidLog) {
		t.Errorf("proof not at last: %v", err)
	}
	flipped := g.shrinking("a", "a2", "x3", "y3")
	flipped.Forks = &ForkProof{A: flipped.Forks.B, B: flipped.Forks.A}
	if err := g.s.CheckLog(flipped); !errors.Is(err, ErrInvalidLog) {
		t.Errorf("non-canonical proof: %v", err)
	}
}

// TestMerge checks Merge on forkGraph: the result, its symmetry, and that it
// is ≥ both inputs.
func TestMerge(t *testing.T) {
	cases := []struct {
		name   string
		l1, l2 []string // messages appended to an empty log of a
		want   string
	}{
		// a1 ─ a2 ─ x3 vs a1: comparable → the larger
		{"growing comparable", []string{"x3"}, []string{"a1"}, "growing(last=x3)"},
		{"growing equal", []string{"x4"}, []string{"x4"}, "growing(last=x4)"},
		{"with empty log", []string{"x4"}, nil, "growing(last=x4)"},
		// x4 vs y4: concurrent → prefix a2, proof {x3, y3}
		{"growing concurrent", []string{"x4"}, []string{"y4"}, "shrinking(last=a2, forks=[x3 y3])"},
		// shrinking at a2 vs growing a1 (before last) → shrinking unchanged
		{"shrinking and older growing", []string{"x4", "y3"}, []string{"a1"}, "shrinking(last=a2, forks=[x3 y3])"},
		// shrinking at a2 vs growing w3 (a third branch) → still at a2, proof canonical
		{"shrinking and growing on a new branch", []string{"x4", "y3"}, []string{"w3"}, "shrinking(last=a2, forks=" + "REFINED" + ")"},
		// shrinking at a2 vs growing z2 (concurrent with a2) → fork at a1
		{"shrinking and concurrent growing", []string{"x4", "y3"}, []string{"z2"}, "shrinking(last=a1, forks=[a2 z2])"},
		// both shrinking at different points → the earlier fork
		{"both shrinking, earlier wins", []string{"x4", "y3"}, []string{"a2", "z2"}, "shrinking(last=a1, forks=[a2 z2])"},
		{"both shrinking, fork at none wins", []string{"x4", "r1"}, []string{"x4", "y3"}, "shrinking(last=none, forks=[a1 r1])"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := forkGraph(t)
			l1, l2 := g.logFrom("a", tc.l1...), g.logFrom("a", tc.l2...)
			m12, err := g.s.Merge(l1, l2)
			wantErr(t, err, nil)
			m21, err := g.s.Merge(l2, l1)
			wantErr(t, err, nil)
			want := tc.want
			if want == "shrinking(last=a2, forks=REFINED)" {
				want = g.show(g.logFrom("a", "x3", "y3", "w3"))
			}
			if g.show(m12) != want || !m12.Equal(m21) {
				t.Fatalf("Merge = %s / %s, want %s", g.show(m12), g.show(m21), want)
			}
			for _, in := range []Log{l1, l2} {
				if le, _ := g.s.LogLessEq(in, m12); !le {
					t.Fatalf("input %s ≰ merge %s", g.show(in), g.show(m12))
				}
			}
		})
	}
}

// TestMergeSamePointProofs merges two logs forked at a2 with different
// proofs: the result keeps the two smallest ids of {x3, y3, w3}.
//
//	a2 ─ x3        log 1: {x3, y3}
//	 ├── y3        log 2: {y3, w3} (or {x3, w3})
//	 └── w3
func TestMergeSamePointProofs(t *testing.T) {
	g := forkGraph(t)
	all := g.logFrom("a", "x3", "y3", "w3")
	for _, pair := range [][2][]string{
		{{"x3", "y3"}, {"y3", "w3"}},
		{{"x3", "y3"}, {"x3", "w3"}},
		{{"x4", "y4"}, {"w3", "x3"}},
	} {
		l1, l2 := g.logFrom("a", pair[0]...), g.logFrom("a", pair[1]...)
		m, err := g.s.Merge(l1, l2)
		wantErr(t, err, nil)
		if !m.Equal(all) {
			t.Errorf("Merge(%s, %s) = %s, want %s", g.show(l1), g.show(l2), g.show(m), g.show(all))
		}
		// The order ignores the proof choice: same last, ≤ both ways.
		le12, _ := g.s.LogLessEq(l1, l2)
		le21, _ := g.s.LogLessEq(l2, l1)
		if !le12 || !le21 {
			t.Errorf("same-point shrinking logs not ≤ both ways")
		}
	}
}

// TestLogLessEq checks the four cases of DESIGN's order.
func TestLogLessEq(t *testing.T) {
	cases := []struct {
		name   string
		l1, l2 []string
		want   bool
	}{
		{"empty ≤ growing", nil, []string{"a1"}, true},
		{"growing ≤ later growing", []string{"a1"}, []string{"x4"}, true},
		{"later growing ≰ earlier", []string{"x4"}, []string{"a1"}, false},
		{"concurrent growing", []string{"x4"}, []string{"y4"}, false},
		{"growing ≤ shrinking", []string{"x4"}, []string{"y3", "w3"}, true},
		{"growing ≤ shrinking, even on no common branch", []string{"r1"}, []string{"y3", "w3"}, true},
		{"shrinking ≰ growing", []string{"y3", "w3"}, []string{"x4"}, false},
		{"shrinking ≤ earlier fork", []string{"y3", "w3"}, []string{"a2", "z2"}, true},
		{"earlier fork ≰ later fork", []string{"a2", "z2"}, []string{"y3", "w3"}, false},
		{"shrinking ≤ fork at none", []string{"a2", "z2"}, []string{"a1", "r1"}, true},
	}
	for _, tc := range cases {
		g := forkGraph(t)
		l1, l2 := g.logFrom("a", tc.l1...), g.logFrom("a", tc.l2...)
		got, err := g.s.LogLessEq(l1, l2)
		wantErr(t, err, nil)
		if got != tc.want {
			t.Errorf("%s: LogLessEq(%s, %s) = %v, want %v", tc.name, g.show(l1), g.show(l2), got, tc.want)
		}
	}
	g := forkGraph(t)
	if _, err := g.s.LogLessEq(g.logFrom("a", "a1"), g.logFrom("b", "b1")); !errors.Is(err, ErrAuthorMismatch) {
		t.Errorf("cross-author: %v", err)
	}
	if _, err := g.s.Merge(g.logFrom("a", "a1"), g.logFrom("b", "b1")); !errors.Is(err, ErrAuthorMismatch) {
		t.Errorf("cross-author merge: %v", err)
	}
}

// TestFrontier covers Update, Merge, LessEq, Equivocators and Deps.
//
//	a: a1 ─ a2 ─ x3      replica 1 sees x3
//	         └── y3      replica 2 sees y3
//	b: b1 ─ b2 ─ b3      replica 1 sees b3, replica 2 sees b1
func TestFrontier(t *testing.T) {
	g := forkGraph(t)
	f1, f2 := g.s.NewFrontier(), g.s.NewFrontier()
	for _, n := range []string{"a1", "a2", "x3", "b3"} {
		wantErr(t, f1.Update(g.id(n)), nil)
	}
	for _, n := range []string{"y3", "b1"} {
		wantErr(t, f2.Update(g.id(n)), nil)
	}
	if eq := f1.Equivocators(); len(eq) != 0 {
		t.Fatalf("no fork seen yet, got %v", eq)
	}
	deps := f1.Deps(g.key("b").a)
	if len(deps) != 1 || deps[0] != (Dep{Author: g.key("a").a, ID: g.id("x3")}) {
		t.Fatalf("Deps = %v", deps)
	}
	le, _ := f1.LessEq(f2)
	ge, _ := f2.LessEq(f1)
	if le || ge {
		t.Fatalf("frontiers with concurrent a-logs compare: le=%v ge=%v", le, ge)
	}
	m := f1.Clone()
	wantErr(t, m.Merge(f2), nil)
	for _, f := range []*Frontier{f1, f2} {
		if le, err := f.LessEq(m); err != nil || !le {
			t.Fatalf("input ≰ merge (%v)", err)
		}
	}
	m2 := f2.Clone()
	wantErr(t, m2.Merge(f1), nil)
	if !m.Equal(m2) {
		t.Fatalf("frontier merge not commutative")
	}
	eq := m.Equivocators()
	if len(eq) != 1 || eq[0].Author != g.key("a").a || g.show(eq[0]) != "shrinking(last=a2, forks=[x3 y3])" {
		t.Fatalf("Equivocators = %v", eq)
	}
	wantErr(t, VerifyForkProof(eq[0].Forks), nil)
	if lb, _ := m.Log(g.key("b").a); g.show(lb) != "growing(last=b3)" {
		t.Fatalf("b log = %s", g.show(lb))
	}
	// a is shrinking: it is left out of deps for good.
	if deps := m.Deps(g.key("c").a); len(deps) != 1 || deps[0].Author != g.key("b").a {
		t.Fatalf("Deps after fork = %v", deps)
	}
	// A frontier with fewer authors is ≤, not ≥.
	only := g.s.NewFrontier()
	wantErr(t, only.Update(g.id("a1")), nil)
	if le, _ := only.LessEq(m); !le {
		t.Fatalf("subset frontier not ≤")
	}
	if ge, _ := m.LessEq(only); ge {
		t.Fatalf("superset frontier ≤ subset")
	}
	if m.Len() != 2 || len(m.Logs()) != 2 {
		t.Fatalf("Len = %d", m.Len())
	}
}

// TestFrontierMergeLogsFromPeer imports a peer's frontier into another store:
// unknown ids are reported and nothing changes; once fetched it merges.
func TestFrontierMergeLogsFromPeer(t *testing.T) {
	g := forkGraph(t)
	peer := g.s.NewFrontier()
	for _, n := range []string{"x4", "y4", "b2"} {
		wantErr(t, peer.Update(g.id(n)), nil)
	}
	local, _ := NewStore(DefaultConfig())
	for _, n := range []string{"a1", "a2", "b1"} {
		wantErr(t, local.Add(g.get(n)), nil)
	}
	f := local.NewFrontier()
	wantErr(t, f.Update(g.id("b1")), nil)
	before := f.Clone()
	err := f.MergeLogs(peer.Logs())
	var ue *UnknownMessageError
	if !errors.As(err, &ue) {
		t.Fatalf("MergeLogs with unknown ids = %v", err)
	}
	if !f.Equal(before) {
		t.Fatalf("failed MergeLogs changed the frontier")
	}
	for _, m := range g.s.Messages() {
		if err := local.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	// A peer may send a proof message with the right id but a broken
	// signature (ids do not cover signatures): the local copy is used.
	logs := peer.Logs()
	for i, l := range logs {
		if !l.Growing() {
			broken := *l.Forks.B
			broken.sig[0] ^= 1
			logs[i].Forks = &ForkProof{A: l.Forks.A, B: &broken}
		}
	}
	wantErr(t, f.MergeLogs(logs), nil)
	want := peer.Clone()
	wantErr(t, want.Update(g.id("b1")), nil)
	if !f.Equal(want) {
		t.Fatalf("imported frontier differs")
	}
	for _, l := range f.Equivocators() {
		wantErr(t, VerifyForkProof(l.Forks), nil)
	}
}
