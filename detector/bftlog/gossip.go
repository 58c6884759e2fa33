package bftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Gossip packets carry frontiers and messages between replicas (push/pull
// state sync and broadcasts). The encoding is versioned and every length is
// bounded, so a replica can refuse a packet before it allocates for it.
//
//	version      1 byte   GossipVersion
//	kind         1 byte   PacketState or PacketMessages
//	from len     1 byte   at most MaxGossipFrom
//	from         UTF-8 label of the sender (a node name; advisory)
//	-- PacketState only --
//	log count    2 bytes  at most MaxGossipLogs, strictly increasing by author
//	logs         count × (author 32 | flags 1 | last 32 if flags&1 |
//	             len 4 | fork A | len 4 | fork B   if flags&2)
//	want count   2 bytes  at most MaxGossipWants
//	wants        count × id 32, never zero
//	-- both kinds --
//	msg count    2 bytes
//	messages     count × (len 4 | Message wire form)
//
// Integers are big endian. A packet longer than the decoder's limit is
// refused with ErrOversized; anything else that breaks the layout, with
// ErrMalformed. A fork proof's messages must be by the log's author, follow
// Last, and be in canonical order; signatures are checked when the
// messages reach a Store.
const (
	// GossipVersion is the first byte of every gossip packet.
	GossipVersion byte = 1
	// MaxGossipFrom bounds the sender label.
	MaxGossipFrom = 64
	// MaxGossipLogs bounds the logs of one state packet.
	MaxGossipLogs = 4096
	// MaxGossipWants bounds the ids a state packet asks for.
	MaxGossipWants = 1024
	// DefaultMaxPacket is the default bound of a gossip packet (1 MiB).
	DefaultMaxPacket = 1 << 20
)

// ErrOversized is returned by DecodePacket for input longer than its limit,
// and by EncodePacket when the encoding would exceed it.
var ErrOversized = errors.New("gossip packet over the size limit")

// PacketKind says what a gossip packet carries.
type PacketKind byte

const (
	// PacketState is a push/pull state: the sender's frontier, the ids it
	// lacks, and messages it believes the receiver lacks.
	PacketState PacketKind = 1
	// PacketMessages is a broadcast of new messages.
	PacketMessages PacketKind = 2
)

func (k PacketKind) String() string {
	switch k {
	case PacketState:
		return "state"
	case PacketMessages:
		return "messages"
	default:
		return fmt.Sprintf("kind(%d)", byte(k))
	}
}

// Packet is the decoded form of a gossip packet. Logs and Wants are empty
// in a PacketMessages.
type Packet struct {
	Kind     PacketKind
	From     string
	Logs     []Log
	Wants    []ID
	Messages []*Message
}

// packetHeaderSize is the size of a packet without logs, wants or messages.
func packetHeaderSize(kind PacketKind, from string) int {
	n := 3 + len(from) + 2
	if kind == PacketState {
		n += 4
	}
	return n
}

// messageWireSize is the size of m's wire form.
func messageWireSize(m *Message) int {
	return 1 + (len(m.pre) - 1 - len(Domain)) + sigSize
}

// packetMessageSize is what one message adds to a packet.
func packetMessageSize(m *Message) int { return 4 + messageWireSize(m) }

// packetLogSize is what one log adds to a state packet.
func packetLogSize(l Log) int {
	n := authorSize + 1
	if !l.Last.IsZero() {
		n += idSize
	}
	if l.Forks != nil {
		n += packetMessageSize(l.Forks.A) + packetMessageSize(l.Forks.B)
	}
	return n
}

// EncodePacket encodes p. It refuses (ErrMalformed) what DecodePacket would
// refuse, and (ErrOversized) an encoding longer than limit when limit > 0.
func EncodePacket(p *Packet, limit int) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("bftlog: encode gossip packet: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if p.Kind != PacketState && p.Kind != PacketMessages {
		return fail("unknown kind %d", byte(p.Kind))
	}
	if len(p.From) > MaxGossipFrom || !utf8.ValidString(p.From) {
		return fail("sender label of %d bytes is not UTF-8 of at most %d bytes", len(p.From), MaxGossipFrom)
	}
	if p.Kind == PacketMessages && (len(p.Logs) > 0 || len(p.Wants) > 0) {
		return fail("a messages packet carries no logs or wants")
	}
	if len(p.Logs) > MaxGossipLogs || len(p.Wants) > MaxGossipWants || len(p.Messages) > 0xFFFF {
		return fail("%d logs, %d wants, %d messages: at most %d, %d, %d", len(p.Logs), len(p.Wants), len(p.Messages), MaxGossipLogs, MaxGossipWants, 0xFFFF)
	}
	size := packetHeaderSize(p.Kind, p.From) + len(p.Wants)*idSize
	for i, l := range p.Logs {
		if i > 0 && p.Logs[i-1].Author.Compare(l.Author) >= 0 {
			return fail("logs not strictly sorted by author at %d", i)
		}
		if err := checkWireLog(l); err != nil {
			return fail("log %d: %v", i, err)
		}
		size += packetLogSize(l)
	}
	for i, m := range p.Messages {
		if m == nil || m.pre == nil {
			return fail("message %d was not built by NewMessage or DecodeMessage", i)
		}
		size += packetMessageSize(m)
	}
	for i, w := range p.Wants {
		if w.IsZero() {
			return fail("want %d is the zero id", i)
		}
	}
	if limit > 0 && size > limit {
		return nil, fmt.Errorf("bftlog: encode gossip packet: %w: %d bytes, limit %d", ErrOversized, size, limit)
	}
	b := make([]byte, 0, size)
	b = append(b, GossipVersion, byte(p.Kind), byte(len(p.From)))
	b = append(b, p.From...)
	if p.Kind == PacketState {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Logs)))
		for _, l := range p.Logs {
			b = append(b, l.Author[:]...)
			var flags byte
			if !l.Last.IsZero() {
				flags |= 1
			}
			if l.Forks != nil {
				flags |= 2
			}
			b = append(b, flags)
			if !l.Last.IsZero() {
				b = append(b, l.Last[:]...)
			}
			if l.Forks != nil {
				b = appendPacketMessage(b, l.Forks.A)
				b = appendPacketMessage(b, l.Forks.B)
			}
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Wants)))
		for _, w := range p.Wants {
			b = append(b, w[:]...)
		}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Messages)))
	for _, m := range p.Messages {
		b = appendPacketMessage(b, m)
	}
	return b, nil
}

func appendPacketMessage(b []byte, m *Message) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(messageWireSize(m)))
	b = append(b, WireVersion)
	b = append(b, m.pre[1+len(Domain):]...)
	return append(b, m.sig[:]...)
}

// checkWireLog checks the structure of a log that the bytes alone can
// show: a proof's messages are by the author, follow Last and are in
// canonical order.
func checkWireLog(l Log) error {
	if l.Forks == nil {
		return nil
	}
	a, b := l.Forks.A, l.Forks.B
	if a == nil || b == nil || a.pre == nil || b.pre == nil {
		return errors.New("fork proof lacks a message")
	}
	if a.author != l.Author || b.author != l.Author {
		return fmt.Errorf("fork proof messages are not by the log's author %s", l.Author.Short())
	}
	if a.prev != l.Last || b.prev != l.Last {
		return fmt.Errorf("fork proof messages do not follow last %s", l.Last.Short())
	}
	if a.id.Compare(b.id) >= 0 {
		return errors.New("fork proof messages not in canonical order")
	}
	return nil
}

// DecodePacket parses a gossip packet of at most limit bytes (limit <= 0
// means DefaultMaxPacket). It accepts only the canonical encoding and
// rejects trailing bytes; errors wrap ErrOversized or ErrMalformed. It
// allocates at most about len(b) bytes and copies what it keeps. Message
// signatures are not checked here.
func DecodePacket(b []byte, limit int) (*Packet, error) {
	if limit <= 0 {
		limit = DefaultMaxPacket
	}
	if len(b) > limit {
		return nil, fmt.Errorf("bftlog: decode gossip packet: %w: %d bytes, limit %d", ErrOversized, len(b), limit)
	}
	d := packetDecoder{b: b}
	p, err := d.packet()
	if err != nil {
		return nil, fmt.Errorf("bftlog: decode gossip packet: %w: %v at byte %d", ErrMalformed, err, d.off)
	}
	return p, nil
}

type packetDecoder struct {
	b   []byte
	off int
}

func (d *packetDecoder) take(n int, what string) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.off {
		return nil, fmt.Errorf("truncated %s (%d bytes wanted, %d left)", what, n, len(d.b)-d.off)
	}
	out := d.b[d.off : d.off+n]
	d.off += n
	return out, nil
}

func (d *packetDecoder) u16(what string) (int, error) {
	f, err := d.take(2, what)
	if err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint16(f)), nil
}

func (d *packetDecoder) message(what string) (*Message, error) {
	f, err := d.take(4, what+" length")
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(f)
	if int64(n) > int64(len(d.b)-d.off) {
		return nil, fmt.Errorf("%s of %d bytes, only %d left", what, n, len(d.b)-d.off)
	}
	f, _ = d.take(int(n), what)
	m, err := DecodeMessage(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return m, nil
}

func (d *packetDecoder) packet() (*Packet, error) {
	h, err := d.take(3, "header")
	if err != nil {
		return nil, err
	}
	if h[0] != GossipVersion {
		return nil, fmt.Errorf("gossip version %d, want %d", h[0], GossipVersion)
	}
	p := &Packet{Kind: PacketKind(h[1])}
	if p.Kind != PacketState && p.Kind != PacketMessages {
		return nil, fmt.Errorf("unknown packet kind %d", h[1])
	}
	if int(h[2]) > MaxGossipFrom {
		return nil, fmt.Errorf("sender label of %d bytes, at most %d", h[2], MaxGossipFrom)
	}
	from, err := d.take(int(h[2]), "sender label")
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(from) {
		return nil, errors.New("sender label is not UTF-8")
	}
	p.From = string(from)
	if p.Kind == PacketState {
		n, err := d.u16("log count")
		if err != nil {
			return nil, err
		}
		if n > MaxGossipLogs {
			return nil, fmt.Errorf("%d logs, at most %d", n, MaxGossipLogs)
		}
		if n*(authorSize+1) > len(d.b)-d.off {
			return nil, fmt.Errorf("%d logs cannot fit in %d bytes", n, len(d.b)-d.off)
		}
		p.Logs = make([]Log, 0, n)
		for i := range n {
			l, err := d.log(i)
			if err != nil {
				return nil, err
			}
			if i > 0 && p.Logs[i-1].Author.Compare(l.Author) >= 0 {
				return nil, fmt.Errorf("logs not strictly sorted by author at %d", i)
			}
			p.Logs = append(p.Logs, l)
		}
		if n, err = d.u16("want count"); err != nil {
			return nil, err
		}
		if n > MaxGossipWants {
			return nil, fmt.Errorf("%d wants, at most %d", n, MaxGossipWants)
		}
		f, err := d.take(n*idSize, "wants")
		if err != nil {
			return nil, err
		}
		p.Wants = make([]ID, n)
		for i := range p.Wants {
			copy(p.Wants[i][:], f[i*idSize:])
			if p.Wants[i].IsZero() {
				return nil, fmt.Errorf("want %d is the zero id", i)
			}
		}
	}
	n, err := d.u16("message count")
	if err != nil {
		return nil, err
	}
	if n*(4+1) > len(d.b)-d.off {
		return nil, fmt.Errorf("%d messages cannot fit in %d bytes", n, len(d.b)-d.off)
	}
	p.Messages = make([]*Message, 0, n)
	for i := range n {
		m, err := d.message(fmt.Sprintf("message %d", i))
		if err != nil {
			return nil, err
		}
		p.Messages = append(p.Messages, m)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%d trailing bytes", len(d.b)-d.off)
	}
	return p, nil
}

func (d *packetDecoder) log(i int) (Log, error) {
	var l Log
	f, err := d.take(authorSize+1, fmt.Sprintf("log %d", i))
	if err != nil {
		return l, err
	}
	copy(l.Author[:], f)
	flags := f[authorSize]
	if flags&^3 != 0 {
		return l, fmt.Errorf("log %d: unknown flags %#x", i, flags)
	}
	if flags&1 != 0 {
		if f, err = d.take(idSize, fmt.Sprintf("log %d last", i)); err != nil {
			return l, err
		}
		copy(l.Last[:], f)
		if l.Last.IsZero() {
			return l, fmt.Errorf("log %d: last flag set but last is zero", i)
		}
	}
	if flags&2 != 0 {
		a, err := d.message(fmt.Sprintf("log %d fork A", i))
		if err != nil {
			return l, err
		}
		b, err := d.message(fmt.Sprintf("log %d fork B", i))
		if err != nil {
			return l, err
		}
		l.Forks = &ForkProof{A: a, B: b}
		if err := checkWireLog(l); err != nil {
			return l, fmt.Errorf("log %d: %v", i, err)
		}
	}
	return l, nil
}

// allMessages returns the messages of p that a store should take: the
// fork proofs' messages first, then the packet's messages.
func (p *Packet) allMessages() []*Message {
	out := make([]*Message, 0, len(p.Messages)+2*len(p.Logs))
	for _, l := range p.Logs {
		if l.Forks != nil {
			out = append(out, l.Forks.A, l.Forks.B)
		}
	}
	return append(out, slices.Clone(p.Messages)...)
}
