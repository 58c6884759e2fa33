//go:build byzantine

package main

// byzantineBuild: this binary was built with -tags byzantine, so its nodes
// carry the Byzantine behaviours of the detector tests and `tandem dev
// --byzantine` can switch them on.
const byzantineBuild = true
