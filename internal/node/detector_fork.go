package node

import (
	"context"

	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/detector/evidence"
)

// Proofs found in the evidence gossip itself (DESIGN invariant 7): a member
// whose 2P-BFT-Log forks (two messages after the same predecessor, both
// signed by it) or that signs a message breaking a log rule has equivocated,
// and the proof needs nothing but its own signatures. The gossip replica
// detects both as it merges; each new proof becomes irrefutable evidence
// (evidence.KindLogFork, evidence.KindInvalidMessage) that the detector
// verifies from its bytes and the member keys, keeps, relays and acts on
// like every proof: a quarantine of the author.

// gossipProofs is the gossip run goroutine's record of the proofs it
// handed over already.
type gossipProofs struct {
	done map[[2]bftlog.ID]bool
}

// takeProofs hands every fork and invalid-message proof of the replica
// not handed over yet to the detector. Safe on a nil g. Called by the
// gossip's run goroutine only.
func (g *evidenceGossip) takeProofs(ctx context.Context) {
	if g == nil {
		return
	}
	if g.proofs.done == nil {
		g.proofs.done = map[[2]bftlog.ID]bool{}
	}
	var found []*evidence.Evidence
	var keys [][2]bftlog.ID
	for _, l := range g.rep.Equivocators() {
		p := l.Forks
		if p == nil || p.A == nil || p.B == nil {
			continue
		}
		k := [2]bftlog.ID{p.A.ID(), p.B.ID()}
		if p.B.ID().Compare(p.A.ID()) < 0 {
			k = [2]bftlog.ID{p.B.ID(), p.A.ID()}
		}
		if g.proofs.done[k] {
			continue
		}
		e, err := evidence.FromForkProof(p, g.det.members, g.det.epoch.Load())
		if err != nil {
			g.log.Warn("fork proof not turned into evidence", "author", l.Author.Short(), "err", err)
			g.proofs.done[k] = true
			continue
		}
		found, keys = append(found, e), append(keys, k)
	}
	for _, p := range g.rep.Invalid() {
		if p == nil || p.Message == nil {
			continue
		}
		k := [2]bftlog.ID{p.Message.ID()}
		if g.proofs.done[k] {
			continue
		}
		e, err := evidence.FromInvalidProof(p, g.det.members, g.det.epoch.Load())
		if err != nil {
			g.log.Warn("invalid-message proof not turned into evidence", "author", p.Author().Short(), "err", err)
			g.proofs.done[k] = true
			continue
		}
		found, keys = append(found, e), append(keys, k)
	}
	for i, e := range found {
		g.proofs.done[keys[i]] = true
		g.log.Warn("the evidence log of a member is forked or invalid", "offender", string(e.Offender), "kind", e.Kind.String(), "summary", e.Summary())
		_, _ = g.det.handle(ctx, e, "")
	}
}
