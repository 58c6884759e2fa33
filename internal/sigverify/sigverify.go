// Package sigverify is the one Ed25519 verification rule of Tandem: every
// check whose outcome is replicated (client envelopes, admin restores,
// dataset agents' statements and changes, the consensus engine's command
// validator, committee votes and certificates) goes through it, so every
// replica accepts exactly the same signatures.
//
// The rule is ZIP-215 (https://zips.z.cash/zip-0215): the cofactored
// verification equation, non-canonical point encodings accepted, S required
// to be canonical. Unlike the Go standard library's rule it is the same for
// a single signature and for a batch, so a batch verdict can stand in for
// single checks and replicas that batch differently still agree.
//
// Verified signatures are remembered (see Verify), so a replica that meets
// the same signed bytes again (at admission, in a forwarded frame, in a
// proposal, when applying) pays for one verification only.
package sigverify

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"

	"github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// Sizes of Ed25519 keys and signatures.
const (
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
)

// minBatch is the smallest number of unverified signatures checked as a
// batch; fewer are checked one by one, which is as fast.
const minBatch = 4

// cacheSize is how many verified signatures are remembered (about 100
// bytes each): far more than are admitted and not yet applied at any time.
const cacheSize = 1 << 16

var opts = &ed25519.Options{Verify: ed25519.VerifyOptionsZIP_215}

// keyCacheSize bounds the expanded public keys kept (about 200 bytes
// each); when it is reached they are all forgotten.
const keyCacheSize = 1 << 14

// verifyOne checks one signature under the ZIP-215 rule, without the
// signature cache.
func verifyOne(pub, msg, sig []byte) bool {
	if len(pub) != PublicKeySize || len(sig) != SignatureSize {
		return false
	}
	k := expand(pub)
	if k == nil {
		return false // not a point: no signature verifies under it
	}
	return ed25519.VerifyExpandedWithOptions(k, msg, sig, opts)
}

// expand returns the expanded (decompressed, precomputed) form of a
// 32-byte public key, or nil when pub is not a curve point. Expanding costs
// a square root; clients sign many requests, so the expanded keys are
// kept.
func expand(pub []byte) *ed25519.ExpandedPublicKey {
	var id [PublicKeySize]byte
	copy(id[:], pub)
	keys.mu.Lock()
	k, ok := keys.m[id]
	keys.mu.Unlock()
	if ok {
		return k
	}
	k, err := ed25519.NewExpandedPublicKey(ed25519.PublicKey(pub))
	if err != nil {
		k = nil
	}
	keys.mu.Lock()
	if len(keys.m) >= keyCacheSize {
		clear(keys.m)
	}
	keys.m[id] = k
	keys.mu.Unlock()
	return k
}

var keys = struct {
	mu sync.Mutex
	m  map[[PublicKeySize]byte]*ed25519.ExpandedPublicKey
}{m: make(map[[PublicKeySize]byte]*ed25519.ExpandedPublicKey)}

// Verify reports whether sig is a valid Ed25519 signature of msg under pub
// by the ZIP-215 rule. A key or signature of the wrong size is invalid.
//
// A valid signature is remembered by the SHA-256 of the exact (pub, sig,
// msg) bytes, and a later call for the same bytes returns true without
// verifying again. Invalid signatures are not remembered. The verdict is a
// pure function of the bytes either way. Safe for concurrent use.
func Verify(pub, msg, sig []byte) bool {
	if len(pub) != PublicKeySize || len(sig) != SignatureSize {
		return false
	}
	k := key(pub, msg, sig)
	if cache.has(k) {
		return true
	}
	if !verifyOne(pub, msg, sig) {
		return false
	}
	cache.add(k)
	return true
}

// Batch collects signatures to check together. The zero value is an empty
// batch; a Batch is not safe for concurrent use.
type Batch struct {
	items []item
}

type item struct {
	pub, msg, sig []byte
}

// Add appends a signature to the batch. The slices must not change until
// Verify returns.
func (b *Batch) Add(pub, msg, sig []byte) {
	b.items = append(b.items, item{pub: pub, msg: msg, sig: sig})
}

// Len returns the number of signatures added since the last Verify.
func (b *Batch) Len() int { return len(b.items) }

// Verify checks every signature added since the last Verify and returns
// one verdict per signature, in the order they were added: exactly what
// Verify (the function) returns for each, by the same rule and with the
// same cache. Signatures not already remembered are checked as one batch;
// when the batch fails, they are checked one by one to find the bad ones.
// The batch is empty afterwards.
func (b *Batch) Verify() []bool {
	items := b.items
	b.items = nil
	ok := make([]bool, len(items))
	keys := make([][32]byte, len(items))
	var todo []int
	for i, it := range items {
		if len(it.pub) != PublicKeySize || len(it.sig) != SignatureSize {
			continue
		}
		keys[i] = key(it.pub, it.msg, it.sig)
		if cache.has(keys[i]) {
			ok[i] = true
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return ok
	}
	sub := make([]item, len(todo))
	for j, i := range todo {
		sub[j] = items[i]
	}
	for j, v := range verifyItems(sub) {
		ok[todo[j]] = v
	}
	for _, i := range todo {
		if ok[i] {
			cache.add(keys[i])
		}
	}
	return ok
}

// verifyItems checks items without the cache: as one batch when there
// are at least minBatch of them, and one by one when there are fewer or
// the batch fails.
func verifyItems(items []item) []bool {
	ok := make([]bool, len(items))
	if len(items) >= minBatch {
		bv := ed25519.NewBatchVerifierWithCapacity(len(items))
		valid := true
		for _, it := range items {
			k := expand(it.pub)
			if k == nil {
				valid = false
				break
			}
			bv.AddExpandedWithOptions(k, it.msg, it.sig, opts)
		}
		if valid && bv.VerifyBatchOnly(nil) {
			for i := range ok {
				ok[i] = true
			}
			return ok
		}
	}
	for i, it := range items {
		ok[i] = verifyOne(it.pub, it.msg, it.sig)
	}
	return ok
}

// key is the cache key of a signature: the SHA-256 of pub || sig || msg
// (pub and sig have fixed sizes, so the concatenation is unambiguous).
func key(pub, msg, sig []byte) [32]byte {
	h := sha256.New()
	h.Write(pub)
	h.Write(sig)
	h.Write(msg)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// verifiedCache remembers the keys of verified signatures, forgetting the
// oldest first beyond its size. Safe for concurrent use.
type verifiedCache struct {
	mu    sync.Mutex
	size  int
	seen  map[[32]byte]struct{}
	order [][32]byte
	next  int
}

var cache = newVerifiedCache(cacheSize)

// cacheOff turns the signature cache off (SetCaching).
var cacheOff atomic.Bool

// SetCaching turns remembering verified signatures on (the default) or
// off for the whole process. A process runs one node, so one cache per
// process is one per node; a benchmark that runs several nodes in one
// process turns it off so that each node really verifies every signature,
// as separate processes would.
func SetCaching(on bool) { cacheOff.Store(!on) }

func newVerifiedCache(size int) *verifiedCache {
	return &verifiedCache{size: size, seen: make(map[[32]byte]struct{})}
}

func (c *verifiedCache) has(k [32]byte) bool {
	if cacheOff.Load() {
		return false
	}
	c.mu.Lock()
	_, ok := c.seen[k]
	c.mu.Unlock()
	return ok
}

func (c *verifiedCache) add(k [32]byte) {
	if cacheOff.Load() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[k]; ok {
		return
	}
	if len(c.order) < c.size {
		c.order = append(c.order, k)
	} else {
		delete(c.seen, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % c.size
	}
	c.seen[k] = struct{}{}
}
