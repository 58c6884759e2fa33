package smr

import (
	"testing"

	"go.uber.org/goleak"
)

// Apply verifies the signatures of large dataset syncs on short-lived
// goroutines; none may outlive a call.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
