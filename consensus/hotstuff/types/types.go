package types

import (
	"encoding/hex"
	"fmt"
)

// NodeID names a committee member. It is the node ID of the cluster
// configuration (and of the node's TLS certificate).
type NodeID string

// View is a HotStuff view (round) number. View 0 belongs to the genesis
// block; the first proposal is made in view 1.
type View uint64

// Hash is a SHA-256 digest.
type Hash [32]byte

// IsZero reports whether h is all zero bytes.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns the first eight bytes of h in hex, enough to tell blocks
// apart in logs.
func (h Hash) String() string { return hex.EncodeToString(h[:8]) }

// PartialSig is one member's signature inside a certificate.
type PartialSig struct {
	Signer NodeID
	Sig    []byte
}

// QC is a quorum certificate: Quorum() votes from distinct members for the
// block Block in view View. Sigs is sorted by Signer (strictly ascending).
//
// The genesis QC certifies the genesis block in view 0 and carries no
// signatures; Committee.VerifyQC accepts it only for the committee's genesis
// hash.
type QC struct {
	View  View
	Block Hash
	Sigs  []PartialSig
}

// IsZero reports whether qc is the zero value (no certificate at all).
func (qc QC) IsZero() bool { return qc.View == 0 && qc.Block.IsZero() && len(qc.Sigs) == 0 }

// Signers returns the signer IDs in qc, in order.
func (qc QC) Signers() []NodeID {
	out := make([]NodeID, len(qc.Sigs))
	for i, s := range qc.Sigs {
		out[i] = s.Signer
	}
	return out
}

func (qc QC) String() string {
	return fmt.Sprintf("QC{view=%d block=%s signers=%d}", qc.View, qc.Block, len(qc.Sigs))
}

// TimeoutSig is one member's signed timeout inside a TC: the signature
// covers TimeoutSignBytes(epoch, tc.View, HighQCView).
type TimeoutSig struct {
	Signer     NodeID
	HighQCView View
	Sig        []byte
}

// TC is a timeout certificate: Quorum() signed timeouts from distinct members
// for view View. HighQC is the highest QC among those timeouts; its view
// equals the largest HighQCView in Sigs. Sigs is sorted by Signer.
type TC struct {
	View   View
	HighQC QC
	Sigs   []TimeoutSig
}

func (tc *TC) String() string {
	if tc == nil {
		return "TC{}"
	}
	return fmt.Sprintf("TC{view=%d highQC=%d signers=%d}", tc.View, tc.HighQC.View, len(tc.Sigs))
}

// Block is a node of the HotStuff chain. Justify certifies the parent:
// Justify.Block == Parent for every block but genesis. Height is the parent's
// height plus one. Payload is an opaque batch of commands.
//
// Sig is the proposer's signature over ProposalSignBytes(epoch, View,
// Hash()); it is carried with the block (so a block can be relayed and still
// be attributed to its proposer) but is not part of Hash.
type Block struct {
	Parent   Hash
	View     View
	Height   uint64
	Justify  QC
	Proposer NodeID
	Payload  [][]byte
	Sig      []byte
}

func (b *Block) String() string {
	if b == nil {
		return "Block{}"
	}
	return fmt.Sprintf("Block{view=%d height=%d proposer=%s cmds=%d justify=%d}",
		b.View, b.Height, b.Proposer, len(b.Payload), b.Justify.View)
}

// NewGenesis returns the genesis block of an epoch. State (for example the
// hash of the epoch's genesis checkpoint certificate) makes genesis blocks
// of different epochs or clusters distinct; it may be nil. The genesis block
// has view 0, height 0, no parent, no proposer and no signature.
func NewGenesis(state []byte) *Block {
	g := &Block{}
	if state != nil {
		g.Payload = [][]byte{append([]byte(nil), state...)}
	}
	return g
}

// GenesisQC returns the signature-less QC that certifies genesis.
func GenesisQC(genesis Hash) QC { return QC{View: 0, Block: genesis} }

// Vote is a member's signature for a block in a view: the signature covers
// VoteSignBytes(epoch, View, Block).
type Vote struct {
	View  View
	Block Hash
	Voter NodeID
	Sig   []byte
}

func (v *Vote) String() string {
	return fmt.Sprintf("Vote{view=%d block=%s voter=%s}", v.View, v.Block, v.Voter)
}

// Timeout is a member's signed statement that it gives up on view View.
// The signature covers TimeoutSignBytes(epoch, View, HighQC.View). HighQC is
// the highest QC the sender knows. LastTC, when present, is the TC that
// brought the sender into View (a TC for View−1); it is not signed by the
// sender and is verified on its own.
type Timeout struct {
	View   View
	HighQC QC
	Sender NodeID
	Sig    []byte
	LastTC *TC
}

func (t *Timeout) String() string {
	return fmt.Sprintf("Timeout{view=%d highQC=%d sender=%s}", t.View, t.HighQC.View, t.Sender)
}

// MsgType identifies a message on the wire.
type MsgType uint8

// Message types. The numbers are part of the wire format.
const (
	MsgProposal      MsgType = 1
	MsgVote          MsgType = 2
	MsgTimeout       MsgType = 3
	MsgBlockRequest  MsgType = 4
	MsgBlockResponse MsgType = 5
	MsgSync          MsgType = 6
)

func (t MsgType) String() string {
	switch t {
	case MsgProposal:
		return "proposal"
	case MsgVote:
		return "vote"
	case MsgTimeout:
		return "timeout"
	case MsgBlockRequest:
		return "block-request"
	case MsgBlockResponse:
		return "block-response"
	case MsgSync:
		return "sync"
	default:
		return fmt.Sprintf("msgtype(%d)", uint8(t))
	}
}

// Message is one of *Proposal, *Vote, *Timeout, *BlockRequest,
// *BlockResponse and *SyncInfo.
type Message interface {
	MsgType() MsgType
}

// Proposal is a leader's block for its view. TC, when present, is the TC for
// Block.View−1 that entitled the leader to propose without a QC for the
// previous view.
type Proposal struct {
	Block *Block
	TC    *TC
}

// BlockRequest asks a peer for the block with hash Hash and up to Count−1 of
// its ancestors (newest first).
type BlockRequest struct {
	Hash  Hash
	Count uint16
}

// BlockResponse carries blocks asked for by a BlockRequest, newest first.
// Blocks are authenticated by the requester: a block is accepted only if its
// hash was wanted (certified by a QC or named as a parent of a wanted block).
type BlockResponse struct {
	Blocks []*Block
}

// SyncInfo tells a lagging peer about the sender's highest QC and, when
// present, the TC for the view before the sender's current view.
type SyncInfo struct {
	HighQC QC
	TC     *TC
}

// MsgType implementations.
func (*Proposal) MsgType() MsgType      { return MsgProposal }
func (*Vote) MsgType() MsgType          { return MsgVote }
func (*Timeout) MsgType() MsgType       { return MsgTimeout }
func (*BlockRequest) MsgType() MsgType  { return MsgBlockRequest }
func (*BlockResponse) MsgType() MsgType { return MsgBlockResponse }
func (*SyncInfo) MsgType() MsgType      { return MsgSync }

// Validator checks one command of a proposal's payload. The real engine
// verifies the client's envelope signature here. Validate must be
// deterministic: every correct replica must reach the same verdict on the
// same bytes, because an invalid command is reported as evidence against the
// leader.
type Validator interface {
	Validate(cmd []byte) error
}

// ValidatorFunc adapts a function to Validator.
type ValidatorFunc func(cmd []byte) error

// Validate calls f(cmd).
func (f ValidatorFunc) Validate(cmd []byte) error { return f(cmd) }

// AcceptAll is a Validator that accepts every command.
type AcceptAll struct{}

// Validate returns nil.
func (AcceptAll) Validate([]byte) error { return nil }
