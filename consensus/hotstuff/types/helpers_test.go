package types

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
)

// fixture is a 4-member Ed25519 committee with deterministic keys.
type fixture struct {
	c       *Committee
	genesis *Block
	signers map[NodeID]*Ed25519Signer
	ids     []NodeID
}

func newFixture(t testing.TB, n int, epoch uint64) *fixture {
	t.Helper()
	fx := &fixture{genesis: NewGenesis([]byte("test")), signers: map[NodeID]*Ed25519Signer{}}
	var members []Member
	for i := range n {
		id := NodeID(fmt.Sprintf("n%d", i))
		seed := sha256.Sum256([]byte("types-test/" + id))
		priv := ed25519.NewKeyFromSeed(seed[:])
		fx.signers[id] = NewEd25519Signer(id, priv)
		fx.ids = append(fx.ids, id)
		members = append(members, Member{ID: id, PublicKey: priv.Public().(ed25519.PublicKey)})
	}
	c, err := NewCommittee(CommitteeConfig{Epoch: epoch, Members: members, Genesis: fx.genesis.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	fx.c = c
	return fx
}

func (fx *fixture) sign(id NodeID, msg []byte) []byte {
	s, err := fx.signers[id].Sign(msg)
	if err != nil {
		panic(err)
	}
	return s
}

func (fx *fixture) vote(id NodeID, view View, block Hash) *Vote {
	return &Vote{View: view, Block: block, Voter: id, Sig: fx.sign(id, VoteSignBytes(fx.c.Epoch(), view, block))}
}

// qc returns a QC for block in view signed by signers (sorted).
func (fx *fixture) qc(view View, block Hash, signers ...NodeID) QC {
	slices.Sort(signers)
	qc := QC{View: view, Block: block}
	for _, id := range signers {
		qc.Sigs = append(qc.Sigs, PartialSig{Signer: id, Sig: fx.vote(id, view, block).Sig})
	}
	return qc
}

func (fx *fixture) timeout(id NodeID, view View, high QC) *Timeout {
	return &Timeout{View: view, HighQC: high, Sender: id, Sig: fx.sign(id, TimeoutSignBytes(fx.c.Epoch(), view, high.View))}
}

// tc builds a TC for view from timeouts carrying highs[i] for signers[i].
func (fx *fixture) tc(view View, signers []NodeID, highs []QC) *TC {
	tc := &TC{View: view}
	type pair struct {
		id NodeID
		qc QC
	}
	var ps []pair
	for i, id := range signers {
		ps = append(ps, pair{id, highs[i]})
	}
	slices.SortFunc(ps, func(a, b pair) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	for _, p := range ps {
		t := fx.timeout(p.id, view, p.qc)
		tc.Sigs = append(tc.Sigs, TimeoutSig{Signer: p.id, HighQCView: p.qc.View, Sig: t.Sig})
		if p.qc.View >= tc.HighQC.View {
			tc.HighQC = p.qc
		}
	}
	return tc
}

// block returns a signed block on parent (certified by justify).
func (fx *fixture) block(parent *Block, justify QC, view View, proposer NodeID, cmds ...string) *Block {
	b := &Block{Parent: parent.Hash(), View: view, Height: parent.Height + 1, Justify: justify, Proposer: proposer}
	for _, c := range cmds {
		b.Payload = append(b.Payload, []byte(c))
	}
	b.Sig = fx.sign(proposer, ProposalSignBytes(fx.c.Epoch(), view, b.Hash()))
	return b
}
