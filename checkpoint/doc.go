// Package checkpoint holds the signed checkpoints of DESIGN invariants 4,
// 5, 6, 10 and 12: CHECKPOINT(epoch, index, state hash) for compaction and
// state transfer, and HANDOFF(new epoch, index, state hash, mode, members)
// for the genesis of an epoch when the cluster changes engine. A statement
// signed by a quorum of distinct members (Committee.Quorum: n − ⌊(n−1)/3⌋
// for n ≥ 4, a majority for n ≤ 3) is stable.
//
// The package is a library: it signs, verifies, collects, stores and
// transfers; the node decides when to sign and what to install.
//
//   - Statement, Sign, Vote.Verify: what a member signs and its signature.
//   - Collector: gathers votes, returns the certificate once a statement
//     reaches a quorum of members that are not quarantined, reports
//     equivocation as a *ConflictError and, when the caller allows it,
//     certifies a hand-over by the fallback (Certify).
//   - Certificate.Verify: valid signatures of distinct members over the
//     same statement, enough for the certificate's Form: a quorum
//     (FormQuorum), or for a hand-over whose quorum did not form in time,
//     Committee.FallbackThreshold members (FormFallback: f+1 once the
//     faulty members are quarantined; DESIGN invariant 10). Signatures of
//     quarantined members never count. Committee.FallbackThreshold argues
//     why two conflicting certificates never both verify at correct nodes.
//   - Store: the newest two stable checkpoints (certificate + snapshot) on
//     disk, fsynced, with fallback past a corrupt newest pair.
//   - NewHandler, Fetch: state transfer over HTTP; Fetch returns nothing
//     that has not been verified against the committee and the snapshot's
//     own checks (smr.SnapshotInfo).
//
// # Formats
//
// All integers are big-endian. An ID is a member ID of 1..255 bytes,
// written as len (uint8) || bytes. Every format below is pinned by golden
// files in testdata/; changing one is a protocol version change.
//
// Statement body:
//
//	kind (uint8: 1 checkpoint, 2 handoff) || epoch (uint64) ||
//	index (uint64) || state hash (32) || mode (uint8 len || bytes) ||
//	member count (uint16) || member IDs
//
// A checkpoint has an empty mode and no members; a handoff has mode "cft"
// or "bft" and 1..256 sorted, distinct members (at least 4 for "bft").
//
// Sign bytes (what Ed25519 signs), and the statement digest (SHA-256 of
// them):
//
//	"tandem/checkpoint/v1\x00" || statement body
//
// Vote:
//
//	"TCKV" || version (uint8, 1) || statement body || signer ID ||
//	signature (64)
//
// Certificate (signatures sorted by signer, signers distinct); a quorum
// certificate in version 1, any other form in version 2:
//
//	"TCKC" || version (uint8, 1) || statement body ||
//	signature count (uint16) || count × (signer ID || signature (64))
//
//	"TCKC" || version (uint8, 2) || form (uint8: 1 fallback) ||
//	statement body || signature count (uint16) || count × (signer ID ||
//	signature (64))
//
// A quorum certificate is never written in version 2, so every
// certificate has one encoding, and the version 1 files and peers of
// before version 2 keep working. The form is not signed: the signatures
// are the members' votes over the statement, and Verify checks that they
// meet the threshold the form claims.
//
// Decoders accept only this canonical form (a valid statement, sorted
// lists, no trailing bytes), so a decoded value re-encodes to the same
// bytes, and they never allocate for a length field beyond the bytes that
// follow it. They do not check signatures: Verify does.
//
// State transfer body (GET <peer URL>?min_index=N; 200 with this body when
// the peer's latest stable checkpoint has index ≥ N, 404 otherwise):
//
//	"TCKT" || version (uint8, 1) || certificate length (uint32) ||
//	certificate || snapshot length (uint64) || snapshot
//
// Store files, ckpt-<seq>.cert and ckpt-<seq>.snap with seq a 20-digit
// counter, each hold one frame:
//
//	"TCKF" || version (uint8, 1) || content type (uint8: 1 cert, 2 snapshot) ||
//	length (uint64) || content || CRC-32C (Castagnoli) of all before (uint32)
//
// The JSON forms (status and admin output) are described in json.go: hex
// for hashes and signatures, the kind by name.
package checkpoint
