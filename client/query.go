package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/tandem-consensus/tandem/client/wire"
	"github.com/tandem-consensus/tandem/smr"
)

// ReadOption changes how a read is served.
type ReadOption func(*readOptions)

type readOptions struct {
	stale bool
	fast  bool
}

// Stale lets the node that receives the read answer from its local state
// at once, without confirming a read index with the leader. The answer may
// miss recent writes; the returned index says how far the node had
// applied.
//
// With a committee (Config.Committee) a stale read asks every replica for
// its local answer and needs f+1 matching signed replies at one index.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

// FastRead asks, with a committee (Config.Committee), every replica for a
// signed answer from its local state at once, and accepts it when n-f
// replicas sent the same value at the same index; otherwise the read is
// ordered through consensus like a read without options (f+1 matching
// replies). Without a committee it is Stale.
func FastRead() ReadOption { return func(o *readOptions) { o.fast = true } }

// Query reads the state machine: GET /v1/query. It is linearizable unless
// Stale is given. It returns the value as the cluster encodes it and the
// log index the answer reflects. A missing object is an *APIError with
// Code smr.CodeNotFound. Reads are retried across endpoints like writes;
// when no node answers, the error wraps ErrUnavailable.
func (c *Client) Query(ctx context.Context, q smr.Query, opts ...ReadOption) (json.RawMessage, uint64, error) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	op := "query " + string(q.Kind)
	if q.Key != "" {
		op += fmt.Sprintf(" %q", q.Key)
	}
	if c.bft != nil {
		return c.queryBFT(ctx, q, o, op)
	}
	v := url.Values{}
	v.Set("kind", string(q.Kind))
	if q.Key != "" {
		v.Set("key", q.Key)
	}
	if o.stale || o.fast {
		v.Set("stale", "true")
	}
	var resp wire.QueryResponse
	err := c.do(ctx, &call{
		op:     op,
		method: http.MethodGet,
		path:   "/v1/query?" + v.Encode(),
		read:   true,
		handle: decodeJSON(&resp),
	})
	if err != nil {
		return nil, 0, err
	}
	return resp.Value, resp.Index, nil
}

// queryInto runs Query and decodes the value into out.
func (c *Client) queryInto(ctx context.Context, q smr.Query, out any, opts ...ReadOption) (uint64, error) {
	raw, idx, err := c.Query(ctx, q, opts...)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return 0, fmt.Errorf("query %s: decode value %.200s: %w", q.Kind, raw, err)
	}
	return idx, nil
}

// Typed reads. Each decodes the value of one query kind into the type smr
// defines for it and returns the log index the answer reflects. The Get
// forms return an *APIError with Code smr.CodeNotFound when the object does
// not exist; the List forms return every object, sorted, possibly none.

// GetSession reads live session id.
func (c *Client) GetSession(ctx context.Context, id string, opts ...ReadOption) (smr.SessionInfo, uint64, error) {
	return get[smr.SessionInfo](ctx, c, smr.QuerySession, id, opts)
}

// ListSessions reads every live session.
func (c *Client) ListSessions(ctx context.Context, opts ...ReadOption) ([]smr.SessionInfo, uint64, error) {
	return get[[]smr.SessionInfo](ctx, c, smr.QuerySessions, "", opts)
}

// GetTool reads tool name.
func (c *Client) GetTool(ctx context.Context, name string, opts ...ReadOption) (smr.ToolInfo, uint64, error) {
	return get[smr.ToolInfo](ctx, c, smr.QueryTool, name, opts)
}

// ListTools reads every tool.
func (c *Client) ListTools(ctx context.Context, opts ...ReadOption) ([]smr.ToolInfo, uint64, error) {
	return get[[]smr.ToolInfo](ctx, c, smr.QueryTools, "", opts)
}

// GetResource reads the subscribers of resource uri.
func (c *Client) GetResource(ctx context.Context, uri string, opts ...ReadOption) (smr.ResourceInfo, uint64, error) {
	return get[smr.ResourceInfo](ctx, c, smr.QueryResource, uri, opts)
}

// ListResources reads every resource that has subscribers.
func (c *Client) ListResources(ctx context.Context, opts ...ReadOption) ([]smr.ResourceInfo, uint64, error) {
	return get[[]smr.ResourceInfo](ctx, c, smr.QueryResources, "", opts)
}

// GetACL reads the rules of subject (a public key, lowercase hex).
func (c *Client) GetACL(ctx context.Context, subject string, opts ...ReadOption) (smr.ACLInfo, uint64, error) {
	return get[smr.ACLInfo](ctx, c, smr.QueryACL, subject, opts)
}

// ListACLs reads the rules of every subject.
func (c *Client) ListACLs(ctx context.Context, opts ...ReadOption) ([]smr.ACLInfo, uint64, error) {
	return get[[]smr.ACLInfo](ctx, c, smr.QueryACLs, "", opts)
}

// GetConfig reads replicated cluster config key.
func (c *Client) GetConfig(ctx context.Context, key string, opts ...ReadOption) (smr.ConfigEntry, uint64, error) {
	return get[smr.ConfigEntry](ctx, c, smr.QueryConfig, key, opts)
}

// ListConfig reads every replicated cluster config key.
func (c *Client) ListConfig(ctx context.Context, opts ...ReadOption) ([]smr.ConfigEntry, uint64, error) {
	return get[[]smr.ConfigEntry](ctx, c, smr.QueryConfigs, "", opts)
}

// GetClient reads the exactly-once record of client key id (lowercase
// hex; see Client.ID): whether the key is invited and its highest
// executed seq. Without Stale it is linearizable, so HighestSeq covers
// every write acknowledged before the call.
func (c *Client) GetClient(ctx context.Context, id string, opts ...ReadOption) (smr.ClientInfo, uint64, error) {
	return get[smr.ClientInfo](ctx, c, smr.QueryClient, id, opts)
}

func get[T any](ctx context.Context, c *Client, kind smr.QueryKind, key string, opts []ReadOption) (T, uint64, error) {
	var out T
	idx, err := c.queryInto(ctx, smr.Query{Kind: kind, Key: key}, &out, opts...)
	return out, idx, err
}
