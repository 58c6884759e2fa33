// Package evidence defines Tandem's evidence record: a self-contained,
// re-verifiable statement that a member misbehaved (DESIGN invariants 7 and
// 8, STYLE principle 12). It is a pure library: no goroutines, clocks or
// I/O.
//
// # Kinds
//
// Irrefutable proofs hold messages only the offender could sign and that no
// correct node signs together:
//
//   - EquivocatingProposals, DoubleVote: HotStuff types.Evidence (two
//     proposals of one view, two votes of one view);
//   - InvalidClientSignature: a leader-signed payload — a HotStuff block or
//     a Raft entry with its ProposalAttestation — that fails
//     ValidateClientPayload (no correct leader proposes a request whose
//     client signature does not verify, DESIGN invariant 1);
//   - LogFork, InvalidMessage: a 2P-BFT-Log fork proof or invalid-message
//     proof (package detector/bftlog);
//   - LeaderEquivocation: two Raft ProposalAttestations for one (epoch,
//     term, seq) with different payload hashes. In Raft mode the leader
//     signs every entry it proposes (SignProposal) precisely so that this
//     is provable;
//   - CheckpointEquivocation: two checkpoint.Votes of one member for one
//     (statement kind, epoch, index) with different state hashes (the
//     state at an index is deterministic, so a correct member signs one).
//
// Statistical evidence is an Accusation: a member's signed report of a
// metric of another (vote or heartbeat latency p99, signature failures
// seen on the accused's channel, log conflicts, unsigned duplicate votes,
// selective omission, state divergence) with its value, epoch and time. It
// proves only who said it; package detector/score acts on accusations only
// when f+1 distinct members make them.
//
// # Verifying
//
// Verify(e, members) re-checks a record with nothing but the record and the
// member keys; its doc comment lists every check, and each failure is a
// *VerifyError naming the check (errors.As) and wrapping
// ErrInvalidEvidence. Whoever acts on evidence — the scorer, the quarantine
// — verifies it again; nobody acts on a peer's word.
//
// # Encoding
//
// Marshal/Unmarshal are the canonical binary form (documented on Marshal):
// versioned, length-prefixed, strict (trailing bytes, unknown kinds,
// over-limit lengths and non-canonical proof order are rejected), so a
// record that decodes re-encodes to the same bytes and has one ID
// (SHA-256 over TagEvidence and the encoding). The JSON form
// (MarshalJSON/UnmarshalJSON) adds readable details for operators and
// carries the binary form, which is all UnmarshalJSON trusts.
//
// Sign-bytes of the types defined here (ProposalAttestation, Accusation)
// start with NUL-terminated domain tags (TagRaftProposal, TagAccusation)
// distinct from every other signed object in Tandem, and are pinned by
// golden tests.
package evidence
