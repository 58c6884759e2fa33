package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tandem-consensus/tandem/consensus/hotstuff/types"
)

// The block store is one bolt file (data_dir/hotstuff/blocks.db):
//
//	meta     "genesis"  -> genesis block hash (the committee it belongs to)
//	         "root_qc"  -> types.MarshalQC of the QC certifying the last
//	                       committed block
//	         "snapshot" -> height u64 | index u64 | state machine snapshot
//	         "log_bytes" -> u64: the encoded size of the committed blocks
//	                       the chain records name (written with every
//	                       change of the chain; a store without it, from
//	                       an earlier version, is scanned once at open)
//	         ("pruned", a height written by earlier versions, is no longer
//	         read: the chain's first record is the horizon)
//	blocks   hash       -> types.MarshalBlock (every block the core accepted
//	                       that is committed or may still commit)
//	pending  hash       -> height u64 (accepted, not committed yet)
//	chain    height u64 -> hash | first index u64 | last index u64 (the
//	                       committed chain; the indexes are the log indexes
//	                       of the block's state machine entries, first >
//	                       last when it has none; from the horizon, the
//	                       lowest height still stored, to the root)
//
// Every write is one bolt transaction, fsynced before it returns.
var (
	bucketMeta    = []byte("meta")
	bucketBlocks  = []byte("blocks")
	bucketPending = []byte("pending")
	bucketChain   = []byte("chain")

	keyGenesis  = []byte("genesis")
	keyRootQC   = []byte("root_qc")
	keySnapshot = []byte("snapshot")
	keyLogBytes = []byte("log_bytes")
)

// ErrWrongCommittee is returned by openStore when the store belongs to
// another committee (another genesis block): the data directory was made
// for a different cluster or epoch.
var ErrWrongCommittee = errors.New("block store belongs to another committee")

// blockStore persists blocks, the committed chain and state machine
// snapshots. It is used by the engine's loop only (bolt itself is safe for
// concurrent use, the store's invariants assume one writer).
type blockStore struct {
	db   *bolt.DB
	path string
}

// chainEntry is one committed block's record.
type chainEntry struct {
	height      uint64
	hash        types.Hash
	first, last uint64 // log indexes of its entries; first = last+1 when none
}

// committedBlock is a block being recorded as committed.
type committedBlock struct {
	block *types.Block
	entry chainEntry
}

// storedSnapshot is a state machine snapshot taken after the committed
// block at height, when the log index was index.
type storedSnapshot struct {
	height, index uint64
	data          []byte
}

func openStore(path string, genesis types.Hash) (*blockStore, error) {
	// The freelist is not written with every transaction but rebuilt when
	// the file is opened (as etcd does): one page less per commit, and a
	// commit is on the path of every view.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open block store %s: %w", path, err)
	}
	s := &blockStore{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketBlocks, bucketPending, bucketChain} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if g := meta.Get(keyGenesis); g != nil {
			if !bytes.Equal(g, genesis[:]) {
				return fmt.Errorf("%s holds genesis block %x, this committee's genesis is %s: %w", path, g[:8], genesis, ErrWrongCommittee)
			}
			return nil
		}
		return meta.Put(keyGenesis, genesis[:])
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("block store %s: %w", path, err)
	}
	return s, nil
}

func (s *blockStore) close() error { return s.db.Close() }

func encodeChainEntry(e chainEntry) []byte {
	b := make([]byte, 0, 32+16)
	b = append(b, e.hash[:]...)
	b = binary.BigEndian.AppendUint64(b, e.first)
	return binary.BigEndian.AppendUint64(b, e.last)
}

func decodeChainEntry(height uint64, v []byte) (chainEntry, error) {
	if len(v) != 48 {
		return chainEntry{}, fmt.Errorf("chain record at height %d has %d bytes, want 48", height, len(v))
	}
	e := chainEntry{height: height}
	copy(e.hash[:], v[:32])
	e.first = binary.BigEndian.Uint64(v[32:40])
	e.last = binary.BigEndian.Uint64(v[40:48])
	return e, nil
}

func heightKey(h uint64) []byte { return binary.BigEndian.AppendUint64(nil, h) }

// save records blocks the core accepted and blocks it committed (with the
// QC that certifies the last of them) in one durable transaction. A
// committed block is normally among the accepted ones of this or an earlier
// call; it is stored again if not. It returns the encoded size of the
// blocks it added to the committed chain, which the stored log_bytes grew
// by.
func (s *blockStore) save(accepted []*types.Block, committed []committedBlock, commitQC types.QC) (uint64, error) {
	if len(accepted) == 0 && len(committed) == 0 {
		return 0, nil
	}
	var added uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		added = 0
		var before uint64 // log_bytes, read before the chain changes
		if len(committed) > 0 {
			var err error
			if before, err = storedLogBytes(tx); err != nil {
				return err
			}
		}
		blocks, pending, chain := tx.Bucket(bucketBlocks), tx.Bucket(bucketPending), tx.Bucket(bucketChain)
		for _, b := range accepted {
			h := b.Hash()
			if err := blocks.Put(h[:], types.MarshalBlock(b)); err != nil {
				return err
			}
			if err := pending.Put(h[:], heightKey(b.Height)); err != nil {
				return err
			}
		}
		if len(committed) == 0 {
			return nil
		}
		for _, c := range committed {
			h := c.entry.hash
			v := blocks.Get(h[:])
			if v == nil {
				v = types.MarshalBlock(c.block)
				if err := blocks.Put(h[:], v); err != nil {
					return err
				}
			}
			hk := heightKey(c.entry.height)
			if chain.Get(hk) == nil {
				added += uint64(len(v))
			}
			if err := chain.Put(hk, encodeChainEntry(c.entry)); err != nil {
				return err
			}
			if err := pending.Delete(h[:]); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyRootQC, types.MarshalQC(commitQC)); err != nil {
			return err
		}
		if added > 0 {
			if err := putLogBytes(tx, before+added); err != nil {
				return err
			}
		}
		// Forget blocks of forks that can no longer commit: pending blocks at
		// or below the new committed height.
		root := committed[len(committed)-1].entry.height
		var dead [][]byte
		cur := pending.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if len(v) == 8 && binary.BigEndian.Uint64(v) <= root {
				dead = append(dead, append([]byte(nil), k...))
			}
		}
		for _, k := range dead {
			if err := pending.Delete(k); err != nil {
				return err
			}
			if err := blocks.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// putLogBytes writes the log_bytes record in tx.
func putLogBytes(tx *bolt.Tx, n uint64) error {
	return tx.Bucket(bucketMeta).Put(keyLogBytes, binary.BigEndian.AppendUint64(nil, n))
}

// storedLogBytes returns the log_bytes record of tx, or the size of the
// committed blocks the chain names when there is none (a store written
// by an earlier version). Read it before the transaction changes the
// chain.
func storedLogBytes(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(keyLogBytes)
	if v == nil {
		return scanLogBytes(tx)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("log_bytes record has %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// scanLogBytes sums the encoded size of the committed blocks the chain
// records name.
func scanLogBytes(tx *bolt.Tx) (uint64, error) {
	blocks := tx.Bucket(bucketBlocks)
	var n uint64
	cur := tx.Bucket(bucketChain).Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		e, err := decodeChainEntry(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return 0, err
		}
		n += uint64(len(blocks.Get(e.hash[:])))
	}
	return n, nil
}

// logBytes returns the encoded size of the committed blocks the store
// holds, from the horizon to the root: the log_bytes record, written once
// from a scan of the chain when the store has none yet.
func (s *blockStore) logBytes() (uint64, error) {
	var n uint64
	var missing bool
	err := s.db.View(func(tx *bolt.Tx) error {
		missing = tx.Bucket(bucketMeta).Get(keyLogBytes) == nil
		var err error
		n, err = storedLogBytes(tx)
		return err
	})
	if err != nil || !missing {
		return n, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if n, err = scanLogBytes(tx); err != nil {
			return err
		}
		return putLogBytes(tx, n)
	})
	return n, err
}

// saveSnapshot replaces the stored state machine snapshot.
func (s *blockStore) saveSnapshot(snap storedSnapshot) error {
	v := encodeSnapshot(snap)
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySnapshot, v) })
}

// encodeSnapshot is the stored record of snap: height u64 | index u64 |
// data.
func encodeSnapshot(snap storedSnapshot) []byte {
	v := make([]byte, 0, 16+len(snap.data))
	v = binary.BigEndian.AppendUint64(v, snap.height)
	v = binary.BigEndian.AppendUint64(v, snap.index)
	return append(v, snap.data...)
}

// snapshot returns the stored snapshot, or nil.
func (s *blockStore) snapshot() (*storedSnapshot, error) {
	var out *storedSnapshot
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keySnapshot)
		if v == nil {
			return nil
		}
		if len(v) < 16 {
			return fmt.Errorf("stored snapshot record has %d bytes", len(v))
		}
		out = &storedSnapshot{
			height: binary.BigEndian.Uint64(v[:8]),
			index:  binary.BigEndian.Uint64(v[8:16]),
			data:   append([]byte(nil), v[16:]...),
		}
		return nil
	})
	return out, err
}

// block returns the stored block with hash h.
func (s *blockStore) block(h types.Hash) (*types.Block, error) {
	var b *types.Block
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlocks).Get(h[:])
		if v == nil {
			return nil
		}
		var err error
		b, err = types.UnmarshalBlock(v)
		return err
	})
	return b, err
}

// ancestry returns up to n stored blocks starting at h and following parent
// links (newest first), stopping at a missing block, the genesis block, or
// once the encoded blocks exceed maxBytes (at least one block is returned
// when h is stored).
func (s *blockStore) ancestry(h types.Hash, n, maxBytes int) ([]*types.Block, error) {
	var out []*types.Block
	err := s.db.View(func(tx *bolt.Tx) error {
		blocks := tx.Bucket(bucketBlocks)
		size := 0
		for len(out) < n {
			v := blocks.Get(h[:])
			if v == nil || (len(out) > 0 && size+len(v) > maxBytes) {
				return nil
			}
			b, err := types.UnmarshalBlock(v)
			if err != nil {
				return fmt.Errorf("stored block %s: %w", h, err)
			}
			if b.View == 0 {
				return nil
			}
			size += len(v)
			out = append(out, b)
			h = b.Parent
		}
		return nil
	})
	return out, err
}

// state is what a restarting engine reads back.
type state struct {
	// last is the last committed block's record (height 0 = nothing
	// committed beyond genesis).
	last   chainEntry
	root   *types.Block // nil when nothing was committed
	rootQC types.QC
	// pending are the uncommitted blocks above root.
	pending []*types.Block
	// recent are the last committed blocks, lowest first, root included.
	recent []*types.Block
}

// load reads the committed root, its QC, the pending blocks and the last
// `recent` committed blocks.
func (s *blockStore) load(recent int) (state, error) {
	var st state
	err := s.db.View(func(tx *bolt.Tx) error {
		blocks, chain := tx.Bucket(bucketBlocks), tx.Bucket(bucketChain)
		get := func(h types.Hash) (*types.Block, error) {
			v := blocks.Get(h[:])
			if v == nil {
				return nil, fmt.Errorf("block %s is recorded but not stored", h)
			}
			return types.UnmarshalBlock(v)
		}
		cur := chain.Cursor()
		k, v := cur.Last()
		if k == nil {
			return nil
		}
		last, err := decodeChainEntry(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return err
		}
		st.last = last
		if st.root, err = get(last.hash); err != nil {
			return err
		}
		qcb := tx.Bucket(bucketMeta).Get(keyRootQC)
		if qcb == nil {
			return errors.New("committed chain without a root QC")
		}
		if st.rootQC, err = types.UnmarshalQC(qcb); err != nil {
			return fmt.Errorf("root QC: %w", err)
		}
		for ; k != nil && len(st.recent) < recent; k, v = cur.Prev() {
			e, err := decodeChainEntry(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			b, err := get(e.hash)
			if err != nil {
				return err
			}
			st.recent = append(st.recent, b)
		}
		for i, j := 0, len(st.recent)-1; i < j; i, j = i+1, j-1 {
			st.recent[i], st.recent[j] = st.recent[j], st.recent[i]
		}
		pc := tx.Bucket(bucketPending).Cursor()
		for pk, pv := pc.First(); pk != nil; pk, pv = pc.Next() {
			if len(pv) != 8 || binary.BigEndian.Uint64(pv) <= last.height {
				continue
			}
			var h types.Hash
			copy(h[:], pk)
			b, err := get(h)
			if err != nil {
				return err
			}
			st.pending = append(st.pending, b)
		}
		return nil
	})
	if err != nil {
		return state{}, fmt.Errorf("load block store %s: %w", s.path, err)
	}
	return st, nil
}

// replay calls fn for every committed block above height from, in order.
func (s *blockStore) replay(from uint64, fn func(e chainEntry, b *types.Block) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		blocks := tx.Bucket(bucketBlocks)
		cur := tx.Bucket(bucketChain).Cursor()
		for k, v := cur.Seek(heightKey(from + 1)); k != nil; k, v = cur.Next() {
			e, err := decodeChainEntry(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			raw := blocks.Get(e.hash[:])
			if raw == nil {
				return fmt.Errorf("committed block %s at height %d is not stored", e.hash, e.height)
			}
			b, err := types.UnmarshalBlock(raw)
			if err != nil {
				return fmt.Errorf("committed block at height %d: %w", e.height, err)
			}
			if err := fn(e, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// horizon returns the lowest committed height whose chain record and block
// are still stored, the chain's first record: 0 when nothing was pruned
// (horizonOf).
func (s *blockStore) horizon() (uint64, error) {
	var h uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketChain).Cursor().First()
		if k == nil {
			return nil
		}
		if len(k) != 8 {
			return fmt.Errorf("chain record key has %d bytes, want 8", len(k))
		}
		h = horizonOf(binary.BigEndian.Uint64(k))
		return nil
	})
	return h, err
}

// horizonOf is the horizon of a committed chain whose lowest stored height
// is first: first, or 0 when the chain starts at height 1 (nothing below
// it is missing).
func horizonOf(first uint64) uint64 {
	if first <= 1 {
		return 0
	}
	return first
}

// chainAt returns the chain record at height, if stored.
func (s *blockStore) chainAt(height uint64) (chainEntry, bool, error) {
	var e chainEntry
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketChain).Get(heightKey(height))
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeChainEntry(height, v)
		ok = err == nil
		return err
	})
	return e, ok, err
}

// holding returns the stored chain record of the committed block whose
// entries include log index idx: the lowest height in [lo, hi] whose last
// index is at least idx (the records' indexes grow with the height). ok is
// false when no stored record in the range reaches idx.
func (s *blockStore) holding(idx, lo, hi uint64) (chainEntry, bool, error) {
	var found chainEntry
	ok := false
	err := s.db.View(func(tx *bolt.Tx) error {
		chain := tx.Bucket(bucketChain)
		for lo <= hi {
			mid := lo + (hi-lo)/2
			v := chain.Get(heightKey(mid))
			if v == nil {
				// Below the stored range (pruned): look higher.
				lo = mid + 1
				continue
			}
			e, err := decodeChainEntry(mid, v)
			if err != nil {
				return err
			}
			if e.last >= idx {
				found, ok = e, true
				if mid == 0 {
					break
				}
				hi = mid - 1
			} else {
				lo = mid + 1
			}
		}
		return nil
	})
	return found, ok, err
}

// prune deletes the chain records and the blocks of the committed heights
// below `below`, never the last committed block (the root): the chain's
// first record is the new horizon. It returns how many committed blocks it
// deleted and their encoded size, which the stored log_bytes fell by.
func (s *blockStore) prune(below uint64) (int, uint64, error) {
	n := 0
	var freed uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		n, freed = 0, 0
		before, err := storedLogBytes(tx) // read before the chain changes
		if err != nil {
			return err
		}
		blocks, chain := tx.Bucket(bucketBlocks), tx.Bucket(bucketChain)
		k, _ := chain.Cursor().Last()
		if k == nil {
			return nil
		}
		below = min(below, binary.BigEndian.Uint64(k))
		var heights [][]byte
		cur := chain.Cursor()
		for k, v := cur.First(); k != nil && binary.BigEndian.Uint64(k) < below; k, v = cur.Next() {
			e, err := decodeChainEntry(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			freed += uint64(len(blocks.Get(e.hash[:])))
			if err := blocks.Delete(e.hash[:]); err != nil {
				return err
			}
			heights = append(heights, append([]byte(nil), k...))
		}
		for _, k := range heights {
			if err := chain.Delete(k); err != nil {
				return err
			}
		}
		n = len(heights)
		if n == 0 {
			return nil
		}
		if freed > before {
			return fmt.Errorf("pruning %d bytes of blocks, but log_bytes records only %d", freed, before)
		}
		return putLogBytes(tx, before-freed)
	})
	if err != nil {
		return 0, 0, err
	}
	return n, freed, nil
}

// rebase replaces the whole committed chain with one block, the anchor a
// replica starts from after a state transfer: its chain record, the QC
// that certifies it, and the state machine snapshot taken after it. The
// blocks and records of the old chain and every pending block are deleted;
// the horizon becomes the anchor's height.
func (s *blockStore) rebase(b *types.Block, e chainEntry, qc types.QC, snap storedSnapshot) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketBlocks, bucketPending, bucketChain} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		v := types.MarshalBlock(b)
		if err := tx.Bucket(bucketBlocks).Put(e.hash[:], v); err != nil {
			return err
		}
		if err := tx.Bucket(bucketChain).Put(heightKey(e.height), encodeChainEntry(e)); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyRootQC, types.MarshalQC(qc)); err != nil {
			return err
		}
		if err := putLogBytes(tx, uint64(len(v))); err != nil {
			return err
		}
		return meta.Put(keySnapshot, encodeSnapshot(snap))
	})
}

// rootQC returns the stored QC of the last committed block (zero when
// nothing was committed).
func (s *blockStore) rootQC() (types.QC, error) {
	var qc types.QC
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyRootQC)
		if v == nil {
			return nil
		}
		var err error
		qc, err = types.UnmarshalQC(v)
		return err
	})
	return qc, err
}
