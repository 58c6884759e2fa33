//go:build !unix

package raftengine

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
