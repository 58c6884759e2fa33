package node

import (
	"crypto/ed25519"
	"testing"

	"github.com/tandem-consensus/tandem/smr"
)

// TestWatchSeesFirstMatchingEntry: a watch receives the Result of the
// first applied entry carrying exactly its envelope; a copy with another
// signature (as a faulty replica could propose) does not fire it.
func TestWatchSeesFirstMatchingEntry(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	env, err := smr.Sign(key, 1, smr.Command{Op: smr.OpSetConfig, Key: "k", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	f := newAppliedFSM(smr.NewUninitialized())
	w := f.watch(env)
	forged := *env
	forged.Sig = append([]byte(nil), env.Sig...)
	forged.Sig[0] ^= 1
	f.notify([]*smr.Envelope{&forged}, []smr.Result{{Index: 5, Code: smr.CodeBadSignature}})
	select {
	case r := <-w.ch:
		t.Fatalf("a forged copy fired the watch: %+v", r)
	default:
	}
	// In a batch entry, the watch gets its own envelope's Result.
	other, err := smr.Sign(key, 2, smr.Command{Op: smr.OpSetConfig, Key: "k2", Value: "v"})
	if err != nil {
		t.Fatal(err)
	}
	f.notify([]*smr.Envelope{other, env}, []smr.Result{{Index: 6, Seq: 2}, {Index: 6, Seq: 1}})
	select {
	case r := <-w.ch:
		if r.Index != 6 || r.Seq != 1 {
			t.Fatalf("result %+v", r)
		}
	default:
		t.Fatal("the matching entry did not fire the watch")
	}
	f.unwatch(w) // already fired: a no-op
	if f.w.n.Load() != 0 || len(f.w.m) != 0 {
		t.Fatalf("watch list not empty: %d %v", f.w.n.Load(), f.w.m)
	}
}
