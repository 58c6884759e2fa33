package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/config"
)

// peerPostTimeout bounds one peer's answer in postToPeers.
const peerPostTimeout = 2 * time.Second

// postToPeers POSTs body to path (with its query) on the peer port of
// every member in members but this node and those skip refuses, all at
// once, and hands each peer's answer — a JSON array of T, at most limit
// bytes, with status 200 — to take with the peer's ID. A peer that fails
// or answers otherwise is passed over. It returns when every peer has
// answered or timed out. take runs concurrently for different peers.
func postToPeers[T any](ctx context.Context, n *Node, members []config.Member, path string, body []byte, limit int64, skip func(id string) bool, take func(peer string, answers []T)) {
	var wg sync.WaitGroup
	for _, m := range members {
		if m.ID == n.cfg.NodeID || (skip != nil && skip(m.ID)) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, peerPostTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(cctx, http.MethodPost, "http://"+m.Addr+path, bytes.NewReader(body))
			if err != nil {
				return
			}
			resp, err := n.rpc.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var answers []T
			if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(&answers) != nil {
				return
			}
			take(m.ID, answers)
		}()
	}
	wg.Wait()
}
