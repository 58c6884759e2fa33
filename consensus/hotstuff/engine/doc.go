// Package engine is Tandem's HotStuff consensus engine: the shell that turns
// the pure chained-HotStuff core (consensus/hotstuff/core) into a running
// consensus.Engine over the peer port's mutual-TLS BFT protocol.
//
// # The loop
//
// One goroutine owns the core. It calls Tick every Config.Tick (the view
// timeouts are view_change_timeout and vote_timeout in ticks, through
// pacemaker.FromDurations), steps inbound messages, queues commands, and
// after each step handles the core's Ready in the order the core requires:
//
//  1. persist: the safety kernel has already fsynced its SafetyData before
//     anything it signed is in Ready; the loop writes the accepted blocks,
//     the newly committed blocks (with the log indexes of their entries)
//     and the QC certifying the last of them to the block store in one
//     fsynced bolt transaction;
//  2. send the messages;
//  3. apply the committed blocks to the state machine;
//  4. count events (evidence, alert, view changes);
//  5. Advance.
//
// # Storage (DataDir/hotstuff)
//
//	safety     SafetyData (safety.FileStore: two framed, CRC-checked
//	safety.2   copies, each overwritten in place and fsynced); the engine
//	           does not start when neither is valid
//	blocks.db  bolt: every accepted block, the committed chain by height
//	           with each block's log index range from the pruned horizon
//	           on, the root QC, the encoded size of the committed
//	           blocks it holds, and a state machine snapshot every
//	           SnapshotInterval entries
//
// A restarted replica restores the snapshot, replays the committed blocks
// above it through Apply (same indexes, same results), and restores the
// core from the last committed block, its QC and the uncommitted blocks
// (core.Restore). It then catches up by fetching blocks from its peers,
// which answer block requests from their block stores, so any gap above
// their pruned horizon can be fetched (up to the core's orphan limit, 16384
// blocks, per catch-up). Compact prunes the committed chain behind a stable
// checkpoint, and the engine prunes it on its own once the committed
// blocks pass Config.LogLimits.SizeBytes (prune.go); a replica that
// misses blocks its peers pruned starts from a transferred checkpoint
// (transfer.go).
//
// # Log entries
//
// Each command in a block is an encoded smr.Entry or a read marker. Log
// indexes are a running counter over the committed entries (markers take
// none), so every replica applies entry i at index i. The engine's
// types.Validator (entryValidator) is what a replica checks before voting
// for a proposal: entries decode, client (and restore admin) signatures
// verify, entry times are at most MaxClockSkew ahead of the local clock,
// and a genesis entry equals the replica's own.
//
// # Proposals, reads, view changes
//
// Any replica takes a proposal (Propose): it stamps the envelope with its
// clock, queues it in its core and forwards it to the leaders of the
// current and the next two views at once and, unless a proposal carried it
// within two ticks, to every peer, so whichever replica leads the next
// views orders it; the core drops duplicates by request (the envelope: one
// request taken by several replicas is ordered once). The caller waits
// until its own replica applies the request.
// Commands not committed within a view change timeout are forwarded again.
// ReadBarrier orders a read marker the same way and waits until it is
// applied: a linearizable read point on any replica, with no lease.
// TransferLeadership forces a view change here and asks every peer to do the
// same. The genesis entry (admin keys and limits) is queued by every fresh
// replica with time 0, so all replicas queue identical bytes.
//
// # Transport
//
// One long-lived outbound connection per peer (Network.DialBFT, redialled
// with backoff), each fed by a bounded queue that drops its oldest frames
// when full; inbound connections come from Network.BFTListener and are
// read by one goroutine each. A connection carries length-prefixed frames
// one way (see frame.go); the sender is the node ID of its mutual-TLS
// certificate, never a field of the message. Oversized frames close the
// connection; unknown or malformed frames are dropped; both are counted
// (Collector), never a panic. Client signatures of forwarded commands and
// of proposals are verified in the reader goroutines, so the loop mostly
// finds them in its verified cache.
//
// Membership is static for an epoch (ErrStaticCommittee).
package engine
