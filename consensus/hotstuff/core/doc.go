// Package core is the HotStuff state machine of one replica, written in the
// style of etcd-raft's RawNode: inputs go in (Step for messages, Tick for
// time, Propose for commands, SetQuarantined, ForceViewChange), and the work
// comes out as a Ready batch (messages to send, blocks to persist, committed
// blocks to apply, events) that the shell acknowledges with Advance. The
// core starts no goroutine, reads no clock, draws no random number and does
// no I/O except through the safety kernel's Store, so every run is a pure
// function of its inputs.
//
// # Protocol
//
// Chained HotStuff in its event-driven form, with a pluggable Variant:
//
//   - A block carries a QC for its parent (Justify). The leader of view v
//     proposes as soon as it holds a QC for v−1 (pipelining), or a TC for
//     v−1 (it then attaches the TC and extends the highest QC it knows,
//     which is at least the TC's). Up to MaxBatch queued commands go in a
//     block, skipping commands already in an uncommitted ancestor.
//   - A replica votes (through safety.Rules, the only signer) for the
//     first valid proposal of its current view from the view's leader whose
//     commands all pass the Validator, and sends the vote to the leader of
//     v+1. Every replica collects the votes it receives; Quorum() votes for
//     one block form a QC.
//   - A new QC raises the high QC, runs the CommitRule (3-chain or 2-chain)
//     and moves the replica to view qc.View+1.
//   - Pacemaker: if a view makes no progress for its (backed-off) duration,
//     the replica signs a Timeout carrying its high QC and broadcasts it,
//     together with its vote of that view (so the QC can still form if the
//     next leader is down). Quorum() timeouts for a view form a TC, which
//     moves replicas to the next view. f+1 timeouts for the current view make
//     a replica time out at once. Timeouts are re-sent every ResendInterval
//     ticks while the view does not change.
//   - Suspicion: when a view times out, the member whose turn it was (the
//     next leader, which collects the votes, if this replica voted; else the
//     view's leader) is suspected if nothing at all came from it during the
//     view. Votes it is to collect are then broadcast, so every replica
//     forms the QC itself, and a view it leads that was entered through a
//     QC times out at once. Any message from it clears the suspicion. A
//     crashed member so costs one view timeout, not one per view it has a
//     part in; what replicas sign does not change.
//   - Sync: blocks whose ancestors are missing are held while the
//     ancestors are fetched (BlockRequest/BlockResponse, authenticated by
//     hash); a replica that sees a peer lagging sends it SyncInfo (high QC,
//     TC).
//
// # Evidence
//
// Two different blocks signed by one proposer for one view, two votes of
// one member in one view for different blocks, and a signed block with a
// command the Validator rejects are reported as EventEvidence carrying the
// signed messages (types.Evidence; verify with Evidence.Verify). A block
// with an invalid command is not voted for.
//
// # Shell contract
//
// See Ready for the order of persisting, sending and applying. Safety data
// is made durable by the safety kernel before any vote, timeout or proposal
// is put into Ready. Blocks in Ready.Blocks should be persisted before the
// messages are sent, so that a restarted replica can serve and extend them
// (Restore); losing them costs only re-fetching, never safety.
package core
