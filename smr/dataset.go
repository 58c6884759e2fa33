package smr

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/binary"
	"slices"

	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// Bounds of datasets. Storage is fixed when a dataset is created: Cells
// cells of CellSize bytes each, never more.
const (
	MaxDatasetCells    = 65536    // cells of one dataset
	MaxCellSize        = 4096     // bytes of one cell
	MaxDatasetBytes    = 16 << 20 // cells × cell size of one dataset
	MaxAllDatasetBytes = 64 << 20 // cells × cell size summed over every dataset of the cluster
	MaxDatasetAgents   = 4096     // agents (invited or revoked) and admins of one dataset, each
	// DefaultMaxAgentSeqs is the default and the largest cap on the local
	// seqs an agent may sign for one dataset (the seed's "up to 1 billion");
	// create_dataset may lower it.
	DefaultMaxAgentSeqs = 1_000_000_000
	MaxSyncAgents       = 1024 // distinct agents named in one sync snapshot
	MaxSyncChanges      = 4096 // changes in one sync snapshot
)

// DatasetRole is what invite_agent and revoke_agent grant or take: the
// right to write cells (agent) or to invite and revoke (admin).
type DatasetRole string

// Dataset roles. An empty role means RoleAgent.
const (
	RoleAgent DatasetRole = "agent"
	RoleAdmin DatasetRole = "admin"
)

// DatasetRef names the dataset an agent signs for: its name and the log
// index that created it. Both are in every signature of an agent, so a
// signed change or seq statement cannot be replayed into another dataset.
type DatasetRef struct {
	Name    string `json:"name"`
	Created uint64 `json:"created"`
}

// Domain tags of the signatures of agents.
const (
	changeDomain    = "tandem/dataset-change/v1\x00"
	statementDomain = "tandem/dataset-seqs/v1\x00"
)

func appendRef(b []byte, ref DatasetRef) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(ref.Name)))
	b = append(b, ref.Name...)
	return binary.BigEndian.AppendUint64(b, ref.Created)
}

// SeqStatement is an agent's signed statement "my highest local seq for
// the dataset is MaxLocalSeq". The cluster keeps the highest one it has
// seen per agent; local seqs up to it are the agent's currency.
type SeqStatement struct {
	Agent       ed25519.PublicKey `json:"agent"` // 32 bytes (base64 in JSON)
	MaxLocalSeq uint64            `json:"max_local_seq"`
	Sig         []byte            `json:"sig"` // Ed25519 over SignBytes
}

// SignBytes returns the bytes the agent signs:
//
//	"tandem/dataset-seqs/v1\x00" || len(name) (uint32 BE) || name ||
//	created (uint64 BE) || agent (32) || max local seq (uint64 BE)
func (s *SeqStatement) SignBytes(ref DatasetRef) []byte {
	b := make([]byte, 0, len(statementDomain)+4+len(ref.Name)+8+32+8)
	b = append(b, statementDomain...)
	b = appendRef(b, ref)
	b = append(b, s.Agent...)
	return binary.BigEndian.AppendUint64(b, s.MaxLocalSeq)
}

// Verify checks the statement's signature for ref. Errors are *Error with
// CodeMalformed (key size) or CodeBadSignature.
func (s *SeqStatement) Verify(ref DatasetRef) error {
	return verifyAgentSig(s.Agent, s.Sig, s.SignBytes(ref), "seq statement")
}

// SignSeqStatement returns the statement of priv's key that its highest
// local seq for ref is maxLocalSeq. Errors are *Error.
func SignSeqStatement(priv ed25519.PrivateKey, ref DatasetRef, maxLocalSeq uint64) (SeqStatement, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return SeqStatement{}, Errorf(CodeMalformed, "private key is %d bytes, an Ed25519 private key is %d", len(priv), ed25519.PrivateKeySize)
	}
	s := SeqStatement{Agent: bytes.Clone(priv.Public().(ed25519.PublicKey)), MaxLocalSeq: maxLocalSeq}
	s.Sig = ed25519.Sign(priv, s.SignBytes(ref))
	return s, nil
}

// DatasetChange is an agent's signed change of one cell: "with my local seq
// LocalSeq, set Cell to Value at global seq GlobalSeq". Value must be
// exactly the dataset's cell size (the SDK pads shorter values with zero
// bytes before signing).
type DatasetChange struct {
	Agent     ed25519.PublicKey `json:"agent"` // 32 bytes (base64 in JSON)
	LocalSeq  uint64            `json:"local_seq"`
	Cell      uint32            `json:"cell"`
	GlobalSeq uint64            `json:"global_seq"`
	Value     []byte            `json:"value"` // base64 in JSON
	Sig       []byte            `json:"sig"`   // Ed25519 over SignBytes
}

// SignBytes returns the bytes the agent signs:
//
//	"tandem/dataset-change/v1\x00" || len(name) (uint32 BE) || name ||
//	created (uint64 BE) || agent (32) || local seq (uint64 BE) ||
//	cell (uint32 BE) || global seq (uint64 BE) || len(value) (uint32 BE) ||
//	value
func (c *DatasetChange) SignBytes(ref DatasetRef) []byte {
	b := make([]byte, 0, len(changeDomain)+4+len(ref.Name)+8+32+8+4+8+4+len(c.Value))
	b = append(b, changeDomain...)
	b = appendRef(b, ref)
	b = append(b, c.Agent...)
	b = binary.BigEndian.AppendUint64(b, c.LocalSeq)
	b = binary.BigEndian.AppendUint32(b, c.Cell)
	b = binary.BigEndian.AppendUint64(b, c.GlobalSeq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Value)))
	return append(b, c.Value...)
}

// Verify checks the change's signature for ref. Errors are *Error with
// CodeMalformed (key size) or CodeBadSignature.
func (c *DatasetChange) Verify(ref DatasetRef) error {
	return verifyAgentSig(c.Agent, c.Sig, c.SignBytes(ref), "change")
}

// SignChange returns c with Agent set to priv's key and signed for ref.
// Errors are *Error.
func SignChange(priv ed25519.PrivateKey, ref DatasetRef, c DatasetChange) (DatasetChange, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return DatasetChange{}, Errorf(CodeMalformed, "private key is %d bytes, an Ed25519 private key is %d", len(priv), ed25519.PrivateKeySize)
	}
	c.Agent = bytes.Clone(priv.Public().(ed25519.PublicKey))
	c.Value = bytes.Clone(c.Value)
	c.Sig = ed25519.Sign(priv, c.SignBytes(ref))
	return c, nil
}

func verifyAgentSig(agent ed25519.PublicKey, sig, msg []byte, what string) error {
	if len(agent) != ed25519.PublicKeySize {
		return agentSigError(agent, false, what)
	}
	return agentSigError(agent, sigverify.Verify(agent, msg, sig), what)
}

// agentSigError is verifyAgentSig's error for a signature whose verdict is
// ok (ignored when the key has the wrong size).
func agentSigError(agent ed25519.PublicKey, ok bool, what string) error {
	if len(agent) != ed25519.PublicKeySize {
		return Errorf(CodeMalformed, "%s agent key is %d bytes, an Ed25519 public key is %d", what, len(agent), ed25519.PublicKeySize)
	}
	if !ok {
		return Errorf(CodeBadSignature, "%s signature does not verify for agent %s", what, FormatKey(agent))
	}
	return nil
}

// Cell is the content of one dataset cell: the global seq of its last
// winning change and its value. A fresh cell is global seq 0 and zero
// bytes.
type Cell struct {
	GlobalSeq uint64 `json:"global_seq"`
	Value     []byte `json:"value"`
}

// CompareCells orders cells as the merge does: by global seq, then by value
// bytewise (bytes.Compare). It returns -1, 0 or +1. The agent that wrote a
// cell plays no part.
func CompareCells(a, b Cell) int {
	if c := cmp.Compare(a.GlobalSeq, b.GlobalSeq); c != 0 {
		return c
	}
	return bytes.Compare(a.Value, b.Value)
}

// MergeCell returns the winner of a and b: the greater by CompareCells (a
// when equal). It is commutative, associative and idempotent up to equal
// cells, which is what makes every replica converge. The result aliases the
// winner's Value.
func MergeCell(a, b Cell) Cell {
	if CompareCells(b, a) > 0 {
		return b
	}
	return a
}

// DatasetSnapshot is what an agent sends in a sync: signed seq statements
// (at most one per agent) and signed changes (its own and ones it relays),
// both of any agents of the dataset. In canonical order, which the binary
// form requires, statements are sorted by agent key and changes by (agent
// key, local seq) with no two changes of one agent sharing a local seq;
// Normalize sorts. The cluster validates and merges in that order, and a
// sync's verdicts refer to changes by their position in it.
type DatasetSnapshot struct {
	Statements []SeqStatement  `json:"statements"`
	Changes    []DatasetChange `json:"changes"`
}

// Normalize sorts s into canonical order and checks what the binary form
// needs of it: key and signature sizes, values of at most MaxCellSize
// bytes, at most one statement per agent, distinct (agent, local seq) of
// changes, and the count limits. Errors are *Error.
func (s *DatasetSnapshot) Normalize() error {
	slices.SortStableFunc(s.Statements, func(a, b SeqStatement) int { return bytes.Compare(a.Agent, b.Agent) })
	slices.SortStableFunc(s.Changes, compareChanges)
	return s.checkCanonical()
}

func compareChanges(a, b DatasetChange) int {
	if c := bytes.Compare(a.Agent, b.Agent); c != 0 {
		return c
	}
	return cmp.Compare(a.LocalSeq, b.LocalSeq)
}

// checkCanonical checks everything Normalize promises, without sorting.
func (s *DatasetSnapshot) checkCanonical() error {
	if len(s.Changes) > MaxSyncChanges {
		return Errorf(CodeTooLarge, "snapshot has %d changes, at most %d allowed", len(s.Changes), MaxSyncChanges)
	}
	for i, st := range s.Statements {
		if len(st.Agent) != ed25519.PublicKeySize || len(st.Sig) != ed25519.SignatureSize {
			return Errorf(CodeMalformed, "snapshot statement %d has a %d-byte agent key and a %d-byte signature, want %d and %d", i, len(st.Agent), len(st.Sig), ed25519.PublicKeySize, ed25519.SignatureSize)
		}
		if i > 0 && bytes.Compare(s.Statements[i-1].Agent, st.Agent) >= 0 {
			return Errorf(CodeMalformed, "snapshot statements %d and %d are out of order or of the same agent: at most one statement per agent, sorted by agent key", i-1, i)
		}
	}
	agents := make(map[clientKey]struct{})
	for _, st := range s.Statements {
		agents[clientKey(st.Agent)] = struct{}{}
	}
	for i, c := range s.Changes {
		if len(c.Agent) != ed25519.PublicKeySize || len(c.Sig) != ed25519.SignatureSize {
			return Errorf(CodeMalformed, "snapshot change %d has a %d-byte agent key and a %d-byte signature, want %d and %d", i, len(c.Agent), len(c.Sig), ed25519.PublicKeySize, ed25519.SignatureSize)
		}
		if len(c.Value) > MaxCellSize {
			return Errorf(CodeTooLarge, "snapshot change %d has a %d-byte value, a cell holds at most %d", i, len(c.Value), MaxCellSize)
		}
		if i > 0 && compareChanges(s.Changes[i-1], c) >= 0 {
			return Errorf(CodeMalformed, "snapshot changes %d and %d are out of order or share agent %s and local seq %d: changes are sorted by (agent key, local seq), one change per local seq", i-1, i, FormatKey(c.Agent), c.LocalSeq)
		}
		agents[clientKey(c.Agent)] = struct{}{}
	}
	if len(agents) > MaxSyncAgents {
		return Errorf(CodeTooLarge, "snapshot names %d agents, at most %d allowed", len(agents), MaxSyncAgents)
	}
	return nil
}

// Binary form of a DatasetSnapshot (the sync_dataset command's snapshot
// field). Integers are big-endian.
//
//	version (1 byte, 1)
//	agents:     count (uint16), { key (32) }, strictly ascending
//	statements: count (uint16), { agent index (uint16) || max local seq (uint64) || sig (64) },
//	            agent index strictly ascending
//	changes:    count (uint16), { agent index (uint16) || local seq (uint64) || cell (uint32) ||
//	            global seq (uint64) || len(value) (uint16) || value || sig (64) },
//	            (agent index, local seq) strictly ascending
//
// Every agent of the table is named by a statement or a change, so every
// snapshot has exactly one encoding.
const snapshotCodecVersion = 1

// EncodeDatasetSnapshot returns the binary form of s, which must be in
// canonical order (call Normalize first). Errors are *Error.
func EncodeDatasetSnapshot(s DatasetSnapshot) ([]byte, error) {
	if err := s.checkCanonical(); err != nil {
		return nil, err
	}
	var keys []clientKey
	for _, st := range s.Statements {
		keys = append(keys, clientKey(st.Agent))
	}
	for _, c := range s.Changes {
		keys = append(keys, clientKey(c.Agent))
	}
	slices.SortFunc(keys, func(a, b clientKey) int { return bytes.Compare(a[:], b[:]) })
	keys = slices.Compact(keys)
	index := make(map[clientKey]uint16, len(keys))
	size := 1 + 2 + 32*len(keys) + 2 + len(s.Statements)*(2+8+64) + 2
	for i, k := range keys {
		index[k] = uint16(i)
	}
	for _, c := range s.Changes {
		size += 2 + 8 + 4 + 8 + 2 + len(c.Value) + 64
	}
	b := make([]byte, 0, size)
	b = append(b, snapshotCodecVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(keys)))
	for _, k := range keys {
		b = append(b, k[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Statements)))
	for _, st := range s.Statements {
		b = binary.BigEndian.AppendUint16(b, index[clientKey(st.Agent)])
		b = binary.BigEndian.AppendUint64(b, st.MaxLocalSeq)
		b = append(b, st.Sig...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Changes)))
	for _, c := range s.Changes {
		b = binary.BigEndian.AppendUint16(b, index[clientKey(c.Agent)])
		b = binary.BigEndian.AppendUint64(b, c.LocalSeq)
		b = binary.BigEndian.AppendUint32(b, c.Cell)
		b = binary.BigEndian.AppendUint64(b, c.GlobalSeq)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Value)))
		b = append(b, c.Value...)
		b = append(b, c.Sig...)
	}
	return b, nil
}

// DecodeDatasetSnapshot strictly decodes the binary form: the version,
// every length against the bytes left, the order rules and the limits, and
// no trailing bytes. The result does not alias b. A rejection is an *Error
// with CodeMalformed or CodeTooLarge whose message comes from this
// package's templates. Signatures are not checked here: the cluster checks
// each against the dataset it is synced into.
func DecodeDatasetSnapshot(b []byte) (DatasetSnapshot, error) {
	var s DatasetSnapshot
	r := snapReader{b: b}
	if v := r.u8("version"); r.err == nil && v != snapshotCodecVersion {
		return s, Errorf(CodeMalformed, "snapshot version %d is unknown (this state machine reads version %d)", v, snapshotCodecVersion)
	}
	nAgents := int(r.u16("agent count"))
	if r.err == nil && nAgents > MaxSyncAgents {
		return s, Errorf(CodeTooLarge, "snapshot names %d agents, at most %d allowed", nAgents, MaxSyncAgents)
	}
	keys := make([]ed25519.PublicKey, 0, min(nAgents, len(b)/32))
	for i := 0; i < nAgents && r.err == nil; i++ {
		k := r.take(32, "agent key")
		if r.err == nil && i > 0 && bytes.Compare(keys[i-1], k) >= 0 {
			return s, Errorf(CodeMalformed, "snapshot agent %d is out of order: agent keys must be strictly ascending", i)
		}
		keys = append(keys, ed25519.PublicKey(bytes.Clone(k)))
	}
	used := make([]bool, len(keys))
	agent := func(what string, i int) ed25519.PublicKey {
		idx := int(r.u16(what))
		if r.err != nil {
			return nil
		}
		if idx >= len(keys) {
			r.fail(Errorf(CodeMalformed, "snapshot %s %d names agent %d of %d", what, i, idx, len(keys)))
			return nil
		}
		used[idx] = true
		return keys[idx]
	}
	nStatements := int(r.u16("statement count"))
	for i := 0; i < nStatements && r.err == nil; i++ {
		st := SeqStatement{Agent: agent("statement", i), MaxLocalSeq: r.u64("max local seq"), Sig: bytes.Clone(r.take(64, "statement signature"))}
		if r.err == nil {
			s.Statements = append(s.Statements, st)
		}
	}
	nChanges := int(r.u16("change count"))
	if r.err == nil && nChanges > MaxSyncChanges {
		return s, Errorf(CodeTooLarge, "snapshot has %d changes, at most %d allowed", nChanges, MaxSyncChanges)
	}
	for i := 0; i < nChanges && r.err == nil; i++ {
		c := DatasetChange{Agent: agent("change", i), LocalSeq: r.u64("local seq"), Cell: r.u32("cell"), GlobalSeq: r.u64("global seq")}
		n := int(r.u16("value length"))
		if r.err == nil && n > MaxCellSize {
			return DatasetSnapshot{}, Errorf(CodeTooLarge, "snapshot change %d has a %d-byte value, a cell holds at most %d", i, n, MaxCellSize)
		}
		c.Value = bytes.Clone(r.take(n, "value"))
		if c.Value == nil {
			c.Value = []byte{}
		}
		c.Sig = bytes.Clone(r.take(64, "change signature"))
		if r.err == nil {
			s.Changes = append(s.Changes, c)
		}
	}
	if r.err != nil {
		return DatasetSnapshot{}, r.err
	}
	if len(r.b) != 0 {
		return DatasetSnapshot{}, Errorf(CodeMalformed, "snapshot has %d bytes after its last change", len(r.b))
	}
	for i, u := range used {
		if !u {
			return DatasetSnapshot{}, Errorf(CodeMalformed, "snapshot agent %d is named by no statement and no change", i)
		}
	}
	if err := s.checkCanonical(); err != nil {
		return DatasetSnapshot{}, err
	}
	return s, nil
}

// snapReader reads the binary snapshot; the first error sticks.
type snapReader struct {
	b   []byte
	err *Error
}

func (r *snapReader) fail(e *Error) {
	if r.err == nil {
		r.err = e
	}
}

func (r *snapReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail(Errorf(CodeMalformed, "snapshot is truncated: %s needs %d bytes, %d left", what, n, len(r.b)))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *snapReader) u8(what string) byte {
	if v := r.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (r *snapReader) u16(what string) uint16 {
	if v := r.take(2, what); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *snapReader) u32(what string) uint32 {
	if v := r.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *snapReader) u64(what string) uint64 {
	if v := r.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// checkDatasetShape checks the size of a dataset being created.
func checkDatasetShape(cells, cellSize int) error {
	if cells < 1 || cells > MaxDatasetCells {
		return Errorf(CodeMalformed, "cells is %d, must be 1..%d", cells, MaxDatasetCells)
	}
	if cellSize < 1 || cellSize > MaxCellSize {
		return Errorf(CodeMalformed, "cell_size is %d, must be 1..%d bytes", cellSize, MaxCellSize)
	}
	if total := cells * cellSize; total > MaxDatasetBytes {
		return Errorf(CodeTooLarge, "cells x cell_size is %d x %d = %d bytes, at most %d allowed", cells, cellSize, total, MaxDatasetBytes)
	}
	return nil
}

// checkAgentList checks the agents invited by create_dataset: canonical
// keys, no duplicates, at most MaxDatasetAgents.
func checkAgentList(agents []string) error {
	if len(agents) == 0 {
		return Errorf(CodeMalformed, "agents is an empty list; leave the field out instead")
	}
	if len(agents) > MaxDatasetAgents {
		return Errorf(CodeTooLarge, "agents lists %d keys, at most %d allowed", len(agents), MaxDatasetAgents)
	}
	seen := make(map[string]int, len(agents))
	for i, a := range agents {
		if _, err := ParseKey(a); err != nil {
			return Errorf(CodeMalformed, "agents[%d]: %s", i, errorText(err))
		}
		if j, dup := seen[a]; dup {
			return Errorf(CodeMalformed, "agents[%d] and agents[%d] are the same key %s", j, i, a)
		}
		seen[a] = i
	}
	return nil
}
