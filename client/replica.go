package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/tandem-consensus/tandem/internal/fsutil"
	"github.com/tandem-consensus/tandem/smr"
)

// Errors of Replica.SetAt.
var (
	// ErrWouldLose: the change would not beat the cell as the replica
	// holds it (a lower global seq, or the same one with a value that is
	// not greater), so the cluster would only report it as lost.
	ErrWouldLose = errors.New("the change would lose the merge")
	// ErrTooHigh: the change's global seq is too high: it may raise the
	// cell by more than the dataset's step limit, or cost more local seqs
	// than the agent may still sign (max_agent_seqs), as the cluster's
	// too_high rejection would say.
	ErrTooHigh = errors.New("global seq too high")
)

// Verdict is what the cluster did with one change of a sync.
type Verdict string

// Verdicts of a change.
const (
	VerdictAccepted Verdict = "accepted" // merged: it won its cell and its cost was spent
	VerdictLost     Verdict = "lost"     // valid, but the cell already held a greater (global seq, value)
	VerdictRejected Verdict = "rejected" // invalid; Reason says why
)

// ChangeVerdict is the verdict on one change a Sync sent.
type ChangeVerdict struct {
	Change  smr.DatasetChange
	Own     bool // signed by the replica's agent (else relayed)
	Verdict Verdict
	Reason  smr.SyncRejected // when rejected
	Message string           // when rejected, for the first few rejections of a sync (smr.MaxRejectionMessages)
}

// StatementRejection is a seq statement a Sync sent that the cluster
// rejected.
type StatementRejection struct {
	Statement smr.SeqStatement
	Reason    smr.SyncRejected
	Message   string // may be empty, as for ChangeVerdict
}

// SyncReport is what Replica.Sync did.
type SyncReport struct {
	Syncs              int             // sync commands sent (0 when there was nothing to push)
	Changes            []ChangeVerdict // one per change sent, in the order sent
	StatementsRejected []StatementRejection
	Index              uint64 // log index of the state pulled afterwards
	Version            uint64 // the dataset's version in that state
}

// Accepted, Lost and Rejected count the verdicts of r.
func (r SyncReport) Accepted() int { return r.count(VerdictAccepted) }

// Lost counts the changes that lost the merge.
func (r SyncReport) Lost() int { return r.count(VerdictLost) }

// Rejected counts the rejected changes.
func (r SyncReport) Rejected() int { return r.count(VerdictRejected) }

func (r SyncReport) count(v Verdict) int {
	n := 0
	for _, c := range r.Changes {
		if c.Verdict == v {
			n++
		}
	}
	return n
}

// ReplicaBudget is the agent's local seq accounting as the replica sees it.
type ReplicaBudget struct {
	Cap          uint64 // the dataset's max_agent_seqs
	SignedMax    uint64 // highest local seq the agent has signed
	LastLocalSeq uint64 // local seq of its last change
	RemoteSpent  uint64 // spent according to the last pulled state
	Reserved     uint64 // upper bound on what the pending changes will spend
	Available    uint64 // Cap - RemoteSpent - Reserved: what later raises may still cost
}

// MaxSyncBytes bounds the binary snapshot of one sync command that
// Replica.Sync sends (base64 in the command makes it a third larger); more
// pending changes go in further syncs. It keeps each command under the
// default limits.max_command_bytes (64 KiB).
const MaxSyncBytes = 40 << 10

// Replica is an agent's local copy of one dataset. It works offline: SetAt
// signs changes (and the agent's seq statements) with the agent's key and
// keeps them pending; Sync pushes pending changes (and relayed ones of
// other agents) through the cluster and pulls the merged state. The view
// (Get, Cells) is the last pulled state merged with every pending and
// relayed change, by the same per-cell rule as the cluster, so replicas
// that have seen the same changes show the same cells.
//
// Local seqs: each change takes the next local seq. Its cost (how far it
// raises the cell's global seq) is reserved against the state last pulled,
// which can only have grown since, so the reservation is an upper bound;
// the agent signs a maximum local seq that covers its spending so far,
// every reservation and the new local seq, and never more than the
// dataset's cap. Two processes must not use one agent key on one dataset
// at the same time.
//
// A Replica is safe for concurrent use. Persist it with Save and load it
// with OpenReplica; the key is never stored.
type Replica struct {
	mu    sync.Mutex
	key   ed25519.PrivateKey
	agent string // FormatKey of the key

	info          smr.DatasetInfo // name, created and the fixed parameters only
	remote        []smr.Cell      // the last pulled cells
	remoteIndex   uint64
	remoteVersion uint64
	remoteAgent   smr.AgentInfo // the agent's record in the last pulled state

	signedMax uint64
	lastLocal uint64
	statement *smr.SeqStatement // signs signedMax; nil when the cluster knows it
	pending   []pendingChange
	relay     smr.DatasetSnapshot // other agents' statements and changes to forward
}

type pendingChange struct {
	change   smr.DatasetChange
	reserved uint64
}

// NewReplica returns a replica of the dataset described by info (as
// GetDataset returns it) for the agent whose key is key. It does not
// contact the cluster; info's cells and the agent's record become the
// pulled state.
func NewReplica(info smr.DatasetInfo, key ed25519.PrivateKey) (*Replica, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("replica of %q: the agent key is %d bytes, an Ed25519 private key is %d", info.Name, len(key), ed25519.PrivateKeySize)
	}
	if err := checkParams(info); err != nil {
		return nil, fmt.Errorf("replica of %q: %w", info.Name, err)
	}
	r := &Replica{key: key, agent: smr.FormatKey(key.Public().(ed25519.PublicKey)), info: params(info)}
	r.remote = freshCells(info.Cells, info.CellSize)
	if err := r.merge(info, 0); err != nil {
		return nil, err
	}
	return r, nil
}

// FetchReplica reads dataset name from the cluster (linearizably) and
// returns a new replica of it for key.
func FetchReplica(ctx context.Context, c *Client, name string, key ed25519.PrivateKey) (*Replica, error) {
	info, idx, err := c.GetDataset(ctx, name)
	if err != nil {
		return nil, err
	}
	r, err := NewReplica(info, key)
	if err != nil {
		return nil, err
	}
	r.remoteIndex = idx
	return r, nil
}

func params(info smr.DatasetInfo) smr.DatasetInfo {
	return smr.DatasetInfo{Name: info.Name, Created: info.Created, Cells: info.Cells, CellSize: info.CellSize,
		StepLimit: info.StepLimit, MaxAgentSeqs: info.MaxAgentSeqs}
}

// sameParams reports whether a and b are the same dataset with the same
// fixed parameters.
func sameParams(a, b smr.DatasetInfo) bool {
	return a.Name == b.Name && a.Created == b.Created && a.Cells == b.Cells && a.CellSize == b.CellSize &&
		a.StepLimit == b.StepLimit && a.MaxAgentSeqs == b.MaxAgentSeqs
}

func checkParams(info smr.DatasetInfo) error {
	switch {
	case info.Name == "":
		return errors.New("the dataset has no name")
	case info.Created == 0:
		return errors.New("the dataset has no creation index")
	case info.Cells < 1 || info.Cells > smr.MaxDatasetCells:
		return fmt.Errorf("cells %d is outside 1..%d", info.Cells, smr.MaxDatasetCells)
	case info.CellSize < 1 || info.CellSize > smr.MaxCellSize:
		return fmt.Errorf("cell size %d is outside 1..%d", info.CellSize, smr.MaxCellSize)
	case info.Cells*info.CellSize > smr.MaxDatasetBytes:
		return fmt.Errorf("cells x cell size is %d bytes, more than %d", info.Cells*info.CellSize, smr.MaxDatasetBytes)
	case info.MaxAgentSeqs < 1 || info.MaxAgentSeqs > smr.DefaultMaxAgentSeqs:
		return fmt.Errorf("max agent seqs %d is outside 1..%d", info.MaxAgentSeqs, uint64(smr.DefaultMaxAgentSeqs))
	}
	return nil
}

func freshCells(n, size int) []smr.Cell {
	out := make([]smr.Cell, n)
	zero := make([]byte, size)
	for i := range out {
		out[i] = smr.Cell{Value: zero}
	}
	return out
}

// Dataset returns the dataset's name, creation index and fixed parameters.
func (r *Replica) Dataset() smr.DatasetInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info
}

// Agent returns the agent's public key (lowercase hex).
func (r *Replica) Agent() string { return r.agent }

// Get returns cell i of the local view: the pulled cell merged with the
// pending and relayed changes of i.
func (r *Replica) Get(i int) (smr.Cell, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 || i >= r.info.Cells {
		return smr.Cell{}, fmt.Errorf("dataset %q: cell %d is out of range 0..%d", r.info.Name, i, r.info.Cells-1)
	}
	return cloneCell(r.view(i)), nil
}

// Cells returns every cell of the local view.
func (r *Replica) Cells() []smr.Cell {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]smr.Cell, len(r.remote))
	for i, c := range r.remote {
		out[i] = c
	}
	for _, p := range r.pending {
		i := p.change.Cell
		out[i] = smr.MergeCell(out[i], changeCell(p.change))
	}
	for _, c := range r.relay.Changes {
		if int(c.Cell) < len(out) && len(c.Value) == r.info.CellSize {
			out[c.Cell] = smr.MergeCell(out[c.Cell], changeCell(c))
		}
	}
	for i := range out {
		out[i] = cloneCell(out[i])
	}
	return out
}

// Remote returns the cells of the last pulled state and the log index it
// was read at.
func (r *Replica) Remote() ([]smr.Cell, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]smr.Cell, len(r.remote))
	for i, c := range r.remote {
		out[i] = cloneCell(c)
	}
	return out, r.remoteIndex
}

// Pending returns the agent's changes not yet settled by a sync, in local
// seq order.
func (r *Replica) Pending() []smr.DatasetChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]smr.DatasetChange, len(r.pending))
	for i, p := range r.pending {
		out[i] = p.change
	}
	return out
}

// Budget returns the agent's local seq accounting.
func (r *Replica) Budget() ReplicaBudget {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := ReplicaBudget{Cap: r.info.MaxAgentSeqs, SignedMax: r.signedMax, LastLocalSeq: r.lastLocal,
		RemoteSpent: r.remoteAgent.Spent, Reserved: r.reserved()}
	if used := b.RemoteSpent + b.Reserved; used < b.Cap {
		b.Available = b.Cap - used
	}
	return b
}

func (r *Replica) reserved() uint64 {
	var n uint64
	for _, p := range r.pending {
		n += p.reserved
	}
	return n
}

func changeCell(c smr.DatasetChange) smr.Cell {
	return smr.Cell{GlobalSeq: c.GlobalSeq, Value: c.Value}
}

func cloneCell(c smr.Cell) smr.Cell {
	return smr.Cell{GlobalSeq: c.GlobalSeq, Value: bytes.Clone(c.Value)}
}

// view returns cell i of the local view. The caller holds r.mu.
func (r *Replica) view(i int) smr.Cell {
	c := r.remote[i]
	for _, p := range r.pending {
		if int(p.change.Cell) == i {
			c = smr.MergeCell(c, changeCell(p.change))
		}
	}
	for _, ch := range r.relay.Changes {
		if int(ch.Cell) == i && len(ch.Value) == r.info.CellSize {
			c = smr.MergeCell(c, changeCell(ch))
		}
	}
	return c
}

// Set records a change of cell i to value at the next global seq of the
// local view; see SetAt.
func (r *Replica) Set(i int, value []byte) (smr.DatasetChange, error) {
	return r.SetAt(i, value, 0)
}

// SetAt records, offline, the agent's change of cell i to value at global
// seq g (0: one above the cell's global seq in the local view). A value
// shorter than the cell size is padded with zero bytes; a longer one is
// refused. The change must beat the cell in the local view (else
// ErrWouldLose). It takes the next local seq; its cost, g minus the
// greater of the pulled global seq and the agent's pending changes of the
// cell, is reserved, and the agent signs a new maximum local seq when its
// spending, reservations or the new local seq need one. A cost above the
// step limit, or a maximum above the dataset's cap, is ErrTooHigh. The
// change stays pending until a Sync settles it.
func (r *Replica) SetAt(i int, value []byte, g uint64) (smr.DatasetChange, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := r.info.Name
	if i < 0 || i >= r.info.Cells {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q: cell %d is out of range 0..%d", name, i, r.info.Cells-1)
	}
	if len(value) > r.info.CellSize {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q: value is %d bytes, a cell holds %d", name, len(value), r.info.CellSize)
	}
	v := make([]byte, r.info.CellSize)
	copy(v, value)
	cur := r.view(i)
	if g == 0 {
		if cur.GlobalSeq == math.MaxUint64 {
			return smr.DatasetChange{}, fmt.Errorf("dataset %q cell %d: global seq %d cannot be raised: %w", name, i, cur.GlobalSeq, ErrWouldLose)
		}
		g = cur.GlobalSeq + 1
	}
	if smr.CompareCells(smr.Cell{GlobalSeq: g, Value: v}, cur) <= 0 {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q cell %d: global seq %d with this value does not beat the cell's global seq %d and value: %w", name, i, g, cur.GlobalSeq, ErrWouldLose)
	}
	base := r.remote[i].GlobalSeq
	for _, p := range r.pending {
		if int(p.change.Cell) == i {
			base = max(base, p.change.GlobalSeq)
		}
	}
	var cost uint64
	if g > base {
		cost = g - base
	}
	capSeqs := r.info.MaxAgentSeqs
	if r.info.StepLimit > 0 && cost > r.info.StepLimit {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q cell %d: global seq %d may raise the cell by %d, above the step limit %d: %w", name, i, g, cost, r.info.StepLimit, ErrTooHigh)
	}
	spend := r.remoteAgent.Spent + r.reserved()
	if cost > capSeqs || spend > capSeqs-cost {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q cell %d: global seq %d may cost %d local seqs; %d are spent or reserved of the cap of %d: %w", name, i, g, cost, spend, capSeqs, ErrTooHigh)
	}
	l := r.lastLocal + 1
	if l > capSeqs {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q: local seq %d is above the cap of %d: %w", name, l, capSeqs, ErrTooHigh)
	}
	need := max(r.signedMax, l, spend+cost)
	ref := r.info.Ref()
	var st *smr.SeqStatement
	if need > r.signedMax || (r.statement == nil && need > r.remoteAgent.SignedMax) {
		s, err := smr.SignSeqStatement(r.key, ref, need)
		if err != nil {
			return smr.DatasetChange{}, fmt.Errorf("dataset %q: sign seq statement: %w", name, err)
		}
		st = &s
	}
	ch, err := smr.SignChange(r.key, ref, smr.DatasetChange{LocalSeq: l, Cell: uint32(i), GlobalSeq: g, Value: v})
	if err != nil {
		return smr.DatasetChange{}, fmt.Errorf("dataset %q: sign change: %w", name, err)
	}
	if st != nil {
		r.statement, r.signedMax = st, need
	}
	r.lastLocal = l
	r.pending = append(r.pending, pendingChange{change: ch, reserved: cost})
	return ch, nil
}

// Export returns what the next Sync would send: the agent's statement
// (when the cluster may not know it), its pending changes, and the relayed
// statements and changes of other agents, in canonical order. It may hold
// more than one sync carries (Sync splits it). Give it to another agent's
// Import to relay this agent's changes.
func (r *Replica) Export() smr.DatasetSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.export()
}

func (r *Replica) export() smr.DatasetSnapshot {
	var s smr.DatasetSnapshot
	if r.statement != nil {
		s.Statements = append(s.Statements, *r.statement)
	}
	s.Statements = append(s.Statements, r.relay.Statements...)
	for _, p := range r.pending {
		s.Changes = append(s.Changes, p.change)
	}
	s.Changes = append(s.Changes, r.relay.Changes...)
	// Canonical order. Own and relayed entries never share an agent, and
	// Import keeps one statement per agent and one change per (agent,
	// local seq), so there are no ties.
	slices.SortFunc(s.Statements, func(a, b smr.SeqStatement) int { return bytes.Compare(a.Agent, b.Agent) })
	slices.SortFunc(s.Changes, func(a, b smr.DatasetChange) int {
		if c := bytes.Compare(a.Agent, b.Agent); c != 0 {
			return c
		}
		return cmp.Compare(a.LocalSeq, b.LocalSeq)
	})
	return s
}

// Import takes other agents' signed statements and changes (another
// replica's Export) to relay in the next Sync. Entries whose signature
// does not verify for this dataset are refused with an error (nothing is
// imported then); the agent's own entries, and changes already held, are
// skipped. A replica holds at most smr.MaxSyncChanges relayed changes of
// smr.MaxSyncAgents agents (more is an error, and nothing is imported). It
// returns how many changes were added. The local view shows the imported
// changes at once.
func (r *Replica) Import(s smr.DatasetSnapshot) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref := r.info.Ref()
	for i := range s.Statements {
		if err := s.Statements[i].Verify(ref); err != nil {
			return 0, fmt.Errorf("import into dataset %q: statement %d: %w", r.info.Name, i, err)
		}
	}
	for i := range s.Changes {
		if err := s.Changes[i].Verify(ref); err != nil {
			return 0, fmt.Errorf("import into dataset %q: change %d: %w", r.info.Name, i, err)
		}
	}
	relay := smr.DatasetSnapshot{Statements: slices.Clone(r.relay.Statements), Changes: slices.Clone(r.relay.Changes)}
	added := 0
	for _, st := range s.Statements {
		if smr.FormatKey(st.Agent) == r.agent {
			continue
		}
		j := slices.IndexFunc(relay.Statements, func(x smr.SeqStatement) bool { return bytes.Equal(x.Agent, st.Agent) })
		switch {
		case j < 0:
			relay.Statements = append(relay.Statements, st)
		case st.MaxLocalSeq > relay.Statements[j].MaxLocalSeq:
			relay.Statements[j] = st
		}
	}
	for _, c := range s.Changes {
		if smr.FormatKey(c.Agent) == r.agent {
			continue
		}
		if slices.ContainsFunc(relay.Changes, func(x smr.DatasetChange) bool {
			return bytes.Equal(x.Agent, c.Agent) && x.LocalSeq == c.LocalSeq
		}) {
			continue
		}
		relay.Changes = append(relay.Changes, c)
		added++
	}
	if err := relay.Normalize(); err != nil {
		return 0, fmt.Errorf("import into dataset %q: %w", r.info.Name, err)
	}
	r.relay = relay
	return added, nil
}

// Merge takes a state of the dataset read at log index (GetDataset's
// answer) as the pulled state, unless the replica has already pulled a
// later one. Pending and relayed changes stay; the agent's local seq
// counters move past what the cluster has recorded for its key.
func (r *Replica) Merge(info smr.DatasetInfo, index uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.merge(info, index)
}

func (r *Replica) merge(info smr.DatasetInfo, index uint64) error {
	if !sameParams(info, r.info) {
		return fmt.Errorf("merge into replica of %q (created at %d): the state is of dataset %q created at %d, or its parameters differ", r.info.Name, r.info.Created, info.Name, info.Created)
	}
	if index != 0 && index < r.remoteIndex {
		return nil
	}
	cells := freshCells(r.info.Cells, r.info.CellSize)
	for _, c := range info.Values {
		if c.Cell < 0 || c.Cell >= r.info.Cells || len(c.Value) != r.info.CellSize {
			return fmt.Errorf("merge into replica of %q: cell %d with a %d-byte value does not fit %d cells of %d bytes", r.info.Name, c.Cell, len(c.Value), r.info.Cells, r.info.CellSize)
		}
		cells[c.Cell] = smr.Cell{GlobalSeq: c.GlobalSeq, Value: bytes.Clone(c.Value)}
	}
	r.remote, r.remoteIndex, r.remoteVersion = cells, index, info.Version
	r.remoteAgent = smr.AgentInfo{Agent: r.agent}
	for _, a := range info.Agents {
		if a.Agent == r.agent {
			r.remoteAgent = a
		}
	}
	r.lastLocal = max(r.lastLocal, r.remoteAgent.LastSeq)
	if r.remoteAgent.SignedMax >= r.signedMax {
		r.signedMax, r.statement = r.remoteAgent.SignedMax, nil
	}
	return nil
}

// Sync pushes the pending and relayed changes (and the needed statements)
// through the cluster with c, whose key must be an invited agent of the
// dataset (normally the replica's own key), in syncs of at most
// MaxSyncBytes each; then it pulls the merged state (a linearizable read,
// so it reflects every sync sent). Every change sent is settled (removed
// from the pending or relayed ones) by its verdict: accepted, lost or
// rejected. A change that the cluster reports as replayed was merged (or
// overtaken) by an earlier sync whose answer was lost. When a sync fails,
// Sync returns the report so far and the error; the changes of that sync
// stay pending (resending them is safe), and nothing is pulled.
func (r *Replica) Sync(ctx context.Context, c *Client) (SyncReport, error) {
	r.mu.Lock()
	snap := r.export()
	name := r.info.Name
	r.mu.Unlock()

	var rep SyncReport
	for _, chunk := range splitSnapshot(snap, MaxSyncBytes) {
		out, _, err := c.SyncDataset(ctx, name, &chunk)
		if err != nil {
			return rep, fmt.Errorf("sync dataset %q: %w", name, err)
		}
		rep.Syncs++
		r.settle(chunk, out, &rep)
	}
	info, idx, err := c.GetDataset(ctx, name)
	if err != nil {
		return rep, fmt.Errorf("sync dataset %q: pull: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.merge(info, idx); err != nil {
		return rep, err
	}
	rep.Index, rep.Version = idx, info.Version
	return rep, nil
}

// settle records the verdicts of one sync and drops what it settled.
func (r *Replica) settle(sent smr.DatasetSnapshot, out smr.SyncOutcome, rep *SyncReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	verdicts := make([]ChangeVerdict, len(sent.Changes))
	for i, c := range sent.Changes {
		verdicts[i] = ChangeVerdict{Change: c, Own: smr.FormatKey(c.Agent) == r.agent}
	}
	for _, i := range out.Accepted {
		if i >= 0 && i < len(verdicts) {
			verdicts[i].Verdict = VerdictAccepted
		}
	}
	for _, i := range out.Lost {
		if i >= 0 && i < len(verdicts) {
			verdicts[i].Verdict = VerdictLost
		}
	}
	for _, rj := range out.Rejected {
		if rj.Index >= 0 && rj.Index < len(verdicts) {
			verdicts[rj.Index].Verdict, verdicts[rj.Index].Reason, verdicts[rj.Index].Message = VerdictRejected, rj.Reason, rj.Message
		}
	}
	rep.Changes = append(rep.Changes, verdicts...)
	for _, rj := range out.StatementsRejected {
		if rj.Index >= 0 && rj.Index < len(sent.Statements) {
			rep.StatementsRejected = append(rep.StatementsRejected, StatementRejection{Statement: sent.Statements[rj.Index], Reason: rj.Reason, Message: rj.Message})
		}
	}

	settled := func(agent ed25519.PublicKey, l uint64) bool {
		for _, v := range verdicts {
			if v.Verdict != "" && v.Change.LocalSeq == l && bytes.Equal(v.Change.Agent, agent) {
				return true
			}
		}
		return false
	}
	r.pending = slices.DeleteFunc(r.pending, func(p pendingChange) bool { return settled(p.change.Agent, p.change.LocalSeq) })
	r.relay.Changes = slices.DeleteFunc(r.relay.Changes, func(c smr.DatasetChange) bool { return settled(c.Agent, c.LocalSeq) })
	r.relay.Statements = slices.DeleteFunc(r.relay.Statements, func(s smr.SeqStatement) bool {
		return slices.ContainsFunc(sent.Statements, func(x smr.SeqStatement) bool {
			return bytes.Equal(x.Agent, s.Agent) && x.MaxLocalSeq == s.MaxLocalSeq
		})
	})
}

// splitSnapshot cuts s (canonical) into snapshots that each stay within
// limit bytes (binary form), smr.MaxSyncChanges changes and
// smr.MaxSyncAgents agents, keeping the order of the changes, so that each
// agent's changes keep their local seq order across syncs. An agent's
// statement goes with its first change (or, without changes, where it
// fits). An empty s gives none.
func splitSnapshot(s smr.DatasetSnapshot, limit int) []smr.DatasetSnapshot {
	if len(s.Statements) == 0 && len(s.Changes) == 0 {
		return nil
	}
	const (
		header        = 1 + 2 + 2 + 2
		agentEntry    = 32
		statementSize = 2 + 8 + 64
		changeFixed   = 2 + 8 + 4 + 8 + 2 + 64
	)
	type chunk struct {
		snap   smr.DatasetSnapshot
		agents map[string]bool
		size   int
	}
	stmt := make(map[string]smr.SeqStatement, len(s.Statements))
	for _, st := range s.Statements {
		stmt[string(st.Agent)] = st
	}
	var out []*chunk
	// add puts a change (or, when c is nil, only the statement of agent)
	// into the last chunk, or a new one when it does not fit.
	add := func(agent []byte, c *smr.DatasetChange) {
		key := string(agent)
		st, hasStmt := stmt[key]
		n := 0
		if c != nil {
			n += changeFixed + len(c.Value)
		}
		var cur *chunk
		if len(out) > 0 {
			cur = out[len(out)-1]
		}
		newAgent := cur == nil || !cur.agents[key]
		if newAgent {
			n += agentEntry
		}
		if hasStmt {
			n += statementSize
		}
		if cur == nil || (len(cur.snap.Changes)+len(cur.snap.Statements) > 0 &&
			(cur.size+n > limit || (c != nil && len(cur.snap.Changes) == smr.MaxSyncChanges) ||
				(newAgent && len(cur.agents) == smr.MaxSyncAgents))) {
			cur = &chunk{agents: map[string]bool{}, size: header}
			out = append(out, cur)
			if !newAgent {
				n += agentEntry
			}
		}
		cur.agents[key] = true
		cur.size += n
		if hasStmt {
			cur.snap.Statements = append(cur.snap.Statements, st)
			delete(stmt, key)
		}
		if c != nil {
			cur.snap.Changes = append(cur.snap.Changes, *c)
		}
	}
	for i := range s.Changes {
		add(s.Changes[i].Agent, &s.Changes[i])
	}
	for _, st := range s.Statements {
		if _, left := stmt[string(st.Agent)]; left {
			add(st.Agent, nil)
		}
	}
	snaps := make([]smr.DatasetSnapshot, len(out))
	for i, c := range out {
		slices.SortFunc(c.snap.Statements, func(a, b smr.SeqStatement) int { return bytes.Compare(a.Agent, b.Agent) })
		snaps[i] = c.snap
	}
	return snaps
}

// Replica files.

const (
	replicaFormat  = "tandem-dataset-replica"
	replicaVersion = 1
)

// replicaFile is the JSON form of a Replica (version 1). Byte strings are
// standard base64; keys lowercase hex.
type replicaFile struct {
	Format       string              `json:"format"`  // "tandem-dataset-replica"
	Version      int                 `json:"version"` // 1
	Dataset      smr.DatasetInfo     `json:"dataset"` // name, created and the fixed parameters
	Agent        string              `json:"agent"`
	Remote       replicaRemote       `json:"remote"`
	SignedMax    uint64              `json:"signed_max"`
	LastLocalSeq uint64              `json:"last_local_seq"`
	Statement    *smr.SeqStatement   `json:"statement,omitempty"`
	Pending      []replicaPending    `json:"pending"`
	Relay        smr.DatasetSnapshot `json:"relay"`
}

type replicaRemote struct {
	Index   uint64         `json:"index"`
	Version uint64         `json:"version"`
	Values  []smr.CellInfo `json:"values"` // cells that are not fresh
	Agent   smr.AgentInfo  `json:"agent"`  // the agent's record
}

type replicaPending struct {
	Change   smr.DatasetChange `json:"change"`
	Reserved uint64            `json:"reserved"`
}

// Save writes the replica to path atomically (a temporary file in the same
// directory, synced, then renamed), with mode 0600, creating missing
// directories with mode 0700. The agent's key is not written.
func (r *Replica) Save(path string) error {
	r.mu.Lock()
	f := replicaFile{
		Format: replicaFormat, Version: replicaVersion, Dataset: r.info, Agent: r.agent,
		Remote:    replicaRemote{Index: r.remoteIndex, Version: r.remoteVersion, Values: []smr.CellInfo{}, Agent: r.remoteAgent},
		SignedMax: r.signedMax, LastLocalSeq: r.lastLocal, Statement: r.statement,
		Pending: make([]replicaPending, len(r.pending)), Relay: r.relay,
	}
	zero := make([]byte, r.info.CellSize)
	for i, c := range r.remote {
		if c.GlobalSeq != 0 || !bytes.Equal(c.Value, zero) {
			f.Remote.Values = append(f.Remote.Values, smr.CellInfo{Cell: i, GlobalSeq: c.GlobalSeq, Value: c.Value})
		}
	}
	for i, p := range r.pending {
		f.Pending[i] = replicaPending{Change: p.change, Reserved: p.reserved}
	}
	data, err := json.MarshalIndent(f, "", "  ")
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save replica %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save replica: %w", err)
	}
	if err := fsutil.WriteFile(path, append(data, '\n')); err != nil {
		return fmt.Errorf("save replica: %w", err)
	}
	return nil
}

// OpenReplica loads a replica saved by Save for the agent whose key is
// key. The file must be of this format and version, for key's agent, and
// consistent: cells within the dataset, values of the cell size, pending
// changes and statements signed by the agent for the dataset, relayed ones
// validly signed. A missing file is an error wrapping fs.ErrNotExist.
func OpenReplica(path string, key ed25519.PrivateKey) (*Replica, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open replica: %w", err)
	}
	r, err := decodeReplica(data, key)
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", path, err)
	}
	return r, nil
}

func decodeReplica(data []byte, key ed25519.PrivateKey) (*Replica, error) {
	var f replicaFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a replica file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the replica's JSON object")
	}
	if f.Format != replicaFormat || f.Version != replicaVersion {
		return nil, fmt.Errorf("format %q version %d is not %q version %d", f.Format, f.Version, replicaFormat, replicaVersion)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("the agent key is %d bytes, an Ed25519 private key is %d", len(key), ed25519.PrivateKeySize)
	}
	agent := smr.FormatKey(key.Public().(ed25519.PublicKey))
	if f.Agent != agent {
		return nil, fmt.Errorf("the replica belongs to agent %s, not to this key (%s)", f.Agent, agent)
	}
	if err := checkParams(f.Dataset); err != nil {
		return nil, err
	}
	if f.Dataset.Version != 0 || f.Dataset.AgentCount != 0 || f.Dataset.Admins != nil || f.Dataset.Agents != nil || f.Dataset.Values != nil {
		return nil, errors.New("the dataset record carries more than its parameters")
	}
	r := &Replica{key: key, agent: agent, info: f.Dataset, remote: freshCells(f.Dataset.Cells, f.Dataset.CellSize)}
	info := f.Dataset
	info.Values, info.Version = f.Remote.Values, f.Remote.Version
	f.Remote.Agent.Agent = agent
	info.Agents = []smr.AgentInfo{f.Remote.Agent}
	if err := r.merge(info, f.Remote.Index); err != nil {
		return nil, err
	}
	ref := r.info.Ref()
	r.signedMax, r.lastLocal = max(r.signedMax, f.SignedMax), max(r.lastLocal, f.LastLocalSeq)
	if f.Statement != nil {
		if smr.FormatKey(f.Statement.Agent) != agent || f.Statement.Verify(ref) != nil || f.Statement.MaxLocalSeq != f.SignedMax {
			return nil, fmt.Errorf("the agent's statement is not its valid signature of max local seq %d", f.SignedMax)
		}
		r.statement = f.Statement
	}
	last := uint64(0)
	for i, p := range f.Pending {
		c := p.Change
		if smr.FormatKey(c.Agent) != agent || c.Verify(ref) != nil || int(c.Cell) >= r.info.Cells ||
			len(c.Value) != r.info.CellSize || c.LocalSeq <= last || c.LocalSeq > r.lastLocal {
			return nil, fmt.Errorf("pending change %d (local seq %d) is not a valid change of the agent in local seq order", i, c.LocalSeq)
		}
		last = c.LocalSeq
		r.pending = append(r.pending, pendingChange{change: c, reserved: p.Reserved})
	}
	if _, err := r.Import(f.Relay); err != nil {
		return nil, err
	}
	if len(r.relay.Changes) != len(f.Relay.Changes) || len(r.relay.Statements) != len(f.Relay.Statements) {
		return nil, errors.New("the relayed entries repeat an agent or local seq, or include the agent's own")
	}
	return r, nil
}
