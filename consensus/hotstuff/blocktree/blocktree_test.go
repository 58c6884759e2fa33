package blocktree

import (
	"errors"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

type tb struct {
	t      *testing.T
	tree   *Tree
	blocks map[string]*types.Block
	hashes map[string]types.Hash
}

func newTB(t *testing.T) *tb {
	g := types.NewGenesis([]byte("tree"))
	x := &tb{t: t, tree: New(g, g.Hash()), blocks: map[string]*types.Block{"g": g}, hashes: map[string]types.Hash{"g": g.Hash()}}
	return x
}

func (x *tb) mk(name, parent string, view types.View) *types.Block {
	p := x.blocks[parent]
	b := &types.Block{Parent: x.hashes[parent], View: view, Height: p.Height + 1, Proposer: types.NodeID(name)}
	x.blocks[name], x.hashes[name] = b, b.Hash()
	return b
}

func (x *tb) add(name, parent string, view types.View) {
	x.t.Helper()
	b := x.mk(name, parent, view)
	if ok, err := x.tree.Insert(b, x.hashes[name]); !ok || err != nil {
		x.t.Fatalf("insert %s: %v %v", name, ok, err)
	}
}

// TestTreeInsertExtendsPrune. The tree:
//
//	g ─ a(1) ─ b(2) ─ c(3)
//	     └─ x(4) ─ y(5)
func TestTreeInsertExtendsPrune(t *testing.T) {
	x := newTB(t)
	x.add("a", "g", 1)
	x.add("b", "a", 2)
	x.add("c", "b", 3)
	x.add("x", "a", 4)
	x.add("y", "x", 5)
	if ok, err := x.tree.Insert(x.blocks["c"], x.hashes["c"]); ok || err != nil {
		t.Fatal("re-inserting a block must be a no-op")
	}
	orphan := &types.Block{Parent: types.Hash{1}, View: 9, Height: 5}
	if _, err := x.tree.Insert(orphan, orphan.Hash()); !errors.Is(err, ErrMissingParent) {
		t.Fatalf("orphan: %v", err)
	}
	bad := x.mk("bad", "c", 3) // view not above its parent's
	if _, err := x.tree.Insert(bad, x.hashes["bad"]); !errors.Is(err, ErrBadHeight) {
		t.Fatalf("same view as parent: %v", err)
	}
	bad2 := x.mk("bad2", "c", 7)
	bad2.Height = 9
	if _, err := x.tree.Insert(bad2, bad2.Hash()); !errors.Is(err, ErrBadHeight) {
		t.Fatalf("height gap: %v", err)
	}
	for _, tc := range []struct {
		d, a string
		want bool
	}{{"c", "a", true}, {"c", "g", true}, {"c", "c", true}, {"y", "b", false}, {"a", "c", false}, {"y", "x", true}} {
		if got := x.tree.Extends(x.hashes[tc.d], x.hashes[tc.a]); got != tc.want {
			t.Errorf("Extends(%s, %s) = %v", tc.d, tc.a, got)
		}
	}
	path, err := x.tree.PathFromRoot(x.hashes["c"])
	if err != nil || len(path) != 3 || path[0] != x.blocks["a"] || path[2] != x.blocks["c"] {
		t.Fatalf("path: %v %v", path, err)
	}
	if n, err := x.tree.Prune(x.hashes["b"]); err != nil || n != 4 {
		t.Fatalf("prune to b dropped %d (%v), want 4 (g, a, x, y)", n, err)
	}
	if _, h := x.tree.Root(); h != x.hashes["b"] || x.tree.Len() != 2 || x.tree.Contains(x.hashes["y"]) {
		t.Fatal("prune kept the wrong blocks")
	}
	if _, err := x.tree.Insert(x.mk("z", "x", 6), x.hashes["z"]); !errors.Is(err, ErrMissingParent) {
		t.Fatalf("a block on a pruned fork: %v", err)
	}
	if _, _, ok := x.tree.Parent(x.hashes["b"]); ok {
		t.Fatal("the root has no parent in the tree")
	}
	if got := x.tree.Blocks(); len(got) != 1 || got[0] != x.blocks["c"] {
		t.Fatalf("Blocks() = %v", got)
	}
}
