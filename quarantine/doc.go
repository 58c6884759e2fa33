// Package quarantine will act on the detector's verified evidence: a
// quarantined node is skipped as leader, its consensus messages dropped and
// it is removed from the Raft voters, until an operator lifts it. See DESIGN
// invariant 9.
//
// Nothing is implemented yet; the package exists so that the layout of the
// module matches the architecture in docs/architecture.md.
package quarantine
