//go:build !byzantine

package main

// byzantineBuild: a correct build has no Byzantine behaviours (they exist
// only with -tags byzantine), so `tandem dev --byzantine` refuses to run.
const byzantineBuild = false
