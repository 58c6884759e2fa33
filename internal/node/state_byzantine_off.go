//go:build !byzantine

package node

import "github.com/tandem-consensus/tandem/smr"

// corruptState is the hook of the test-only corrupt-state behaviour
// (build tag byzantine, see state_byzantine_on.go). A correct build
// applies every entry as the log has it.
func (n *Node) corruptState() func(index uint64, p *smr.Prepared) *smr.Prepared { return nil }
