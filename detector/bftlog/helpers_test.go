package bftlog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tkey is a deterministic test identity.
type tkey struct {
	priv ed25519.PrivateKey
	a    Author
}

func newKey(i int) tkey {
	seed := sha256.Sum256(fmt.Appendf(nil, "bftlog test key %d", i))
	priv := ed25519.NewKeyFromSeed(seed[:])
	a, err := AuthorOf(priv.Public().(ed25519.PublicKey))
	if err != nil {
		panic(err)
	}
	return tkey{priv: priv, a: a}
}

// signRaw builds a signed message without NewMessage's checks, in the
// given dep order, so tests can forge what a Byzantine author could sign.
func signRaw(k tkey, prev ID, deps []Dep, content []byte) *Message {
	m := &Message{author: k.a, prev: prev, deps: deps}
	m.pre = appendPreimage(nil, k.a, prev, deps, content)
	m.content = m.pre[len(m.pre)-len(content):]
	m.id = sha256.Sum256(m.pre)
	copy(m.sig[:], ed25519.Sign(k.priv, m.pre))
	return m
}

func idOfMsg(m *Message) ID {
	if m == nil {
		return ID{}
	}
	return m.ID()
}

// graph builds named messages into a store for hand-written cases.
type graph struct {
	t    testing.TB
	s    *Store
	keys map[string]tkey
	msgs map[string]*Message
}

func newGraph(t testing.TB) *graph {
	t.Helper()
	s, err := NewStore(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &graph{t: t, s: s, keys: map[string]tkey{"a": newKey(0), "b": newKey(1), "c": newKey(2)}, msgs: map[string]*Message{}}
}

func (g *graph) key(author string) tkey {
	k, ok := g.keys[author]
	if !ok {
		g.t.Fatalf("unknown test author %q", author)
	}
	return k
}

// msg builds (without adding) a message named name by author, after prev
// ("" for none), depending on the named messages.
func (g *graph) msg(name, author, prev string, deps ...string) *Message {
	g.t.Helper()
	var p ID
	if prev != "" {
		p = g.get(prev).ID()
	}
	var ds []Dep
	for _, d := range deps {
		dm := g.get(d)
		ds = append(ds, Dep{Author: dm.Author(), ID: dm.ID()})
	}
	m, err := NewMessage(g.key(author).priv, p, ds, []byte(name))
	if err != nil {
		g.t.Fatalf("build %s: %v", name, err)
	}
	g.msgs[name] = m
	return m
}

// add builds and adds a message that must be valid.
func (g *graph) add(name, author, prev string, deps ...string) *Message {
	g.t.Helper()
	m := g.msg(name, author, prev, deps...)
	if err := g.s.Add(m); err != nil {
		g.t.Fatalf("add %s: %v", name, err)
	}
	return m
}

func (g *graph) get(name string) *Message {
	g.t.Helper()
	m, ok := g.msgs[name]
	if !ok {
		g.t.Fatalf("unknown message %q", name)
	}
	return m
}

func (g *graph) id(name string) ID {
	if name == "" {
		return ID{}
	}
	return g.get(name).ID()
}

// growing returns the growing log of author with the named last.
func (g *graph) growing(author, last string) Log {
	return Log{Author: g.key(author).a, Last: g.id(last)}
}

// shrinking returns the shrinking log of author at last with the named
// proof messages (in any order).
func (g *graph) shrinking(author, last, p1, p2 string) Log {
	a, b := g.get(p1), g.get(p2)
	if b.ID().Compare(a.ID()) < 0 {
		a, b = b, a
	}
	return Log{Author: g.key(author).a, Last: g.id(last), Forks: &ForkProof{A: a, B: b}}
}

// logFrom appends the named messages to an empty log of author.
func (g *graph) logFrom(author string, names ...string) Log {
	g.t.Helper()
	l := NewLog(g.key(author).a)
	for _, n := range names {
		var err error
		if l, err = g.s.Append(l, g.id(n)); err != nil {
			g.t.Fatalf("append %s: %v", n, err)
		}
	}
	return l
}

func (g *graph) name(id ID) string {
	if id.IsZero() {
		return "none"
	}
	for n, m := range g.msgs {
		if m.ID() == id {
			return n
		}
	}
	return id.Short()
}

func (g *graph) show(l Log) string {
	if l.Growing() {
		return fmt.Sprintf("growing(last=%s)", g.name(l.Last))
	}
	ns := []string{g.name(l.Forks.A.ID()), g.name(l.Forks.B.ID())}
	slices.Sort(ns)
	return fmt.Sprintf("shrinking(last=%s, forks=%v)", g.name(l.Last), ns)
}

// wantErr fails unless err matches want (nil means no error).
func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
}
