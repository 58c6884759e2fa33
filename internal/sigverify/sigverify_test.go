package sigverify

import (
	stded25519 "crypto/ed25519"
	"encoding/hex"
	"fmt"
	"testing"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

type signed struct {
	pub, msg, sig []byte
}

// sign returns n valid signatures by n keys derived from seed.
func sign(t testing.TB, seed byte, n int) []signed {
	t.Helper()
	out := make([]signed, n)
	for i := range out {
		var s [32]byte
		s[0], s[1], s[2] = seed, byte(i), byte(i>>8)
		priv := stded25519.NewKeyFromSeed(s[:])
		msg := []byte(fmt.Sprintf("message %d/%d", seed, i))
		out[i] = signed{pub: priv.Public().(stded25519.PublicKey), msg: msg, sig: stded25519.Sign(priv, msg)}
	}
	return out
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// smallOrder is a signature that only the cofactored (ZIP-215) equation
// accepts for most messages: the public key is a point of order 8, R is the
// identity and S is zero, so [8][S]B = [8]R + [8][k]A holds for every k.
func smallOrder(t *testing.T, msg string) signed {
	pub := mustHex(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	sig := make([]byte, SignatureSize)
	sig[0] = 1 // R = identity (y = 1), S = 0
	return signed{pub: pub, msg: []byte(msg), sig: sig}
}

func corrupt(s signed, i int) signed {
	sig := append([]byte(nil), s.sig...)
	sig[i%SignatureSize] ^= 0x40
	return signed{pub: s.pub, msg: s.msg, sig: sig}
}

func TestVerifyAcceptsStandardSignatures(t *testing.T) {
	for i, s := range sign(t, 1, 8) {
		if !Verify(s.pub, s.msg, s.sig) {
			t.Errorf("signature %d of crypto/ed25519 does not verify", i)
		}
		if !verifyOne(s.pub, s.msg, s.sig) {
			t.Errorf("signature %d of crypto/ed25519 does not verify uncached", i)
		}
	}
}

func TestVerifyRefusesBadSignatures(t *testing.T) {
	s := sign(t, 2, 1)[0]
	if !Verify(s.pub, s.msg, s.sig) {
		t.Fatal("valid signature refused")
	}
	// Verified (and cached) once; alterations must still be refused.
	cases := map[string]signed{
		"flipped R":     corrupt(s, 3),
		"flipped S":     corrupt(s, 40),
		"other message": {pub: s.pub, msg: append([]byte("x"), s.msg...), sig: s.sig},
		"other key":     {pub: sign(t, 3, 1)[0].pub, msg: s.msg, sig: s.sig},
		"short sig":     {pub: s.pub, msg: s.msg, sig: s.sig[:63]},
		"long key":      {pub: append(append([]byte(nil), s.pub...), 0), msg: s.msg, sig: s.sig},
		"no sig":        {pub: s.pub, msg: s.msg},
		// S + L: the same signature with a non-canonical S, which ZIP-215
		// refuses.
		"non-canonical S": {pub: s.pub, msg: s.msg, sig: addL(s.sig)},
	}
	for name, c := range cases {
		if Verify(c.pub, c.msg, c.sig) {
			t.Errorf("%s: accepted", name)
		}
		var b Batch
		b.Add(c.pub, c.msg, c.sig)
		if got := b.Verify(); got[0] {
			t.Errorf("%s: accepted in a batch", name)
		}
	}
}

// addL returns sig with L (the group order) added to its S half, which
// leaves the signature equation unchanged but makes S non-canonical.
func addL(sig []byte) []byte {
	l := [32]byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	out := append([]byte(nil), sig...)
	var carry uint16
	for i := range 32 {
		v := uint16(out[32+i]) + uint16(l[i]) + carry
		out[32+i], carry = byte(v), v>>8
	}
	return out
}

func TestZIP215SmallOrderKey(t *testing.T) {
	for _, msg := range []string{"a", "b", "c", "d"} {
		s := smallOrder(t, msg)
		if !verifyOne(s.pub, s.msg, s.sig) {
			t.Errorf("message %q: the small-order signature is refused; ZIP-215 accepts it", msg)
		}
	}
}

// TestBatchAgreesWithSingle: whatever a batch holds (valid signatures,
// corrupted ones, ZIP-215 edge cases, wrong sizes), its verdict for each
// signature is the single verdict.
func TestBatchAgreesWithSingle(t *testing.T) {
	good := sign(t, 4, 40)
	var mixed []signed
	for i, s := range good {
		switch i % 10 {
		case 3:
			mixed = append(mixed, corrupt(s, i))
		case 7:
			mixed = append(mixed, smallOrder(t, fmt.Sprint(i)))
		case 9:
			mixed = append(mixed, signed{pub: s.pub, msg: s.msg, sig: addL(s.sig)})
		default:
			mixed = append(mixed, s)
		}
	}
	mixed = append(mixed, signed{pub: good[0].pub[:31], msg: good[0].msg, sig: good[0].sig})
	notAPoint := mustHex(t, "0200000000000000000000000000000000000000000000000000000000000000")
	if _, err := voi.NewExpandedPublicKey(notAPoint); err == nil {
		t.Fatal("the key meant to be no curve point is one")
	}
	mixed = append(mixed, signed{pub: notAPoint, msg: good[1].msg, sig: good[1].sig})
	for _, set := range map[string][]signed{"all valid": sign(t, 5, 40), "mixed": mixed, "one bad": append(sign(t, 6, 9), corrupt(sign(t, 7, 1)[0], 1))} {
		want := make([]bool, len(set))
		for i, s := range set {
			want[i] = verifyOne(s.pub, s.msg, s.sig)
			// The reference: the library's own single verification,
			// without expanded keys.
			if ref := len(s.pub) == PublicKeySize && voi.VerifyWithOptions(s.pub, s.msg, s.sig, opts); ref != want[i] {
				t.Errorf("signature %d: verifyOne says %v, the library says %v", i, want[i], ref)
			}
		}
		items := make([]item, len(set))
		for i, s := range set {
			items[i] = item(s)
		}
		for i, got := range verifyItems(items) {
			if got != want[i] {
				t.Errorf("signature %d: batch says %v, single says %v", i, got, want[i])
			}
		}
		var b Batch
		for _, s := range set {
			b.Add(s.pub, s.msg, s.sig)
		}
		if b.Len() != len(set) {
			t.Fatalf("Len = %d, want %d", b.Len(), len(set))
		}
		for i, got := range b.Verify() {
			if got != want[i] {
				t.Errorf("signature %d: Batch.Verify says %v, single says %v", i, got, want[i])
			}
			if v := Verify(set[i].pub, set[i].msg, set[i].sig); v != want[i] {
				t.Errorf("signature %d: Verify says %v after the batch, single says %v", i, v, want[i])
			}
		}
		if b.Len() != 0 {
			t.Errorf("batch holds %d signatures after Verify", b.Len())
		}
	}
	// The mixed set has bad ones: make sure the test exercised refusals.
	bad := 0
	for _, s := range mixed {
		if !verifyOne(s.pub, s.msg, s.sig) {
			bad++
		}
	}
	if bad == 0 {
		t.Fatal("the mixed set holds no invalid signature")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newVerifiedCache(16)
	for i := range 40 {
		c.add([32]byte{byte(i)})
	}
	if len(c.seen) != 16 || c.has([32]byte{0}) || !c.has([32]byte{39}) {
		t.Errorf("cache holds %d keys; has(0)=%v has(39)=%v", len(c.seen), c.has([32]byte{0}), c.has([32]byte{39}))
	}
}

func BenchmarkVerifyStdlib(b *testing.B) {
	s := sign(b, 9, 1)[0]
	for b.Loop() {
		stded25519.Verify(s.pub, s.msg, s.sig)
	}
}

func BenchmarkVerifySingle(b *testing.B) {
	s := sign(b, 9, 1)[0]
	for b.Loop() {
		verifyOne(s.pub, s.msg, s.sig)
	}
}

// BenchmarkVerifyBatch reports the cost per signature of uncached batches.
func BenchmarkVerifyBatch(b *testing.B) {
	for _, n := range []int{4, 16, 64, 256} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			set := sign(b, 10, n)
			items := make([]item, n)
			for i, s := range set {
				items[i] = item(s)
			}
			for b.Loop() {
				verifyItems(items)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/sig")
		})
	}
}

// BenchmarkVerifyCached is the cost of a repeated verification.
func BenchmarkVerifyCached(b *testing.B) {
	s := sign(b, 11, 1)[0]
	Verify(s.pub, s.msg, s.sig)
	for b.Loop() {
		Verify(s.pub, s.msg, s.sig)
	}
}

func BenchmarkVerifyNotExpanded(b *testing.B) {
	s := sign(b, 9, 1)[0]
	for b.Loop() {
		voi.VerifyWithOptions(s.pub, s.msg, s.sig, opts)
	}
}

// TestSetCaching: with caching off a verified signature is not
// remembered (each call verifies again) and a bad one is still refused;
// turned back on, it is remembered.
func TestSetCaching(t *testing.T) {
	s := sign(t, 9, 2)
	SetCaching(false)
	t.Cleanup(func() { SetCaching(true) })
	if !Verify(s[0].pub, s[0].msg, s[0].sig) || cache.has(key(s[0].pub, s[0].msg, s[0].sig)) {
		t.Fatal("caching off: a valid signature must verify and not be remembered")
	}
	if bad := corrupt(s[0], 3); Verify(bad.pub, bad.msg, bad.sig) {
		t.Fatal("caching off: a corrupted signature verified")
	}
	SetCaching(true)
	if !Verify(s[1].pub, s[1].msg, s[1].sig) || !cache.has(key(s[1].pub, s[1].msg, s[1].sig)) {
		t.Fatal("caching on: a verified signature must be remembered")
	}
}
