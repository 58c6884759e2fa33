package types

import "crypto/sha256"

// Domain tags. Each is NUL-terminated so that no tag is a prefix of another
// tag followed by data. Changing a tag is a protocol version change.
const (
	TagVote     = "tandem/hotstuff/v1/vote\x00"
	TagTimeout  = "tandem/hotstuff/v1/timeout\x00"
	TagProposal = "tandem/hotstuff/v1/proposal\x00"
	TagBlock    = "tandem/hotstuff/v1/block\x00"
	TagPayload  = "tandem/hotstuff/v1/payload\x00"
)

// VoteSignBytes are the bytes a vote for block in view signs.
func VoteSignBytes(epoch uint64, view View, block Hash) []byte {
	e := encoder{b: make([]byte, 0, len(TagVote)+8+8+32)}
	e.raw([]byte(TagVote))
	e.u64(epoch)
	e.u64(uint64(view))
	e.hash(block)
	return e.b
}

// TimeoutSignBytes are the bytes a timeout for view, carrying a high QC of
// view highQCView, signs.
func TimeoutSignBytes(epoch uint64, view, highQCView View) []byte {
	e := encoder{b: make([]byte, 0, len(TagTimeout)+8+8+8)}
	e.raw([]byte(TagTimeout))
	e.u64(epoch)
	e.u64(uint64(view))
	e.u64(uint64(highQCView))
	return e.b
}

// ProposalSignBytes are the bytes a proposer signs for its block of view.
func ProposalSignBytes(epoch uint64, view View, block Hash) []byte {
	e := encoder{b: make([]byte, 0, len(TagProposal)+8+8+32)}
	e.raw([]byte(TagProposal))
	e.u64(epoch)
	e.u64(uint64(view))
	e.hash(block)
	return e.b
}

// PayloadHash returns SHA-256 over the tag, the command count and each
// command with its length.
func PayloadHash(payload [][]byte) Hash {
	h := sha256.New()
	var e encoder
	e.raw([]byte(TagPayload))
	e.u32(uint32(len(payload)))
	h.Write(e.b)
	for _, c := range payload {
		var l encoder
		l.u32(uint32(len(c)))
		h.Write(l.b)
		h.Write(c)
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// CommandHash identifies one command (for de-duplication).
func CommandHash(cmd []byte) Hash { return sha256.Sum256(cmd) }

// Hash returns the block's identity: SHA-256 over the tag, parent hash,
// view, height, the canonical encoding of the justify QC, the proposer and
// the payload hash. The signature is not covered.
func (b *Block) Hash() Hash {
	qn := qcSize(b.Justify)
	e := encoder{b: make([]byte, 0, len(TagBlock)+32+8+8+4+qn+1+len(b.Proposer)+32)}
	e.raw([]byte(TagBlock))
	e.hash(b.Parent)
	e.u64(uint64(b.View))
	e.u64(b.Height)
	e.u32(uint32(qn))
	e.qc(b.Justify)
	e.id(b.Proposer)
	e.hash(PayloadHash(b.Payload))
	return sha256.Sum256(e.b)
}

// PayloadHash returns PayloadHash(b.Payload).
func (b *Block) PayloadHash() Hash { return PayloadHash(b.Payload) }
