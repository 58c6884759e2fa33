package safety

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

type fixture struct {
	t       testing.TB
	c       *types.Committee
	genesis *types.Block
	signers map[types.NodeID]types.Signer
	blocks  map[string]*types.Block
	qcs     map[string]types.QC
}

func newFixture(t testing.TB) *fixture {
	fx := &fixture{t: t, genesis: types.NewGenesis([]byte("safety-test")), signers: map[types.NodeID]types.Signer{},
		blocks: map[string]*types.Block{}, qcs: map[string]types.QC{}}
	var members []types.Member
	for i := range 4 {
		id := types.NodeID(fmt.Sprintf("n%d", i))
		seed := sha256.Sum256([]byte(id))
		priv := ed25519.NewKeyFromSeed(seed[:])
		fx.signers[id] = types.NewEd25519Signer(id, priv)
		members = append(members, types.Member{ID: id, PublicKey: priv.Public().(ed25519.PublicKey)})
	}
	c, err := types.NewCommittee(types.CommitteeConfig{Epoch: 1, Members: members, Genesis: fx.genesis.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	fx.c = c
	fx.blocks["g"] = fx.genesis
	fx.qcs["g"] = types.GenesisQC(fx.genesis.Hash())
	return fx
}

// qcFor certifies the named block with signatures of n0..n2.
func (fx *fixture) qcFor(name string) types.QC {
	if qc, ok := fx.qcs[name]; ok {
		return qc
	}
	b := fx.blocks[name]
	h := b.Hash()
	qc := types.QC{View: b.View, Block: h}
	ids := []types.NodeID{"n0", "n1", "n2"}
	slices.Sort(ids)
	for _, id := range ids {
		sig, _ := fx.signers[id].Sign(types.VoteSignBytes(fx.c.Epoch(), b.View, h))
		qc.Sigs = append(qc.Sigs, types.PartialSig{Signer: id, Sig: sig})
	}
	fx.qcs[name] = qc
	return qc
}

// add creates block name in view, child of parent (justified by parent's
// QC), proposed by n3.
func (fx *fixture) add(name, parent string, view types.View) *types.Block {
	p := fx.blocks[parent]
	b := &types.Block{Parent: p.Hash(), View: view, Height: p.Height + 1, Justify: fx.qcFor(parent), Proposer: "n3"}
	fx.blocks[name] = b
	return b
}

// candidate for block name with an optional TC.
func (fx *fixture) cand(name string, tc *types.TC) Candidate {
	b := fx.blocks[name]
	var parent *types.Block
	for _, x := range fx.blocks {
		if x.Hash() == b.Parent {
			parent = x
		}
	}
	return Candidate{Block: b, Certified: parent, TC: tc}
}

// tc builds a TC for view whose timeouts carry the QCs of the named
// blocks (the highest becomes the TC's high QC).
func (fx *fixture) tc(view types.View, highs ...string) *types.TC {
	tc := &types.TC{View: view}
	ids := []types.NodeID{"n0", "n1", "n2"}
	for i, id := range ids {
		qc := fx.qcFor(highs[i%len(highs)])
		sig, _ := fx.signers[id].Sign(types.TimeoutSignBytes(fx.c.Epoch(), view, qc.View))
		tc.Sigs = append(tc.Sigs, types.TimeoutSig{Signer: id, HighQCView: qc.View, Sig: sig})
		if qc.View >= tc.HighQC.View {
			tc.HighQC = qc
		}
	}
	return tc
}

func (fx *fixture) rules(store Store, rule VoteRule) *Rules {
	fx.t.Helper()
	r, err := New(Config{Store: store, Signer: fx.signers["n3"], Committee: fx.c, Rule: rule})
	if err != nil {
		fx.t.Fatal(err)
	}
	return r
}
