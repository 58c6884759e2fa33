// Package hotstuff holds Tandem's Byzantine-fault-tolerant engine: the pure
// protocol in the subpackages, and the shell (engine/) that owns the
// goroutine, clock, transport and block store and drives the core to
// satisfy consensus.Engine (design invariant 3). This package itself holds
// only this overview.
//
// # Subpackages
//
//	types/          blocks, QC, TC, votes, timeouts, messages, evidence;
//	                canonical sign-bytes with domain tags; strict binary
//	                codecs; Committee (quorum arithmetic, signature checks)
//	safety/         the only signer: voting rules (ThreeChain, TwoChain),
//	                SafetyData persisted through Store (FileStore: framed,
//	                CRC-checked, fsynced) before anything signed leaves
//	blocktree/      blocks above the last committed one; pruning
//	pacemaker/      view timeouts in ticks, backoff Δ·2^k, alert
//	leaderrotation/ RoundRobin (skips quarantined), Reputation, Fixed
//	core/           the state machine: Step, Tick, Propose, SetQuarantined,
//	                ForceViewChange in; Ready/Advance out
//	sim/            deterministic simulated network and clock for tests
//	twins/          Twins scenarios (two instances per identity), JSON
//	engine/         the shell: loop, block store (bolt), BFT transport over
//	                the peer port, entry validator, metrics
//
// # What the shell must do
//
//   - Own one core.Core per epoch, on one goroutine; call Tick at a fixed
//     rate (pacemaker.FromDurations maps view_change_timeout, vote_timeout
//     and max_view_change_retries to ticks).
//   - Handle each Ready in order: persist Ready.Blocks (block WAL), send
//     Ready.Messages (To "" = every other member) over mutual TLS, apply
//     Ready.Committed to the state machine (decoding each payload command as
//     an smr.Envelope and verifying its client signature; the same check is
//     the core's types.Validator), hand evidence events to the detector,
//     then Advance.
//   - Keep the safety file (safety.FileStore) and refuse to start on a
//     safety.CorruptionError; restart a core with core.Restore from the
//     block WAL and the committed log.
//   - Feed quarantine decisions to SetQuarantined on every replica, and
//     operator view changes to ForceViewChange.
//   - Answer clients (f+1 matching signed replies in BFT mode), serve
//     ReadBarrier through the log, and do state transfer from checkpoints
//     when a peer is behind the committed blocks peers still retain.
//
// engine/ does all of this except: it counts and logs evidence events but
// does not yet hand them to the detector, nothing calls SetQuarantined yet,
// replies are not signed yet, and there is no state transfer (peers serve
// every committed block from their block stores instead).
package hotstuff
