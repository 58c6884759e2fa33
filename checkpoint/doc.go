// Package checkpoint will hold signed checkpoints — CHECKPOINT(epoch,
// index, state hash) signed by a quorum — used for compaction, state
// transfer and the hand-over between consensus engines. See DESIGN
// invariant 12.
//
// Nothing is implemented yet; the package exists so that the layout of the
// module matches the architecture in docs/architecture.md.
package checkpoint
