// Package sim runs HotStuff cores over a deterministic simulated network
// and clock, for tests.
//
// One goroutine drives everything; a seeded math/rand/v2 source makes every
// choice (delays, loss, duplication, delivery order, crash points), so a
// run is a pure function of its Config and a failing seed replays exactly.
// Messages travel encoded (types.EncodeMessage/DecodeMessage), so the wire
// codec is exercised and no two cores ever share a pointer.
//
// Faults: per-message delay (reordering), loss and duplication before
// StableAt; partitions over tick intervals; crashes with restarts from the
// persisted safety data (MemStore or FileStore), the committed log and,
// optionally, the block store; Byzantine members whose outgoing messages a
// Behavior rewrites (Silent, WithholdVotes, Equivocate, InvalidPayload,
// DoubleVote); Twins (several instances of one member, Config.Instances)
// with a custom Drop rule.
//
// Check verifies, after a run: each committed log is a parent chain from
// genesis; no two correct instances commit different blocks at one height
// (agreement, hence one total order); no command is committed twice; every
// evidence verifies and names only Byzantine or twinned members; and,
// optionally, liveness after the network stabilised.
//
// MACScheme replaces Ed25519 in bulk runs for speed (Config.Ed25519 turns
// real signatures back on). It is insecure by design and lives here, not in
// production code.
package sim
