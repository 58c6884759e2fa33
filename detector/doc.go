// Package detector will watch Tandem's own peers for Byzantine behaviour:
// analyzers fed by both consensus engines (signature failures, equivocation,
// duplicate votes, log conflicts, selective omission, state divergence,
// vote latency), a per-node anomaly score with decay, and the evidence log
// (a 2P-BFT-Log replicated by gossip). See DESIGN invariants 7 and 8.
//
// Nothing is implemented yet; the package exists so that the layout of the
// module matches the architecture in docs/architecture.md.
package detector
