package raftengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/internal/logging"
)

// BaselineNode is one node of a Baseline: its Raft server ID, the stream
// layer it runs on and the address the others dial.
type BaselineNode struct {
	ID        string
	Advertise string
	Stream    raft.StreamLayer
}

// BaselineConfig configures StartBaseline.
type BaselineConfig struct {
	// Nodes of the cluster, every one a voter. At least one.
	Nodes []BaselineNode
	// Dir holds one data directory per node (Dir/<id>/raft).
	Dir string
	// Raft tunes hashicorp/raft exactly as for the engine.
	Raft config.RaftConfig
	// Logger receives hashicorp/raft's logs. Default: slog.Default().
	Logger *slog.Logger
}

// Baseline is plain hashicorp/raft on Tandem's storage and transport (the
// same bolt store, log cache, snapshot store, NetworkTransport and Raft
// settings as the engine) with a trivial FSM that only counts entries. It
// has no signatures, no attestations and no state machine: it is the
// yardstick the engine's benchmarks are measured against, run in the same
// process and on the same machine.
type Baseline struct {
	rafts   []*raft.Raft
	bolts   []*raftboltdb.BoltStore
	timeout time.Duration
	applied atomic.Uint64 // entries applied, summed over the nodes
}

// countingFSM applies an entry by counting it.
type countingFSM struct{ n *atomic.Uint64 }

func (f countingFSM) Apply(*raft.Log) any { f.n.Add(1); return nil }

func (countingFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }

func (countingFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (emptySnapshot) Release()                             {}

// StartBaseline starts and bootstraps the cluster and waits until it has a
// leader (or ctx ends).
func StartBaseline(ctx context.Context, cfg BaselineConfig) (*Baseline, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("raft baseline: no nodes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ec := Config{Raft: cfg.Raft}.withDefaults()
	b := &Baseline{timeout: ec.Raft.ApplyTimeout}
	var servers raft.Configuration
	for _, n := range cfg.Nodes {
		servers.Servers = append(servers.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(n.ID), Address: raft.ServerAddress(n.Advertise)})
	}
	for _, n := range cfg.Nodes {
		if err := b.startNode(n, cfg, ec, servers); err != nil {
			b.Stop()
			return nil, err
		}
	}
	for {
		if b.leader() != nil {
			return b, nil
		}
		select {
		case <-ctx.Done():
			b.Stop()
			return nil, fmt.Errorf("raft baseline: no leader elected: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (b *Baseline) startNode(n BaselineNode, cfg BaselineConfig, ec Config, servers raft.Configuration) error {
	ec.NodeID = n.ID
	rc, err := ec.raftConfig()
	if err != nil {
		return err
	}
	rc.Logger = logging.NewHCLog(cfg.Logger, "raft-baseline")
	dir, err := prepareDir(filepath.Join(cfg.Dir, n.ID))
	if err != nil {
		return fmt.Errorf("raft baseline: %w", err)
	}
	bolt, err := openBolt(filepath.Join(dir, boltName))
	if err != nil {
		return fmt.Errorf("raft baseline: %w", err)
	}
	b.bolts = append(b.bolts, bolt)
	logs, snaps, err := openStores(dir, bolt, ec.Raft.SnapshotRetain, rc.Logger)
	if err != nil {
		return fmt.Errorf("raft baseline: %w", err)
	}
	trans := newNetworkTransport(n.Stream, n.Advertise, ec.TransportTimeout, rc.Logger)
	if err := raft.BootstrapCluster(rc, logs, bolt, snaps, trans, servers); err != nil {
		trans.Close()
		return fmt.Errorf("raft baseline: bootstrap %s: %w", n.ID, err)
	}
	r, err := raft.NewRaft(rc, countingFSM{&b.applied}, logs, bolt, snaps, trans)
	if err != nil {
		trans.Close()
		return fmt.Errorf("raft baseline: start %s: %w", n.ID, err)
	}
	b.rafts = append(b.rafts, r)
	return nil
}

func (b *Baseline) leader() *raft.Raft {
	for _, r := range b.rafts {
		if r.State() == raft.Leader {
			return r
		}
	}
	return nil
}

// Apply appends data through the current leader, in process, and returns
// once the leader applied it (committed on a quorum).
func (b *Baseline) Apply(ctx context.Context, data []byte) error {
	for {
		r := b.leader()
		if r == nil {
			select {
			case <-ctx.Done():
				return fmt.Errorf("raft baseline: apply: no leader: %w", ctx.Err())
			case <-time.After(5 * time.Millisecond):
				continue
			}
		}
		err := r.Apply(data, b.timeout).Error()
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			continue
		}
		if err != nil {
			return fmt.Errorf("raft baseline: apply: %w", err)
		}
		return nil
	}
}

// Applied returns how many entries the nodes' FSMs applied, summed.
func (b *Baseline) Applied() uint64 { return b.applied.Load() }

// Stop shuts every node down and closes the stores.
func (b *Baseline) Stop() error {
	var errs []error
	for _, r := range b.rafts {
		if err := r.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, bolt := range b.bolts {
		if err := bolt.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	b.rafts, b.bolts = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("raft baseline: stop: %w", err)
	}
	return nil
}
