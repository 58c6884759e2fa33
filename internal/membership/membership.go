// Package membership discovers the other nodes of a Tandem cluster with
// hashicorp/memberlist (SWIM gossip).
//
// Each node gossips a small Meta (node ID, peer address, API address) as its
// memberlist node metadata. Start creates the memberlist and, if Join names
// other nodes, keeps trying to join them in the background with exponential
// backoff until one join succeeds (the retry-join behaviour of Consul), so
// nodes may start in any order. The node uses Members and WaitForExpect to
// find the servers to bootstrap Raft with (bootstrap_expect), and Notify to
// react to joins, leaves and metadata changes.
//
// Membership is advisory: it says who is reachable and where, never who is a
// voter. Raft's configuration (consensus.Engine.Members) is the authority
// on membership.
//
// A Gossip (Config.Gossip) rides on the same memberlist: its LocalState and
// MergeRemoteState are exchanged in every push/pull state sync (TCP), and
// Broadcast queues small messages that are piggybacked on gossip packets
// (UDP) and handed to the other nodes' NotifyMsg. Broadcasts are bounded in
// size (MaxBroadcastSize) and in number (the oldest queued are dropped).
//
// Metadata that does not parse, is larger than memberlist.MetaMaxSize or
// names an ID other than the memberlist node name is rejected: the node is
// left out of Members, the event is logged and counted (Stats.RejectedMeta).
package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node tells the others about itself.
type Meta struct {
	ID       string `json:"id"`        // node ID; equals the memberlist node name
	PeerAddr string `json:"peer_addr"` // node-to-node mTLS address (Raft, forwarding)
	APIAddr  string `json:"api_addr"`  // client API address
	// Join asks the leader to add this node as a voter. A node sets it
	// when it starts with no Raft state and no bootstrap configuration;
	// a node that was removed by an operator is not re-added by gossip.
	Join bool `json:"join,omitempty"`
}

// Timing tunes memberlist's failure detector and gossip. Zero fields keep
// memberlist.DefaultLANConfig's values.
type Timing struct {
	ProbeInterval    time.Duration // how often a random member is probed
	ProbeTimeout     time.Duration // how long to wait for a probe's ack
	GossipInterval   time.Duration // how often gossip messages are sent
	PushPullInterval time.Duration // how often a full state sync runs
	SuspicionMult    int           // suspicion timeout multiplier
}

// Config configures Start.
type Config struct {
	// NodeID is the memberlist node name; it must equal Meta.ID (Meta.ID is
	// filled in when empty).
	NodeID string
	// BindAddr is the gossip listen address, host:port (TCP and UDP). Port 0
	// picks a free port.
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use, host:port. Empty:
	// the bound address (memberlist picks a private IP for 0.0.0.0).
	AdvertiseAddr string
	// Join lists gossip addresses (host:port) of other nodes to join.
	Join []string
	// SecretKey, when set, encrypts and authenticates gossip (AES-GCM); it
	// must be 16, 24 or 32 bytes and the same on every node.
	SecretKey []byte
	// Meta is this node's metadata.
	Meta Meta
	// Logger receives membership logs and memberlist's own (mapped by its
	// [DEBUG]/[INFO]/[WARN]/[ERR] prefixes). Default: slog.Default().
	Logger *slog.Logger
	// Timing tunes gossip; the zero value is memberlist's LAN profile.
	Timing Timing
	// Gossip, if set, carries a user payload in push/pull syncs and
	// broadcasts (see Gossip).
	Gossip Gossip
	// JoinRetryMin and JoinRetryMax bound the backoff between join attempts.
	// Defaults: 250ms and 15s.
	JoinRetryMin, JoinRetryMax time.Duration
}

// Validate reports the first problem of c.
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("membership: node ID is empty")
	}
	if c.Meta.ID != "" && c.Meta.ID != c.NodeID {
		return fmt.Errorf("membership: meta ID %q differs from node ID %q", c.Meta.ID, c.NodeID)
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("membership: bind address: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("membership: advertise address: %w", err)
		}
	}
	for _, j := range c.Join {
		if j == "" {
			return errors.New("membership: empty join address")
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("membership: secret key is %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	meta := c.Meta
	meta.ID = c.NodeID
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("membership: encode meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("membership: encoded meta is %d bytes, more than memberlist's limit of %d", len(b), memberlist.MetaMaxSize)
	}
	if c.JoinRetryMin < 0 || c.JoinRetryMax < 0 || (c.JoinRetryMax > 0 && c.JoinRetryMin > c.JoinRetryMax) {
		return fmt.Errorf("membership: join retry bounds %s..%s are invalid", c.JoinRetryMin, c.JoinRetryMax)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has an invalid port", addr)
	}
	return host, port, nil
}

// Gossip is a payload that memberlist carries for the node. memberlist
// calls it from its own goroutines, concurrently; none of the methods may
// block for long.
type Gossip interface {
	// LocalState returns the state sent to a peer in a push/pull sync
	// (join is true when the sync is part of a join). At most
	// MaxStateSize bytes are sent; a larger state is replaced by nothing.
	LocalState(join bool) []byte
	// MergeRemoteState takes a peer's LocalState.
	MergeRemoteState(buf []byte, join bool)
	// NotifyMsg takes a peer's broadcast (see Membership.Broadcast).
	// buf is only valid during the call.
	NotifyMsg(buf []byte)
}

// Gossip bounds.
const (
	// MaxStateSize bounds a Gossip's push/pull state (memberlist refuses
	// states over 20 MiB; ours stay well below).
	MaxStateSize = 4 << 20
	// maxQueuedBroadcasts bounds the broadcasts waiting to be sent; the
	// oldest are dropped first.
	maxQueuedBroadcasts = 1024
	// broadcastRetransmitMult is memberlist's RetransmitMult for user
	// broadcasts: each is sent about mult*log(n+1) times.
	broadcastRetransmitMult = 4
)

// Stats counts membership events.
type Stats struct {
	RejectedMeta uint64 // join/update events whose metadata was refused
	JoinFailures uint64 // failed join attempts
	Joined       bool   // a join has succeeded (always true without Join)
	// DroppedStates counts gossip states over MaxStateSize, ours not
	// sent and peers' not taken.
	DroppedStates uint64
}

// Membership is a running memberlist. All methods are safe for concurrent
// use.
type Membership struct {
	ml     *memberlist.Memberlist
	self   Meta
	logger *slog.Logger

	mu      sync.Mutex
	members map[string]Meta // valid metas of live members, self included
	changed chan struct{}   // closed and replaced on every change
	notify  chan struct{}   // capacity 1, for Notify

	rejected, joinFailures atomic.Uint64
	joined                 atomic.Bool

	gossip        Gossip
	queue         *memberlist.TransmitLimitedQueue
	numMembers    atomic.Int64 // len(members), read by the queue
	maxBroadcast  int
	droppedStates atomic.Uint64

	cancel   context.CancelFunc
	joinDone chan struct{}

	lifeMu sync.Mutex // serialises Leave and Shutdown
	down   bool       // Shutdown has run
}

// Start creates the memberlist and starts joining cfg.Join in the
// background. ctx bounds the background joining only (Shutdown stops it
// too); the memberlist runs until Shutdown.
func Start(ctx context.Context, cfg Config) (*Membership, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JoinRetryMin == 0 {
		cfg.JoinRetryMin = 250 * time.Millisecond
	}
	if cfg.JoinRetryMax == 0 {
		cfg.JoinRetryMax = 15 * time.Second
	}
	cfg.JoinRetryMax = max(cfg.JoinRetryMax, cfg.JoinRetryMin)
	cfg.Meta.ID = cfg.NodeID
	logger := cfg.Logger.With("component", "membership")

	m := &Membership{
		self:     cfg.Meta,
		logger:   logger,
		members:  map[string]Meta{cfg.NodeID: cfg.Meta},
		changed:  make(chan struct{}),
		notify:   make(chan struct{}, 1),
		joinDone: make(chan struct{}),
		gossip:   cfg.Gossip,
	}
	m.numMembers.Store(1)
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(m.numMembers.Load()) },
		RetransmitMult: broadcastRetransmitMult,
	}
	metaBytes, _ := json.Marshal(cfg.Meta) // size checked by Validate

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	host, port, _ := splitHostPort(cfg.BindAddr)
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if cfg.AdvertiseAddr != "" {
		ah, ap, _ := splitHostPort(cfg.AdvertiseAddr)
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.SecretKey)
	}
	applyTiming(mc, cfg.Timing)
	mc.Logger = log.New(&stdLogWriter{logger: logger}, "", 0)
	mc.LogOutput = nil
	// What a broadcast may use of a gossip packet: the UDP buffer less
	// memberlist's compound and user-message framing, the encryption
	// overhead and a margin for the label.
	m.maxBroadcast = mc.UDPBufferSize - 16
	if len(cfg.SecretKey) > 0 {
		m.maxBroadcast -= 64
	}
	mc.Delegate = &delegate{meta: metaBytes, m: m}
	mc.Events = &events{m: m}

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	m.ml = ml

	jctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	if len(cfg.Join) == 0 {
		m.joined.Store(true)
		close(m.joinDone)
	} else {
		go m.retryJoin(jctx, slices.Clone(cfg.Join), cfg.JoinRetryMin, cfg.JoinRetryMax)
	}
	logger.Info("gossip started", "addr", m.LocalAddr(), "join", cfg.Join, "encrypted", len(cfg.SecretKey) > 0)
	return m, nil
}

func applyTiming(mc *memberlist.Config, t Timing) {
	if t.ProbeInterval > 0 {
		mc.ProbeInterval = t.ProbeInterval
	}
	if t.ProbeTimeout > 0 {
		mc.ProbeTimeout = t.ProbeTimeout
	}
	if t.GossipInterval > 0 {
		mc.GossipInterval = t.GossipInterval
	}
	if t.PushPullInterval > 0 {
		mc.PushPullInterval = t.PushPullInterval
	}
	if t.SuspicionMult > 0 {
		mc.SuspicionMult = t.SuspicionMult
	}
}

// retryJoin tries to join addrs until one attempt succeeds or ctx ends.
func (m *Membership) retryJoin(ctx context.Context, addrs []string, minDelay, maxDelay time.Duration) {
	defer close(m.joinDone)
	delay := minDelay
	for attempt := 1; ; attempt++ {
		n, err := m.ml.Join(addrs)
		if n > 0 {
			m.joined.Store(true)
			m.logger.Info("joined cluster", "contacted", n, "attempt", attempt)
			if err != nil {
				m.logger.Debug("some join addresses failed", "error", err)
			}
			return
		}
		m.joinFailures.Add(1)
		m.logger.Warn("join failed; retrying", "addrs", addrs, "attempt", attempt, "retry_in", delay, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, maxDelay)
	}
}

// LocalAddr returns this node's advertised gossip address.
func (m *Membership) LocalAddr() string {
	n := m.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Members returns the metadata of the live members with valid metadata,
// this node included, sorted by ID. Suspect members count as live until
// memberlist declares them dead. The slice is the caller's.
func (m *Membership) Members() []Meta {
	m.mu.Lock()
	out := make([]Meta, 0, len(m.members))
	for _, meta := range m.members {
		out = append(out, meta)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Meta) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// WaitForExpect blocks until at least n members (this node included) are
// known and returns them (as Members), or returns ctx's error.
func (m *Membership) WaitForExpect(ctx context.Context, n int) ([]Meta, error) {
	for {
		m.mu.Lock()
		count, changed := len(m.members), m.changed
		m.mu.Unlock()
		if count >= n {
			return m.Members(), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("membership: waiting for %d members, %d known: %w", n, count, ctx.Err())
		case <-changed:
		}
	}
}

// Notify returns a channel that receives a value after members join, leave
// or change their metadata. Signals coalesce (capacity 1): after a receive,
// read Members for the current state. There is one channel per Membership;
// use it from a single consumer.
func (m *Membership) Notify() <-chan struct{} { return m.notify }

// Stats returns the membership counters.
func (m *Membership) Stats() Stats {
	return Stats{RejectedMeta: m.rejected.Load(), JoinFailures: m.joinFailures.Load(), Joined: m.joined.Load(), DroppedStates: m.droppedStates.Load()}
}

// Leave broadcasts that this node is leaving and waits up to timeout for the
// message to go out. The node keeps gossiping until Shutdown. Leave after
// Shutdown is a no-op.
func (m *Membership) Leave(timeout time.Duration) error {
	m.cancel()
	<-m.joinDone
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.down {
		return nil
	}
	if err := m.ml.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops background joining and the memberlist without a leave
// broadcast (others will detect the failure; call Leave first for a
// graceful exit). It is idempotent.
func (m *Membership) Shutdown() error {
	m.cancel()
	<-m.joinDone
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.down {
		return nil
	}
	m.down = true
	if err := m.ml.Shutdown(); err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

// MaxBroadcastSize is the largest message Broadcast takes.
func (m *Membership) MaxBroadcastSize() int { return m.maxBroadcast }

// errNoGossip is returned by Broadcast without Config.Gossip.
var errNoGossip = errors.New("membership: broadcast: no gossip payload is configured")

// Broadcast queues msg for the other nodes' Gossip.NotifyMsg. Delivery is
// best effort (UDP, each message sent a few times to random nodes); the
// push/pull state is what makes nodes converge. It refuses a message over
// MaxBroadcastSize. The queue is bounded: the oldest broadcasts are
// dropped when it is full.
func (m *Membership) Broadcast(msg []byte) error {
	if m.gossip == nil {
		return errNoGossip
	}
	if len(msg) > m.maxBroadcast {
		return fmt.Errorf("membership: broadcast of %d bytes, at most %d", len(msg), m.maxBroadcast)
	}
	m.queue.QueueBroadcast(broadcast(slices.Clone(msg)))
	if m.queue.NumQueued() > maxQueuedBroadcasts {
		m.queue.Prune(maxQueuedBroadcasts)
	}
	return nil
}

// QueuedBroadcasts returns the number of broadcasts waiting to be sent.
func (m *Membership) QueuedBroadcasts() int { return m.queue.NumQueued() }

// broadcast is one queued user message; broadcasts never replace each
// other.
type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}

// changedLocked wakes WaitForExpect callers and the Notify consumer. m.mu
// must be held.
func (m *Membership) changedLocked() {
	m.numMembers.Store(int64(len(m.members)))
	close(m.changed)
	m.changed = make(chan struct{})
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// parseMeta decodes and checks the metadata of node.
func parseMeta(node *memberlist.Node) (Meta, error) {
	if len(node.Meta) > memberlist.MetaMaxSize {
		return Meta{}, fmt.Errorf("metadata is %d bytes, limit %d", len(node.Meta), memberlist.MetaMaxSize)
	}
	var meta Meta
	dec := json.NewDecoder(bytes.NewReader(node.Meta))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		return Meta{}, fmt.Errorf("metadata does not parse: %w", err)
	}
	if meta.ID != node.Name {
		return Meta{}, fmt.Errorf("metadata names node %q but the gossip name is %q", meta.ID, node.Name)
	}
	if meta.PeerAddr == "" {
		return Meta{}, errors.New("metadata has no peer address")
	}
	return meta, nil
}

// events is the memberlist.EventDelegate. memberlist calls it from its own
// goroutines; it never blocks.
type events struct{ m *Membership }

func (e *events) NotifyJoin(n *memberlist.Node)   { e.upsert(n, "join") }
func (e *events) NotifyUpdate(n *memberlist.Node) { e.upsert(n, "update") }

func (e *events) NotifyLeave(n *memberlist.Node) {
	m := e.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if n.Name == m.self.ID {
		return
	}
	if _, ok := m.members[n.Name]; ok {
		delete(m.members, n.Name)
		m.logger.Info("member left or failed", "member", n.Name, "addr", n.Address())
		m.changedLocked()
	}
}

func (e *events) upsert(n *memberlist.Node, what string) {
	m := e.m
	if n.Name == m.self.ID {
		return
	}
	meta, err := parseMeta(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.rejected.Add(1)
		m.logger.Warn("ignoring member with invalid metadata", "member", n.Name, "addr", n.Address(), "event", what, "error", err)
		if _, ok := m.members[n.Name]; ok {
			delete(m.members, n.Name)
			m.changedLocked()
		}
		return
	}
	if old, ok := m.members[n.Name]; ok && old == meta {
		return
	}
	m.members[n.Name] = meta
	m.logger.Info("member "+what, "member", meta.ID, "peer_addr", meta.PeerAddr, "api_addr", meta.APIAddr)
	m.changedLocked()
}

// delegate is the memberlist.Delegate: it serves this node's metadata and
// connects the Gossip, if any.
type delegate struct {
	meta []byte
	m    *Membership
}

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}

func (d *delegate) NotifyMsg(buf []byte) {
	if d.m.gossip != nil {
		d.m.gossip.NotifyMsg(buf)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.m.gossip == nil {
		return nil
	}
	return d.m.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	if d.m.gossip == nil {
		return nil
	}
	b := d.m.gossip.LocalState(join)
	if len(b) > MaxStateSize {
		d.m.droppedStates.Add(1)
		d.m.logger.Warn("gossip state over the size limit: not sent", "bytes", len(b), "limit", MaxStateSize)
		return nil
	}
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if d.m.gossip == nil || len(buf) == 0 {
		return
	}
	if len(buf) > MaxStateSize {
		d.m.droppedStates.Add(1)
		d.m.logger.Debug("peer gossip state over the size limit: dropped", "bytes", len(buf), "limit", MaxStateSize)
		return
	}
	d.m.gossip.MergeRemoteState(buf, join)
}

// stdLogWriter maps memberlist's "[LEVEL] memberlist: msg" lines to slog.
type stdLogWriter struct{ logger *slog.Logger }

func (w *stdLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	prefixes := [...]struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug}, {"[TRACE]", slog.LevelDebug - 4}, {"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError},
	}
	level := slog.LevelInfo
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			level, line = p.level, strings.TrimSpace(rest)
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.logger.Log(context.Background(), level, line, "source", "memberlist")
	return len(p), nil
}
