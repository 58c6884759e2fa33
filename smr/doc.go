// Package smr is Tandem's replicated state machine: sessions, tools,
// resource subscriptions, the ACL and cluster config, driven by signed
// client envelopes that a consensus engine orders into a log.
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
// in the ACL; the genesis admin keys start with an admin allow rule. A
// command needs the permission of its op (RequiredPermission); an explicit
// deny of that permission refuses it, otherwise an allow of that permission
// or of admin grants it. The last admin allow rule cannot be removed or
// turned into a deny (CodeLastAdmin).
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
// deny | remove). Config: set_config, delete_config. Removing something
// that does not exist is CodeNotFound. Result.Value of a success is an
// Outcome.
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
// is taken.
package smr
