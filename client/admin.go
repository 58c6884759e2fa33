package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/tandem-consensus/tandem/client/wire"
)

// NodeStatus is one node's report (GET /v1/status).
type NodeStatus struct {
	NodeID            string `json:"node_id"`
	Mode              string `json:"mode"` // cft or bft
	Role              string `json:"role"` // leader, follower, candidate, shutdown
	Term              uint64 `json:"term"` // Raft term or HotStuff view
	LeaderID          string `json:"leader_id,omitempty"`
	LeaderAddr        string `json:"leader_addr,omitempty"` // the leader's peer address
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastIndex         uint64 `json:"last_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	StateHash         string `json:"state_hash"` // hex SHA-256 of the state at AppliedIndex
	Version           string `json:"version,omitempty"`

	// HotStuff (mode bft) only; zero in mode cft.
	View            uint64 `json:"view,omitempty"`             // current view (Term repeats it)
	HighQCView      uint64 `json:"high_qc_view,omitempty"`     // view of the highest QC the node knows
	LockedQCView    uint64 `json:"locked_qc_view,omitempty"`   // view of the QC the node is locked on
	CommittedHeight uint64 `json:"committed_height,omitempty"` // height of the last committed block
	CommittedView   uint64 `json:"committed_view,omitempty"`   // view of the last committed block
	ViewChangeAlert bool   `json:"view_change_alert,omitempty"`
}

// EndpointStatus is the answer of one endpoint to StatusAll: Status, or
// the Err that prevented it.
type EndpointStatus struct {
	Endpoint string
	Status   *NodeStatus
	Err      error
}

// Member is one member of the consensus configuration (GET /v1/members).
type Member = wire.Member

// Status asks the node at endpoint (one attempt, no retry) for its status.
// endpoint need not be one of Config.Endpoints. The client remembers which
// node ID serves endpoint, to follow leader hints.
func (c *Client) Status(ctx context.Context, endpoint string) (*NodeStatus, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var st NodeStatus
	err = c.do(ctx, &call{
		op:       "status of " + ep,
		method:   http.MethodGet,
		path:     "/v1/status",
		read:     true,
		endpoint: ep,
		handle:   decodeJSON(&st),
	})
	if err != nil {
		return nil, err
	}
	c.eps.learn(ep, st.NodeID)
	return &st, nil
}

// StatusAll asks every configured endpoint for its status in parallel and
// returns one entry per endpoint, in Config.Endpoints order.
func (c *Client) StatusAll(ctx context.Context) []EndpointStatus {
	out := make([]EndpointStatus, len(c.eps.urls))
	var wg sync.WaitGroup
	for i, ep := range c.eps.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.Status(ctx, ep)
			out[i] = EndpointStatus{Endpoint: ep, Status: st, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// Members lists the consensus configuration as seen by the first node that
// answers.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var resp wire.MembersResponse
	err := c.do(ctx, &call{
		op:     "list members",
		method: http.MethodGet,
		path:   "/v1/members",
		read:   true,
		handle: decodeJSON(&resp),
	})
	return resp.Members, err
}

// The admin requests below are signed with Config.Key (docs/api.md) and
// need the admin permission. Those that change the cluster are retried on
// another node only when the failed attempt cannot have reached a node;
// otherwise they end with an error wrapping ErrOutcomeUnknown.

// TransferLeader asks the cluster to move leadership to node id, or to any
// suitable node when id is empty.
//
// In bft mode a replica leaves its view only once f+1 distinct members
// asked it to (one faulty member must not be able to force view changes),
// so the request is sent to every endpoint at once and succeeds when any
// node confirms the view change.
func (c *Client) TransferLeader(ctx context.Context, id string) error {
	body, err := json.Marshal(wire.TransferLeaderRequest{ID: id})
	if err != nil {
		return err
	}
	mk := func(ep string) *call {
		return &call{op: "transfer leadership", method: http.MethodPost, path: "/v1/admin/transfer-leader", body: body, endpoint: ep}
	}
	if !c.bftMode(ctx) {
		cl := mk("")
		return c.adminDo(ctx, cl)
	}
	eps := c.Endpoints()
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.adminDo(ctx, mk(ep))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	return errors.Join(errs...)
}

// bftMode reports whether the first node that answers runs in bft mode.
func (c *Client) bftMode(ctx context.Context) bool {
	for _, s := range c.StatusAll(ctx) {
		if s.Status != nil {
			return s.Status.Mode == "bft"
		}
	}
	return false
}

// AddMember adds node id, reachable by its peers at addr (its peer
// address, host:port), as a voter.
func (c *Client) AddMember(ctx context.Context, id, addr string) error {
	body, err := json.Marshal(wire.AddMemberRequest{ID: id, Address: addr})
	if err != nil {
		return err
	}
	return c.adminDo(ctx, &call{op: "add member " + id, method: http.MethodPost, path: "/v1/admin/members", body: body})
}

// RemoveMember removes node id from the consensus configuration.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("remove member: node id is empty")
	}
	return c.adminDo(ctx, &call{op: "remove member " + id, method: http.MethodDelete, path: "/v1/admin/members/" + url.PathEscape(id)})
}

// SnapshotSave downloads a snapshot of the state machine into w and returns
// the log index it reflects. Attempts are retried until the download
// starts; an error after that is returned as is (w then holds a partial
// snapshot and must be discarded).
func (c *Client) SnapshotSave(ctx context.Context, w io.Writer) (uint64, error) {
	var index uint64
	err := c.adminDo(ctx, &call{
		op:     "save snapshot",
		method: http.MethodGet,
		path:   "/v1/admin/snapshot",
		read:   true,
		stream: true,
		handle: func(resp *http.Response, ep string) error {
			h := resp.Header.Get(wire.HeaderSnapshotIndex)
			idx, err := strconv.ParseUint(h, 10, 64)
			if err != nil {
				return fmt.Errorf("header %s: %q is not a log index", wire.HeaderSnapshotIndex, h)
			}
			if _, err := io.Copy(w, resp.Body); err != nil {
				return fmt.Errorf("download snapshot: %w", err)
			}
			index = idx
			return nil
		},
	})
	return index, err
}

// SnapshotRestore uploads the snapshot read from r (read in full into
// memory first: its hash is part of the signature) and restores the
// cluster to it.
func (c *Client) SnapshotRestore(ctx context.Context, r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("restore snapshot: read snapshot: %w", err)
	}
	if len(body) == 0 {
		return errors.New("restore snapshot: the snapshot is empty")
	}
	return c.adminDo(ctx, &call{op: "restore snapshot", method: http.MethodPost, path: "/v1/admin/snapshot", body: body, ctype: "application/octet-stream"})
}

// adminDo signs and runs an admin call.
func (c *Client) adminDo(ctx context.Context, cl *call) error {
	if c.cfg.Key == nil {
		return fmt.Errorf("%s: %w", cl.op, ErrNoKey)
	}
	cl.admin = true
	return c.do(ctx, cl)
}

// AdminJSON sends a signed admin request for path (with its query) and
// decodes a 2xx JSON answer into out (nil: discard it). body, when not nil,
// is sent as application/json. With endpoint set, it makes one attempt on
// that node (as Status does); otherwise a GET is retried across the nodes
// until one answers, and other methods only while no attempt can have
// reached a node. A node's definitive refusal is an *APIError. It serves
// admin endpoints the SDK has no method of its own for, such as the
// detector's (docs/detector.md).
func (c *Client) AdminJSON(ctx context.Context, endpoint, method, path string, body []byte, out any) error {
	cl := &call{op: method + " " + path, method: method, path: path, body: body, read: method == http.MethodGet}
	if endpoint != "" {
		ep, err := ParseEndpoint(endpoint)
		if err != nil {
			return err
		}
		cl.endpoint = ep
	}
	if out != nil {
		cl.handle = decodeJSON(out)
	}
	return c.adminDo(ctx, cl)
}
