package linearize

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/smr"
)

// Client records the config-key calls of one SDK client. Calls of one
// Client may run concurrently; each is recorded with the Client's ID.
type Client struct {
	ID  int
	SDK *client.Client
	rec *Recorder
}

// Client returns a recording wrapper of sdk with client id (zero-based;
// one row per id in the visualization).
func (r *Recorder) Client(id int, sdk *client.Client) *Client {
	return &Client{ID: id, SDK: sdk, rec: r}
}

// Put sets key to value and records the call.
func (c *Client) Put(ctx context.Context, key, value string) Op {
	p := c.rec.Invoke(c.ID, Input{Kind: KindPut, Key: key, Value: value})
	res, err := c.SDK.SetConfig(ctx, key, value)
	if err != nil {
		return p.Return(Output{}, classifyWrite(err), err)
	}
	var o smr.Outcome
	if err := json.Unmarshal(res.Value, &o); err != nil {
		// Applied, but what it replaced is unreadable: keep it as a
		// write whose effect is not fully known.
		return p.Return(Output{}, OutcomeUnknown, fmt.Errorf("decode set_config result %.200s: %w", res.Value, err))
	}
	return p.Return(Output{Found: o.Replaced}, OutcomeOK, nil)
}

// Delete removes key and records the call. A delete ordered and rejected
// with not_found is OK with Found false.
func (c *Client) Delete(ctx context.Context, key string) Op {
	p := c.rec.Invoke(c.ID, Input{Kind: KindDelete, Key: key})
	_, err := c.SDK.DeleteConfig(ctx, key)
	if err == nil {
		return p.Return(Output{Found: true}, OutcomeOK, nil)
	}
	if orderedNotFound(err) {
		return p.Return(Output{}, OutcomeOK, nil)
	}
	return p.Return(Output{}, classifyWrite(err), err)
}

// Get reads key linearizably and records the call.
func (c *Client) Get(ctx context.Context, key string) Op {
	p := c.rec.Invoke(c.ID, Input{Kind: KindGet, Key: key})
	e, _, err := c.SDK.GetConfig(ctx, key)
	switch {
	case err == nil:
		return p.Return(Output{Value: e.Value, Found: true}, OutcomeOK, nil)
	case definitive(err) && client.ErrorCode(err) == smr.CodeNotFound:
		return p.Return(Output{}, OutcomeOK, nil)
	default:
		// A read changes nothing: without a definitive answer it is left
		// out of the check.
		return p.Return(Output{}, OutcomeFailed, err)
	}
}

// definitive reports whether err is a node's definitive answer: an
// *APIError not wrapped in a *RetryError.
func definitive(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && !errors.As(err, new(*client.RetryError))
}

// orderedNotFound reports whether a delete was ordered and rejected because
// the key was not set.
func orderedNotFound(err error) bool {
	var ae *client.APIError
	return definitive(err) && errors.As(err, &ae) && ae.Code == smr.CodeNotFound && ae.Result != nil
}

// classifyWrite maps a write's error to an outcome. Only what the SDK
// reports as definitely not applied is OutcomeFailed: ErrUnavailable, or a
// node's definitive rejection. Everything else (ErrOutcomeUnknown, a
// transport or decoding error, a context that ended) may have been applied
// and is OutcomeUnknown.
func classifyWrite(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case client.IsOutcomeUnknown(err):
		return OutcomeUnknown
	case client.IsUnavailable(err), definitive(err):
		return OutcomeFailed
	default:
		return OutcomeUnknown
	}
}
