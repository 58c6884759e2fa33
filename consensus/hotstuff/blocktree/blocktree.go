// Package blocktree keeps the blocks a replica knows above its last
// committed block, as a tree rooted at that block.
//
// Invariant: every block in the tree except the root has its parent in the
// tree, so the path from any block down to the root is complete. Insert
// refuses blocks whose parent is unknown (ErrMissingParent; the caller
// fetches the parent first) and blocks that do not sit strictly above their
// parent in both height and view. Prune moves the root up to a newly
// committed block and drops every block that does not descend from it
// (forks that can never commit).
//
// A Tree is not safe for concurrent use.
package blocktree

import (
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Errors returned by Insert and Prune.
var (
	// ErrMissingParent: the block's parent is not in the tree.
	ErrMissingParent = errors.New("parent block unknown")
	// ErrBadHeight: the block's height or view does not follow its parent.
	ErrBadHeight = errors.New("block height or view does not follow its parent")
	// ErrUnknownBlock: Prune or Path was given a block not in the tree.
	ErrUnknownBlock = errors.New("block not in tree")
)

type node struct {
	block    *types.Block
	hash     types.Hash
	parent   *node
	children []*node
}

// Tree is a tree of blocks rooted at the last committed block.
type Tree struct {
	root  *node
	nodes map[types.Hash]*node
}

// New returns a tree whose root is root (the genesis block or the last
// committed block); hash is root.Hash().
func New(root *types.Block, hash types.Hash) *Tree {
	n := &node{block: root, hash: hash}
	return &Tree{root: n, nodes: map[types.Hash]*node{hash: n}}
}

// Root returns the root block and its hash.
func (t *Tree) Root() (*types.Block, types.Hash) { return t.root.block, t.root.hash }

// Len returns the number of blocks, root included.
func (t *Tree) Len() int { return len(t.nodes) }

// Get returns the block with hash h.
func (t *Tree) Get(h types.Hash) (*types.Block, bool) {
	n, ok := t.nodes[h]
	if !ok {
		return nil, false
	}
	return n.block, true
}

// Contains reports whether h is in the tree.
func (t *Tree) Contains(h types.Hash) bool { _, ok := t.nodes[h]; return ok }

// Parent returns the parent of the block with hash h, if both are in the
// tree (the root's parent is not).
func (t *Tree) Parent(h types.Hash) (*types.Block, types.Hash, bool) {
	n, ok := t.nodes[h]
	if !ok || n.parent == nil {
		return nil, types.Hash{}, false
	}
	return n.parent.block, n.parent.hash, true
}

// Insert adds b (whose hash is h). It returns false and no error if b is
// already present. It fails with ErrMissingParent when b.Parent is not in
// the tree (which includes blocks at or below the root's height on another
// branch) and with ErrBadHeight when b is not exactly one above its parent
// in height and strictly above it in view.
func (t *Tree) Insert(b *types.Block, h types.Hash) (bool, error) {
	if _, ok := t.nodes[h]; ok {
		return false, nil
	}
	p, ok := t.nodes[b.Parent]
	if !ok {
		return false, fmt.Errorf("insert block %s (view %d, height %d): parent %s: %w", h, b.View, b.Height, b.Parent, ErrMissingParent)
	}
	if b.Height != p.block.Height+1 || b.View <= p.block.View {
		return false, fmt.Errorf("insert block %s: view %d height %d over parent view %d height %d: %w",
			h, b.View, b.Height, p.block.View, p.block.Height, ErrBadHeight)
	}
	n := &node{block: b, hash: h, parent: p}
	p.children = append(p.children, n)
	t.nodes[h] = n
	return true, nil
}

// Extends reports whether the block desc descends from (or is) the block
// anc. Both must be in the tree; otherwise it returns false.
func (t *Tree) Extends(desc, anc types.Hash) bool {
	a, ok := t.nodes[anc]
	if !ok {
		return false
	}
	for n := t.nodes[desc]; n != nil; n = n.parent {
		if n == a {
			return true
		}
		if n.block.Height <= a.block.Height {
			return false
		}
	}
	return false
}

// PathFromRoot returns the blocks strictly above the root up to and
// including h, lowest first.
func (t *Tree) PathFromRoot(h types.Hash) ([]*types.Block, error) {
	n, ok := t.nodes[h]
	if !ok {
		return nil, fmt.Errorf("path to %s: %w", h, ErrUnknownBlock)
	}
	var out []*types.Block
	for ; n != t.root; n = n.parent {
		out = append(out, n.block)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Prune makes the block h the new root and drops every block that does not
// descend from it. It returns the number of blocks dropped.
func (t *Tree) Prune(h types.Hash) (int, error) {
	n, ok := t.nodes[h]
	if !ok {
		return 0, fmt.Errorf("prune to %s: %w", h, ErrUnknownBlock)
	}
	if n == t.root {
		return 0, nil
	}
	keep := make(map[types.Hash]*node, len(t.nodes))
	stack := []*node{n}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		keep[x.hash] = x
		stack = append(stack, x.children...)
	}
	dropped := len(t.nodes) - len(keep)
	n.parent = nil
	t.root = n
	t.nodes = keep
	return dropped, nil
}

// Blocks returns every block in the tree except the root, in ascending
// height (ties in unspecified order). The core uses it to persist or
// inspect its state; the caller must not modify the blocks.
func (t *Tree) Blocks() []*types.Block {
	var out []*types.Block
	level := []*node{t.root}
	for len(level) > 0 {
		var next []*node
		for _, n := range level {
			next = append(next, n.children...)
		}
		for _, n := range next {
			out = append(out, n.block)
		}
		level = next
	}
	return out
}
