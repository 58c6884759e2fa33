// Package detector is the root of Tandem's Byzantine detector: it watches
// the cluster's own peers (DESIGN invariants 7–9). The work is split into
// pure subpackages:
//
//	bftlog/     2P-BFT-Log: every node's signed attestation log, its
//	            frontier, fork proofs and invalid-message proofs
//	evidence/   the evidence record: irrefutable proofs (HotStuff
//	            equivocation and double votes, leader-signed invalid client
//	            signatures, 2P-BFT-Log forks and invalid messages, Raft
//	            leader equivocation) and signed accusations; Verify, codecs
//	score/      per-node anomaly score with decay, cluster threat level,
//	            and the cluster-wide decision rule (a proof, or f+1
//	            distinct accusers)
//	gitexport/  the 2P-BFT-Log evidence as a Git repository that plain
//	            git log / git merge-base can audit
//
// Package quarantine (top level) acts on the decisions. The analyzers that
// turn engine events into evidence, and the gossip that replicates the
// attestation logs, live with the node assembly. docs/detector.md holds the
// formula and the safety argument.
package detector
