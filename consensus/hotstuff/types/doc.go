// Package types holds the values the HotStuff core exchanges and stores:
// blocks, quorum certificates (QC), timeout certificates (TC), votes,
// timeouts, proposals, block-sync and view-sync messages, evidence of
// misbehaviour, and the committee that verifies their signatures.
//
// # Canonical bytes
//
// Every signature covers canonical sign-bytes that begin with a domain tag
// naming the message kind and the protocol version ("tandem/hotstuff/v1/vote"
// and so on, NUL-terminated), followed by the committee's epoch and
// fixed-width big-endian fields. A signature made for one kind of message can
// therefore never be replayed as another kind, nor in another epoch:
//
//	vote:     tag | epoch u64 | view u64 | block hash [32]
//	timeout:  tag | epoch u64 | view u64 | high QC view u64
//	proposal: tag | epoch u64 | view u64 | block hash [32]
//
// A block's hash is SHA-256 over a tag, the parent hash, view, height, the
// canonical encoding of its justify QC, the proposer and the payload hash
// (SHA-256 over the length-prefixed commands). The proposer's signature is
// carried with the block but is not part of its hash.
//
// # Wire encoding
//
// EncodeMessage / DecodeMessage use a versioned binary format: one version
// byte, one type byte, then the body. Decoders are strict: they reject
// unknown versions and types, trailing bytes, lengths beyond the input or the
// Max* limits, and signature lists that are not sorted by signer with
// distinct signers. So a message that decodes re-encodes to the same bytes,
// and a decoder never allocates more than its input justifies. Every decode
// failure wraps ErrMalformed.
//
// # Verification
//
// Committee verifies votes, QCs, TCs, timeouts and proposer signatures. A
// QC needs Quorum() = n − f signatures (f = ⌊(n−1)/3⌋) from distinct
// members over the same vote sign-bytes; duplicate signers, non-members, bad
// signatures and too few signatures are rejected with errors that wrap the
// sentinels of this package. QCCache memoizes successful QC/TC checks for a
// single-threaded caller.
//
// Values of this package are plain data. They are not safe for concurrent
// mutation; treat a value as immutable once it has been signed or hashed.
package types
