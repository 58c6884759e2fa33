package safety

import (
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// Config wires a Rules.
type Config struct {
	// Store persists SafetyData. Required.
	Store Store
	// Signer holds this replica's key. Required.
	Signer types.Signer
	// Committee is the epoch's committee; Signer.ID() must be a member.
	Committee *types.Committee
	// Verifier checks certificates; nil means Committee (a core passes its
	// QCCache so certificates are verified once).
	Verifier types.CertVerifier
	// Rule is the voting rule. Nil means ThreeChain.
	Rule VoteRule
}

// Rules is the only signer of votes, timeouts and proposals of a replica.
// Every signing method follows the same order:
//
//  1. verify the inputs (certificates, structure);
//  2. if the request repeats one already answered, return the stored answer;
//  3. apply the rule to the current SafetyData;
//  4. sign, Save the new SafetyData, and only after Save returned nil
//     adopt it and return the signed message.
//
// If Save fails the signed message is dropped, the error returned, and the
// in-memory state stays as it was, so nothing signed ever leaves without
// being durable.
//
// A Rules is not safe for concurrent use; it belongs to one core.
type Rules struct {
	store     Store
	signer    types.Signer
	committee *types.Committee
	verifier  types.CertVerifier
	rule      VoteRule
	data      SafetyData
}

// New loads the stored SafetyData and returns Rules over it. A fresh store
// starts at the committee's epoch with the genesis QC as lock and high QC.
func New(cfg Config) (*Rules, error) {
	if cfg.Store == nil || cfg.Signer == nil || cfg.Committee == nil {
		return nil, errors.New("safety: Store, Signer and Committee are required")
	}
	if !cfg.Committee.IsMember(cfg.Signer.ID()) {
		return nil, fmt.Errorf("safety: signer %q is not a committee member", cfg.Signer.ID())
	}
	r := &Rules{store: cfg.Store, signer: cfg.Signer, committee: cfg.Committee, verifier: cfg.Verifier, rule: cfg.Rule}
	if r.verifier == nil {
		r.verifier = cfg.Committee
	}
	if r.rule == nil {
		r.rule = ThreeChain{}
	}
	d, err := cfg.Store.Load()
	if err != nil {
		return nil, fmt.Errorf("safety: load: %w", err)
	}
	if d.Epoch == 0 && d.LastVotedView == 0 && d.LockedQC.IsZero() && d.LastProposal == nil {
		genesis := types.GenesisQC(cfg.Committee.Genesis())
		d = SafetyData{Epoch: cfg.Committee.Epoch(), LockedQC: genesis, HighQC: genesis}
	}
	if d.Epoch != cfg.Committee.Epoch() {
		return nil, fmt.Errorf("safety: stored epoch %d, committee epoch %d: %w", d.Epoch, cfg.Committee.Epoch(), ErrWrongEpoch)
	}
	r.data = d
	return r, nil
}

// Data returns a copy of the current (durable) SafetyData.
func (r *Rules) Data() SafetyData { return r.data.Clone() }

// ID returns the signer's member ID.
func (r *Rules) ID() types.NodeID { return r.signer.ID() }

func (r *Rules) commit(d SafetyData) error {
	if err := r.store.Save(d); err != nil {
		return fmt.Errorf("safety: persist before signing leaves: %w", err)
	}
	r.data = d
	return nil
}

func higher(a, b types.QC) types.QC {
	if b.View > a.View {
		return b
	}
	return a
}

// Vote returns this replica's vote for c.Block, or an error:
//   - ErrInvalidCandidate (wrapped) when c is malformed;
//   - a certificate verification error from the Verifier;
//   - *NotSafeToVoteError when the VoteRule refuses (including a second,
//     different block in a view already voted in);
//   - a Store error (no vote leaves).
//
// Asked again for the block it already voted for in LastVotedView, it
// returns the same vote without signing or saving.
func (r *Rules) Vote(c Candidate) (*types.Vote, error) {
	vote, d, err := r.vote(r.data, c)
	if err != nil || d == nil {
		return vote, err
	}
	if err := r.commit(*d); err != nil {
		return nil, err
	}
	cp := *vote
	return &cp, nil
}

// vote checks c against base and returns the vote and the safety data to
// save before it leaves; nil data when base already holds this vote.
func (r *Rules) vote(base SafetyData, c Candidate) (*types.Vote, *SafetyData, error) {
	b := c.Block
	if b == nil || c.Certified == nil {
		return nil, nil, fmt.Errorf("safety: vote: block and certified parent are required: %w", ErrInvalidCandidate)
	}
	if c.Hash.IsZero() {
		c.Hash = b.Hash()
	}
	if b.Justify.Block != b.Parent || b.Justify.View >= b.View {
		return nil, nil, fmt.Errorf("safety: vote view %d: justify QC (view %d, block %s) does not certify the parent %s in an earlier view: %w",
			b.View, b.Justify.View, b.Justify.Block, b.Parent, ErrInvalidCandidate)
	}
	if ch := c.Certified.Hash(); ch != b.Justify.Block {
		return nil, nil, fmt.Errorf("safety: vote view %d: certified block %s is not the justified block %s: %w", b.View, ch, b.Justify.Block, ErrInvalidCandidate)
	}
	if c.TC != nil && c.TC.View+1 != b.View {
		return nil, nil, fmt.Errorf("safety: vote view %d: TC is for view %d, want %d: %w", b.View, c.TC.View, b.View-1, ErrInvalidCandidate)
	}
	if err := r.verifier.VerifyQC(b.Justify); err != nil {
		return nil, nil, fmt.Errorf("safety: vote view %d: justify: %w", b.View, err)
	}
	if c.TC != nil {
		if err := r.verifier.VerifyTC(c.TC); err != nil {
			return nil, nil, fmt.Errorf("safety: vote view %d: %w", b.View, err)
		}
	}
	if v := base.LastVote; v != nil && v.View == b.View && v.Block == c.Hash {
		cp := *v
		return &cp, nil, nil
	}
	d, err := r.rule.Check(base.Clone(), c)
	if err != nil {
		return nil, nil, err
	}
	sig, err := r.signer.Sign(types.VoteSignBytes(r.committee.Epoch(), b.View, c.Hash))
	if err != nil {
		return nil, nil, fmt.Errorf("safety: sign vote view %d: %w", b.View, err)
	}
	vote := &types.Vote{View: b.View, Block: c.Hash, Voter: r.signer.ID(), Sig: sig}
	d.LastVotedView = max(d.LastVotedView, b.View)
	d.LastVote = vote
	d.HighQC = higher(d.HighQC, b.Justify)
	if c.TC != nil {
		d.LastTC = c.TC
	} else if d.LastTC != nil && d.LastTC.View+1 != d.LastVotedView {
		d.LastTC = nil
	}
	return vote, &d, nil
}

// SignTimeout returns this replica's timeout for view. The timeout carries
// the higher of highQC and the stored HighQC, so it never reports less than
// what this replica voted on. lastTC, when not nil, is the TC for view−1
// that brought the replica into view; it is verified and stored
// (SafetyData.LastTC) but not signed. Errors: a verification error,
// *NotSafeToTimeoutError when view is below the last voted view, or a Store
// error. Asked again for the same view with no newer QC, it returns the
// stored timeout.
//
// After a timeout for view, the replica does not vote in view any more
// (LastVotedView becomes at least view); it may still repeat a vote it
// already cast there.
func (r *Rules) SignTimeout(view types.View, highQC types.QC, lastTC *types.TC) (*types.Timeout, error) {
	if err := r.verifier.VerifyQC(highQC); err != nil {
		return nil, fmt.Errorf("safety: timeout view %d: high QC: %w", view, err)
	}
	if lastTC != nil {
		if lastTC.View+1 != view {
			return nil, fmt.Errorf("safety: timeout view %d: last TC is for view %d: %w", view, lastTC.View, ErrInvalidCandidate)
		}
		if err := r.verifier.VerifyTC(lastTC); err != nil {
			return nil, fmt.Errorf("safety: timeout view %d: last TC: %w", view, err)
		}
	}
	if view < r.data.LastVotedView {
		return nil, &NotSafeToTimeoutError{View: view, LastVoted: r.data.LastVotedView}
	}
	hqc := higher(r.data.HighQC, highQC)
	if hqc.View >= view {
		return nil, fmt.Errorf("safety: timeout view %d: high QC view %d is not below it: %w", view, hqc.View, ErrInvalidCandidate)
	}
	if t := r.data.LastTimeout; t != nil && t.View == view && t.HighQC.View >= hqc.View && (lastTC == nil || r.data.LastTC != nil) {
		cp := *t
		return &cp, nil
	}
	sig, err := r.signer.Sign(types.TimeoutSignBytes(r.committee.Epoch(), view, hqc.View))
	if err != nil {
		return nil, fmt.Errorf("safety: sign timeout view %d: %w", view, err)
	}
	t := &types.Timeout{View: view, HighQC: hqc, Sender: r.signer.ID(), Sig: sig}
	d := r.data.Clone()
	d.LastVotedView = max(d.LastVotedView, view)
	d.LastTimeout = t
	d.HighQC = hqc
	if lastTC != nil {
		d.LastTC = lastTC
	} else if d.LastTC != nil && d.LastTC.View+1 != view {
		d.LastTC = nil
	}
	if err := r.commit(d); err != nil {
		return nil, err
	}
	cp := *t
	return &cp, nil
}

// SignProposal returns the proposer signature for b, which this replica
// proposes as leader of b.View. It refuses (*EquivocationError) a second,
// different block for the last signed view and any block for an older view;
// the same block again gets the stored signature. b.Proposer must be this
// replica and b.Justify must verify.
func (r *Rules) SignProposal(b *types.Block) ([]byte, error) {
	sig, d, err := r.proposal(b, b.Hash())
	if err != nil || d == nil {
		return sig, err
	}
	if err := r.commit(*d); err != nil {
		return nil, err
	}
	return sig, nil
}

// ProposeAndVote signs c.Block as its proposer, as SignProposal does, and
// this replica's vote for it, as Vote does, and saves both in one write
// before either leaves: a leader votes for its own block at once, and one
// save on the path of every view instead of two shortens the view. When
// the vote rule refuses the block (vote is nil then, with a nil error),
// only the proposal is signed and saved.
func (r *Rules) ProposeAndVote(c Candidate) (sig []byte, vote *types.Vote, err error) {
	if c.Hash.IsZero() && c.Block != nil {
		c.Hash = c.Block.Hash()
	}
	sig, d, err := r.proposal(c.Block, c.Hash)
	if err != nil {
		return nil, nil, err
	}
	base := r.data
	if d != nil {
		base = *d
	}
	vote, dv, verr := r.vote(base, c)
	switch {
	case verr != nil:
		vote = nil
	case dv != nil:
		d = dv
	}
	if d != nil {
		if err := r.commit(*d); err != nil {
			return nil, nil, err
		}
	}
	if vote != nil {
		cp := *vote
		vote = &cp
	}
	return sig, vote, nil
}

// proposal checks b, of hash h, and returns its signature and the safety
// data to save before it leaves; nil data when b was signed already.
func (r *Rules) proposal(b *types.Block, h types.Hash) ([]byte, *SafetyData, error) {
	if b.Proposer != r.signer.ID() {
		return nil, nil, fmt.Errorf("safety: proposal view %d names proposer %q, this replica is %q: %w", b.View, b.Proposer, r.signer.ID(), ErrInvalidCandidate)
	}
	if b.Justify.Block != b.Parent || b.Justify.View >= b.View {
		return nil, nil, fmt.Errorf("safety: proposal view %d: justify QC view %d does not certify the parent in an earlier view: %w", b.View, b.Justify.View, ErrInvalidCandidate)
	}
	if err := r.verifier.VerifyQC(b.Justify); err != nil {
		return nil, nil, fmt.Errorf("safety: proposal view %d: justify: %w", b.View, err)
	}
	if p := r.data.LastProposal; p != nil {
		if p.View == b.View && p.Block == h {
			return append([]byte(nil), p.Sig...), nil, nil
		}
		if b.View <= p.View {
			return nil, nil, &EquivocationError{View: b.View, SignedView: p.View, Signed: p.Block, Requested: h}
		}
	}
	sig, err := r.signer.Sign(types.ProposalSignBytes(r.committee.Epoch(), b.View, h))
	if err != nil {
		return nil, nil, fmt.Errorf("safety: sign proposal view %d: %w", b.View, err)
	}
	d := r.data.Clone()
	d.LastProposal = &ProposalRecord{View: b.View, Block: h, Sig: sig}
	return append([]byte(nil), sig...), &d, nil
}
