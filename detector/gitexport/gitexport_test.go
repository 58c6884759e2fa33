package gitexport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-consensus/tandem/detector/bftlog"
)

type author struct {
	priv ed25519.PrivateKey
	a    bftlog.Author
}

func newAuthor(t *testing.T, name string) author {
	seed := sha256.Sum256([]byte("gitexport test " + name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	a, err := bftlog.AuthorOf(priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return author{priv, a}
}

func msg(t *testing.T, who author, prev *bftlog.Message, content string, deps ...*bftlog.Message) *bftlog.Message {
	t.Helper()
	var p bftlog.ID
	if prev != nil {
		p = prev.ID()
	}
	var ds []bftlog.Dep
	for _, d := range deps {
		ds = append(ds, bftlog.Dep{Author: d.Author(), ID: d.ID()})
	}
	m, err := bftlog.NewMessage(who.priv, p, ds, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scenario is a store where alice is correct, bob equivocates after his
// first message, and carol signs an invalid message.
type scenario struct {
	alice, bob, carol author
	msgs              []*bftlog.Message // valid, in a causal order
	bad               *bftlog.Message
	b1                *bftlog.Message
}

func newScenario(t *testing.T) *scenario {
	s := &scenario{alice: newAuthor(t, "alice"), bob: newAuthor(t, "bob"), carol: newAuthor(t, "carol")}
	a1 := msg(t, s.alice, nil, "alice: checkpoint vote 1")
	s.b1 = msg(t, s.bob, nil, "bob: checkpoint vote 1", a1)
	b2 := msg(t, s.bob, s.b1, "bob: proposal X for slot 7")
	b2x := msg(t, s.bob, s.b1, "bob: proposal Y for slot 7")
	b3 := msg(t, s.bob, b2, "bob: after X")
	a2 := msg(t, s.alice, a1, "alice: accusation", b2)
	c1 := msg(t, s.carol, nil, "\x00binary\xff")
	s.msgs = []*bftlog.Message{a1, s.b1, b2, b2x, b3, a2, c1}
	// carol names bob as the author of alice's message.
	bad, err := bftlog.NewMessage(s.carol.priv, c1.ID(), []bftlog.Dep{{Author: s.bob.a, ID: a1.ID()}}, []byte("carol: lie"))
	if err != nil {
		t.Fatal(err)
	}
	s.bad = bad
	return s
}

// frontier adds the messages in the given order and returns the frontier.
func (s *scenario) frontier(t *testing.T, order []int) *bftlog.Frontier {
	t.Helper()
	st, err := bftlog.NewStore(bftlog.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	f := st.NewFrontier()
	for _, i := range order {
		m := s.msgs[i]
		if err := st.Add(m); err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		if err := f.Update(m.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Add(s.bad); !errors.Is(err, bftlog.ErrInvalid) {
		t.Fatalf("invalid message: %v", err)
	}
	return f
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"--git-dir", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitAuditsFork: plain git shows the equivocating author's fork in an
// exported repository — git log of the fork branch walks both branches
// back through the fork point, and git merge-base of the branches is the
// fork point, which is also <author>/last (DESIGN, Git form).
func TestGitAuditsFork(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	s := newScenario(t)
	f := s.frontier(t, []int{0, 1, 2, 3, 4, 5, 6})
	dir := filepath.Join(t.TempDir(), "evidence.git")
	repo, err := Export(dir, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bob := s.bob.a.String()
	forkBranch := bob + "/forks/" + s.b1.ID().String()

	git(t, dir, "fsck", "--strict", "--no-dangling")
	branches := git(t, dir, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
	for _, want := range []string{"frontier", forkBranch, bob + "/last", s.alice.a.String() + "/last", s.carol.a.String() + "/invalid"} {
		if !strings.Contains(branches, want) {
			t.Errorf("branch %s missing from:\n%s", want, branches)
		}
	}

	log := git(t, dir, "log", "--format=%an|%s", forkBranch)
	for _, want := range []string{bob + "|fork of", bob + "|bob: proposal X for slot 7", bob + "|bob: proposal Y for slot 7", bob + "|bob: checkpoint vote 1"} {
		if !strings.Contains(log, want) {
			t.Errorf("git log %s lacks %q:\n%s", forkBranch, want, log)
		}
	}
	base := git(t, dir, "merge-base", forkBranch+"^1", forkBranch+"^2")
	if last := git(t, dir, "rev-parse", bob+"/last"); base != last || base != repo.Commits[s.b1.ID()] {
		t.Fatalf("merge-base %s, %s/last %s, commit of the fork point %s", base, bob, last, repo.Commits[s.b1.ID()])
	}
	if n := git(t, dir, "rev-list", "--count", "frontier"); n != "10" { // 8 messages, 1 fork, 1 frontier
		t.Errorf("frontier reaches %s commits, want 10", n)
	}

	// A commit's tree carries the signed wire form: the message can be
	// re-verified from the repository alone.
	cmd := exec.Command("git", "--git-dir", dir, "cat-file", "blob", forkBranch+"^1:message.bin")
	raw, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	m, err := bftlog.DecodeMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.VerifySignature(); err != nil || m.Author() != s.bob.a || m.Prev() != s.b1.ID() {
		t.Fatalf("message.bin: %v, author %s prev %s", err, m.Author().Short(), m.Prev().Short())
	}

	// Parents are prev then deps: alice's second message follows her first,
	// then bob's X.
	parents := git(t, dir, "log", "-1", "--format=%P", s.alice.a.String()+"/last")
	want := repo.Commits[s.msgs[0].ID()] + " " + repo.Commits[s.msgs[2].ID()]
	if parents != want {
		t.Fatalf("parents %q, want %q", parents, want)
	}
	if body := git(t, dir, "log", "-1", "--format=%B", s.carol.a.String()+"/invalid"); !strings.Contains(body, "carol: lie") || !strings.Contains(body, "bftlog-signature: ") {
		t.Fatalf("invalid branch message:\n%s", body)
	}
}

// TestExportDeterministic: two exports of the same evidence, built from
// messages added in different orders, are byte-identical.
func TestExportDeterministic(t *testing.T) {
	s := newScenario(t)
	d1, d2 := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if _, err := Export(d1, s.frontier(t, []int{0, 1, 2, 3, 4, 5, 6}), Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(d2, s.frontier(t, []int{6, 0, 1, 3, 2, 5, 4}), Options{}); err != nil {
		t.Fatal(err)
	}
	a, b := tree(t, d1), tree(t, d2)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d vs %d files", len(a), len(b))
	}
	for p, data := range a {
		if !bytes.Equal(data, b[p]) {
			t.Fatalf("file %s differs", p)
		}
	}
}

func tree(t *testing.T, dir string) map[string][]byte {
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportRefusesNonEmptyDir(t *testing.T) {
	s := newScenario(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(dir, s.frontier(t, []int{0, 1, 2, 3, 4, 5, 6}), Options{}); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("err = %v", err)
	}
}

func TestBuildEmpty(t *testing.T) {
	st, _ := bftlog.NewStore(bftlog.DefaultConfig())
	r, err := Build(st.NewFrontier(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Refs) != 0 || len(r.Commits) != 0 {
		t.Fatalf("empty export has refs %v", r.Refs)
	}
}
