package checkpoint

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

// TestCollectorFormsCertificateOnce: the quorum-th distinct vote returns a
// certificate that verifies; earlier and later votes (and repeats) return
// nil.
func TestCollectorFormsCertificateOnce(t *testing.T) {
	com := testCommittee(t, 4)
	col := NewCollector(com)
	s := ckptStatement(1, 100, "state")
	for i, id := range []int{3, 1} {
		if cert, err := col.Add(mustSign(t, id, s)); cert != nil || err != nil {
			t.Fatalf("vote %d: %v %v", i, cert, err)
		}
	}
	if cert, err := col.Add(mustSign(t, 3, s)); cert != nil || err != nil {
		t.Fatalf("repeated vote: %v %v", cert, err)
	}
	if got := col.Support(s); got != 2 {
		t.Fatalf("Support = %d after a repeat, want 2", got)
	}
	// A held statement under other signature bytes is verified: a
	// tampered signature is refused, not taken for the vote held.
	forged := mustSign(t, 3, s)
	forged.Sig[0] ^= 1
	if _, err := col.Add(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("repeat with a tampered signature: %v, want ErrBadSignature", err)
	}
	cert, err := col.Add(mustSign(t, 4, s))
	if err != nil || cert == nil {
		t.Fatalf("quorum vote: %v %v", cert, err)
	}
	if err := cert.Verify(com, nil); err != nil {
		t.Fatal(err)
	}
	if got := cert.Signers(); len(got) != 3 || got[0] != "n1" || got[1] != "n3" || got[2] != "n4" {
		t.Fatalf("signers %v", got)
	}
	if cert, err := col.Add(mustSign(t, 2, s)); cert != nil || err != nil {
		t.Fatalf("vote after the quorum: %v %v", cert, err)
	}
	if got := col.Support(s); got != 4 {
		t.Fatalf("Support = %d, want 4", got)
	}
}

// TestCollectorConflict: a member signing two statements for one (Kind,
// Epoch, Index) is provable equivocation; the second vote is not counted.
func TestCollectorConflict(t *testing.T) {
	com := testCommittee(t, 4)
	col := NewCollector(com)
	a, b := ckptStatement(1, 100, "a"), ckptStatement(1, 100, "b")
	if _, err := col.Add(mustSign(t, 1, a)); err != nil {
		t.Fatal(err)
	}
	_, err := col.Add(mustSign(t, 1, b))
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("Add = %v, want *ConflictError", err)
	}
	if !ce.First.Statement.Equal(a) || !ce.Second.Statement.Equal(b) || ce.First.Signer != "n1" {
		t.Fatalf("conflict %+v", ce)
	}
	// Both halves verify on their own: the proof needs nobody's word.
	if ce.First.Verify(com) != nil || ce.Second.Verify(com) != nil {
		t.Fatal("conflict votes do not verify")
	}
	if col.Support(b) != 0 || col.Support(a) != 1 {
		t.Fatalf("support a=%d b=%d", col.Support(a), col.Support(b))
	}
	// Another index or kind is no conflict.
	if _, err := col.Add(mustSign(t, 1, ckptStatement(1, 101, "b"))); err != nil {
		t.Fatal(err)
	}
	if _, err := col.Add(mustSign(t, 1, ckptStatement(2, 100, "b"))); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorRejectsInvalidVotes(t *testing.T) {
	col := NewCollector(testCommittee(t, 4))
	s := ckptStatement(1, 100, "a")
	v := mustSign(t, 1, s)
	v.Sig[0] ^= 1
	if _, err := col.Add(v); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	if _, err := col.Add(mustSign(t, 7, s)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("non-member: %v", err)
	}
	if col.Support(s) != 0 || len(col.Votes(KindCheckpoint, 1)) != 0 {
		t.Fatal("an invalid vote was counted")
	}
}

// TestCollectorSupportAndVotes: Support counts the f+1 fallback's
// matching hashes; Votes lists what was collected by index and signer.
func TestCollectorSupportAndVotes(t *testing.T) {
	col := NewCollector(testCommittee(t, 7))
	x, y := Statement{Kind: KindHandoff, Epoch: 5, Index: 90, StateHash: hashOf("x"), Mode: ModeBFT, Members: []string{"n1", "n2", "n3", "n4"}},
		Statement{Kind: KindHandoff, Epoch: 5, Index: 80, StateHash: hashOf("y"), Mode: ModeBFT, Members: []string{"n1", "n2", "n3", "n4"}}
	for _, id := range []int{1, 2, 3} {
		col.Add(mustSign(t, id, x))
	}
	for _, id := range []int{4, 5} {
		col.Add(mustSign(t, id, y))
	}
	col.Add(mustSign(t, 6, ckptStatement(5, 90, "x")))
	if col.Support(x) != 3 || col.Support(y) != 2 {
		t.Fatalf("support x=%d y=%d", col.Support(x), col.Support(y))
	}
	vs := col.Votes(KindHandoff, 5)
	if len(vs) != 5 {
		t.Fatalf("%d votes", len(vs))
	}
	want := []string{"n4", "n5", "n1", "n2", "n3"} // index 80 first
	for i, v := range vs {
		if v.Signer != want[i] {
			t.Fatalf("vote %d by %s, want %s", i, v.Signer, want[i])
		}
	}
	vs[0].Statement.Members[0] = "mutated"
	if col.Votes(KindHandoff, 5)[0].Statement.Members[0] != "n1" {
		t.Fatal("Votes shares memory with the collector")
	}
	if len(col.Votes(KindHandoff, 4)) != 0 || len(col.Votes(KindCheckpoint, 5)) != 1 {
		t.Fatal("Votes mixes kinds or epochs")
	}
}

func TestCollectorForget(t *testing.T) {
	col := NewCollector(testCommittee(t, 4))
	old, cur := ckptStatement(1, 100, "a"), ckptStatement(1, 200, "b")
	col.Add(mustSign(t, 1, old))
	col.Add(mustSign(t, 2, old))
	col.Add(mustSign(t, 1, cur))
	if got := col.Forgotten(); got != 0 {
		t.Fatalf("Forgotten = %d before any Forget", got)
	}
	col.Forget(200)
	col.Forget(150) // lower: drops nothing more, keeps the floor
	if got := col.Forgotten(); got != 200 {
		t.Fatalf("Forgotten = %d, want 200", got)
	}
	if col.Support(old) != 0 || col.Support(cur) != 1 {
		t.Fatalf("after Forget: old=%d cur=%d", col.Support(old), col.Support(cur))
	}
	if vs := col.Votes(KindCheckpoint, 1); len(vs) != 1 || vs[0].Statement.Index != 200 {
		t.Fatalf("after Forget: %v", vs)
	}
	// A forgotten slot no longer remembers the vote: no conflict.
	if _, err := col.Add(mustSign(t, 1, ckptStatement(1, 100, "c"))); err != nil {
		t.Fatalf("vote on a forgotten index: %v", err)
	}
}

// TestCollectorConcurrent: with votes arriving from many goroutines,
// exactly one certificate forms. Run with -race.
func TestCollectorConcurrent(t *testing.T) {
	com := testCommittee(t, 7)
	col := NewCollector(com)
	s := ckptStatement(1, 100, "a")
	votes := make([]Vote, 7)
	for i := range votes {
		votes[i] = mustSign(t, i+1, s)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		certs int
	)
	for _, v := range votes {
		wg.Go(func() {
			cert, err := col.Add(v)
			if err != nil {
				t.Error(err)
			}
			if cert != nil {
				mu.Lock()
				certs++
				mu.Unlock()
			}
			col.Support(s)
			col.Votes(KindCheckpoint, 1)
		})
	}
	wg.Wait()
	if certs != 1 {
		t.Fatalf("%d certificates formed, want 1", certs)
	}
}

// TestCollectorSlot: Slot returns every vote held at a slot, ordered by
// signer, and once a statement has a quorum there its certificate, from
// which the votes of the members that signed another statement there (and
// only there) dissent; before, it reports no quorum.
func TestCollectorSlot(t *testing.T) {
	com := testCommittee(t, 4)
	col := NewCollector(com)
	a, b := ckptStatement(1, 100, "a"), ckptStatement(1, 100, "b")
	other := ckptStatement(1, 105, "b")
	for _, v := range []Vote{mustSign(t, 4, b), mustSign(t, 1, a), mustSign(t, 2, a), mustSign(t, 4, other)} {
		if _, err := col.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	if vs, q := col.Slot(KindCheckpoint, 1, 100); q != nil || len(vs) != 3 {
		t.Fatalf("Slot without a quorum = %d votes, %v", len(vs), q)
	}
	if _, err := col.Add(mustSign(t, 3, a)); err != nil {
		t.Fatal(err)
	}
	vs, q := col.Slot(KindCheckpoint, 1, 100)
	if q == nil || !q.Statement.Equal(a) || q.Verify(com, nil) != nil {
		t.Fatalf("quorum %v", q)
	}
	var signers []string
	var d []Vote
	for _, v := range vs {
		signers = append(signers, v.Signer)
		if !v.Statement.Equal(q.Statement) {
			d = append(d, v)
		}
	}
	if !slices.Equal(signers, []string{"n1", "n2", "n3", "n4"}) {
		t.Fatalf("votes of %v, want n1..n4 in order", signers)
	}
	if len(d) != 1 || d[0].Signer != "n4" || !d[0].Statement.Equal(b) || d[0].Verify(com) != nil {
		t.Fatalf("dissent %+v, want n4's vote for b", d)
	}
	// The votes are copies.
	vs[0].Sig[0] ^= 1
	if again, _ := col.Slot(KindCheckpoint, 1, 100); again[0].Verify(com) != nil {
		t.Fatal("Slot returned the collector's own signature bytes")
	}
	if _, q := col.Slot(KindCheckpoint, 1, 105); q != nil {
		t.Fatal("a quorum at index 105")
	}
	// A quarantined member does not count toward the quorum.
	col.SetQuarantined([]string{"n3"})
	if _, q := col.Slot(KindCheckpoint, 1, 100); q != nil {
		t.Fatal("a quorum counting a quarantined member")
	}
}
