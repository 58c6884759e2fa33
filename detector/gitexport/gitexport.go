package gitexport

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"container/heap"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tandem-consensus/tandem/detector/bftlog"
)

// DefaultBaseTime is the commit time of the first commit when
// Options.BaseTime is 0: 2020-01-01T00:00:00Z.
const DefaultBaseTime int64 = 1577836800

// ErrNotEmpty is returned by Export when the target directory exists and
// is not empty: an export never overwrites anything.
var ErrNotEmpty = errors.New("export directory is not empty")

// Options tunes an export. The zero value is usable.
type Options struct {
	// BaseTime is the commit time (Unix seconds) of the first commit; the
	// i-th commit in the export's topological order gets BaseTime+i. 0
	// means DefaultBaseTime.
	BaseTime int64
}

// Repo is a Git repository built in memory: every object (keyed by its
// hex SHA-1, the uncompressed object with its header) and every ref.
type Repo struct {
	// Objects maps an object name to its uncompressed bytes
	// ("<type> <size>\x00<body>").
	Objects map[string][]byte
	// Refs maps a full ref name (refs/heads/...) to a commit name.
	Refs map[string]string
	// Head is the ref HEAD points to.
	Head string
	// Commits maps each exported 2P-BFT-Log message to its commit.
	Commits map[bftlog.ID]string
}

// Branch names (under refs/heads/), as in DESIGN's Git form.
func lastRef(a bftlog.Author) string { return "refs/heads/" + a.String() + "/last" }

func forkRef(a bftlog.Author, last bftlog.ID) string {
	p := "none"
	if !last.IsZero() {
		p = last.String()
	}
	return "refs/heads/" + a.String() + "/forks/" + p
}

func invalidRef(a bftlog.Author) string { return "refs/heads/" + a.String() + "/invalid" }

// FrontierRef is the branch whose commit has every tip of the export as a
// parent, so that `git log frontier` walks everything; HEAD points to it.
const FrontierRef = "refs/heads/frontier"

// Build turns the store and frontier f into a repository in DESIGN's Git
// form, deterministically (the same messages and logs give the same
// objects, whatever order they were added in):
//
//   - every valid message of the store, every invalid-proof message and
//     its witnesses becomes a commit: author and committer name = the
//     author key in hex, parents = prev then deps (those present in the
//     export; a missing one is named in the message), commit message =
//     the content (base64 when not UTF-8 text) followed by trailers with
//     the id, prev, deps and signature; the tree holds the content, the
//     signature and the message's wire form (message.bin), so the
//     signature can be checked from the repository alone;
//   - refs/heads/<author>/last → the commit of the log's last message
//     (for a forked log, the fork point);
//   - refs/heads/<author>/forks/<last-id> ("none" for a fork between two
//     first messages) → a fork commit whose parents are the first commit
//     of each branch of the log's fork proof;
//   - refs/heads/<author>/invalid → the commit of the author's invalid
//     message;
//   - refs/heads/frontier → a commit whose parents are all tips; HEAD.
//
// Commit times come from a counter (Options.BaseTime), not the clock.
func Build(f *bftlog.Frontier, opts Options) (*Repo, error) {
	if opts.BaseTime == 0 {
		opts.BaseTime = DefaultBaseTime
	}
	s := f.Store()
	msgs := map[bftlog.ID]*bftlog.Message{}
	for _, m := range s.Messages() {
		msgs[m.ID()] = m
	}
	invalid := s.Invalid()
	for _, p := range invalid {
		msgs[p.Message.ID()] = p.Message
		for _, w := range p.Witness {
			if _, ok := msgs[w.ID()]; !ok {
				msgs[w.ID()] = w
			}
		}
	}
	order, err := topoOrder(msgs)
	if err != nil {
		return nil, err
	}
	r := &Repo{Objects: map[string][]byte{}, Refs: map[string]string{}, Head: FrontierRef, Commits: map[bftlog.ID]string{}}
	isParent := map[string]bool{}
	clock := opts.BaseTime
	for _, m := range order {
		tree := r.tree(m)
		var parents []string
		var missing []bftlog.ID
		for _, p := range predecessors(m) {
			if c, ok := r.Commits[p]; ok {
				parents = append(parents, c)
			} else {
				missing = append(missing, p)
			}
		}
		c := r.commit(tree, parents, m.Author().String(), clock, messageText(m, missing))
		clock++
		r.Commits[m.ID()] = c
		for _, p := range parents {
			isParent[p] = true
		}
	}
	for _, l := range f.Logs() {
		if !l.Last.IsZero() {
			r.Refs[lastRef(l.Author)] = r.Commits[l.Last]
		}
		if l.Forks != nil {
			a, b := r.Commits[l.Forks.A.ID()], r.Commits[l.Forks.B.ID()]
			text := fmt.Sprintf("fork of %s after %s\n\nbftlog-fork-point: %s\nbftlog-branch: %s\nbftlog-branch: %s\n",
				l.Author.Short(), l.Last.Short(), idOrNone(l.Last), l.Forks.A.ID(), l.Forks.B.ID())
			c := r.commit(r.emptyTree(), []string{a, b}, l.Author.String(), clock, text)
			clock++
			r.Refs[forkRef(l.Author, l.Last)] = c
			isParent[a], isParent[b] = true, true
		}
	}
	for _, p := range invalid {
		r.Refs[invalidRef(p.Author())] = r.Commits[p.Message.ID()]
	}
	var tips []string
	for _, c := range r.Commits {
		if !isParent[c] {
			tips = append(tips, c)
		}
	}
	for ref, c := range r.Refs {
		if strings.Contains(ref, "/forks/") {
			tips = append(tips, c)
		}
	}
	if len(tips) > 0 {
		slices.Sort(tips)
		tips = slices.Compact(tips)
		r.Refs[FrontierRef] = r.commit(r.emptyTree(), tips, "tandem-evidence", clock,
			fmt.Sprintf("frontier: %d messages, %d logs, %d forked, %d invalid\n", len(order), f.Len(), len(f.Equivocators()), len(invalid)))
	}
	return r, nil
}

func idOrNone(id bftlog.ID) string {
	if id.IsZero() {
		return "none"
	}
	return id.String()
}

// predecessors returns prev then the deps' ids.
func predecessors(m *bftlog.Message) []bftlog.ID {
	var out []bftlog.ID
	if !m.Prev().IsZero() {
		out = append(out, m.Prev())
	}
	for _, d := range m.Deps() {
		out = append(out, d.ID)
	}
	return out
}

// idHeap is a min-heap of message ids.
type idHeap []bftlog.ID

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i].Compare(h[j]) < 0 }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(bftlog.ID)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// topoOrder orders msgs so that every message follows its predecessors
// present in msgs; among ready messages the smallest id goes first, which
// makes the order (and so the commit times) depend only on the set.
func topoOrder(msgs map[bftlog.ID]*bftlog.Message) ([]*bftlog.Message, error) {
	indeg := map[bftlog.ID]int{}
	children := map[bftlog.ID][]bftlog.ID{}
	for id, m := range msgs {
		for _, p := range predecessors(m) {
			if _, ok := msgs[p]; ok {
				indeg[id]++
				children[p] = append(children[p], id)
			}
		}
	}
	h := &idHeap{}
	for id := range msgs {
		if indeg[id] == 0 {
			heap.Push(h, id)
		}
	}
	out := make([]*bftlog.Message, 0, len(msgs))
	for h.Len() > 0 {
		id := heap.Pop(h).(bftlog.ID)
		out = append(out, msgs[id])
		for _, c := range children[id] {
			if indeg[c]--; indeg[c] == 0 {
				heap.Push(h, c)
			}
		}
	}
	if len(out) != len(msgs) {
		return nil, fmt.Errorf("gitexport: %d of %d messages are on a cycle", len(msgs)-len(out), len(msgs))
	}
	return out, nil
}

// messageText is the commit message of m: its content, then trailers.
func messageText(m *bftlog.Message, missing []bftlog.ID) string {
	var b strings.Builder
	c := m.Content()
	if utf8.Valid(c) && !bytes.ContainsRune(c, 0) {
		b.Write(c)
	} else {
		b.WriteString("base64:")
		b.WriteString(base64.StdEncoding.EncodeToString(c))
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "bftlog-id: %s\n", m.ID())
	fmt.Fprintf(&b, "bftlog-author: %s\n", m.Author())
	fmt.Fprintf(&b, "bftlog-prev: %s\n", idOrNone(m.Prev()))
	for _, d := range m.Deps() {
		fmt.Fprintf(&b, "bftlog-dep: %s %s\n", d.Author, d.ID)
	}
	for _, p := range missing {
		fmt.Fprintf(&b, "bftlog-missing-parent: %s\n", p)
	}
	fmt.Fprintf(&b, "bftlog-signature: %s\n", hex.EncodeToString(m.Signature()))
	return b.String()
}

// put stores an object and returns its name.
func (r *Repo) put(typ string, body []byte) string {
	obj := fmt.Appendf(nil, "%s %d\x00", typ, len(body))
	obj = append(obj, body...)
	sum := sha1.Sum(obj)
	name := hex.EncodeToString(sum[:])
	r.Objects[name] = obj
	return name
}

func (r *Repo) emptyTree() string { return r.put("tree", nil) }

// tree stores m's blobs and tree: content, message.bin, signature (in
// Git's tree order).
func (r *Repo) tree(m *bftlog.Message) string {
	wire, _ := m.MarshalBinary() // a stored message always encodes
	files := []struct {
		name string
		data []byte
	}{
		{"content", m.Content()},
		{"message.bin", wire},
		{"signature", []byte(hex.EncodeToString(m.Signature()) + "\n")},
	}
	var body []byte
	for _, f := range files {
		blob := r.put("blob", f.data)
		raw, _ := hex.DecodeString(blob)
		body = append(body, "100644 "+f.name+"\x00"...)
		body = append(body, raw...)
	}
	return r.put("tree", body)
}

// commit stores a commit and returns its name.
func (r *Repo) commit(tree string, parents []string, name string, when int64, text string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tree %s\n", tree)
	for _, p := range parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	ident := fmt.Sprintf("%s <%s@bftlog> %d +0000", name, name[:min(12, len(name))], when)
	fmt.Fprintf(&b, "author %s\ncommitter %s\n\n%s", ident, ident, text)
	return r.put("commit", []byte(b.String()))
}

// Write writes r as a bare repository into dir, which must not exist or be
// empty (ErrNotEmpty). Objects are loose and zlib-compressed; the output
// depends only on r.
func (r *Repo) Write(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("gitexport: read %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("gitexport: %s: %w", dir, ErrNotEmpty)
	}
	write := func(rel string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("gitexport: %w", err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("gitexport: %w", err)
		}
		return nil
	}
	for _, d := range []string{"objects/info", "objects/pack", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(d)), 0o755); err != nil {
			return fmt.Errorf("gitexport: %w", err)
		}
	}
	if err := write("HEAD", []byte("ref: "+r.Head+"\n")); err != nil {
		return err
	}
	if err := write("config", []byte("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n")); err != nil {
		return err
	}
	if err := write("description", []byte("Tandem evidence: 2P-BFT-Log export\n")); err != nil {
		return err
	}
	names := make([]string, 0, len(r.Objects))
	for n := range r.Objects {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		var buf bytes.Buffer
		zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
		zw.Write(r.Objects[n])
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gitexport: compress %s: %w", n, err)
		}
		if err := write("objects/"+n[:2]+"/"+n[2:], buf.Bytes()); err != nil {
			return err
		}
	}
	refs := make([]string, 0, len(r.Refs))
	for ref := range r.Refs {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b string) int { return cmp.Compare(a, b) })
	for _, ref := range refs {
		if err := write(ref, []byte(r.Refs[ref]+"\n")); err != nil {
			return err
		}
	}
	return nil
}

// Export builds the repository of f (Build) and writes it into dir
// (Repo.Write).
func Export(dir string, f *bftlog.Frontier, opts Options) (*Repo, error) {
	r, err := Build(f, opts)
	if err != nil {
		return nil, err
	}
	if err := r.Write(dir); err != nil {
		return nil, err
	}
	return r, nil
}
