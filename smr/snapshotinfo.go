package smr

// SnapshotInfo returns the applied index and state hash of a snapshot
// produced by StateMachine.Snapshot after running every check Restore runs:
// magic, version, checksum, state hash against the content, and canonical
// form. It touches no state machine, so a snapshot received from a peer can
// be matched against a signed checkpoint before anything is installed.
// Errors wrap ErrBadSnapshot. The cost is that of decoding the state,
// O(snapshot size).
func SnapshotInfo(b []byte) (index uint64, hash [32]byte, err error) {
	p, err := parseSnapshot(b)
	if err != nil {
		return 0, hash, err
	}
	return p.index, p.sum, nil
}
