//go:build !byzantine

package raftengine

import "github.com/hashicorp/raft"

// misbehaveTransport is the hook of the test-only Byzantine behaviours
// (build tag byzantine, see byzantine_on.go). A correct build hands Raft
// its transport unchanged.
func (e *Engine) misbehaveTransport(t raft.Transport) raft.Transport { return t }

// misbehave starts the test-only behaviours that run beside Raft; a
// correct build has none.
func (e *Engine) misbehave() {}

// dropsEpochSwitch is the hook of the test-only block-switch behaviour: a
// correct build proposes every epoch switch it is asked to.
func (e *Engine) dropsEpochSwitch() bool { return false }
