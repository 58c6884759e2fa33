package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/tandem-consensus/tandem/config"
	hsengine "github.com/tandem-consensus/tandem/consensus/hotstuff/engine"
	"github.com/tandem-consensus/tandem/detector/bftlog"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/gitexport"
	"github.com/tandem-consensus/tandem/detector/score"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

var _ api.DetectorBackend = (*Node)(nil)

// newDetector builds the detector of a bft-mode node from its
// configuration: the committee of initial_members, the thresholds, and
// data_dir/detector for its files.
func (n *Node) newDetector(key ed25519.PrivateKey, logger *slog.Logger) (*detector, error) {
	ms, err := n.cfg.Members()
	if err != nil {
		return nil, err
	}
	members := make([]evidence.Member, 0, len(ms))
	peers := map[evidence.NodeID]string{}
	for _, m := range ms {
		if m.PublicKey == nil {
			return nil, fmt.Errorf("initial_members: %s has no node public key; bft mode needs id=host:port/key for every member", m.ID)
		}
		members = append(members, evidence.Member{ID: evidence.NodeID(m.ID), PublicKey: m.PublicKey})
		if m.ID != n.cfg.NodeID {
			peers[evidence.NodeID(m.ID)] = m.Addr
		}
	}
	alerters, err := webhookAlerters(n.cfg, logger)
	if err != nil {
		return nil, err
	}
	return newDetector(detectorConfig{
		Self:      evidence.NodeID(n.cfg.NodeID),
		Key:       key,
		Epoch:     hsengine.DefaultEpoch, // the node runs the engine's default epoch
		Members:   members,
		PeerAddrs: peers,
		Score:     scoreConfig(n.cfg),
		DataDir:   n.cfg.DataDir,
		Logger:    logger,
		Registry:  n.registry,
		Deliver:   n.deliverEvidence,
		Alerters:  alerters,

		DisruptiveElectionsPerHour: n.cfg.DisruptiveElectionsPerHour,
	})
}

// scoreConfig is the seed's scoring table with the configured thresholds.
// The ceilings move with the thresholds where the defaults would not fit
// (latency alone must stay below anomaly_threshold, escalating signals
// below quarantine_threshold).
func scoreConfig(c config.Config) score.Config {
	s := score.Default()
	s.AnomalyThreshold, s.QuarantineThreshold = c.AnomalyThreshold, c.QuarantineThreshold
	if s.WarningCeiling >= s.AnomalyThreshold {
		s.WarningCeiling = s.AnomalyThreshold / 2
	}
	if s.EscalateCeiling < s.AnomalyThreshold || s.EscalateCeiling >= s.QuarantineThreshold {
		s.EscalateCeiling = (s.AnomalyThreshold + s.QuarantineThreshold) / 2
	}
	return s
}

// errNoDetector answers the detector's admin endpoints on a node without a
// detector (cft mode without member public keys).
func (n *Node) errNoDetector() error {
	return smr.Errorf(smr.CodeNotFound, "this node runs no detector: in consensus_mode %s it needs every member's node public key in initial_members (id=host:port/<hex key>)", n.cfg.ConsensusMode)
}

func (d *detector) summary(e *evidence.Evidence) api.EvidenceSummary {
	return api.EvidenceSummary{
		ID: e.ID().String(), Kind: e.Kind.String(), Offender: string(e.Offender), Epoch: e.Epoch,
		Irrefutable: e.Irrefutable(), Verified: d.verify(e) == nil, Summary: e.Summary(),
	}
}

func (d *detector) entryView(en quarantine.Entry) api.QuarantineEntry {
	v := api.QuarantineEntry{Node: string(en.Node), Since: en.Since.UTC(), Reason: en.Reason, Evidence: []api.EvidenceSummary{}}
	for _, e := range en.Evidence {
		v.Evidence = append(v.Evidence, d.summary(e))
	}
	return v
}

// QuarantineList implements api.DetectorBackend.
func (n *Node) QuarantineList(context.Context) (api.QuarantineView, error) {
	if n.det == nil {
		return api.QuarantineView{}, n.errNoDetector()
	}
	v := api.QuarantineView{Node: n.cfg.NodeID, Quarantined: []api.QuarantineEntry{}, Lifted: []api.LiftEntry{}}
	for _, en := range n.det.manager.List() {
		v.Quarantined = append(v.Quarantined, n.det.entryView(en))
	}
	for _, l := range n.det.manager.History() {
		v.Lifted = append(v.Lifted, api.LiftEntry{QuarantineEntry: n.det.entryView(l.Entry), Operator: l.Operator, LiftedAt: l.LiftedAt.UTC()})
	}
	return v, nil
}

// QuarantineLift implements api.DetectorBackend.
func (n *Node) QuarantineLift(ctx context.Context, node, operator string) (api.LiftEntry, error) {
	if n.det == nil {
		return api.LiftEntry{}, n.errNoDetector()
	}
	rec, err := n.det.lift(ctx, evidence.NodeID(node), operator)
	switch {
	case errors.Is(err, quarantine.ErrNotQuarantined):
		return api.LiftEntry{}, smr.Errorf(smr.CodeNotFound, "%s is not quarantined on %s", node, n.cfg.NodeID)
	case errors.Is(err, quarantine.ErrNoOperator):
		return api.LiftEntry{}, smr.Errorf(smr.CodeMalformed, "%v", err)
	case err != nil:
		return api.LiftEntry{}, fmt.Errorf("lift %s: %w", node, err)
	}
	return api.LiftEntry{QuarantineEntry: n.det.entryView(rec.Entry), Operator: rec.Operator, LiftedAt: rec.LiftedAt.UTC()}, nil
}

// EvidenceList implements api.DetectorBackend.
func (n *Node) EvidenceList(context.Context) (api.EvidenceListView, error) {
	if n.det == nil {
		return api.EvidenceListView{}, n.errNoDetector()
	}
	v := api.EvidenceListView{Node: n.cfg.NodeID, Evidence: []api.EvidenceSummary{}}
	for _, e := range n.det.evidenceList() {
		v.Evidence = append(v.Evidence, n.det.summary(e))
	}
	return v, nil
}

// EvidenceGet implements api.DetectorBackend.
func (n *Node) EvidenceGet(_ context.Context, id string) (json.RawMessage, error) {
	if n.det == nil {
		return nil, n.errNoDetector()
	}
	eid, err := evidence.ParseID(id)
	if err != nil {
		return nil, smr.Errorf(smr.CodeMalformed, "evidence id %q: %v", id, err)
	}
	e, err := n.det.evidenceByID(eid)
	if err != nil {
		return nil, smr.Errorf(smr.CodeNotFound, "%v", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("evidence %s: %w", id, err)
	}
	return b, nil
}

// EvidenceExport implements api.DetectorBackend.
func (n *Node) EvidenceExport(_ context.Context, format string) (any, error) {
	if n.det == nil {
		return nil, n.errNoDetector()
	}
	recs := n.det.allEvidence()
	if format == "json" {
		if recs == nil {
			recs = []*evidence.Evidence{}
		}
		return struct {
			Node     string               `json:"node"`
			Evidence []*evidence.Evidence `json:"evidence"`
		}{n.cfg.NodeID, recs}, nil
	}
	repo, err := n.det.gitRepo(recs)
	if err != nil {
		return nil, err
	}
	return api.GitExport{Format: "git", Head: repo.Head, Refs: repo.Refs, Objects: repo.Objects}, nil
}

// allEvidence is every record this node holds: the book's, and those kept
// with quarantine entries and lift records (the book forgets lifted
// offences), deduplicated and sorted by ID.
func (d *detector) allEvidence() []*evidence.Evidence {
	seen := map[evidence.ID]*evidence.Evidence{}
	for _, e := range d.evidenceList() {
		seen[e.ID()] = e
	}
	for _, en := range d.manager.List() {
		for _, e := range en.Evidence {
			seen[e.ID()] = e
		}
	}
	for _, l := range d.manager.History() {
		for _, e := range l.Entry.Evidence {
			seen[e.ID()] = e
		}
	}
	out := make([]*evidence.Evidence, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *evidence.Evidence) int { return a.ID().Compare(b.ID()) })
	return out
}

// gitRepo writes this node's attestations of recs as its 2P-BFT-Log (one
// message per record, signed with the node key, each after the previous
// one; the content is the record's JSON form, which carries its canonical
// encoding) and returns the log in DESIGN's Git form. Ed25519 signatures
// are deterministic, so the same records give the same repository.
func (d *detector) gitRepo(recs []*evidence.Evidence) (*gitexport.Repo, error) {
	cfg := bftlog.DefaultConfig()
	st, err := bftlog.NewStore(cfg)
	if err != nil {
		return nil, fmt.Errorf("git export: %w", err)
	}
	fr := st.NewFrontier()
	var prev bftlog.ID
	for _, e := range recs {
		content, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("git export: %w", err)
		}
		if len(content) > cfg.MaxContentSize {
			// Too large to attest whole (a block-carrying proof): attest
			// its ID; the record itself is in the JSON export.
			content, _ = json.Marshal(map[string]any{"id": e.ID().String(), "kind": e.Kind.String(), "offender": e.Offender, "epoch": e.Epoch, "summary": e.Summary()})
		}
		m, err := bftlog.NewMessage(d.key, prev, nil, content)
		if err != nil {
			return nil, fmt.Errorf("git export: %w", err)
		}
		if err := st.Add(m); err != nil {
			return nil, fmt.Errorf("git export: %w", err)
		}
		if err := fr.Update(m.ID()); err != nil {
			return nil, fmt.Errorf("git export: %w", err)
		}
		prev = m.ID()
	}
	repo, err := gitexport.Build(fr, gitexport.Options{})
	if err != nil {
		return nil, fmt.Errorf("git export: %w", err)
	}
	return repo, nil
}
