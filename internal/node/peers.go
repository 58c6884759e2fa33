package node

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-consensus/tandem/consensus"
	"github.com/tandem-consensus/tandem/internal/membership"
	"github.com/tandem-consensus/tandem/internal/transport"
)

// peerDir is the current Raft membership as the peer transport needs it:
// which node answers at which address, and which nodes may call the
// forwarding RPCs. It is replaced, never mutated.
type peerDir struct {
	byAddr map[string]string // peer address -> node ID
	ids    map[string]bool
}

func newPeerDir(ms []consensus.Member) *peerDir {
	d := &peerDir{byAddr: make(map[string]string, len(ms)), ids: make(map[string]bool, len(ms))}
	for _, m := range ms {
		d.byAddr[m.Address] = m.ID
		d.ids[m.ID] = true
	}
	return d
}

// peers holds the directory; the zero value is empty.
type peers struct{ p atomic.Pointer[peerDir] }

func (ps *peers) set(ms []consensus.Member) { ps.p.Store(newPeerDir(ms)) }

// expected implements transport.Config.ExpectedPeer.
func (ps *peers) expected(addr string) (string, bool) {
	d := ps.p.Load()
	if d == nil {
		return "", false
	}
	id, ok := d.byAddr[addr]
	return id, ok
}

// member reports whether id is in the current configuration.
func (ps *peers) member(id string) bool {
	d := ps.p.Load()
	return d != nil && d.ids[id]
}

// refreshPeers reloads the directory from the engine's configuration.
func (n *Node) refreshPeers(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ms, err := n.eng().Members(cctx)
	if err != nil || len(ms) == 0 {
		return
	}
	n.peers.set(ms)
}

// verifier proves that a gossip member holds a node certificate of the
// cluster CA for the ID it claims, at the peer address it advertises, by
// dialling it over the peer port. Gossip alone is not trusted: anyone who
// can reach the gossip port could claim to be a server. Successes are
// remembered per (id, address).
type verifier struct {
	mux *transport.Mux

	mu sync.Mutex
	ok map[membership.Meta]bool
}

func (v *verifier) verify(ctx context.Context, m membership.Meta) error {
	key := membership.Meta{ID: m.ID, PeerAddr: m.PeerAddr}
	v.mu.Lock()
	done := v.ok[key]
	v.mu.Unlock()
	if done {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := v.mux.DialRPC(ctx, m.PeerAddr)
	if err != nil {
		return fmt.Errorf("gossip member %s at %s: %w", m.ID, m.PeerAddr, err)
	}
	got := transport.PeerID(c)
	_ = c.Close()
	if got != m.ID {
		return fmt.Errorf("gossip member claims to be %q but %s presented the certificate of node %q", m.ID, m.PeerAddr, got)
	}
	v.mu.Lock()
	if v.ok == nil {
		v.ok = map[membership.Meta]bool{}
	}
	v.ok[key] = true
	v.mu.Unlock()
	return nil
}

// discoverExpected waits until exactly bootstrap_expect verified servers
// are known through gossip and returns them sorted by ID. More verified
// servers than expected is an error: nodes could then bootstrap different
// configurations.
func (n *Node) discoverExpected(ctx context.Context, expect int) ([]consensus.Member, error) {
	warned := map[string]bool{}
	for {
		var verified []consensus.Member
		for _, m := range n.members.Members() {
			if m.PeerAddr == "" {
				continue
			}
			if err := n.verifier.verify(ctx, m); err != nil {
				if !warned[m.ID+m.PeerAddr] {
					n.log.Warn("ignoring unverified gossip member", "err", err)
					warned[m.ID+m.PeerAddr] = true
				}
				continue
			}
			verified = append(verified, consensus.Member{ID: m.ID, Address: m.PeerAddr, Voter: true})
		}
		switch {
		case len(verified) == expect:
			slices.SortFunc(verified, func(a, b consensus.Member) int {
				if a.ID < b.ID {
					return -1
				}
				if a.ID > b.ID {
					return 1
				}
				return 0
			})
			return verified, nil
		case len(verified) > expect:
			return nil, fmt.Errorf("found %d verified servers, more than bootstrap_expect (%d): start exactly bootstrap_expect servers to form a cluster", len(verified), expect)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.members.Notify():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
