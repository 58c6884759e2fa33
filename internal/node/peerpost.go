package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/config"
)

// peerPostTimeout bounds one peer's answer in postEach.
const peerPostTimeout = 2 * time.Second

// postEach POSTs body to path (with its query) on the peer port of every
// member in members but this node and those skip refuses, all at once, and
// hands each peer's answer to take: the body of a 200 answer (at most
// limit bytes), nil for any other status, or the error that prevented
// one. It returns when every peer has answered or timed out; take runs
// concurrently for different peers.
func postEach(ctx context.Context, n *Node, members []config.Member, path string, body []byte, limit int64, skip func(id string) bool, take func(peer string, answer []byte, err error)) {
	var wg sync.WaitGroup
	for _, m := range members {
		if m.ID == n.cfg.NodeID || (skip != nil && skip(m.ID)) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answer, err := postOne(ctx, n, m.Addr, path, body, limit)
			take(m.ID, answer, err)
		}()
	}
	wg.Wait()
}

// postOne is one POST of postEach: the body of a 200 answer, nil for any
// other status, or the error that prevented one.
func postOne(ctx context.Context, n *Node, addr, path string, body []byte, limit int64) ([]byte, error) {
	status, b, err := postPeer(ctx, n, addr, path, body, limit, peerPostTimeout)
	if err != nil || status != http.StatusOK {
		return nil, err
	}
	return b, nil
}

// peerErrorTextLimit bounds what is read of a peer's answer that is not a
// 200.
const peerErrorTextLimit = 4 << 10

// postPeer POSTs body to path (with its query) on the peer port of the
// member at addr within timeout, and returns the answer's status and
// body: of a 200 answer at most limit bytes (a larger one is an error), of
// any other the start of its text (at most peerErrorTextLimit bytes).
func postPeer(ctx context.Context, n *Node, addr, path string, body []byte, limit int64, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := n.rpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, peerErrorTextLimit))
		return resp.StatusCode, b, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if int64(len(b)) > limit {
		return resp.StatusCode, nil, fmt.Errorf("answer of %s is larger than %d bytes", addr, limit)
	}
	return resp.StatusCode, b, nil
}

// postToPeers is postEach for peers that answer with a JSON array of T;
// take gets each peer's decoded array, and peers that fail or answer
// otherwise are passed over.
func postToPeers[T any](ctx context.Context, n *Node, members []config.Member, path string, body []byte, limit int64, skip func(id string) bool, take func(peer string, answers []T)) {
	postEach(ctx, n, members, path, body, limit, skip, func(peer string, answer []byte, err error) {
		var answers []T
		if err != nil || answer == nil || json.Unmarshal(answer, &answers) != nil {
			return
		}
		take(peer, answers)
	})
}
