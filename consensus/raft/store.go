package raftengine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrCorruptLogStore is wrapped by New when raft.db exists but is not a valid
// bolt database. The file is left untouched.
var ErrCorruptLogStore = errors.New("raft log store is not a valid database")

// ErrLogStoreLocked is wrapped by New when another process holds raft.db.
var ErrLogStoreLocked = errors.New("raft log store is locked by another process")

// boltLockTimeout bounds the wait for bolt's file lock.
const boltLockTimeout = 2 * time.Second

// Storage layout under Config.DataDir.
const (
	raftDirName = "raft"
	boltName    = "raft.db"
)

// openBolt opens (or creates) the bolt store at path. bbolt's errors for a
// damaged file are turned into ErrCorruptLogStore naming the file; a panic
// inside bbolt while reading a damaged file is recovered into the same
// error.
func openBolt(path string) (store *raftboltdb.BoltStore, err error) {
	defer func() {
		if r := recover(); r != nil {
			store = nil
			err = fmt.Errorf("%w: %s (bolt failed reading it: %v); the file was left as it is: restore it from a backup, or move it away to rejoin this node empty", ErrCorruptLogStore, path, r)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: boltLockTimeout},
	})
	switch {
	case err == nil:
		return store, nil
	case errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrChecksum), errors.Is(err, bbolt.ErrVersionMismatch):
		return nil, fmt.Errorf("%w: %s (%v); the file was left as it is: restore it from a backup, or move it away to rejoin this node empty", ErrCorruptLogStore, path, err)
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (is another tandem process using this data directory?)", ErrLogStoreLocked, path)
	default:
		return nil, fmt.Errorf("open raft log store %s: %w", path, err)
	}
}

// StorageDir is the directory under dataDir (Config.DataDir) that holds
// the engine's storage: its log store and snapshots.
func StorageDir(dataDir string) string { return filepath.Join(dataDir, raftDirName) }

// prepareDir creates StorageDir(dataDir) with mode 0700 and returns its
// path.
func prepareDir(dataDir string) (string, error) {
	dir := StorageDir(dataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create raft directory: %w", err)
	}
	return dir, nil
}

// openStores puts the log cache in front of bolt and opens the file
// snapshot store in dir: the storage every Raft node of Tandem runs on
// (the engine, and the Baseline it is measured against).
func openStores(dir string, bolt *raftboltdb.BoltStore, retain int, logger hclog.Logger) (raft.LogStore, raft.SnapshotStore, error) {
	logs, err := raft.NewLogCache(logCacheSize, bolt)
	if err != nil {
		return nil, nil, fmt.Errorf("log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, logger.Named("snapshot"))
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot store in %s: %w", dir, err)
	}
	return logs, snaps, nil
}

// newNetworkTransport runs Raft's NetworkTransport on stream, announcing
// advertise as this node's address.
func newNetworkTransport(stream raft.StreamLayer, advertise string, timeout time.Duration, logger hclog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  advertisedLayer{StreamLayer: stream, addr: advertiseAddr(advertise)},
		MaxPool: DefaultTransportMaxPool,
		Timeout: timeout,
		Logger:  logger.Named("net"),
	})
}
