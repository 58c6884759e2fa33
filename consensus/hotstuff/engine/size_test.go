package engine

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// storeSize is e's log size figure and a fresh scan of its store, read on
// its loop.
func storeSize(t *testing.T, e *Engine) (figure, scanned uint64) {
	t.Helper()
	loopState(t, e, func() {
		figure = e.logBytes
		if err := e.store.db.View(func(tx *bolt.Tx) error {
			var err error
			scanned, err = scanLogBytes(tx)
			return err
		}); err != nil {
			t.Error(err)
		}
	})
	return figure, scanned
}

// warnCounter counts the warnings whose message contains substr.
type warnCounter struct {
	slog.Handler
	substr string
	n      *atomic.Int32
}

func (h warnCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && strings.Contains(r.Message, h.substr) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h warnCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return warnCounter{Handler: h.Handler.WithAttrs(as), substr: h.substr, n: h.n}
}

func (h warnCounter) WithGroup(name string) slog.Handler {
	return warnCounter{Handler: h.Handler.WithGroup(name), substr: h.substr, n: h.n}
}

// TestSizeLimitPrunesWithoutCheckpoint: with no stable checkpoint (Compact
// is never called) and no interval snapshot due, replicas whose committed
// blocks pass the size limit take a snapshot and prune on their own,
// keeping their snapshot's block, the last keepRecent blocks and the
// blocks holding the last log_retention entries; the size figure matches
// the store, the replicas converge, and a restart rebuilds the same state
// and reads the figure back, also from a store that has no record of it.
func TestSizeLimitPrunesWithoutCheckpoint(t *testing.T) {
	withKeepRecent(t, 3)
	lim := LogLimits{Retention: 5} // no size limit yet
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.SnapshotInterval = 1 << 40 // no interval snapshot: the size trigger takes its own
		cfg.LogLimits = lim
	})
	writer := c.nodes[0]
	for i := range 30 {
		c.mustWrite(writer, fmt.Sprintf("k%d", i), strings.Repeat("v", 200))
	}
	c.waitConverged(c.nodes, 31, 30*time.Second)
	for _, nd := range c.nodes {
		fig, scan := storeSize(t, nd.e)
		if fig == 0 || fig != scan {
			t.Fatalf("%s: size figure %d, a scan of the store finds %d", nd.id, fig, scan)
		}
		if st := nd.e.Stats(); st.SizeCompactions != 0 || st.PrunedBelow != 0 || st.LogBytes != fig {
			t.Fatalf("%s: without a limit: stats %+v", nd.id, st)
		}
	}
	fig, _ := storeSize(t, writer.e)
	limit := max(fig/2, 4096)
	lim.SizeBytes = limit
	for _, nd := range c.nodes {
		nd.e.SetLogLimits(lim)
	}
	for i := range 30 {
		c.mustWrite(writer, fmt.Sprintf("m%d", i), strings.Repeat("w", 200))
	}
	c.waitConverged(c.nodes, 61, 30*time.Second)
	for _, nd := range c.nodes {
		waitFor(t, 10*time.Second, string(nd.id)+" prunes on the size limit", func() (bool, string) {
			st := nd.e.Stats()
			return st.SizeCompactions > 0 && st.PrunedBelow > 1, fmt.Sprintf("%+v", st)
		})
		fig, scan := storeSize(t, nd.e)
		if fig != scan || fig >= limit {
			t.Fatalf("%s: size figure %d, scan %d, limit %d: want equal figures below the limit", nd.id, fig, scan, limit)
		}
		loopState(t, nd.e, func() {
			e := nd.e
			if e.snapIndex == 0 || e.snapHeight < e.horizon {
				t.Errorf("%s: snapshot at height %d (index %d) below the horizon %d", nd.id, e.snapHeight, e.snapIndex, e.horizon)
			}
			if e.height+1-e.horizon < keepRecent {
				t.Errorf("%s: %d blocks kept, want at least %d", nd.id, e.height+1-e.horizon, keepRecent)
			}
			keep := e.lastIndex + 1 - lim.Retention
			ce, ok, err := e.store.holding(keep, max(e.horizon, 1), e.height)
			if err != nil || !ok || ce.height < e.horizon {
				t.Errorf("%s: the block holding index %d (retained) is not stored: %v %v %+v, horizon %d", nd.id, keep, ok, err, ce, e.horizon)
			}
		})
	}
	if got := writer.e.Stats().BlocksPruned; got == 0 {
		t.Fatal("no blocks counted as pruned")
	}

	// A restart reads the figure back and rebuilds the same state.
	nd := c.nodes[1]
	want, _ := storeSize(t, nd.e)
	idx, sum := nd.sm.Hash()
	c.stop(nd)
	c.start(nd)
	if got := nd.e.Stats().LogBytes; got < want {
		// Blocks committed since the restart only add to it.
		t.Fatalf("after a restart the size figure is %d, it was %d", got, want)
	}
	if gi, gs := nd.sm.Hash(); gi < idx || (gi == idx && gs != sum) {
		t.Fatalf("restart rebuilt index %d hash %x, had %d %x", gi, gs[:6], idx, sum[:6])
	}
	// A store without the record (an earlier version's) is scanned once.
	genesis := nd.e.Committee().Genesis()
	c.stop(nd)
	s, err := openStore(filepath.Join(nd.dir, "hotstuff", "blocks.db"), genesis)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyLogBytes) }); err != nil {
		t.Fatal(err)
	}
	_ = s.close()
	c.start(nd)
	if fig, scan := storeSize(t, nd.e); fig != scan || fig == 0 {
		t.Fatalf("store without a size record: figure %d, scan %d", fig, scan)
	}
	for i := range 5 {
		c.mustWrite(nd, fmt.Sprintf("after%d", i), "v")
	}
	c.waitConverged(c.nodes, 66, 30*time.Second)
}

// TestSizeLimitRetentionWins: while log_retention keeps more than the size
// limit allows, nothing is pruned and each replica warns once; once the
// retention is lowered, the same limit prunes, and the replicas converge.
func TestSizeLimitRetentionWins(t *testing.T) {
	withKeepRecent(t, 3)
	lim := LogLimits{SizeBytes: 4096, Retention: 1_000_000}
	warnings := map[types.NodeID]*atomic.Int32{}
	for i := range 4 {
		warnings[types.NodeID(fmt.Sprintf("node-%d", i+1))] = &atomic.Int32{}
	}
	c := newCluster(t, 4, func(cfg *Config) {
		cfg.SnapshotInterval = 10
		cfg.LogLimits = lim
		cfg.Logger = slog.New(warnCounter{Handler: cfg.Logger.Handler(), substr: "retention wins", n: warnings[cfg.ID]})
	})
	writer := c.nodes[0]
	for i := range 20 {
		c.mustWrite(writer, fmt.Sprintf("k%d", i), strings.Repeat("v", 200))
	}
	c.waitConverged(c.nodes, 21, 30*time.Second)
	for _, nd := range c.nodes {
		// Well past the limit, and past several retries (every quarter
		// of the limit): still nothing pruned, one warning.
		waitFor(t, 10*time.Second, string(nd.id)+" stores three times the limit", func() (bool, string) {
			st := nd.e.Stats()
			return st.LogBytes > 3*lim.SizeBytes, fmt.Sprintf("%+v", st)
		})
		if st := nd.e.Stats(); st.SizeCompactions != 0 || st.PrunedBelow != 0 || st.BlocksPruned != 0 {
			t.Fatalf("%s pruned although log_retention keeps every entry: %+v", nd.id, st)
		}
		if n := warnings[nd.id].Load(); n != 1 {
			t.Fatalf("%s warned %d times that retention wins, want once", nd.id, n)
		}
	}
	lim.Retention = 5
	for _, nd := range c.nodes {
		nd.e.SetLogLimits(lim)
	}
	for i := range 5 {
		c.mustWrite(writer, fmt.Sprintf("m%d", i), "w")
	}
	c.waitConverged(c.nodes, 26, 30*time.Second)
	for _, nd := range c.nodes {
		waitFor(t, 10*time.Second, string(nd.id)+" prunes once retention allows", func() (bool, string) {
			st := nd.e.Stats()
			return st.SizeCompactions > 0 && st.PrunedBelow > 1, fmt.Sprintf("%+v", st)
		})
		if fig, scan := storeSize(t, nd.e); fig != scan {
			t.Fatalf("%s: size figure %d, scan %d", nd.id, fig, scan)
		}
	}
}
