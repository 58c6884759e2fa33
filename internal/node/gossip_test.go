package node

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/detector/score"
)

// openPeer opens the detector of member id over its own directory.
func (f *detectorFixture) openPeer(id evidence.NodeID, dir string) *detector {
	f.t.Helper()
	peers := map[evidence.NodeID]string{}
	for _, m := range f.ms {
		if m.ID != id {
			peers[m.ID] = "addr-" + string(m.ID)
		}
	}
	d, err := newDetector(detectorConfig{
		Self: id, Key: f.keys[id], Epoch: 1, Members: f.ms, PeerAddrs: peers,
		Score: score.Default(), DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(), Clock: func() time.Time { return f.clock },
		Deliver: func(context.Context, string, []byte) error { return nil },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	d.attach(&fakeQuarantineEngine{leader: "n4"})
	return d
}

func (f *detectorFixture) gossipOf(d *detector, dir string) *evidenceGossip {
	f.t.Helper()
	g, err := newEvidenceGossip(d, string(d.self), filepath.Join(dir, "detector"), prometheus.NewRegistry())
	if err != nil {
		f.t.Fatal(err)
	}
	d.gossip = g
	f.t.Cleanup(func() { g.close() })
	return g
}

// TestEvidenceGossipFeedsDetector: a proof n1 finds is signed into n1's
// log; a push/pull state carries it to n2, whose detector verifies and
// keeps it as if relayed. n1's log survives a restart without forking.
func TestEvidenceGossipFeedsDetector(t *testing.T) {
	f := newDetectorFixture(t)
	dir1, dir2 := t.TempDir(), t.TempDir()
	d1, d2 := f.openPeer("n1", dir1), f.openPeer("n2", dir2)
	g1, g2 := f.gossipOf(d1, dir1), f.gossipOf(d2, dir2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g2.run(ctx) }()
	defer func() { cancel(); <-done }()

	e := f.equivocation("n4", 7)
	if res, err := d1.handle(ctx, e, ""); err != nil || res != resultAdded {
		t.Fatalf("handle = %v, %v", res, err)
	}
	if got := g1.rep.Count(g1.rep.Self()); got != 1 {
		t.Fatalf("n1's own log holds %d messages, want 1", got)
	}
	g2.MergeRemoteState(g1.LocalState(false), false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := func() (*evidence.Evidence, bool) { d2.mu.Lock(); defer d2.mu.Unlock(); return d2.book.Get(e.ID()) }(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n2's detector never took the gossiped proof")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// n2 does not sign a record it got from a peer into its own log.
	if got := g2.rep.Count(g2.rep.Self()); got != 0 {
		t.Errorf("n2's own log holds %d messages, want 0", got)
	}

	// Garbage is dropped and counted by reason.
	g2.NotifyMsg([]byte{9, 9, 9})
	if got := counterValue(g2.metrics.dropped.WithLabelValues("malformed")); got != 1 {
		t.Errorf("malformed drops = %v, want 1", got)
	}

	// Restart n1's gossip: the own log is restored and continues.
	g1.close()
	path := filepath.Join(dir1, "detector", gossipOwnFile)
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write([]byte{0, 0, 1}) // a torn record
	fh.Close()
	g1b := f.gossipOf(d1, dir1)
	if got := g1b.rep.Count(g1b.rep.Self()); got != 1 {
		t.Fatalf("restored own log holds %d messages, want 1", got)
	}
	if res, err := d1.handle(ctx, f.equivocation("n3", 8), ""); err != nil || res != resultAdded {
		t.Fatalf("handle after restart = %v, %v", res, err)
	}
	g2.MergeRemoteState(g1b.LocalState(false), false)
	if eq := g2.rep.Equivocators(); len(eq) != 0 {
		t.Errorf("n1's restart looks like a fork: %v", eq)
	}
	if got := g2.rep.Count(g1b.rep.Self()); got != 2 {
		t.Errorf("n2 holds %d of n1's messages, want 2", got)
	}
}
