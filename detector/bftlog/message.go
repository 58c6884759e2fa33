package bftlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
)

// Protocol constants. They are part of the encoding: changing one changes
// which byte strings decode, so it needs a new domain tag and wire version.
const (
	// Domain is the tag that starts every message preimage, so that a
	// message signature can never be replayed as a signature over another
	// kind of Tandem object (votes, checkpoints, client requests).
	Domain = "tandem/bftlog/msg/v1"

	// WireVersion is the first byte of a message's binary encoding.
	WireVersion byte = 1

	// HardMaxContent is the largest content any message may carry, whatever
	// the store configuration (1 MiB). Config.MaxContentSize may lower it.
	HardMaxContent = 1 << 20

	// HardMaxDeps is the largest number of deps a message may list.
	HardMaxDeps = 1024
)

const (
	idSize     = sha256.Size
	authorSize = ed25519.PublicKeySize
	sigSize    = ed25519.SignatureSize
	depSize    = authorSize + idSize
)

// ID identifies a message: SHA-256 of its preimage (see Message). The zero
// ID stands for "none" (a first message's prev, a log with no last message);
// the encoding never lets a real reference be zero.
type ID [sha256.Size]byte

// IsZero reports whether id is the zero ID ("none").
func (id ID) IsZero() bool { return id == ID{} }

// String returns id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 6 bytes of id in hex, for logs and errors; the zero
// ID prints as "none".
func (id ID) Short() string {
	if id.IsZero() {
		return "none"
	}
	return hex.EncodeToString(id[:6])
}

// Compare orders ids bytewise; it returns -1, 0 or +1.
func (id ID) Compare(o ID) int { return bytes.Compare(id[:], o[:]) }

// Author is an Ed25519 public key, the identity of a log.
type Author [ed25519.PublicKeySize]byte

// AuthorOf converts an Ed25519 public key into an Author.
func AuthorOf(pub ed25519.PublicKey) (Author, error) {
	var a Author
	if len(pub) != authorSize {
		return a, fmt.Errorf("bftlog: public key has %d bytes, want %d: %w", len(pub), authorSize, ErrMalformed)
	}
	copy(a[:], pub)
	return a, nil
}

// PublicKey returns a as an ed25519.PublicKey (a new slice).
func (a Author) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(bytes.Clone(a[:])) }

// String returns a in hex.
func (a Author) String() string { return hex.EncodeToString(a[:]) }

// Short returns the first 6 bytes of a in hex, for logs and errors.
func (a Author) Short() string { return hex.EncodeToString(a[:6]) }

// Compare orders authors bytewise; it returns -1, 0 or +1.
func (a Author) Compare(o Author) int { return bytes.Compare(a[:], o[:]) }

// Dep is a dependency on another author's message. Author is the claimed
// author of the message ID: it is signed with the rest, which makes "at most
// one dep per author" and the canonical order checkable from the bytes
// alone; Store.Add checks the claim against the message itself.
type Dep struct {
	Author Author
	ID     ID
}

// Message is one signed entry of an author's log. It is immutable: build it
// with NewMessage or DecodeMessage; the zero Message is not a valid message.
// Methods may be called concurrently.
//
// Encoding. The body is
//
//	author      32 bytes
//	prev flag    1 byte   0 = none, 1 = present
//	prev        32 bytes  only when the flag is 1; never all zero
//	dep count    2 bytes  big endian, at most HardMaxDeps
//	deps        count × (author 32 bytes | id 32 bytes),
//	            strictly increasing by author, ids never all zero
//	content len  4 bytes  big endian, at most HardMaxContent
//	content
//
// The preimage is len(Domain) as one byte, Domain, then the body. The ID is
// SHA-256(preimage) and the signature is Ed25519 over the preimage. The
// binary (wire) form is WireVersion, the body, then the 64-byte signature.
// Every field is fixed-size or length-prefixed, so each preimage has exactly
// one parse, and each message exactly one encoding.
//
// The ID does not cover the signature. Two messages with different IDs are
// therefore two different signed statements: no one but the author can make
// a second message with the same prev, so two such messages, both validly
// signed, prove equivocation to anyone holding just those two messages. Had
// the ID covered the signature, a second valid signature over the same
// statement (Ed25519 signers may pick any nonce) would give a second ID for
// one statement, and a fork "proof" that proves nothing. The price is that
// copies of one message that differ only in their signature share one ID;
// the store keeps the first copy whose signature verifies.
type Message struct {
	author  Author
	prev    ID
	deps    []Dep
	content []byte // aliases pre
	sig     [sigSize]byte
	pre     []byte // the preimage: domain prefix then body
	id      ID
}

// NewMessage builds and signs a message of the author whose private key is
// priv. prev is the author's previous message (zero for the first). deps
// lists other authors' messages, at most one per author, in any order: they
// are sorted. content is copied.
//
// NewMessage refuses what no valid message can hold: a dep on priv's own
// author, two deps on one author, a zero dep id, too many deps, content
// over HardMaxContent. It does not check that deps and prev exist or are
// consistent; Store.Add does.
func NewMessage(priv ed25519.PrivateKey, prev ID, deps []Dep, content []byte) (*Message, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("bftlog: new message: private key has %d bytes, want %d: %w", len(priv), ed25519.PrivateKeySize, ErrMalformed)
	}
	author, _ := AuthorOf(priv.Public().(ed25519.PublicKey))
	ds := slices.Clone(deps)
	slices.SortFunc(ds, func(x, y Dep) int { return x.Author.Compare(y.Author) })
	for _, d := range ds {
		if d.Author == author {
			return nil, fmt.Errorf("bftlog: new message: dep %s is on the author's own log (use prev): %w", d.ID.Short(), ErrMalformed)
		}
	}
	m := &Message{author: author, prev: prev, deps: ds}
	if err := m.checkFields(len(content)); err != nil {
		return nil, fmt.Errorf("bftlog: new message: %w", err)
	}
	m.pre = appendPreimage(make([]byte, 0, preimageSize(len(ds), len(content))), author, prev, ds, content)
	m.content = m.pre[len(m.pre)-len(content):]
	m.id = sha256.Sum256(m.pre)
	copy(m.sig[:], ed25519.Sign(priv, m.pre))
	return m, nil
}

// checkFields checks the structural rules the encoding enforces.
func (m *Message) checkFields(contentLen int) error {
	if len(m.deps) > HardMaxDeps {
		return fmt.Errorf("%w: %d deps, at most %d allowed", ErrMalformed, len(m.deps), HardMaxDeps)
	}
	if contentLen > HardMaxContent {
		return fmt.Errorf("%w: content of %d bytes, at most %d allowed", ErrMalformed, contentLen, HardMaxContent)
	}
	for i, d := range m.deps {
		if d.ID.IsZero() {
			return fmt.Errorf("%w: dep %d on author %s has a zero id", ErrMalformed, i, d.Author.Short())
		}
		if i > 0 && m.deps[i-1].Author.Compare(d.Author) >= 0 {
			return fmt.Errorf("%w: deps not strictly sorted by author at %d (%s after %s): at most one dep per author",
				ErrMalformed, i, d.Author.Short(), m.deps[i-1].Author.Short())
		}
	}
	return nil
}

func preimageSize(ndeps, ncontent int) int {
	return 1 + len(Domain) + bodySize(ndeps, ncontent)
}

func bodySize(ndeps, ncontent int) int {
	return authorSize + 1 + idSize + 2 + ndeps*depSize + 4 + ncontent
}

func appendPreimage(b []byte, author Author, prev ID, deps []Dep, content []byte) []byte {
	b = append(b, byte(len(Domain)))
	b = append(b, Domain...)
	b = append(b, author[:]...)
	if prev.IsZero() {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = append(b, prev[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(deps)))
	for _, d := range deps {
		b = append(b, d.Author[:]...)
		b = append(b, d.ID[:]...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

// ID returns the message id, SHA-256 of its preimage.
func (m *Message) ID() ID { return m.id }

// Author returns the author's public key.
func (m *Message) Author() Author { return m.author }

// Prev returns the author's previous message, or the zero ID for none.
func (m *Message) Prev() ID { return m.prev }

// Deps returns a copy of the deps, sorted by author.
func (m *Message) Deps() []Dep { return slices.Clone(m.deps) }

// DepOn returns the dep on author a, if any.
func (m *Message) DepOn(a Author) (ID, bool) {
	i, ok := slices.BinarySearchFunc(m.deps, a, func(d Dep, a Author) int { return d.Author.Compare(a) })
	if !ok {
		return ID{}, false
	}
	return m.deps[i].ID, true
}

// Content returns the content. The slice is shared with the message and must
// not be modified.
func (m *Message) Content() []byte { return m.content }

// Signature returns a copy of the 64-byte Ed25519 signature.
func (m *Message) Signature() []byte { return bytes.Clone(m.sig[:]) }

// SignedBytes returns a copy of the preimage: the bytes the signature covers
// and whose SHA-256 is the ID.
func (m *Message) SignedBytes() []byte { return bytes.Clone(m.pre) }

// VerifySignature checks the signature against the author key. It returns a
// *SignatureError (wrapping ErrBadSignature) on failure, and ErrMalformed
// for a zero Message.
func (m *Message) VerifySignature() error {
	if m == nil || m.pre == nil {
		return fmt.Errorf("bftlog: verify: %w: message not built by NewMessage or DecodeMessage", ErrMalformed)
	}
	if !ed25519.Verify(ed25519.PublicKey(m.author[:]), m.pre, m.sig[:]) {
		return &SignatureError{ID: m.id, Author: m.author}
	}
	return nil
}

// String returns a short human-readable form, for logs.
func (m *Message) String() string {
	return fmt.Sprintf("msg(%s by %s prev %s deps %d content %dB)", m.id.Short(), m.author.Short(), m.prev.Short(), len(m.deps), len(m.content))
}

// MarshalBinary returns the wire form: WireVersion, body, signature.
func (m *Message) MarshalBinary() ([]byte, error) {
	if m == nil || m.pre == nil {
		return nil, fmt.Errorf("bftlog: marshal: %w: message not built by NewMessage or DecodeMessage", ErrMalformed)
	}
	body := m.pre[1+len(Domain):]
	out := make([]byte, 0, 1+len(body)+sigSize)
	out = append(out, WireVersion)
	out = append(out, body...)
	return append(out, m.sig[:]...), nil
}

// UnmarshalBinary decodes the wire form into m, as DecodeMessage does. It is
// meant for a new zero Message; a Message already handed to a Store must not
// be overwritten.
func (m *Message) UnmarshalBinary(b []byte) error {
	d, err := DecodeMessage(b)
	if err != nil {
		return err
	}
	*m = *d
	return nil
}

// DecodeMessage parses the wire form. It accepts only the canonical
// encoding (see Message) and rejects trailing bytes; every error wraps
// ErrMalformed. It allocates at most about len(b) bytes, and copies what it
// keeps, so b may be reused. The signature is not checked here.
func DecodeMessage(b []byte) (*Message, error) {
	fail := func(format string, args ...any) (*Message, error) {
		return nil, fmt.Errorf("bftlog: decode message: %w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if len(b) == 0 {
		return fail("empty input")
	}
	if b[0] != WireVersion {
		return fail("wire version %d, want %d", b[0], WireVersion)
	}
	r := b[1:]
	off := 1
	take := func(n int) ([]byte, bool) {
		if n > len(r) {
			return nil, false
		}
		out := r[:n]
		r = r[n:]
		off += n
		return out, true
	}
	m := &Message{}
	f, ok := take(authorSize)
	if !ok {
		return fail("truncated author at byte %d", off)
	}
	copy(m.author[:], f)
	if f, ok = take(1); !ok {
		return fail("truncated prev flag at byte %d", off)
	}
	switch f[0] {
	case 0:
	case 1:
		if f, ok = take(idSize); !ok {
			return fail("truncated prev at byte %d", off)
		}
		copy(m.prev[:], f)
		if m.prev.IsZero() {
			return fail("prev flag set but prev id is zero")
		}
	default:
		return fail("prev flag %d at byte %d, want 0 or 1", f[0], off-1)
	}
	if f, ok = take(2); !ok {
		return fail("truncated dep count at byte %d", off)
	}
	n := int(binary.BigEndian.Uint16(f))
	if n > HardMaxDeps {
		return fail("%d deps, at most %d allowed", n, HardMaxDeps)
	}
	if n*depSize > len(r) {
		return fail("%d deps need %d bytes, only %d left", n, n*depSize, len(r))
	}
	if n > 0 {
		m.deps = make([]Dep, n)
		for i := range m.deps {
			f, _ = take(depSize)
			copy(m.deps[i].Author[:], f[:authorSize])
			copy(m.deps[i].ID[:], f[authorSize:])
		}
	}
	if f, ok = take(4); !ok {
		return fail("truncated content length at byte %d", off)
	}
	cl := binary.BigEndian.Uint32(f)
	if cl > HardMaxContent {
		return fail("content of %d bytes, at most %d allowed", cl, HardMaxContent)
	}
	content, ok := take(int(cl))
	if !ok {
		return fail("content of %d bytes, only %d left", cl, len(r))
	}
	if len(r) < sigSize {
		return fail("truncated signature: %d bytes, want %d", len(r), sigSize)
	}
	if len(r) > sigSize {
		return fail("%d trailing bytes after the signature", len(r)-sigSize)
	}
	copy(m.sig[:], r)
	if err := m.checkFields(len(content)); err != nil {
		return nil, fmt.Errorf("bftlog: decode message: %w", err)
	}
	body := b[1 : len(b)-sigSize]
	m.pre = make([]byte, 0, 1+len(Domain)+len(body))
	m.pre = append(m.pre, byte(len(Domain)))
	m.pre = append(m.pre, Domain...)
	m.pre = append(m.pre, body...)
	m.content = m.pre[len(m.pre)-len(content):]
	m.id = sha256.Sum256(m.pre)
	return m, nil
}
