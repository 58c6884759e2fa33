package bftlog

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
)

// Replica is one node's copy of the replicated logs: a Store and its
// Frontier, the node's own log (when it has a key), and the bookkeeping
// that gossip needs. It speaks gossip packets (see EncodePacket): State
// builds the push/pull state, MergeState and MergeMessages take a peer's
// packet. It does no I/O of its own; the caller moves the bytes.
//
// Replica is safe for concurrent use. Every bound is fixed at creation:
// the Store's (content size, messages per author, authors, one invalid
// proof per author), the packet size, the messages waiting for a
// predecessor, the ids asked for and the peers remembered.
type Replica struct {
	cfg  ReplicaConfig
	self Author

	mu      sync.Mutex
	store   *Store
	front   *Frontier
	last    ID               // the own log's last message
	waiting map[ID]*Message  // messages whose predecessors are missing
	blocked map[ID][]ID      // missing id -> waiting messages that need it
	asked   map[ID]struct{}  // ids peers asked for
	peers   map[string][]Log // each peer's last frontier, by sender label
	wants   map[ID]struct{}  // ids seen in peers' logs that the store lacks
	allowed map[Author]bool  // nil: any author
	onAdded func(m *Message) // see ReplicaConfig.OnAdded
	onDrop  func(string, error)
}

// ReplicaConfig configures NewReplica.
type ReplicaConfig struct {
	// Store bounds the store (DefaultConfig when zero).
	Store Config
	// Key signs the replica's own log; nil for a replica that only
	// relays and checks others' logs.
	Key ed25519.PrivateKey
	// Name labels the replica's packets (at most MaxGossipFrom bytes).
	Name string
	// Authors, when not empty, are the only authors whose messages are
	// taken; others are dropped with DropUnknownAuthor.
	Authors []Author
	// MaxPacket bounds a packet, both built and taken (DefaultMaxPacket
	// when 0). Every replica of a cluster must use the same value.
	MaxPacket int
	// MaxWaiting bounds the messages held until their predecessors
	// arrive (default 4096).
	MaxWaiting int
	// MaxPeers bounds the peer frontiers remembered (default 64).
	MaxPeers int
	// OnAdded, if set, is called for every message the store takes, in
	// the order taken (predecessors first), own messages included. It
	// runs with the replica's lock held and must not call the replica.
	OnAdded func(m *Message)
	// OnDrop, if set, is called for every refused packet or message with
	// one of the Drop* reasons and the error. It runs with the replica's
	// lock held and must not call the replica.
	OnDrop func(reason string, err error)
}

// Reasons given to ReplicaConfig.OnDrop (see DropReason).
const (
	DropOversized          = "oversized"
	DropMalformed          = "malformed"
	DropUnknownAuthor      = "unknown_author"
	DropTooLarge           = "too_large"
	DropBadSignature       = "bad_signature"
	DropInvalid            = "invalid"
	DropInvalidPredecessor = "invalid_predecessor"
	DropAuthorFull         = "author_full"
	DropTooManyAuthors     = "too_many_authors"
	DropWaitingFull        = "waiting_full"
	DropBadLog             = "bad_log"
	DropOther              = "other"
)

// DropReason classifies an error of this package as one of the Drop*
// reasons.
func DropReason(err error) string {
	switch {
	case errors.Is(err, ErrOversized):
		return DropOversized
	case errors.Is(err, ErrMalformed):
		return DropMalformed
	case errors.Is(err, ErrTooLarge):
		return DropTooLarge
	case errors.Is(err, ErrBadSignature):
		return DropBadSignature
	case errors.Is(err, ErrInvalid):
		return DropInvalid
	case errors.Is(err, ErrInvalidPredecessor):
		return DropInvalidPredecessor
	case errors.Is(err, ErrAuthorFull):
		return DropAuthorFull
	case errors.Is(err, ErrTooManyAuthors):
		return DropTooManyAuthors
	case errors.Is(err, ErrInvalidLog), errors.Is(err, ErrAuthorMismatch):
		return DropBadLog
	default:
		return DropOther
	}
}

// errUnknownAuthor is reported for messages of authors outside
// ReplicaConfig.Authors.
var errUnknownAuthor = errors.New("author is not a member")

// errWaitingFull is reported when a message waits for a predecessor and
// the waiting room is full.
var errWaitingFull = errors.New("too many messages waiting for predecessors")

// NewReplica returns an empty replica.
func NewReplica(cfg ReplicaConfig) (*Replica, error) {
	if cfg.Store == (Config{}) {
		cfg.Store = DefaultConfig()
	}
	if cfg.MaxPacket == 0 {
		cfg.MaxPacket = DefaultMaxPacket
	}
	if cfg.MaxWaiting == 0 {
		cfg.MaxWaiting = 4096
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = 64
	}
	if len(cfg.Name) > MaxGossipFrom {
		return nil, fmt.Errorf("bftlog: new replica: %w: name of %d bytes, at most %d", ErrInvalidConfig, len(cfg.Name), MaxGossipFrom)
	}
	if cfg.MaxPacket < 1024 || cfg.MaxWaiting < 1 || cfg.MaxPeers < 1 {
		return nil, fmt.Errorf("bftlog: new replica: %w: MaxPacket %d (at least 1024), MaxWaiting %d, MaxPeers %d (at least 1)",
			ErrInvalidConfig, cfg.MaxPacket, cfg.MaxWaiting, cfg.MaxPeers)
	}
	st, err := NewStore(cfg.Store)
	if err != nil {
		return nil, fmt.Errorf("bftlog: new replica: %w", err)
	}
	r := &Replica{
		cfg:     cfg,
		store:   st,
		front:   st.NewFrontier(),
		waiting: map[ID]*Message{},
		blocked: map[ID][]ID{},
		asked:   map[ID]struct{}{},
		peers:   map[string][]Log{},
		wants:   map[ID]struct{}{},
		onAdded: cfg.OnAdded,
		onDrop:  cfg.OnDrop,
	}
	if cfg.Key != nil {
		if r.self, err = AuthorOf(cfg.Key.Public().(ed25519.PublicKey)); err != nil {
			return nil, fmt.Errorf("bftlog: new replica: %w", err)
		}
	}
	if len(cfg.Authors) > 0 {
		r.allowed = map[Author]bool{}
		for _, a := range cfg.Authors {
			r.allowed[a] = true
		}
	}
	return r, nil
}

// Self returns the author of the own log (zero without a key).
func (r *Replica) Self() Author { return r.self }

// Append signs content as the next message of the own log, stores it and
// returns it. persist, if not nil, is called with the message before it is
// stored or can be sent (so a node can write it to disk first: after a
// restart, Restore continues the chain instead of forking it); if persist
// fails, nothing is stored. The message has no deps, so the own log can be
// restored from the own messages alone. Append fails without a key, when
// the own log is forked (it is never extended then), when content is over
// the store's MaxContentSize (ErrTooLarge) or the own log is full
// (ErrAuthorFull).
func (r *Replica) Append(content []byte, persist func(*Message) error) (*Message, error) {
	if r.cfg.Key == nil {
		return nil, fmt.Errorf("bftlog: append: %w: the replica has no key", ErrInvalidConfig)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.front.Log(r.self); ok && !l.Growing() {
		return nil, fmt.Errorf("bftlog: append: the own log of %s is forked (%v); it is never extended", r.self.Short(), l.Forks)
	}
	if len(content) > r.cfg.Store.MaxContentSize {
		return nil, fmt.Errorf("bftlog: append: %w: %d bytes, at most %d allowed", ErrTooLarge, len(content), r.cfg.Store.MaxContentSize)
	}
	if n := r.store.Count(r.self); n >= r.cfg.Store.MaxMessagesPerAuthor {
		return nil, fmt.Errorf("bftlog: append: %w", &LimitError{Err: ErrAuthorFull, Author: r.self, Limit: n})
	}
	m, err := NewMessage(r.cfg.Key, r.last, nil, content)
	if err != nil {
		return nil, fmt.Errorf("bftlog: append: %w", err)
	}
	if persist != nil {
		if err := persist(m); err != nil {
			return nil, fmt.Errorf("bftlog: append: %w", err)
		}
	}
	if err := r.store.Add(m); err != nil {
		return nil, fmt.Errorf("bftlog: append: %w", err)
	}
	r.addedLocked(m)
	return m, nil
}

// Restore takes the own log's messages back (in order, as Append returned
// them) after a restart, so that Append continues the same chain instead
// of forking it. It stops at the first message it cannot take.
func (r *Replica) Restore(msgs []*Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range msgs {
		if m.author != r.self {
			return fmt.Errorf("bftlog: restore: message %d (%s) is by %s, not the own author %s", i, m.id.Short(), m.author.Short(), r.self.Short())
		}
		if m.prev != r.last {
			return fmt.Errorf("bftlog: restore: message %d (%s) follows %s, not the own last %s", i, m.id.Short(), m.prev.Short(), r.last.Short())
		}
		if err := r.store.Add(m); err != nil {
			return fmt.Errorf("bftlog: restore: message %d: %w", i, err)
		}
		r.addedLocked(m)
	}
	return nil
}

// addedLocked records a message the store took. r.mu is held.
func (r *Replica) addedLocked(m *Message) {
	_ = r.front.Update(m.id) // m is stored: cannot fail
	if m.author == r.self && r.cfg.Key != nil {
		if ok, _ := r.store.LessEq(r.last, m.id); r.last.IsZero() || ok {
			r.last = m.id
		}
	}
	delete(r.wants, m.id)
	if r.onAdded != nil {
		r.onAdded(m)
	}
}

func (r *Replica) drop(reason string, err error) {
	if r.onDrop != nil {
		r.onDrop(reason, err)
	}
}

// takeLocked offers m to the store and, once it is stored, every waiting
// message it unblocks. It returns the messages stored. r.mu is held.
func (r *Replica) takeLocked(m *Message) []*Message {
	var added []*Message
	queue := []*Message{m}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		if r.allowed != nil && !r.allowed[m.author] {
			r.drop(DropUnknownAuthor, fmt.Errorf("bftlog: message %s by %s: %w", m.id.Short(), m.author.Short(), errUnknownAuthor))
			continue
		}
		if r.store.Has(m.id) {
			continue
		}
		if r.store.Count(m.author) >= r.cfg.Store.MaxMessagesPerAuthor {
			// Refused before it may wait for a predecessor: a full
			// author's messages never get in.
			r.drop(DropAuthorFull, &LimitError{Err: ErrAuthorFull, ID: m.id, Author: m.author, Limit: r.cfg.Store.MaxMessagesPerAuthor})
			continue
		}
		err := r.store.Add(m)
		var missing *MissingDepsError
		switch {
		case err == nil:
			r.addedLocked(m)
			added = append(added, m)
			for _, id := range r.blocked[m.id] {
				if w, ok := r.waiting[id]; ok {
					delete(r.waiting, id)
					queue = append(queue, w)
				}
			}
			delete(r.blocked, m.id)
		case errors.As(err, &missing):
			if _, ok := r.waiting[m.id]; ok {
				continue
			}
			if len(r.waiting) >= r.cfg.MaxWaiting {
				r.drop(DropWaitingFull, fmt.Errorf("bftlog: message %s: %w (%d)", m.id.Short(), errWaitingFull, r.cfg.MaxWaiting))
				continue
			}
			r.waiting[m.id] = m
			for _, id := range missing.Missing {
				r.blocked[id] = append(r.blocked[id], m.id)
			}
		default:
			r.drop(DropReason(err), err)
			r.forgetWaitersLocked(m.id)
		}
	}
	return added
}

// forgetWaitersLocked drops the messages waiting, directly or not, for id,
// which was refused: they can never be stored. r.mu is held.
func (r *Replica) forgetWaitersLocked(id ID) {
	stack := []ID{id}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, w := range r.blocked[id] {
			if _, ok := r.waiting[w]; ok {
				delete(r.waiting, w)
				stack = append(stack, w)
			}
		}
		delete(r.blocked, id)
	}
}

// acceptLocked reports whether a decoded packet (p, err) is of kind want,
// counting and dropping it otherwise; what names the packet in the error.
// r.mu must be held.
func (r *Replica) acceptLocked(p *Packet, err error, want PacketKind, what string) bool {
	if err != nil {
		r.drop(DropReason(err), err)
		return false
	}
	if p.Kind != want {
		r.drop(DropMalformed, fmt.Errorf("bftlog: gossip %s: %w: a %s packet", what, ErrMalformed, p.Kind))
		return false
	}
	return true
}

// MergeMessages takes a PacketMessages (a broadcast). It returns the
// messages the store took, predecessors first; a packet that does not
// decode is dropped whole.
func (r *Replica) MergeMessages(b []byte) []*Message {
	p, err := DecodePacket(b, r.cfg.MaxPacket)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.acceptLocked(p, err, PacketMessages, "broadcast") {
		return nil
	}
	var added []*Message
	for _, m := range p.Messages {
		added = append(added, r.takeLocked(m)...)
	}
	return added
}

// MergeState takes a peer's PacketState: its messages (fork proofs first),
// the ids it asks for (served by the next State), and its frontier, merged
// log by log; a log naming messages this store lacks makes State ask for
// them. It returns the messages the store took, predecessors first.
func (r *Replica) MergeState(b []byte) []*Message {
	p, err := DecodePacket(b, r.cfg.MaxPacket)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.acceptLocked(p, err, PacketState, "state") {
		return nil
	}
	var added []*Message
	for _, m := range p.allMessages() {
		added = append(added, r.takeLocked(m)...)
	}
	for _, id := range p.Wants {
		if len(r.asked) >= MaxGossipWants {
			break
		}
		if r.store.Has(id) {
			r.asked[id] = struct{}{}
		}
	}
	logs := make([]Log, 0, len(p.Logs))
	for _, l := range p.Logs {
		if r.allowed != nil && !r.allowed[l.Author] {
			r.drop(DropUnknownAuthor, fmt.Errorf("bftlog: log of %s: %w", l.Author.Short(), errUnknownAuthor))
			continue
		}
		logs = append(logs, l)
		err := r.front.MergeLogs([]Log{l})
		var unknown *UnknownMessageError
		switch {
		case err == nil:
		case errors.As(err, &unknown):
			if _, ok := r.waiting[unknown.ID]; !ok && len(r.wants) < MaxGossipWants {
				r.wants[unknown.ID] = struct{}{}
			}
		default:
			r.drop(DropBadLog, err)
		}
	}
	if p.From != "" && p.From != r.cfg.Name {
		if _, ok := r.peers[p.From]; !ok && len(r.peers) >= r.cfg.MaxPeers {
			for k := range r.peers { // forget one peer to make room
				delete(r.peers, k)
				break
			}
		}
		r.peers[p.From] = logs
	}
	return added
}

// State returns this replica's push/pull state: its frontier, the ids it
// lacks, and, within MaxPacket, the messages peers asked for and then
// those a remembered peer lacks by its last frontier (all messages when
// join is set or no peer is known yet), predecessors first.
func (r *Replica) State(join bool) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &Packet{Kind: PacketState, From: r.cfg.Name}
	budget := r.cfg.MaxPacket - packetHeaderSize(PacketState, p.From)
	for _, l := range r.front.Logs() {
		if len(p.Logs) == MaxGossipLogs || packetLogSize(l) > budget {
			break
		}
		p.Logs = append(p.Logs, l)
		budget -= packetLogSize(l)
	}
	want := func(id ID) bool {
		if len(p.Wants) == MaxGossipWants || budget < idSize {
			return false
		}
		p.Wants = append(p.Wants, id)
		budget -= idSize
		return true
	}
	for id := range r.blocked {
		if _, ok := r.waiting[id]; !ok && !r.store.Has(id) && !want(id) {
			break
		}
	}
	for id := range r.wants {
		if !want(id) {
			break
		}
	}
	sent := map[ID]bool{}
	add := func(m *Message) bool {
		if sent[m.id] || len(p.Messages) == 0xFFFF {
			return len(p.Messages) < 0xFFFF
		}
		n := packetMessageSize(m)
		if n > budget {
			return false
		}
		p.Messages = append(p.Messages, m)
		sent[m.id] = true
		budget -= n
		return true
	}
	for id := range r.asked {
		delete(r.asked, id)
		if m, ok := r.store.Get(id); ok && !add(m) {
			break
		}
	}
	for _, ip := range r.store.Invalid() {
		add(ip.Message)
	}
	for _, rec := range r.store.order {
		if (join || len(r.peers) == 0 || r.someoneLacksLocked(rec)) && !add(rec.msg) {
			break
		}
	}
	b, err := EncodePacket(p, r.cfg.MaxPacket)
	if err != nil { // cannot happen: the packet was built within bounds
		r.drop(DropOther, err)
		return nil
	}
	return b
}

// someoneLacksLocked reports whether a remembered peer may lack rec: it
// has no log of rec's author, or a growing log whose last is unknown here
// or not after rec. A peer whose log of the author is shrinking already
// holds a fork proof, and gets no more of that author's messages this way.
func (r *Replica) someoneLacksLocked(rec *record) bool {
	for _, logs := range r.peers {
		l, ok := findLog(logs, rec.msg.author)
		if !ok {
			return true
		}
		if !l.Growing() {
			continue
		}
		last, known := r.store.recs[l.Last]
		if !known || !lessEqRec(rec, last) {
			return true
		}
	}
	return false
}

func findLog(logs []Log, a Author) (Log, bool) {
	lo, hi := 0, len(logs)
	for lo < hi {
		mid := (lo + hi) / 2
		switch c := logs[mid].Author.Compare(a); {
		case c == 0:
			return logs[mid], true
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return Log{}, false
}

// Broadcast returns m as a PacketMessages, or false when it does not fit
// in limit bytes (it then travels with the push/pull state only).
func (r *Replica) Broadcast(m *Message, limit int) ([]byte, bool) {
	b, err := EncodePacket(&Packet{Kind: PacketMessages, From: r.cfg.Name, Messages: []*Message{m}}, limit)
	if err != nil {
		return nil, false
	}
	return b, true
}

// Frontier returns the replica's logs, sorted by author.
func (r *Replica) Frontier() []Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.front.Logs()
}

// Equivocators returns the shrinking logs (authors that forked), with
// their proofs, sorted by author.
func (r *Replica) Equivocators() []Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.front.Equivocators()
}

// Invalid returns the invalid-message proofs, at most one per author.
func (r *Replica) Invalid() []*InvalidProof {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store.Invalid()
}

// Len returns the number of valid messages stored.
func (r *Replica) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store.Len()
}

// Count returns the number of valid messages stored for author a.
func (r *Replica) Count(a Author) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.store.Count(a)
}

// Waiting returns the number of messages held for missing predecessors.
func (r *Replica) Waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiting)
}
