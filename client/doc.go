// Package client is the Go SDK of Tandem: it signs writes, keeps the
// client's sequence numbers, retries across the nodes of a cluster and
// reports every write's outcome truthfully.
//
// Build a client from values, not files (load the key and the TLS files
// however suits the program; the tandem CLI uses internal/identity):
//
//	cfg := client.DefaultConfig()
//	cfg.Endpoints = []string{"https://10.0.0.1:7001", "https://10.0.0.2:7001"}
//	cfg.Key = priv   // ed25519.PrivateKey, invited through the ACL
//	cfg.TLS = tlsCfg // cluster CA, client certificate
//	c, err := client.New(cfg)
//	...
//	res, err := c.RegisterTool(ctx, "search", json.RawMessage(`{"type":"object"}`))
//
// # Writes and their outcomes
//
// A write is one signed envelope {client key, seq, command, signature}
// (docs/api.md). Submit signs it once and sends the same bytes until a node
// answers definitively, moving to the next endpoint (or the one a leader
// hint names) with exponential backoff and jitter after a connection error,
// an attempt timeout or a 503 (while a node says it has no leader, the
// client watches the nodes' status and goes to the new leader as soon as
// one reports itself). The cluster executes a (client, seq) at most
// once and answers a repeat with the stored result (Result.Duplicate), so
// these retries cannot apply a command twice. Submit ends in exactly one of:
//
//   - success: the Result (a duplicate answer is a success);
//   - a definitive rejection: *APIError with the stable code;
//   - ErrOutcomeUnknown (in a *RetryError): some attempt may have reached the
//     leader and no answer came back, or a later attempt got an answer that
//     cannot tell whether the earlier one executed (seq_too_old: the seq fell
//     out of the cluster's result window; unknown_client). The write may or
//     may not be applied; it is never reported as either.
//     Resubmit(RetryError.Envelope), or SubmitAt with the same seq and
//     command from another process, is safe and finds out while the seq is
//     within the window;
//   - ErrUnavailable (in a *RetryError): no attempt can have been proposed
//     (every dial failed or every node said no_leader). Nothing was applied.
//
// # Sequence numbers
//
// Before its first write a client asks the cluster, linearizably, for the
// highest seq executed for its key and continues after it (Config.StartSeq
// skips that). Concurrent writes get distinct seqs and may be in flight
// together: the cluster keeps a window of results for that. A seq
// rejected before ordering is skipped, not reused; after a seq_conflict,
// seq_too_old or seq_too_far answer the client asks the cluster again
// before its next write. A call signs its command under a new seq only
// when no attempt of the call can have reached a node (every earlier
// attempt failed to connect or was told no_leader) and the seq was
// answered seq_conflict or seq_too_old; once an attempt may have been
// delivered, the call keeps its seq, so no command runs under two seqs.
// Two processes must not write with the same key at the same time.
//
// # Wire format
//
// Package client/wire holds the header names, error body, API-level error
// codes and response bodies that the SDK and the server share.
//
// # Datasets
//
// CreateDataset, InviteAgent, RevokeAgent, SyncDataset, GetDataset and
// ListDatasets are the typed calls of the dataset ops (docs/datasets.md).
// A Replica is an agent's offline copy of one dataset: SetAt signs changes
// and seq statements with the agent's key without contacting the cluster,
// Export and Import relay signed changes between agents, and Sync pushes
// the pending changes (in syncs that fit the command size limit) and pulls
// the merged state with a linearizable read. Save and OpenReplica keep it
// in a versioned JSON file (the key is never written).
//
// # Reads, cluster and admin requests
//
// Query and the typed Get/List reads are linearizable unless Stale is
// given, and are retried across endpoints (they change nothing). Status,
// StatusAll and Members report the cluster. Admin requests (TransferLeader,
// AddMember, RemoveMember, SnapshotSave, SnapshotRestore) are signed with
// the Tandem-Key/Tandem-Time/Tandem-Signature headers and need the admin
// permission; the ones that change the cluster are not resent once an
// attempt may have reached a node, and end with ErrOutcomeUnknown instead.
//
// # Batching
//
// Clients that share a Batcher (Config.Batcher) send their signed writes to
// each node in batches (POST /v1/submit/batch): a write leaves at once
// while fewer than two batches are on their way to its node, and the
// writes that arrive meanwhile leave together in the next. Each write is
// answered, retried and reported exactly as if it had gone alone; in bft
// mode a replica signs the replies of a batch once (a hash tree), and the
// client checks one signature per batch. BatcherStats reports how long
// writes waited in the queues and how long batch requests took; a Timings
// shared by Clients (Config.Timings) records how long bft writes waited
// for their first signed reply and then for the rest of the f+1.
//
// A Client is safe for concurrent use. Its only goroutines are the
// requests of decided bft calls still on their way (they are left to
// finish, not cancelled, so that their connections stay open); Close ends
// them and releases idle connections. A Batcher has goroutines while
// batches are on their way; close it after the Clients that use it.
package client
