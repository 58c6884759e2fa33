// Package raftengine is Tandem's crash-fault-tolerant consensus engine: a
// thin adapter that makes hashicorp/raft satisfy consensus.Engine and
// consensus.MembershipChanger.
//
// # What it wires
//
//   - Storage: one raft-boltdb/v2 file, <DataDir>/raft/raft.db, serves as
//     both LogStore (behind a raft.LogCache) and StableStore; snapshots go to
//     a FileSnapshotStore in <DataDir>/raft. A raft.db that is not a valid
//     bolt database makes New fail with ErrCorruptLogStore naming the file;
//     the file is never deleted or reset.
//   - Transport: raft.NetworkTransport over a raft.StreamLayer (in
//     production the mutual-TLS layer of internal/transport), advertising
//     Config.Advertise; tests may pass any raft.Transport. With
//     Config.OnPeerRPC an inspector sits between the transport and Raft
//     (inspect.go): one goroutine hands Raft every RPC unchanged and in
//     order, after reporting committed entries an AppendEntries rewrites
//     and real votes asked for while a leader is alive. The inspector, like
//     the byzantine build's equivocating transport, offers the pre-vote RPC
//     exactly when the wrapped transport does (only disrupt-elections hides
//     it, on purpose).
//   - State machine: the FSM is a raft.BatchingFSM. For each batch of
//     committed entries it first runs the checks that need an entry's bytes
//     alone, on up to GOMAXPROCS goroutines: the leader attestation's
//     signature and, when the state machine is a Preparer, Prepare
//     (decoding and client signatures); then, in log order, it finishes the
//     attestation checks and applies each entry, returning its
//     []smr.Result (one per envelope of a batch entry) as the response;
//     snapshots are StateMachine.Snapshot bytes.
//   - Logs: hashicorp's hclog output goes to log/slog (internal/logging).
//   - Metrics: SetupMetrics routes raft's go-metrics to Prometheus (process
//     global, once); Engine.Collector adds per-engine gauges.
//
// # Proposals and reads
//
// Propose queues the envelope for the engine's proposer goroutine, which
// takes every proposal waiting (up to 512 envelopes or about 1 MiB), wraps
// them in one smr.Entry with the leader's time (never below the previous
// proposal's time on this node) — a command entry for one, a batch entry
// for several — signs one attestation and appends it through Raft without
// waiting for the previous entry to commit. Under load, the proposals that
// arrive while Raft writes one entry form the next: the leader signs, and
// every replica stores and checks, one entry for many writes, and the
// client signatures of a batch are verified as parallel batches. A lone
// proposal is not delayed. Errors follow consensus.Engine: *consensus.NotLeaderError when this
// node cannot order entries (nothing was appended), consensus.ErrOutcomeUnknown
// when the entry may still commit, ErrNotEnqueued when the leader could not
// even queue the entry in time (nothing appended; retry), and
// consensus.ErrStopped after Stop.
//
// ReadBarrier is linearizable without leases: it appends a Raft barrier
// entry, which commits only with a quorum in the leader's current term and
// completes only after the FSM has applied everything before it. Concurrent
// callers share barriers: a caller joins the next barrier that starts after
// its call, so N concurrent reads cost about two barriers.
//
// # Snapshots
//
// SaveSnapshot writes a linearizable copy of the state (ReadBarrier, then
// StateMachine.Snapshot). Restoring one is an ordinary log entry
// (ProposeRestore): every replica verifies the admin's signature and
// replaces its state at the same index, so the applied index never goes
// backwards and an acknowledged restore is as durable as any write.
// raft.Restore is not used: it is leader-local, and a restore acknowledged
// by it can be lost if the leader fails before followers install it.
//
// All methods of Engine are safe for concurrent use.
package raftengine
