package smr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/tandem-consensus/tandem/internal/sigverify"
)

// dataset is the replicated record of one dataset. Its storage (seqs and
// vals) is allocated once, at creation, and never grows.
type dataset struct {
	name         string
	created      uint64 // log index of the create_dataset entry
	cells        int
	cellSize     int
	stepLimit    uint64 // 0: no limit
	maxAgentSeqs uint64
	version      uint64 // number of changes merged so far
	admins       map[clientKey]struct{}
	agents       map[clientKey]*agentRecord
	seqs         []uint64 // global seq of each cell
	vals         []byte   // cells × cellSize bytes, cell i at [i*cellSize, (i+1)*cellSize)
}

// agentRecord is what the cluster knows of one agent of a dataset. A
// revoked agent keeps its record (invited false), so that inviting it again
// cannot reset its replay protection or its spending.
type agentRecord struct {
	invited   bool
	signedMax uint64 // highest local seq the agent has signed
	spent     uint64 // local seqs spent on raising global seqs; ≤ signedMax
	lastSeq   uint64 // local seq of the agent's last merged change
}

func (ds *dataset) ref() DatasetRef { return DatasetRef{Name: ds.name, Created: ds.created} }

// cell returns cell i; its Value aliases the dataset's storage (capacity
// capped at the cell) and must not be modified.
func (ds *dataset) cell(i int) Cell {
	lo, hi := i*ds.cellSize, (i+1)*ds.cellSize
	return Cell{GlobalSeq: ds.seqs[i], Value: ds.vals[lo:hi:hi]}
}

func (ds *dataset) bytes() int { return ds.cells * ds.cellSize }

// member reports whether k is an invited agent or an admin of ds.
func (ds *dataset) member(k clientKey) bool {
	if _, ok := ds.admins[k]; ok {
		return true
	}
	rec := ds.agents[k]
	return rec != nil && rec.invited
}

// addRefs adjusts st.refs for every member of ds by delta.
func (st *state) addRefs(ds *dataset, delta int) {
	seen := make(map[clientKey]struct{}, len(ds.admins)+len(ds.agents))
	for k := range ds.admins {
		seen[k] = struct{}{}
	}
	for k, rec := range ds.agents {
		if rec.invited {
			seen[k] = struct{}{}
		}
	}
	for k := range seen {
		st.ref(k, delta)
	}
}

// ref adjusts the number of datasets k is a member of.
func (st *state) ref(k clientKey, delta int) {
	n := st.refs[k] + delta
	if n <= 0 {
		delete(st.refs, k)
		return
	}
	st.refs[k] = n
}

// updateMember runs change, which may alter k's membership of ds, and keeps
// st.refs in step.
func (st *state) updateMember(ds *dataset, k clientKey, change func()) {
	before := ds.member(k)
	change()
	switch after := ds.member(k); {
	case before && !after:
		st.ref(k, -1)
	case !before && after:
		st.ref(k, 1)
	}
}

// Outcomes of dataset ops (Result.Value).

// SyncOutcome is the Result.Value of sync_dataset: the verdict on every
// statement and change of the snapshot, by position in the snapshot's
// canonical order. A change is accepted (merged: it won its cell and its
// cost was spent), lost (valid, but the cell already holds a greater
// (global seq, value); nothing changes and nothing is spent) or rejected
// (invalid; nothing changes). A statement is rejected or kept (the agent's
// signed maximum becomes the higher of the two).
//
// The outcome is stored in the client's result window like every Result,
// so it is kept small: positions and reason codes, and a message for the
// first MaxRejectionMessages rejections of the sync only.
type SyncOutcome struct {
	Dataset            string      `json:"dataset"`
	Version            uint64      `json:"version"`  // the dataset's version after the sync
	Accepted           []int       `json:"accepted"` // positions of merged changes
	Lost               []int       `json:"lost"`     // positions of changes that lost the merge
	Rejected           []Rejection `json:"rejected"`
	StatementsRejected []Rejection `json:"statements_rejected"`
}

// MaxRejectionMessages is how many rejections of one sync (statements and
// changes together, in that order) carry a message; the others carry their
// reason code only.
const MaxRejectionMessages = 8

// Rejection says why one change or statement of a sync changed nothing.
type Rejection struct {
	Index   int          `json:"index"` // position in the snapshot's changes (or statements)
	Reason  SyncRejected `json:"reason"`
	Message string       `json:"message,omitempty"` // for the first MaxRejectionMessages of a sync
}

// SyncRejected is the stable reason of a Rejection.
type SyncRejected string

// Reasons a change or statement of a sync is rejected, in the order they
// are checked.
const (
	RejectNotInvited     SyncRejected = "not_invited"       // the agent was never invited to the dataset
	RejectRevoked        SyncRejected = "revoked"           // the agent's invitation was revoked
	RejectBadSignature   SyncRejected = "bad_signature"     // the agent's signature does not verify (forged or altered)
	RejectAboveCap       SyncRejected = "above_cap"         // statement: max local seq above the dataset's max_agent_seqs
	RejectCellOutOfRange SyncRejected = "cell_out_of_range" // change: no such cell
	RejectValueSize      SyncRejected = "value_size"        // change: value is not exactly the cell size
	RejectReplayed       SyncRejected = "replayed"          // change: local seq not above the agent's last merged one
	RejectSeqNotSigned   SyncRejected = "seq_not_signed"    // change: local seq above the agent's signed maximum
	RejectTooHigh        SyncRejected = "too_high"          // change: the raise exceeds the step limit or the unspent signed seqs
)

// createDataset executes create_dataset at log index for creator, who
// becomes the dataset's first admin.
func (st *state) createDataset(c *Command, index uint64, creator clientKey) (json.RawMessage, error) {
	if _, ok := st.datasets[c.Dataset]; ok {
		return nil, Errorf(CodeAlreadyExists, "dataset %s already exists", quote(c.Dataset))
	}
	size := c.Cells * c.CellSize
	if st.datasetBytes+size > MaxAllDatasetBytes {
		return nil, Errorf(CodeTooLarge, "dataset %s needs %d bytes; the cluster's datasets hold %d of at most %d", quote(c.Dataset), size, st.datasetBytes, MaxAllDatasetBytes)
	}
	ds := &dataset{
		name:         c.Dataset,
		created:      index,
		cells:        c.Cells,
		cellSize:     c.CellSize,
		stepLimit:    c.StepLimit,
		maxAgentSeqs: c.MaxAgentSeqs,
		admins:       map[clientKey]struct{}{},
		agents:       make(map[clientKey]*agentRecord, len(c.Agents)),
		seqs:         make([]uint64, c.Cells),
		vals:         make([]byte, size),
	}
	if ds.maxAgentSeqs == 0 {
		ds.maxAgentSeqs = DefaultMaxAgentSeqs
	}
	for _, a := range c.Agents {
		pub, err := ParseKey(a)
		if err != nil {
			return nil, err
		}
		ds.agents[clientKey(pub)] = &agentRecord{invited: true}
	}
	ds.admins[creator] = struct{}{}
	st.datasets[ds.name] = ds
	st.datasetBytes += size
	st.addRefs(ds, 1)
	return mustJSON(Outcome{Dataset: ds.name, Created: ds.created}), nil
}

// authorizeDataset checks the dataset-scoped right of ck to run c
// (invite_agent, revoke_agent, sync_dataset): the dataset must exist; an
// invite or revoke needs an admin of the dataset or the admin permission; a
// sync needs an invited agent of the dataset.
func (st *state) authorizeDataset(ck clientKey, c *Command) error {
	ds, ok := st.datasets[c.Dataset]
	if !ok {
		return Errorf(CodeNotFound, "dataset %s does not exist", quote(c.Dataset))
	}
	switch c.Op {
	case OpInviteAgent, OpRevokeAgent:
		if _, ok := ds.admins[ck]; ok || st.allowed(ck, PermAdmin) {
			return nil
		}
		return Errorf(CodePermissionDenied, "op %s on dataset %s needs an admin of the dataset or permission admin; client %s is neither", c.Op, quote(ds.name), FormatKey(ck[:]))
	case OpSyncDataset:
		rec := ds.agents[ck]
		switch {
		case rec == nil:
			return Errorf(CodePermissionDenied, "client %s is not an invited agent of dataset %s", FormatKey(ck[:]), quote(ds.name))
		case !rec.invited:
			return Errorf(CodePermissionDenied, "client %s was revoked from dataset %s", FormatKey(ck[:]), quote(ds.name))
		}
		return nil
	}
	return Errorf(CodePermissionDenied, "op %s is not a dataset op", c.Op)
}

// inviteAgent executes invite_agent (authorised by authorizeDataset).
func (st *state) inviteAgent(c *Command) (json.RawMessage, error) {
	ds := st.datasets[c.Dataset]
	pub, err := ParseKey(c.Subject)
	if err != nil {
		return nil, err
	}
	k := clientKey(pub)
	role := c.Role
	if role == "" {
		role = RoleAgent
	}
	out := Outcome{Dataset: ds.name, Subject: c.Subject, Role: role}
	if role == RoleAdmin {
		if _, ok := ds.admins[k]; ok {
			out.Unchanged = true
			return mustJSON(out), nil
		}
		if len(ds.admins) >= MaxDatasetAgents {
			return nil, Errorf(CodeTooLarge, "dataset %s has %d admins, at most %d allowed", quote(ds.name), len(ds.admins), MaxDatasetAgents)
		}
		st.updateMember(ds, k, func() { ds.admins[k] = struct{}{} })
		return mustJSON(out), nil
	}
	rec := ds.agents[k]
	switch {
	case rec != nil && rec.invited:
		out.Unchanged = true
		return mustJSON(out), nil
	case rec == nil && len(ds.agents) >= MaxDatasetAgents:
		return nil, Errorf(CodeTooLarge, "dataset %s has %d agents (invited or revoked), at most %d allowed", quote(ds.name), len(ds.agents), MaxDatasetAgents)
	}
	st.updateMember(ds, k, func() {
		if rec == nil {
			ds.agents[k] = &agentRecord{invited: true}
			return
		}
		rec.invited = true
	})
	return mustJSON(out), nil
}

// revokeAgent executes revoke_agent (authorised by authorizeDataset). A
// revoked agent's record stays; its merged cells stay.
func (st *state) revokeAgent(c *Command) (json.RawMessage, error) {
	ds := st.datasets[c.Dataset]
	pub, err := ParseKey(c.Subject)
	if err != nil {
		return nil, err
	}
	k := clientKey(pub)
	role := c.Role
	if role == "" {
		role = RoleAgent
	}
	if role == RoleAdmin {
		if _, ok := ds.admins[k]; !ok {
			return nil, Errorf(CodeNotFound, "%s is not an admin of dataset %s", c.Subject, quote(ds.name))
		}
		st.updateMember(ds, k, func() { delete(ds.admins, k) })
	} else {
		rec := ds.agents[k]
		if rec == nil || !rec.invited {
			return nil, Errorf(CodeNotFound, "%s is not an invited agent of dataset %s", c.Subject, quote(ds.name))
		}
		st.updateMember(ds, k, func() { rec.invited = false })
	}
	return mustJSON(Outcome{Dataset: ds.name, Subject: c.Subject, Role: role, Removed: true}), nil
}

// syncDataset executes sync_dataset: it checks the statements, then the
// changes, each in snapshot order, and merges the valid ones. An invalid
// statement or change is reported and changes nothing. sigs, when it was
// computed for the dataset's ref, gives the signature checks; otherwise
// they run here.
func (st *state) syncDataset(c *Command, sigs *syncSigs) (json.RawMessage, error) {
	ds, ok := st.datasets[c.Dataset]
	if !ok {
		return nil, Errorf(CodeNotFound, "dataset %s does not exist", quote(c.Dataset))
	}
	snap, err := DecodeDatasetSnapshot(c.Snapshot)
	if err != nil {
		return nil, err
	}
	ref := ds.ref()
	if sigs == nil || sigs.ref != ref || len(sigs.statements) != len(snap.Statements) || len(sigs.changes) != len(snap.Changes) {
		sigs = verifySnapshot(&snap, ref)
	}
	out := SyncOutcome{Dataset: ds.name, Accepted: []int{}, Lost: []int{}, Rejected: []Rejection{}, StatementsRejected: []Rejection{}}
	messages := 0
	reject := func(i int, reason SyncRejected, msg string) Rejection {
		r := Rejection{Index: i, Reason: reason}
		if messages < MaxRejectionMessages {
			r.Message = msg
			messages++
		}
		return r
	}
	for i := range snap.Statements {
		s := &snap.Statements[i]
		if reason, msg := ds.checkStatement(s, sigs.statements[i]); reason != "" {
			out.StatementsRejected = append(out.StatementsRejected, reject(i, reason, msg))
			continue
		}
		rec := ds.agents[clientKey(s.Agent)]
		rec.signedMax = max(rec.signedMax, s.MaxLocalSeq)
	}
	for i := range snap.Changes {
		ch := &snap.Changes[i]
		accepted, reason, msg := ds.mergeChange(ch, sigs.changes[i])
		switch {
		case reason != "":
			out.Rejected = append(out.Rejected, reject(i, reason, msg))
		case accepted:
			out.Accepted = append(out.Accepted, i)
		default:
			out.Lost = append(out.Lost, i)
		}
	}
	out.Version = ds.version
	return mustJSON(out), nil
}

// checkAgent returns why agent may not write to ds, if it may not.
func (ds *dataset) checkAgent(agent ed25519.PublicKey) (SyncRejected, string) {
	rec := ds.agents[clientKey(agent)]
	switch {
	case rec == nil:
		return RejectNotInvited, fmt.Sprintf("agent %s is not invited to dataset %s", FormatKey(agent), quote(ds.name))
	case !rec.invited:
		return RejectRevoked, fmt.Sprintf("agent %s was revoked from dataset %s", FormatKey(agent), quote(ds.name))
	}
	return "", ""
}

// checkStatement returns why s, whose signature check gave sigErr, is
// rejected, if it is.
func (ds *dataset) checkStatement(s *SeqStatement, sigErr error) (SyncRejected, string) {
	if reason, msg := ds.checkAgent(s.Agent); reason != "" {
		return reason, msg
	}
	if err := sigErr; err != nil {
		return RejectBadSignature, errorText(err)
	}
	if s.MaxLocalSeq > ds.maxAgentSeqs {
		return RejectAboveCap, fmt.Sprintf("max local seq %d of agent %s is above the dataset's cap of %d", s.MaxLocalSeq, FormatKey(s.Agent), ds.maxAgentSeqs)
	}
	return "", ""
}

// mergeChange validates ch, whose signature check gave sigErr, against ds
// and merges it. It returns whether ch won its cell, or the reason it was
// rejected; a rejected or losing change changes nothing.
func (ds *dataset) mergeChange(ch *DatasetChange, sigErr error) (bool, SyncRejected, string) {
	if reason, msg := ds.checkAgent(ch.Agent); reason != "" {
		return false, reason, msg
	}
	if err := sigErr; err != nil {
		return false, RejectBadSignature, errorText(err)
	}
	agent := FormatKey(ch.Agent)
	if uint64(ch.Cell) >= uint64(ds.cells) {
		return false, RejectCellOutOfRange, fmt.Sprintf("cell %d is out of range: dataset %s has cells 0..%d", ch.Cell, quote(ds.name), ds.cells-1)
	}
	if len(ch.Value) != ds.cellSize {
		return false, RejectValueSize, fmt.Sprintf("value is %d bytes, the cells of dataset %s hold exactly %d", len(ch.Value), quote(ds.name), ds.cellSize)
	}
	rec := ds.agents[clientKey(ch.Agent)]
	if ch.LocalSeq <= rec.lastSeq {
		return false, RejectReplayed, fmt.Sprintf("local seq %d of agent %s is not above its last merged local seq %d", ch.LocalSeq, agent, rec.lastSeq)
	}
	if ch.LocalSeq > rec.signedMax {
		return false, RejectSeqNotSigned, fmt.Sprintf("local seq %d of agent %s is above its signed maximum %d", ch.LocalSeq, agent, rec.signedMax)
	}
	i := int(ch.Cell)
	cur := ds.cell(i)
	if CompareCells(Cell{GlobalSeq: ch.GlobalSeq, Value: ch.Value}, cur) <= 0 {
		return false, "", ""
	}
	var cost uint64
	if ch.GlobalSeq > cur.GlobalSeq {
		cost = ch.GlobalSeq - cur.GlobalSeq
	}
	if ds.stepLimit > 0 && cost > ds.stepLimit {
		return false, RejectTooHigh, fmt.Sprintf("global seq %d raises cell %d by %d from %d; the step limit of dataset %s is %d", ch.GlobalSeq, i, cost, cur.GlobalSeq, quote(ds.name), ds.stepLimit)
	}
	if avail := rec.signedMax - rec.spent; cost > avail {
		return false, RejectTooHigh, fmt.Sprintf("global seq %d raises cell %d by %d from %d, but agent %s has %d signed unspent local seqs (signed %d, spent %d)", ch.GlobalSeq, i, cost, cur.GlobalSeq, agent, avail, rec.signedMax, rec.spent)
	}
	rec.spent += cost
	rec.lastSeq = ch.LocalSeq
	ds.seqs[i] = ch.GlobalSeq
	copy(ds.vals[i*ds.cellSize:], ch.Value)
	ds.version++
	return true, "", ""
}

// Canonical encoding of the datasets (the last section of the state):
//
//	datasets: count, { name || created (uint64) || cells (uint32) || cell size (uint32) ||
//	            step limit (uint64) || max agent seqs (uint64) || version (uint64) ||
//	            admins: count, { key (32) } ||
//	            agents: count, { key (32) || invited (1 byte) || signed max (uint64) ||
//	                             spent (uint64) || last seq (uint64) } ||
//	            cells × { global seq (uint64) || value (cell size bytes) } }
func (st *state) encodeDatasets(e *encoder) {
	e.u32(len(st.datasets))
	for _, name := range sortedKeys(st.datasets) {
		ds := st.datasets[name]
		e.str(name)
		e.u64(ds.created)
		e.u32(ds.cells)
		e.u32(ds.cellSize)
		e.u64(ds.stepLimit)
		e.u64(ds.maxAgentSeqs)
		e.u64(ds.version)
		e.u32(len(ds.admins))
		for _, k := range sortedClientKeys(ds.admins) {
			e.raw(k[:])
		}
		e.u32(len(ds.agents))
		for _, k := range sortedClientKeys(ds.agents) {
			rec := ds.agents[k]
			e.raw(k[:])
			if rec.invited {
				e.u8(1)
			} else {
				e.u8(0)
			}
			e.u64(rec.signedMax)
			e.u64(rec.spent)
			e.u64(rec.lastSeq)
		}
		e.b = slices.Grow(e.b, ds.cells*(8+ds.cellSize))
		for i := range ds.cells {
			e.u64(ds.seqs[i])
			e.raw(ds.vals[i*ds.cellSize : (i+1)*ds.cellSize])
		}
	}
}

// decodeDatasets reads what encodeDatasets writes into st and checks the
// value domains; the caller checks the canonical form by re-encoding.
func (d *decoder) datasets(st *state) {
	for range d.count("datasets", 4+8+4+4+8+8+8+4+4) {
		name := d.str("dataset name")
		ds := &dataset{
			name:         name,
			created:      d.u64("dataset created index"),
			cells:        int(d.u32("dataset cells")),
			cellSize:     int(d.u32("dataset cell size")),
			stepLimit:    d.u64("dataset step limit"),
			maxAgentSeqs: d.u64("dataset max agent seqs"),
			version:      d.u64("dataset version"),
			admins:       map[clientKey]struct{}{},
			agents:       map[clientKey]*agentRecord{},
		}
		if d.err != nil {
			return
		}
		if err := checkName("dataset name", name); err != nil {
			d.fail("dataset %s: %s", quote(name), errorText(err))
		}
		if err := checkDatasetShape(ds.cells, ds.cellSize); err != nil {
			d.fail("dataset %s: %s", quote(name), errorText(err))
		}
		if ds.created == 0 || ds.maxAgentSeqs == 0 || ds.maxAgentSeqs > DefaultMaxAgentSeqs {
			d.fail("dataset %s has created index %d and max agent seqs %d", quote(name), ds.created, ds.maxAgentSeqs)
		}
		nAdmins := d.count("dataset admins", 32)
		if d.err == nil && nAdmins > MaxDatasetAgents {
			d.fail("dataset %s has %d admins, at most %d allowed", quote(name), nAdmins, MaxDatasetAgents)
		}
		for range nAdmins {
			if d.err != nil {
				return
			}
			ds.admins[d.key("dataset admin")] = struct{}{}
		}
		nAgents := d.count("dataset agents", 32+1+8+8+8)
		if d.err == nil && nAgents > MaxDatasetAgents {
			d.fail("dataset %s has %d agents, at most %d allowed", quote(name), nAgents, MaxDatasetAgents)
		}
		for range nAgents {
			if d.err != nil {
				return
			}
			k := d.key("dataset agent")
			inv := d.u8("agent invited flag")
			rec := &agentRecord{invited: inv == 1, signedMax: d.u64("agent signed max"), spent: d.u64("agent spent"), lastSeq: d.u64("agent last seq")}
			if d.err == nil && (inv > 1 || rec.signedMax > ds.maxAgentSeqs || rec.spent > rec.signedMax || rec.lastSeq > rec.signedMax) {
				d.fail("dataset %s agent %s has invited flag %d, signed max %d, spent %d and last seq %d (want a flag of 0 or 1 and spent, last seq <= signed max <= %d)",
					quote(name), FormatKey(k[:]), inv, rec.signedMax, rec.spent, rec.lastSeq, ds.maxAgentSeqs)
			}
			ds.agents[k] = rec
		}
		if d.err != nil {
			return
		}
		if uint64(ds.cells)*uint64(8+ds.cellSize) > uint64(len(d.b)) {
			d.fail("dataset %s needs %d bytes of cells, %d left", quote(name), ds.cells*(8+ds.cellSize), len(d.b))
			return
		}
		ds.seqs = make([]uint64, ds.cells)
		ds.vals = make([]byte, ds.cells*ds.cellSize)
		for i := range ds.cells {
			ds.seqs[i] = d.u64("cell global seq")
			copy(ds.vals[i*ds.cellSize:], d.take(ds.cellSize, "cell value"))
		}
		if _, dup := st.datasets[name]; dup {
			d.fail("dataset %s appears twice", quote(name))
			return
		}
		st.datasets[name] = ds
		st.datasetBytes += ds.bytes()
		if st.datasetBytes > MaxAllDatasetBytes {
			d.fail("datasets hold %d bytes, at most %d allowed", st.datasetBytes, MaxAllDatasetBytes)
			return
		}
		st.addRefs(ds, 1)
	}
}

// Query results of datasets.

// DatasetInfo describes a dataset (QueryDataset, QueryDatasets). Agents
// and Values are filled in by QueryDataset only.
type DatasetInfo struct {
	Name         string      `json:"name"`
	Created      uint64      `json:"created"` // log index of its creation; part of every agent signature
	Cells        int         `json:"cells"`
	CellSize     int         `json:"cell_size"`
	StepLimit    uint64      `json:"step_limit"` // 0: no limit
	MaxAgentSeqs uint64      `json:"max_agent_seqs"`
	Version      uint64      `json:"version"`     // number of changes merged so far
	Admins       []string    `json:"admins"`      // hex keys, sorted
	AgentCount   int         `json:"agent_count"` // invited agents
	Agents       []AgentInfo `json:"agents,omitempty"`
	// Values are the cells that differ from a fresh cell (global seq 0,
	// zero bytes), by ascending cell index. A cell not listed is fresh.
	Values []CellInfo `json:"values,omitempty"`
}

// Ref returns the dataset reference agents sign for.
func (d DatasetInfo) Ref() DatasetRef { return DatasetRef{Name: d.Name, Created: d.Created} }

// AgentInfo is the record of one agent of a dataset.
type AgentInfo struct {
	Agent     string `json:"agent"` // hex key
	Invited   bool   `json:"invited"`
	SignedMax uint64 `json:"signed_max"` // highest local seq the agent signed
	Spent     uint64 `json:"spent"`      // local seqs spent raising global seqs
	Available uint64 `json:"available"`  // signed_max - spent
	LastSeq   uint64 `json:"last_seq"`   // local seq of its last merged change
}

// CellInfo is one cell of a dataset.
type CellInfo struct {
	Cell      int    `json:"cell"`
	GlobalSeq uint64 `json:"global_seq"`
	Value     []byte `json:"value"` // base64 in JSON; exactly cell_size bytes
}

func (ds *dataset) info(full bool) DatasetInfo {
	info := DatasetInfo{
		Name: ds.name, Created: ds.created, Cells: ds.cells, CellSize: ds.cellSize,
		StepLimit: ds.stepLimit, MaxAgentSeqs: ds.maxAgentSeqs, Version: ds.version,
		Admins: make([]string, 0, len(ds.admins)),
	}
	for _, k := range sortedClientKeys(ds.admins) {
		info.Admins = append(info.Admins, FormatKey(k[:]))
	}
	for _, rec := range ds.agents {
		if rec.invited {
			info.AgentCount++
		}
	}
	if !full {
		return info
	}
	info.Agents = make([]AgentInfo, 0, len(ds.agents))
	for _, k := range sortedClientKeys(ds.agents) {
		rec := ds.agents[k]
		info.Agents = append(info.Agents, AgentInfo{Agent: FormatKey(k[:]), Invited: rec.invited,
			SignedMax: rec.signedMax, Spent: rec.spent, Available: rec.signedMax - rec.spent, LastSeq: rec.lastSeq})
	}
	zero := make([]byte, ds.cellSize)
	for i := range ds.cells {
		c := ds.cell(i)
		if c.GlobalSeq != 0 || !bytes.Equal(c.Value, zero) {
			info.Values = append(info.Values, CellInfo{Cell: i, GlobalSeq: c.GlobalSeq, Value: c.Value})
		}
	}
	return info
}

// syncSigs holds the results of checking the agent signatures of a
// sync_dataset command for ref. Apply computes it before it takes the
// state machine's lock (a signature check is a pure function of the bytes
// and ref), and syncDataset uses it when ref is still the dataset's.
type syncSigs struct {
	ref        DatasetRef
	statements []error // per statement: nil when its signature verifies
	changes    []error // per change
}

// verifySnapshot checks every signature of s for ref, as batches (the same
// verdicts as one by one: see package sigverify), on up to GOMAXPROCS
// goroutines for large snapshots. The goroutines end before it returns.
func verifySnapshot(s *DatasetSnapshot, ref DatasetRef) *syncSigs {
	v := &syncSigs{ref: ref, statements: make([]error, len(s.Statements)), changes: make([]error, len(s.Changes))}
	var b sigverify.Batch
	for i := range s.Statements {
		st := &s.Statements[i]
		b.Add(st.Agent, st.SignBytes(ref), st.Sig)
	}
	for i, ok := range b.Verify() {
		v.statements[i] = agentSigError(s.Statements[i].Agent, ok, "seq statement")
	}
	const perWorker = 32
	workers := max(1, min(runtime.GOMAXPROCS(0), (len(s.Changes)+perWorker-1)/perWorker))
	check := func(w int) {
		var b sigverify.Batch
		for i := w; i < len(s.Changes); i += workers {
			c := &s.Changes[i]
			b.Add(c.Agent, c.SignBytes(ref), c.Sig)
		}
		for j, ok := range b.Verify() {
			i := w + j*workers
			v.changes[i] = agentSigError(s.Changes[i].Agent, ok, "change")
		}
	}
	if workers == 1 {
		check(0)
		return v
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			check(w)
		}()
	}
	wg.Wait()
	return v
}

// presync checks the agent signatures of command bytes b ahead of Apply's
// lock when b is a sync_dataset of an existing dataset; otherwise (or when
// b does not decode) it returns nil and execution checks what it needs.
func (m *StateMachine) presync(b []byte) *syncSigs {
	if !bytes.Contains(b, []byte(OpSyncDataset)) {
		return nil
	}
	c, err := DecodeCommand(b)
	if err != nil || c.Op != OpSyncDataset {
		return nil
	}
	m.mu.RLock()
	var ref DatasetRef
	ds, ok := m.st.datasets[c.Dataset]
	if ok {
		ref = ds.ref()
	}
	m.mu.RUnlock()
	if !ok {
		return nil
	}
	snap, err := DecodeDatasetSnapshot(c.Snapshot)
	if err != nil {
		return nil
	}
	return verifySnapshot(&snap, ref)
}
