// Package bftlog implements 2P-BFT-Log, the two-phase append-only log that
// Tandem nodes use for their signed evidence (DESIGN invariant 7): every
// node appends its attestations to its own log, replicas exchange
// frontiers, and a node that forks its log is caught with a proof anyone
// can check. It is a pure library: no goroutines, I/O or clocks, and only
// the standard library.
//
// # Messages
//
// A Message has an author (Ed25519 public key), prev (the author's previous
// message, or none), deps (messages of other authors, at most one per
// author, sorted by author key; each dep names the author it claims), a
// content, and a signature. Its ID is SHA-256 of a preimage made of the
// domain tag Domain and a canonical, length-prefixed encoding of every
// field but the signature; the signature is Ed25519 over that same
// preimage. The exact layout is documented on Message.
//
// The ID leaves the signature out on purpose: a fork proof must convince
// anyone who holds just the two messages. Two messages with the same author
// and prev and different IDs are two different statements, each signed by
// the author, which only the author can produce. If the ID covered the
// signature, one statement signed twice (an Ed25519 signer may use any
// nonce) would have two IDs and look like a fork without being one. Copies
// of one message with different signatures share an ID; a Store keeps the
// first copy whose signature verifies.
//
// MarshalBinary/DecodeMessage use the wire form: a version byte, the body,
// the signature. Decoding accepts only the canonical encoding, bounds every
// length by the input and by HardMaxDeps/HardMaxContent, and rejects
// trailing bytes.
//
// # Validation (Store.Add)
//
// A message is valid iff its signature verifies; it has no dep on its own
// author; every predecessor (prev and deps) was validated before it, which
// rules out cycles; prev is none or a message of the same author; each dep
// is a message of the author it names; and, our extra rule, a dep on author
// b never goes back: if an earlier message of the author's prev-chain
// depends on b at d', then d' ≤ d for the dep d on b of the new message (a
// message may omit b). Store.Add reports missing predecessors with
// ErrMissingDeps and the ids to fetch.
//
// A correctly signed message that breaks a rule is kept, one per author,
// as an InvalidProof with the predecessors that show the breach;
// VerifyInvalidProof re-checks it from the proof alone. Malformed bytes,
// bad signatures and oversized content are rejected without accusing
// anyone: they carry no claim a third party could verify.
//
// # Order, logs and frontiers
//
// On one author's messages, m1 ≤ m2 iff m1 is m2 or on m2's prev-chain
// (Store.LessEq); neither way means concurrent: the author forked.
// Store.LogPrefix is the last common message, and Store.ForkProof the
// first message of each branch after it: a ForkProof, checked by
// VerifyForkProof with nothing else.
//
// A Log is (author, last, forks). It grows while no fork is known; the
// first fork found makes it shrink for good: last becomes the earliest
// known fork point and forks a proof of a fork right after it. Store.Append,
// Store.Merge and Store.LogLessEq follow DESIGN exactly for last and phase;
// the proof kept is canonical (the two smallest-id first messages of the
// branches seen after last), so merges are commutative, associative and
// idempotent on the whole value and replicas that saw the same messages
// hold identical logs. A Frontier keeps one log per author, with Update,
// Merge, MergeLogs (a peer's frontier) and LessEq.
//
// # Using it
//
// A replica owns one Store and one Frontier. For every message received:
// Add it; on ErrMissingDeps fetch the listed ids (and add them first); on
// success Update the frontier. A peer's frontier arrives as Frontier.Logs;
// fetch what CheckLog reports unknown, then MergeLogs. To author a
// message, use Frontier.Deps for its deps, so that deps never regress and
// never point into a forked log. The detector reads
// Frontier.Equivocators (forks, with proofs) and Store.Invalid
// (invalid-message proofs).
//
// Bounds: Config caps content size, messages per author and authors; the
// frontier is O(authors). A message that builds on an invalid message gets
// ErrInvalidPredecessor if that message is the author's kept proof, and
// otherwise stays missing: the caller drops whatever waits on a
// predecessor that failed validation.
//
// Git form (DESIGN): a message maps to a commit whose parents are prev then
// deps, a log to branches <author>/last and <author>/forks/<last-id>, an
// invalid proof to <author>/invalid. Exporting evidence in that form is
// left to the detector.
package bftlog
