//go:build !byzantine

package engine

import "github.com/tandem-consensus/tandem/consensus/hotstuff/core"

// misbehave is the hook of the test-only Byzantine behaviours (build tag
// byzantine, see byzantine_on.go). A correct build never misbehaves.
func (e *Engine) misbehave(core.Outbound) bool { return false }

// omitCommand is the hook of the omit-requests behaviour: a correct build
// queues every forwarded command.
func (e *Engine) omitCommand([]byte) bool { return false }
