//go:build !byzantine

package node

import "testing"

// TestDefaultStateIgnoresCorruptState: without the byzantine build tag the
// state machine has no tamper hook, whatever TANDEM_BYZANTINE says (a
// byzantine build returns one).
func TestDefaultStateIgnoresCorruptState(t *testing.T) {
	t.Setenv("TANDEM_BYZANTINE", "corrupt-state")
	if (&Node{}).corruptState() != nil {
		t.Fatal("the default build corrupts its state")
	}
}
