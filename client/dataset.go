package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tandem-consensus/tandem/smr"
)

// DatasetSpec describes a dataset to create. Cells and CellSize are fixed
// for its life.
type DatasetSpec struct {
	Name     string
	Cells    int
	CellSize int
	// StepLimit bounds how far one change may raise a cell's global seq; 0
	// means no limit beyond the agent's unspent signed local seqs.
	StepLimit uint64
	// MaxAgentSeqs caps the local seqs an agent may sign; 0 means
	// smr.DefaultMaxAgentSeqs (which is also the largest allowed).
	MaxAgentSeqs uint64
	// Agents are invited at creation (public keys, lowercase hex).
	Agents []string
}

// CreateDataset creates a dataset (needs the dataset.create permission, or
// admin). The client becomes the dataset's first admin. The Result's
// Outcome carries the creation index that agents sign for.
func (c *Client) CreateDataset(ctx context.Context, spec DatasetSpec) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpCreateDataset, Dataset: spec.Name, Cells: spec.Cells, CellSize: spec.CellSize,
		StepLimit: spec.StepLimit, MaxAgentSeqs: spec.MaxAgentSeqs, Agents: spec.Agents})
}

// InviteAgent gives agent (a public key, lowercase hex) role in
// dataset: smr.RoleAgent (may sync changes; the default when role is
// empty) or smr.RoleAdmin (may invite and revoke). It needs an admin of
// the dataset or the admin permission.
func (c *Client) InviteAgent(ctx context.Context, dataset, agent string, role smr.DatasetRole) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpInviteAgent, Dataset: dataset, Subject: agent, Role: role})
}

// RevokeAgent takes role away from agent in dataset. A revoked agent's
// later changes are rejected; what it merged before stays.
func (c *Client) RevokeAgent(ctx context.Context, dataset, agent string, role smr.DatasetRole) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpRevokeAgent, Dataset: dataset, Subject: agent, Role: role})
}

// SyncDataset sends snap to dataset through consensus and returns the
// verdict on each of its statements and changes. It normalizes snap in
// place first, so the positions in the outcome index snap's slices. The
// client's key must be an invited agent of the dataset; the snapshot may
// carry changes of other agents, which it relays. The Result gives the
// log index of the sync. Errors are Submit's, or a normalization or
// encoding error (an *smr.Error) before anything is sent.
func (c *Client) SyncDataset(ctx context.Context, dataset string, snap *smr.DatasetSnapshot) (smr.SyncOutcome, smr.Result, error) {
	if err := snap.Normalize(); err != nil {
		return smr.SyncOutcome{}, smr.Result{}, fmt.Errorf("sync dataset %q: %w", dataset, err)
	}
	b, err := smr.EncodeDatasetSnapshot(*snap)
	if err != nil {
		return smr.SyncOutcome{}, smr.Result{}, fmt.Errorf("sync dataset %q: %w", dataset, err)
	}
	res, err := c.Submit(ctx, smr.Command{Op: smr.OpSyncDataset, Dataset: dataset, Snapshot: b})
	if err != nil {
		return smr.SyncOutcome{}, res, err
	}
	var out smr.SyncOutcome
	if err := json.Unmarshal(res.Value, &out); err != nil {
		return smr.SyncOutcome{}, res, fmt.Errorf("sync dataset %q: decode outcome %.200s: %w", dataset, res.Value, err)
	}
	return out, res, nil
}

// GetDataset reads dataset name with its agents and every cell that is not
// fresh.
func (c *Client) GetDataset(ctx context.Context, name string, opts ...ReadOption) (smr.DatasetInfo, uint64, error) {
	return get[smr.DatasetInfo](ctx, c, smr.QueryDataset, name, opts)
}

// ListDatasets reads every dataset, without agents and cells.
func (c *Client) ListDatasets(ctx context.Context, opts ...ReadOption) ([]smr.DatasetInfo, uint64, error) {
	return get[[]smr.DatasetInfo](ctx, c, smr.QueryDatasets, "", opts)
}
