package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// Node-to-node forwarding runs as HTTP over the peer port's mutual-TLS
// connections (protocol byte 'F' of internal/transport): only verified
// cluster nodes reach these handlers.
const (
	pathPropose   = "/internal/propose"
	pathReadIndex = "/internal/read-index"
	// maxForwardBytes bounds a forwarded response body (a result).
	maxForwardBytes = 64 << 20
)

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

// rpcHandler serves forwarded requests on the leader. It never forwards
// again: a node that is no longer the leader answers no_leader and the
// original caller retries.
func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathPropose, func(w http.ResponseWriter, r *http.Request) {
		body, ok := n.memberBody(w, r, n.cfg.Limits.MaxRequestBytes, "forwarding is accepted only from current members", "forwarded envelope")
		if !ok {
			return
		}
		var env smr.Envelope
		if err := env.UnmarshalBinary(body); err != nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "forwarded envelope: %v", err))
			return
		}
		// The leader checks again what the forwarding node checked: a node
		// certificate alone must not be enough to fill the log.
		cached, err := n.fsm.Precheck(&env)
		if err != nil {
			writeRPCError(w, err)
			return
		}
		if cached == nil && n.dropForwarded(r.Context()) {
			return
		}
		res := smr.Result{}
		if cached != nil {
			res = *cached
		} else if res, err = n.proposeLocal(r.Context(), &env); err != nil {
			writeRPCError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("POST "+pathReadIndex, func(w http.ResponseWriter, r *http.Request) {
		if !n.fromMember(r) {
			writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "read index is served only to current members"))
			return
		}
		if err := n.eng().ReadBarrier(r.Context()); err != nil {
			writeRPCError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(readIndexResponse{Index: n.fsm.AppliedIndex()})
	})
	n.registerDetectorRPC(mux)
	n.registerEpochRPC(mux)
	n.registerResyncRPC(mux)
	return mux
}

// fromMember reports whether the calling node (verified by the peer
// port's mutual TLS) is in the current configuration.
func (n *Node) fromMember(r *http.Request) bool {
	id := transport.PeerIDFromContext(r.Context())
	if id == "" || n.quarantinedPeer(id) {
		return false
	}
	if !n.peers.member(id) {
		n.refreshPeers(r.Context()) // a member that joined since the last refresh
	}
	return n.peers.member(id)
}

// memberBody is the prologue of a peer request that carries a body: the
// caller must be a member (fromMember; otherwise permission_denied with
// deny), and the body is read whole, at most limit bytes (otherwise
// malformed, "what: reason"). ok is false when the error was written.
func (n *Node) memberBody(w http.ResponseWriter, r *http.Request, limit int64, deny, what string) (body []byte, ok bool) {
	if !n.fromMember(r) {
		writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "%s", deny))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeRPCError(w, smr.Errorf(smr.CodeMalformed, "%s: %v", what, err))
		return nil, false
	}
	return body, true
}

func writeRPCError(w http.ResponseWriter, err error) {
	b := api.ErrorBodyFor(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.StatusFor(b.Code))
	_ = json.NewEncoder(w).Encode(b)
}

// rpcError turns an error body from a peer back into the error it stands for.
func rpcError(b api.ErrorBody, leaderID string) error {
	switch b.Code {
	case api.CodeOutcomeUnknown:
		return fmt.Errorf("leader %s: %w", leaderID, consensus.ErrOutcomeUnknown)
	case api.CodeNoLeader:
		if b.RetryAfterMillis > 0 {
			return fmt.Errorf("leader %s: %s: %w", leaderID, b.Message, api.ErrEpochSwitching)
		}
		return fmt.Errorf("leader %s: %s: %w", leaderID, b.Message, api.ErrUnavailable)
	case api.CodeInternal:
		return fmt.Errorf("leader %s: %s", leaderID, b.Message)
	default:
		return &smr.Error{Code: b.Code, Message: b.Message}
	}
}

// forward POSTs body to path on the peer at addr. wrote reports whether the
// request was fully written, which decides between "unavailable" (nothing
// reached the leader) and "outcome unknown".
func (n *Node) forward(ctx context.Context, addr, leaderID, path string, body []byte, out any) (wrote bool, err error) {
	var sent atomic.Bool // set from net/http's writer goroutine
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { sent.Store(true) }}
	defer func() { wrote = sent.Load() }()
	ctx = httptrace.WithClientTrace(ctx, trace)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("forward to %s: %w", leaderID, err)
	}
	resp, err := n.rpc.Do(req)
	if err != nil {
		return sent.Load(), fmt.Errorf("forward to leader %s at %s: %w", leaderID, addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBytes))
	if err != nil {
		return true, fmt.Errorf("forward to leader %s: reading response: %w", leaderID, err)
	}
	if resp.StatusCode != http.StatusOK {
		var b api.ErrorBody
		if jerr := json.Unmarshal(data, &b); jerr != nil || b.Code == "" {
			return true, fmt.Errorf("forward to leader %s: HTTP %d: %s", leaderID, resp.StatusCode, bytes.TrimSpace(data))
		}
		return true, rpcError(b, leaderID)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return true, fmt.Errorf("forward to leader %s: decoding response: %w", leaderID, err)
	}
	return true, nil
}

// forwardPropose sends env to the leader and classifies transport failures.
func (n *Node) forwardPropose(ctx context.Context, nl *consensus.NotLeaderError, env *smr.Envelope) (smr.Result, error) {
	body, err := env.MarshalBinary()
	if err != nil {
		return smr.Result{}, smr.Errorf(smr.CodeMalformed, "envelope: %v", err)
	}
	var res smr.Result
	wrote, err := n.forward(ctx, nl.LeaderAddr, nl.LeaderID, pathPropose, body, &res)
	if err == nil {
		return res, nil
	}
	var se *smr.Error
	if errors.As(err, &se) || errors.Is(err, consensus.ErrOutcomeUnknown) || errors.Is(err, api.ErrUnavailable) {
		return smr.Result{}, err
	}
	if wrote {
		return smr.Result{}, fmt.Errorf("%w: %v", consensus.ErrOutcomeUnknown, err)
	}
	return smr.Result{}, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
}

// forwardReadIndex asks the leader to confirm a read index.
func (n *Node) forwardReadIndex(ctx context.Context, nl *consensus.NotLeaderError) (uint64, error) {
	var out readIndexResponse
	if _, err := n.forward(ctx, nl.LeaderAddr, nl.LeaderID, pathReadIndex, nil, &out); err != nil {
		var se *smr.Error
		if errors.As(err, &se) || errors.Is(err, api.ErrUnavailable) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: %v", api.ErrUnavailable, err)
	}
	return out.Index, nil
}
