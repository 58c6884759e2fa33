package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/smr"
)

// ackLog records the writes acknowledged to a set of writers: key, log
// index and when, and through whom.
type ackLog struct {
	mu   sync.Mutex
	acks []ack
}

type ack struct {
	key    string
	index  uint64
	at     time.Time
	direct bool // written to node4, the byzantine leader, directly
}

func (l *ackLog) add(a ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

func (l *ackLog) all() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.acks...)
}

// firstAfter returns the first acknowledgement of a forwarded write (one
// that went through a correct node) at or after t.
func (l *ackLog) firstAfter(t time.Time) (ack, bool) {
	var first ack
	found := false
	for _, a := range l.all() {
		if !a.direct && !a.at.Before(t) && (!found || a.at.Before(first.at)) {
			first, found = a, true
		}
	}
	return first, found
}

// recordWriters starts one writer per client writing prefix<i>-<j> back
// to back, each within timeout, and logs each acknowledgement.
func recordWriters(ctx context.Context, log *ackLog, clients []*client.Client, prefix string, direct bool, timeout time.Duration) *bgWriters {
	return startWritersAcked(ctx, clients, prefix, timeout, 0, func(key string, res smr.Result) {
		log.add(ack{key: key, index: res.Index, at: time.Now(), direct: direct})
	})
}

// TestAutoBlockedSwitchEscalates: four processes in consensus_mode auto,
// node4 the byzantine build told omit-requests,block-switch and made Raft
// leader. It orders the writes its own clients send it, drops those the
// correct nodes forward to it, and never orders the epoch switch entry.
// The correct nodes accuse it of selective omission, each reaches the
// decision to escalate, and since the Raft leader is the accused member
// and the switch entry does not come within view_change_timeout, each
// stops at the index it applied last and signs that state (DESIGN
// invariant 10). Every correct node ends in epoch 2 on bft, from the same
// certified state, with the reason naming node4 as the blocking leader,
// a certificate that node4 did not sign into; the correct nodes converge
// to one state hash; every acknowledged write at or below the certified
// index is present, and the only acknowledged writes missing are writes
// node4 acknowledged alone (written to it directly, above the certified
// index); writes through correct nodes commit in epoch 2. The time from
// the first correct node's escalate verdict to the first write committed
// in bft is logged.
func TestAutoBlockedSwitchEscalates(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	byzBinary := buildByzantine(t)
	s := newByzantineSetup(t, byzBinary, "auto", map[string]any{"raft": fastRaft, "view_change_timeout": "400ms", "vote_timeout": "120ms"},
		"omit-requests,block-switch", omitting)
	c, correct, watch := s.c, s.correct, s.watch
	b := s.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()

	direct, forwarded := omittingLeaderWriters(ctx, t, c, b)

	acks := &ackLog{}
	directLoad := recordWriters(ctx, acks, direct, "direct-", true, 2*time.Second)
	defer directLoad.stop()
	forwardedLoad := recordWriters(ctx, acks, forwarded, "forwarded-", false, 2*time.Second)
	defer forwardedLoad.stop()

	at := b.waitEscalated(t, "omission", nil, func() string {
		return fmt.Sprintf("node4 dropped writes: %v; %d writes acknowledged", !watch.first().IsZero(), len(acks.all()))
	})
	decided := time.Time{}
	for _, ts := range at {
		if decided.IsZero() || ts.Before(decided) {
			decided = ts
		}
	}
	// node4's direct clients stop; the forwarded writers go on into epoch
	// 2, where the first of them to be acknowledged is the first bft commit.
	directLoad.stop()
	c.waitEpoch(ctx, b.cl, correct, 2, "bft", 60*time.Second)
	var first ack
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		if first, ok = acks.firstAfter(decided); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no write through a correct node was acknowledged within 30 s of epoch 2")
		}
		time.Sleep(50 * time.Millisecond)
	}
	forwardedLoad.stop()
	t.Logf("blocked switch: %s from the first escalate verdict (%s, polled every 50 ms; per node %v) to the first write committed in bft (%s at index %d)",
		first.at.Sub(decided).Round(time.Millisecond), decided.Format(time.RFC3339Nano), at, first.key, first.index)

	// Every correct node runs epoch 2 from one certified state that node4
	// did not sign into, for the blocked switch.
	com := handoffCommittee(t, s.layout)
	var base uint64
	var stmt string
	for _, id := range correct {
		st, err := c.epochOf(ctx, b.cl, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(st.Reason, "detector: switch entry blocked by the Raft leader node4") {
			t.Fatalf("%s: epoch 2 reason %q", id, st.Reason)
		}
		cert := st.Certificate
		if cert == nil || cert.Statement.Epoch != 2 || cert.Statement.Mode != "bft" {
			t.Fatalf("%s: epoch 2 certificate %+v", id, cert)
		}
		if err := cert.Verify(com, []string{byzantineNode}); err != nil {
			t.Fatalf("%s: the epoch 2 certificate does not verify without node4: %v", id, err)
		}
		if stmt == "" {
			stmt, base = cert.Statement.String(), cert.Statement.Index
		} else if cert.Statement.String() != stmt {
			t.Fatalf("%s started epoch 2 from %s, another node from %s", id, cert.Statement, stmt)
		}
		t.Logf("%s: epoch 2 from %s, %s certificate signed by %v; reason %q", id, cert.Statement, cert.Form, cert.Signers(), st.Reason)
	}
	for _, id := range correct {
		b.requireEscalated(ctx, t, id, evidence.MetricSelectiveOmission)
	}

	// One state on every correct node, with every write acknowledged at
	// or below the certified index; a missing one was acknowledged by
	// node4 alone, above it.
	hash := c.waitConverged(correct, 30*time.Second)
	entries, _, err := c.newClient(c.admin, c.endpoint(correct[0])).ListConfig(ctx, client.Stale())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Key] = true
	}
	var directAcked, lost int
	for _, a := range acks.all() {
		if a.direct {
			directAcked++
		}
		if have[a.key] {
			continue
		}
		if !a.direct || a.index <= base {
			t.Fatalf("acknowledged write %s (index %d, direct to node4 %v) is missing; epoch 2 starts at index %d", a.key, a.index, a.direct, base)
		}
		lost++
	}
	t.Logf("%d writes acknowledged (%d by node4 directly); %d acknowledged by node4 alone above the certified index %d are not in epoch 2; the correct nodes agree on state %s",
		len(acks.all()), directAcked, lost, base, hash)
}
