// Package smr is Tandem's replicated state machine: sessions, tools,
// resource subscriptions, the ACL, cluster config and shared datasets,
// driven by signed client envelopes that a consensus engine orders into a
// log.
//
// # Log entries
//
// The log carries Entries (MarshalBinary is the binary form). An Entry has a
// Kind and the leader's time:
//
//   - EntryCommand: a signed client envelope (the zero Kind; version 1 of
//     the binary form, unchanged since before entry kinds existed).
//   - EntryGenesis: the cluster's Genesis (admin keys, ResultWindow,
//     MaxCommandBytes). The genesis is replicated state, not per-node
//     configuration: a cluster starts from NewUninitialized on every
//     replica, and the first genesis entry applied initializes it; a later
//     one is CodeAlreadyInitialized. Until then every request is
//     CodeNotInitialized. The genesis is part of the canonical state, so the
//     hash covers it and snapshots carry it. New(g) builds the same state
//     directly, for tests and tools.
//   - EntryRestore: an administrator's restore of a snapshot (Restore),
//     signed as the admin HTTP request that carried it. It goes through the
//     log so that every replica replaces its state at the same index, and
//     the applied index keeps moving forwards. PrecheckRestore runs its
//     checks without changing anything.
//   - EntryEpochSwitch: the end of an epoch in auto mode (EpochSwitch).
//   - EntryBatch: 2 to MaxBatchEnvelopes client envelopes, executed in
//     order at the entry's index, each exactly as a command entry with the
//     entry's time would be, each with its own Result (ApplyPrepared
//     returns them all). The Raft engine batches concurrent proposals.
//
// Apply is Prepare (decoding and signatures: no lock, may run ahead of
// the log and in parallel) followed by ApplyPrepared (execution, in log
// order).
//
// # Requests
//
// A client encodes a Command (EncodeCommand: canonical JSON) and signs it
// with its Ed25519 key and a per-client seq (Sign); the signature covers
// Envelope.SignBytes, which carries a domain tag, the key, the seq and the
// command bytes. The engine wraps an envelope with the leader's time in a
// command Entry. Every replica verifies the client signature in Apply, so no
// node can forge or alter a command.
//
// # Exactly once
//
// For each client the state keeps the highest executed seq and, for the
// seqs in (highest-window, highest], the Result and the SHA-256 of the
// command bytes. A retained seq with the same bytes returns its stored
// Result with Duplicate set; with other bytes it is CodeSeqConflict; a seq at
// or below highest-window is CodeSeqTooOld, one above highest+window is
// CodeSeqTooFar. Any other seq executes once, so clients may pipeline and
// entries may arrive out of order within the window. A validly signed
// envelope of a known client consumes its seq even when the command is
// malformed or fails, so a retry gets the same answer. The stored Result is
// looked up right after the signature check, so a client revoked after
// executing a seq still gets that seq's Result on a retry.
//
// # Clients and permissions
//
// Clients are invited: a key is known while it has at least one allow rule
// in the ACL, or is an invited agent or an admin of at least one dataset;
// the genesis admin keys start with an admin allow rule. A command needs
// the permission of its op (RequiredPermission); an explicit deny of that
// permission refuses it, otherwise an allow of that permission or of admin
// grants it. The dataset ops invite_agent, revoke_agent and sync_dataset
// need no ACL permission but the dataset's own right instead (an admin of
// the dataset or the admin permission; an invited agent of the dataset), so
// a key known only as an agent can sync its datasets and nothing else. The
// last admin allow rule cannot be removed or turned into a deny
// (CodeLastAdmin).
//
// # Commands
//
// Sessions: register_session (session_id, optional metadata and ttl_ms; 0 =
// never expires; CodeAlreadyExists while the session lives), renew_session
// (expiry = clock + TTL, where ttl_ms > 0 replaces the session's TTL and an
// absent ttl_ms keeps it), unregister_session. Tools: register_tool
// (overwrites, reporting replaced), unregister_tool. Resources:
// subscribe_resource (idempotent), unsubscribe_resource (a resource without
// subscribers disappears). ACL: update_acl (subject, permission, allow |
// deny | remove). Config: set_config, delete_config. Datasets:
// create_dataset, invite_agent, revoke_agent, sync_dataset (below).
// Removing something that does not exist is CodeNotFound. Result.Value of a
// success is an Outcome (a SyncOutcome for sync_dataset).
//
// # Datasets (BFT Tiny Merge)
//
// A dataset has Cells cells of CellSize bytes, fixed at creation and
// bounded (MaxDatasetCells, MaxCellSize, MaxDatasetBytes, and
// MaxAllDatasetBytes over the cluster): its storage never grows. Each cell
// holds a global seq and exactly CellSize bytes (a fresh cell: 0 and zero
// bytes). create_dataset needs PermDatasetCreate (admin implies it); the
// creator becomes the dataset's first admin; the log index of the create
// entry is the dataset's Created, part of every agent signature
// (DatasetRef), so signatures cannot be replayed into another dataset.
// Dataset admins (and holders of admin) invite and revoke agents and
// admins; a revoked agent keeps its record, so re-inviting it cannot reset
// its counters.
//
// Agents sign, with their own keys, SeqStatements ("my highest local seq
// is L", L at most the dataset's MaxAgentSeqs) and DatasetChanges (local
// seq l, cell, global seq G, value). For each agent the dataset records the
// highest signed L, how many local seqs it has spent and the local seq of
// its last merged change. A sync_dataset command, sent by an invited agent,
// carries a DatasetSnapshot (EncodeDatasetSnapshot: strict, canonical)
// with statements and changes of any agents (relaying is allowed). The
// statements are checked first, then the changes, in the snapshot's
// canonical order; the first failing check rejects one of them with its
// reason and it changes nothing:
//
//	statement: not_invited | revoked, bad_signature, above_cap
//	change:    not_invited | revoked, bad_signature, cell_out_of_range,
//	           value_size (not exactly CellSize bytes), replayed (l not
//	           above the last merged local seq), seq_not_signed (l above
//	           the signed L), too_high (the raise G - g exceeds the step
//	           limit or the agent's signed unspent local seqs L - spent)
//
// A valid statement raises the recorded L. A valid change whose (G, value)
// is not greater than the cell's (CompareCells: global seq, then value
// bytewise; never the agent) loses the merge: it changes nothing and
// spends nothing. A winning change replaces the cell, spends G - g (0 on a
// tie won by value), records l and bumps the dataset's version. So the sum
// of the cells' global seqs equals what the agents spent, never more than
// agents x MaxAgentSeqs. MergeCell is the per-cell join. When agents have
// signed enough local seqs, the cells a replica ends with are the per-cell
// maximum of every change it was sent, whatever the order in which
// different agents' syncs arrive, as long as each agent's own changes
// arrive in local seq order; what each agent spent may depend on the order,
// which consensus makes the same on every replica.
//
// The SyncOutcome lists the positions of accepted and lost changes and the
// rejections with their reason codes (messages for the first
// MaxRejectionMessages only, so stored results stay small).
//
// # Determinism
//
// Apply is a pure function of the state and the entry: no wall clock, no
// randomness and no map-order dependence. Time comes from entries: the state
// clock is the maximum Entry.Time of the commands executed so far; genesis
// entries do not move it, and a restore keeps the later of the snapshot's
// clock and its own. The Raft engine trusts its leader's clock (crash
// faults only) and keeps the times it proposes monotonic; the BFT engine
// will have replicas refuse proposals whose time is too far from their own. Sessions
// with a TTL expire when the clock reaches their expiry; they are removed
// before the next command executes, in (expiry, id) order from an index, so
// expiry never scans all sessions.
//
// Stored Results are part of the state, so their messages are hashed.
// Every message Apply produces therefore comes from this package's own
// templates: no encoding/json, base64 or strconv error text, and untrusted
// strings rendered with strconv.QuoteToASCII, whose output does not depend
// on the Unicode tables of the Go release. Precheck and Query errors are not
// stored and follow the same style.
//
// Hash is the SHA-256 of the canonical binary encoding of the state (the
// genesis, sorted collections, integers only), without the applied index,
// so equal content hashes equal on every replica. Snapshot writes a
// versioned, hash-carrying header and that encoding; Restore (an engine
// installing a snapshot from its leader) checks both before it replaces the
// state and takes the snapshot's applied index, while a restore entry keeps
// its own index.
//
// # Concurrency
//
// A StateMachine is safe for concurrent use. Apply and Restore take a write
// lock; Precheck, PrecheckRestore, Query, QueryAt, Authorize, Hash,
// Snapshot, AppliedIndex, Initialized and Genesis take a read lock. QueryAt
// returns the applied index read under the same lock as the value.
// Signature verification and snapshot parsing in Apply run before the lock
// is taken, and so do the agent signature checks of a sync_dataset (on up
// to GOMAXPROCS goroutines, for the dataset as it stands under a read
// lock; execution repeats them under the write lock only if the dataset's
// identity changed in between).
package smr
