package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tandem-consensus/tandem/smr"
)

// The typed write helpers build one smr.Command each and Submit it; their
// results and errors are Submit's.

// RegisterSession registers session id with metadata. ttl 0 means the
// session never expires; otherwise it must be renewed within ttl
// (millisecond resolution).
func (c *Client) RegisterSession(ctx context.Context, id string, metadata map[string]string, ttl time.Duration) (smr.Result, error) {
	if ttl < 0 {
		return smr.Result{}, fmt.Errorf("register session %q: ttl %s is negative", id, ttl)
	}
	if ttl > 0 && ttl < time.Millisecond {
		return smr.Result{}, fmt.Errorf("register session %q: ttl %s is below the resolution of 1ms", id, ttl)
	}
	return c.Submit(ctx, smr.Command{Op: smr.OpRegisterSession, SessionID: id, Metadata: metadata, TTLMillis: ttl.Milliseconds()})
}

// RenewSession restarts the TTL of session id.
func (c *Client) RenewSession(ctx context.Context, id string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpRenewSession, SessionID: id})
}

// UnregisterSession removes session id.
func (c *Client) UnregisterSession(ctx context.Context, id string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpUnregisterSession, SessionID: id})
}

// RegisterTool registers tool name with definition, which must be a JSON
// object.
func (c *Client) RegisterTool(ctx context.Context, name string, definition json.RawMessage) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpRegisterTool, ToolName: name, Definition: definition})
}

// UnregisterTool removes tool name.
func (c *Client) UnregisterTool(ctx context.Context, name string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpUnregisterTool, ToolName: name})
}

// Subscribe adds subscriber to the subscribers of resource uri.
func (c *Client) Subscribe(ctx context.Context, uri, subscriber string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpSubscribeResource, ResourceURI: uri, Subscriber: subscriber})
}

// Unsubscribe removes subscriber from the subscribers of resource uri.
func (c *Client) Unsubscribe(ctx context.Context, uri, subscriber string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpUnsubscribeResource, ResourceURI: uri, Subscriber: subscriber})
}

// UpdateACL sets the rule for (subject, perm): allow, deny, or remove it.
// subject is a client public key in lowercase hex (see Client.ID).
func (c *Client) UpdateACL(ctx context.Context, subject string, perm smr.Permission, effect smr.Effect) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpUpdateACL, Subject: subject, Permission: perm, Effect: effect})
}

// SetConfig sets the replicated cluster config key to value.
func (c *Client) SetConfig(ctx context.Context, key, value string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpSetConfig, Key: key, Value: value})
}

// DeleteConfig removes the replicated cluster config key.
func (c *Client) DeleteConfig(ctx context.Context, key string) (smr.Result, error) {
	return c.Submit(ctx, smr.Command{Op: smr.OpDeleteConfig, Key: key})
}
