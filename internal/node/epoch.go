package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-consensus/tandem/checkpoint"
	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/detector/evidence"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/internal/fsutil"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/quarantine"
	"github.com/tandem-consensus/tandem/smr"
)

// consensus_mode auto (DESIGN invariants 4 and 10). The node runs one
// epoch at a time; an epoch is (number, mode, member set, genesis
// certificate) and runs a fresh engine on its own storage under
// data_dir/epochs/<number>. Epoch 1 runs Raft. An epoch ends with an epoch
// switch entry ordered by its own engine (an operator's signed request, or
// the detector's escalation): once a replica applies it at index I, its
// engine applies nothing more (the gate), it signs HANDOFF(next epoch, I,
// state hash, mode, members) and exchanges the signature with its peers; q
// matching signatures form the next epoch's genesis certificate, and the
// next engine starts from that state. A replica that missed the switch
// entry learns the certificate from its peers' signatures and fetches the
// certified state from one of them (verified before it is installed).
// When no quorum of matching states forms within view_change_timeout (an
// equivocating leader made a correct follower diverge), the f+1 fallback
// of DESIGN invariant 10 certifies the state of the members that are not
// quarantined (handoff.go), and a node whose own state differs installs
// the certified one the same way.

// Paths under data_dir.
const (
	epochsDirName     = "epochs"
	epochRecordName   = "current.json"
	baseSnapshotName  = "base.snapshot"
	handoffStoreName  = "handoff"
	pathHandoffVote   = "/internal/handoff/vote"
	pathHandoffFetch  = "/internal/handoff/state"
	handoffRetryEvery = 300 * time.Millisecond
)

// epochRecord is the node's durable view of its epoch.
type epochRecord struct {
	Epoch   uint64   `json:"epoch"`
	Mode    string   `json:"mode"`
	Members []string `json:"members"`
	// BaseIndex is the state machine index the epoch started from (0 for
	// epoch 1); Cert certifies that state (nil for epoch 1).
	BaseIndex uint64                  `json:"base_index,omitempty"`
	Cert      *checkpoint.Certificate `json:"certificate,omitempty"`
	Reason    string                  `json:"reason,omitempty"`
	// Escalated: the epoch was started by the detector's escalation to
	// bft (no operator), so it may end after a calm period (calm.go).
	Escalated bool      `json:"escalated,omitempty"`
	Since     time.Time `json:"since"`
	// EndIndex is set once the switch entry that ends this epoch was
	// applied (at that index); Next says what it switched to.
	EndIndex uint64       `json:"end_index,omitempty"`
	Next     *nextEpochTo `json:"next,omitempty"`
	// BlockedBy is set when this node ended the epoch without the switch
	// entry: the Raft leader that the escalation's evidence accuses did
	// not order it within view_change_timeout, and EndIndex is the index
	// this node had applied then (handoff.go). Suspects are the members
	// that evidence accuses, whose hand-over votes do not count for the
	// fallback.
	BlockedBy string   `json:"blocked_by,omitempty"`
	Suspects  []string `json:"suspects,omitempty"`
}

type nextEpochTo struct {
	Epoch     uint64 `json:"epoch"`
	Mode      string `json:"mode"`
	Reason    string `json:"reason,omitempty"`
	Escalated bool   `json:"escalated,omitempty"`
}

func (n *Node) autoMode() bool { return n.cfg.ConsensusMode == "auto" }

func (n *Node) epochsDir() string { return filepath.Join(n.cfg.DataDir, epochsDirName) }

func (n *Node) epochDir(e uint64) string {
	return filepath.Join(n.epochsDir(), strconv.FormatUint(e, 10))
}

// loadEpochRecord reads data_dir/epochs/current.json; a node without one
// is in epoch 1 on Raft with every configured member.
func (n *Node) loadEpochRecord() (epochRecord, error) {
	b, err := os.ReadFile(filepath.Join(n.epochsDir(), epochRecordName))
	if errors.Is(err, os.ErrNotExist) {
		ms, err := n.cfg.Members()
		if err != nil {
			return epochRecord{}, err
		}
		ids := make([]string, 0, len(ms))
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		return epochRecord{Epoch: 1, Mode: smr.ModeCFT, Members: ids, Since: time.Now().UTC()}, nil
	}
	if err != nil {
		return epochRecord{}, fmt.Errorf("epoch record: %w", err)
	}
	var rec epochRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return epochRecord{}, fmt.Errorf("epoch record %s is damaged: %w (restore it from a backup, or wipe data_dir and let the node fetch the state from its peers)", filepath.Join(n.epochsDir(), epochRecordName), err)
	}
	if rec.Epoch == 0 || (rec.Mode != smr.ModeCFT && rec.Mode != smr.ModeBFT) || (rec.EndIndex != 0) != (rec.Next != nil) {
		return epochRecord{}, fmt.Errorf("epoch record %s: epoch %d mode %q end index %d next %v is not valid", filepath.Join(n.epochsDir(), epochRecordName), rec.Epoch, rec.Mode, rec.EndIndex, rec.Next)
	}
	return rec, nil
}

// saveEpochRecord writes the record durably (temp file, fsync, rename,
// directory fsync).
func (n *Node) saveEpochRecord(rec epochRecord) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFile(filepath.Join(n.epochsDir(), epochRecordName), b)
}

// isEpochSwitch reports whether data is an epoch switch entry, from its
// header.
func isEpochSwitch(data []byte) bool {
	k, ok := smr.EntryKindOf(data)
	return ok && k == smr.EntryEpochSwitch
}

// refuse answers an entry ordered after the end of the epoch (the gate:
// the state at the switch index is the same on every replica).
func (s *selector) refuse(index uint64) (smr.Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rec.EndIndex == 0 {
		return smr.Result{}, false
	}
	return smr.Result{Index: index, Code: smr.CodeEpochEnded, Message: fmt.Sprintf(
		"not executed: epoch %d ended at index %d with a switch to %s; send it again, the next epoch executes it", s.rec.Epoch, s.rec.EndIndex, s.rec.Next.Mode)}, true
}

// observe runs on the apply goroutine for an applied switch entry (r is
// its successful Result). A switch to the next epoch in the other mode
// ends the epoch: the end is made durable before anything else happens, so
// a restart never applies an entry after it. A switch for another epoch,
// or to the mode already in use, changes nothing and is answered as such
// (every replica agrees on the epoch, so the answer is deterministic). A
// nil selector (not auto mode) ignores every switch.
func (s *selector) observe(index uint64, data []byte, r smr.Result) smr.Result {
	if s == nil {
		return smr.Result{Index: index, Code: smr.CodeMalformed, Message: "epoch switch ignored: this cluster does not run consensus_mode auto"}
	}
	var ent smr.Entry
	if err := ent.UnmarshalBinary(data); err != nil || ent.Switch == nil {
		return r
	}
	sw := ent.Switch
	s.mu.Lock()
	if sw.Epoch != s.rec.Epoch+1 || sw.Mode == s.rec.Mode {
		msg := fmt.Sprintf("epoch switch ignored: it starts epoch %d in mode %s, but the cluster is in epoch %d in mode %s (a switch starts epoch %d in the other mode)", sw.Epoch, sw.Mode, s.rec.Epoch, s.rec.Mode, s.rec.Epoch+1)
		s.mu.Unlock()
		return smr.Result{Index: index, Code: smr.CodeMalformed, Message: msg}
	}
	if err := s.checkCalm(s.rec, sw); err != nil {
		msg := fmt.Sprintf("epoch switch ignored: the switch to %s after a calm period is not authorised: %v", sw.Mode, err)
		s.mu.Unlock()
		return smr.Result{Index: index, Code: smr.CodePermissionDenied, Message: msg}
	}
	s.rec.EndIndex = index
	s.rec.Next = &nextEpochTo{Epoch: sw.Epoch, Mode: sw.Mode, Reason: sw.Reason,
		Escalated: sw.Mode == smr.ModeBFT && len(sw.Admin) == 0}
	rec := s.rec
	s.mu.Unlock()
	if err := s.n.saveEpochRecord(rec); err != nil {
		s.n.log.Error("the end of the epoch could not be recorded; the switch goes on, but a restart before it completes replays the epoch", "epoch", rec.Epoch, "err", err)
	}
	s.n.log.Info("epoch switch applied", "epoch", rec.Epoch, "index", index, "next_epoch", sw.Epoch, "next_mode", sw.Mode, "reason", sw.Reason)
	select {
	case s.ended <- struct{}{}:
	default:
	}
	return r
}

// selector runs the epochs of an auto-mode node.
type selector struct {
	n         *Node
	members   []config.Member // the configured committee, parsed once
	committee *checkpoint.Committee
	store     *checkpoint.Store
	collector *checkpoint.Collector        // hand-over votes, by epoch (safe for concurrent use)
	ended     chan struct{}                // the current epoch's switch entry was applied
	certs     chan *checkpoint.Certificate // a certificate of the next epoch formed

	mu        sync.Mutex
	rec       epochRecord
	switching bool
	firstVote time.Time // when the first vote for the next epoch arrived; zero before
	// suspects are the members the escalation's evidence accuses while
	// one of them leads the Raft epoch; set, their votes do not count for
	// the hand-over's fallback (handoff.go). Nil otherwise.
	suspects []string
	// blockReason is why the epoch ends without its switch entry, for a
	// node that did not close its own gate (one that did has it in
	// rec.Next).
	blockReason string

	calm calmPool // calm statements of the current epoch (calm.go)
}

func (n *Node) newSelector() (*selector, error) {
	ms, err := n.cfg.Members()
	if err != nil {
		return nil, err
	}
	keys := make(map[string]ed25519.PublicKey, len(ms))
	for _, m := range ms {
		keys[m.ID] = m.PublicKey
	}
	com, err := checkpoint.NewCommittee(keys)
	if err != nil {
		return nil, fmt.Errorf("epoch committee: %w", err)
	}
	st, err := checkpoint.OpenStore(filepath.Join(n.epochsDir(), handoffStoreName), smr.SnapshotInfo)
	if err != nil {
		return nil, fmt.Errorf("hand-over store: %w", err)
	}
	rec, err := n.loadEpochRecord()
	if err != nil {
		return nil, err
	}
	s := &selector{n: n, members: ms, committee: com, store: st, rec: rec, collector: checkpoint.NewCollector(com),
		ended: make(chan struct{}, 1), certs: make(chan *checkpoint.Certificate, 1)}
	n.fsm.gate = s
	s.suspects = rec.Suspects
	if rec.EndIndex != 0 {
		s.ended <- struct{}{}
	}
	return s, nil
}

// record returns a copy of the current epoch record.
func (s *selector) record() epochRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec
}

// addVote takes a hand-over vote (own or a peer's). A certificate for the
// epoch after the current one is handed to the run loop.
func (s *selector) addVote(v checkpoint.Vote) error {
	if v.Statement.Kind != checkpoint.KindHandoff {
		return fmt.Errorf("vote of kind %s is not a hand-over vote", v.Statement.Kind)
	}
	s.mu.Lock()
	cur := s.rec.Epoch
	s.mu.Unlock()
	if v.Statement.Epoch != cur+1 {
		return fmt.Errorf("hand-over vote for epoch %d; this node is in epoch %d and takes votes for epoch %d only", v.Statement.Epoch, cur, cur+1)
	}
	s.collector.SetQuarantined(s.n.quarantinedMembers())
	cert, err := s.collector.Add(v)
	if err == nil {
		s.noteVote(v.Statement.Epoch)
	}
	if err != nil {
		var ce *checkpoint.ConflictError
		if errors.As(err, &ce) {
			s.n.log.Error("a member signed two different hand-over states for one epoch", "signer", v.Signer, "err", err)
		}
		return err
	}
	if cert != nil {
		select {
		case s.certs <- cert:
		default:
		}
	}
	return nil
}

// setEpochMode tells the detector which epoch and mode its decisions are
// for.
func (d *detector) setEpochMode(epoch uint64, mode string) {
	d.epoch.Store(epoch)
	d.mu.Lock()
	if mode == smr.ModeBFT {
		d.mode = quarantine.ModeBFT
	} else {
		d.mode = quarantine.ModeCFT
	}
	d.mu.Unlock()
}

// run drives the epochs until ctx ends: it runs the current epoch's tasks,
// and when the epoch ends (or its successor is certified by the others)
// it carries out the hand-over and starts the next engine.
func (s *selector) run(ctx context.Context) error {
	s.n.det.setOnEscalate(func(reason string, ids []evidence.ID) {
		go s.n.escalate(ctx, reason, ids)
	})
	for {
		ectx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.n.runEpochTasks(ectx) }()
		calmDone := make(chan struct{})
		go func() {
			defer close(calmDone)
			if rec := s.record(); rec.Mode == smr.ModeBFT && rec.Escalated {
				s.runCalm(ectx, rec)
			}
		}()
		var cert *checkpoint.Certificate
		tasksDone := false
		tick := time.NewTicker(handoffRetryEvery)
	wait:
		for {
			select {
			case <-ctx.Done():
				tick.Stop()
				cancel()
				<-calmDone
				if !tasksDone {
					<-done
				}
				return nil
			case <-s.ended:
				if s.record().EndIndex != 0 {
					break wait
				}
			case cert = <-s.certs:
				if cert.Statement.Epoch == s.record().Epoch+1 {
					break wait
				}
				cert = nil
			case <-tick.C:
				if cert = s.laggardFallback(); cert != nil {
					break wait
				}
			case err := <-done:
				// The tasks may finish early (bootstrap and genesis
				// are one-off); the epoch runs on.
				tasksDone = true
				done = nil
				if err != nil {
					tick.Stop()
					cancel()
					<-calmDone
					return err
				}
			}
		}
		tick.Stop()
		cancel()
		<-calmDone
		if !tasksDone {
			if err := <-done; err != nil {
				return err
			}
		}
		if err := s.handOver(ctx, cert); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("epoch hand-over: %w", err)
		}
	}
}

// handOver ends the current epoch and starts the next one. cert is the
// next epoch's certificate when the others formed it first (this node may
// not have applied the switch entry); otherwise this node signs its own
// state and exchanges votes until a certificate forms: a quorum
// certificate, or after view_change_timeout the fallback (handoff.go).
func (s *selector) handOver(ctx context.Context, cert *checkpoint.Certificate) error {
	n := s.n
	s.mu.Lock()
	s.switching = true
	rec := s.rec
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.switching = false
		s.mu.Unlock()
	}()
	start := time.Now()

	var own *checkpoint.Vote
	var snap []byte
	if rec.EndIndex != 0 {
		b, err := n.fsm.Snapshot()
		if err != nil {
			return fmt.Errorf("snapshot at the end of epoch %d: %w", rec.Epoch, err)
		}
		idx, hash, err := smr.SnapshotInfo(b)
		if err != nil {
			return err
		}
		st := checkpoint.Statement{Kind: checkpoint.KindHandoff, Epoch: rec.Next.Epoch, Index: idx, StateHash: hash,
			Mode: rec.Next.Mode, Members: s.nextMembers(rec.Next.Mode)}
		v, err := checkpoint.Sign(n.signKey, n.cfg.NodeID, st)
		if err != nil {
			return err
		}
		own, snap = &v, b
		if err := s.addVote(v); err != nil {
			n.log.Warn("own hand-over vote refused", "err", err)
		}
	}
	// Exchange votes until a certificate forms; after view_change_timeout
	// without a quorum, the fallback counts too.
	t := time.NewTicker(handoffRetryEvery)
	defer t.Stop()
	fallbackAfter := s.fallbackTimeout()
	if rec.BlockedBy != "" {
		// The blocked switch already cost view_change_timeout, and the
		// members stopped at indices of their own: no quorum is waited
		// for.
		fallbackAfter = 0
	}
	announced := rec.BlockedBy != "" // the gate said why already
	for cert == nil {
		s.exchange(ctx, rec.Epoch+1, own)
		late := own != nil && time.Since(start) >= fallbackAfter
		if late && !announced {
			announced = true
			n.log.Warn("no quorum of matching hand-over states within view_change_timeout; a fallback certificate is accepted from now on",
				"epoch", rec.Epoch+1, "view_change_timeout", fallbackAfter, "quarantined", s.n.quarantinedMembers())
		}
		if cert = s.certify(rec.Epoch+1, late); cert != nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case cert = <-s.certs:
		case <-t.C:
		}
	}
	s.logCertificate(cert, own, time.Since(start))
	// Stop the old engine before touching the state.
	old := n.eng()
	if err := old.Stop(); err != nil {
		n.log.Warn("stopping the engine of the ended epoch", "epoch", rec.Epoch, "err", err)
	}
	if own == nil || !own.Statement.Equal(cert.Statement) {
		// This node missed the end of the epoch or ended it elsewhere
		// (it diverged): fetch the certified state from a peer.
		for {
			b, err := s.fetch(ctx, cert)
			if err == nil {
				snap = b
				break
			}
			n.log.Warn("hand-over state not fetched yet; trying again", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(handoffRetryEvery):
			}
		}
	}
	if err := s.store.Save(cert, snap); err != nil {
		return fmt.Errorf("store the hand-over state: %w", err)
	}
	if err := os.MkdirAll(n.epochDir(cert.Statement.Epoch), 0o700); err != nil {
		return fmt.Errorf("epoch %d directory: %w", cert.Statement.Epoch, err)
	}
	if err := fsutil.WriteFile(filepath.Join(n.epochDir(cert.Statement.Epoch), baseSnapshotName), snap); err != nil {
		return fmt.Errorf("store the base state of epoch %d: %w", cert.Statement.Epoch, err)
	}
	next := epochRecord{Epoch: cert.Statement.Epoch, Mode: cert.Statement.Mode, Members: cert.Statement.Members,
		BaseIndex: cert.Statement.Index, Cert: cert, Since: time.Now().UTC()}
	// The old engine may have applied the switch while this node followed
	// the others' certificate: its record then has the reason.
	// A node that followed the others' certificate of a blocked switch
	// knows why from its own decision.
	s.mu.Lock()
	ended, blocked := s.rec, s.blockReason
	s.mu.Unlock()
	if ended.Next != nil {
		next.Reason, next.Escalated = ended.Next.Reason, ended.Next.Escalated
	} else if blocked != "" {
		next.Reason, next.Escalated = blocked, true
	}
	if err := n.saveEpochRecord(next); err != nil {
		return fmt.Errorf("record epoch %d: %w", next.Epoch, err)
	}
	s.mu.Lock()
	s.rec = next
	s.firstVote = time.Time{}
	s.suspects, s.blockReason = nil, ""
	s.mu.Unlock()
	// Keep the votes of the epoch that starts (a peer that missed the
	// switch may still ask for them); drop older ones.
	s.collector.Forget(next.BaseIndex)
	// Signals about the epoch that just ended are stale now.
	select {
	case <-s.ended:
	default:
	}
	select {
	case <-s.certs:
	default:
	}
	if err := n.startEpoch(next, snap); err != nil {
		return err
	}
	n.log.Info("epoch started", "epoch", next.Epoch, "mode", next.Mode, "base_index", next.BaseIndex,
		"members", next.Members, "certificate", cert.Form.String(), "signers", cert.Signers(), "reason", next.Reason, "hand_over", time.Since(start).Round(time.Millisecond))
	return nil
}

// nextMembers is the member set of an epoch in mode: in bft every
// configured member (quarantined ones are skipped as leaders and never
// needed in a quorum), in cft the members not quarantined.
func (s *selector) nextMembers(mode string) []string {
	var q map[string]bool
	if mode == smr.ModeCFT && s.n.det != nil {
		q = map[string]bool{}
		for _, id := range s.n.det.manager.IDs() {
			q[string(id)] = true
		}
	}
	ids := make([]string, 0, len(s.members))
	for _, m := range s.members {
		if !q[m.ID] {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// exchange sends this node's vote (if any) to every peer and takes the
// votes they answer with.
func (s *selector) exchange(ctx context.Context, epoch uint64, own *checkpoint.Vote) {
	var body []byte
	if own != nil {
		body, _ = json.Marshal(own)
	}
	path := pathHandoffVote + "?epoch=" + strconv.FormatUint(epoch, 10)
	postToPeers(ctx, s.n, s.members, path, body, 1<<20, nil, func(peer string, votes []checkpoint.Vote) {
		for _, v := range votes {
			if v.Signer != peer {
				continue // a peer answers with its own vote only
			}
			_ = s.addVote(v)
		}
	})
}

// fetch gets the certified state from the members that signed it.
func (s *selector) fetch(ctx context.Context, cert *checkpoint.Certificate) ([]byte, error) {
	n := s.n
	addr := map[string]string{}
	for _, m := range s.members {
		addr[m.ID] = m.Addr
	}
	var peers []checkpoint.Peer
	for _, id := range cert.Signers() {
		if id != n.cfg.NodeID {
			peers = append(peers, checkpoint.Peer{ID: id, URL: "http://" + addr[id] + pathHandoffFetch})
		}
	}
	want := cert.Statement
	// A fallback certificate of a blocked switch leaves the suspects out;
	// a quorum certificate counts them (handoff.go).
	uncounted := s.n.quarantinedMembers()
	if cert.Form == checkpoint.FormFallback {
		uncounted = s.uncounted(want.Epoch)
	}
	got, snap, rejected, err := checkpoint.Fetch(ctx, checkpoint.FetchConfig{
		Peers: peers, Client: n.rpc, Committee: s.committee, Quarantined: uncounted, Info: smr.SnapshotInfo,
		MinIndex: want.Index, Timeout: n.cfg.StateTransferTimeout, MaxBytes: maxStateBytes, Certified: cert,
		Want: func(c *checkpoint.Certificate) error {
			if !c.Statement.Equal(want) {
				return fmt.Errorf("certificate for %s, want %s", c.Statement, want)
			}
			return nil
		},
	})
	for _, r := range rejected {
		n.log.Warn("hand-over state refused", "peer", r.Peer, "reason", r.Reason, "err", r.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the state of epoch %d: %w", want.Epoch, err)
	}
	n.log.Info("hand-over state fetched from a peer", "epoch", got.Statement.Epoch, "index", got.Statement.Index, "bytes", len(snap), "peer_certificate", got.Form.String())
	return snap, nil
}

// maxStateBytes bounds a fetched state.
const maxStateBytes = 256 << 20

// registerEpochRPC serves the hand-over votes and the certified states to
// the other members.
func (n *Node) registerEpochRPC(mux *http.ServeMux) {
	if n.sel == nil {
		return
	}
	mux.HandleFunc("POST "+pathHandoffVote, func(w http.ResponseWriter, r *http.Request) {
		body, ok := n.memberBody(w, r, 64<<10, "hand-over votes are taken only from members", "hand-over vote")
		if !ok {
			return
		}
		epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
		if err != nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "hand-over: epoch query parameter: %v", err))
			return
		}
		if len(body) > 0 {
			var v checkpoint.Vote
			if err := json.Unmarshal(body, &v); err != nil {
				writeRPCError(w, smr.Errorf(smr.CodeMalformed, "hand-over vote: %v", err))
				return
			}
			if from := transport.PeerIDFromContext(r.Context()); v.Signer != from {
				writeRPCError(w, smr.Errorf(smr.CodePermissionDenied, "hand-over vote signed by %q sent by %q: members send their own votes", v.Signer, from))
				return
			}
			_ = n.sel.addVote(v) // stale or invalid votes change nothing
		}
		mine := []checkpoint.Vote{}
		for _, v := range n.sel.collector.Votes(checkpoint.KindHandoff, epoch) {
			if v.Signer == n.cfg.NodeID {
				mine = append(mine, v)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(mine)
	})
	mux.Handle("GET "+pathHandoffFetch, checkpoint.NewHandler(n.sel.store, maxStateBytes))
	n.registerCalmRPC(mux)
}

func (s *selector) status() *api.EpochStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &api.EpochStatus{Epoch: s.rec.Epoch, Mode: s.rec.Mode, Members: s.rec.Members, BaseIndex: s.rec.BaseIndex,
		Reason: s.rec.Reason, Since: s.rec.Since, Switching: s.switching || s.rec.EndIndex != 0, Certificate: s.rec.Cert}
	if s.rec.Cert != nil {
		st.CertificateForm = s.rec.Cert.Form.String()
	}
	return st
}

// Epoch implements api.ModeBackend.
func (n *Node) Epoch() *api.EpochStatus {
	if n.sel == nil {
		return nil
	}
	return n.sel.status()
}

// SwitchMode implements api.ModeBackend: it checks the operator's switch
// against the current state and epoch, and orders it through the current
// engine (on the Raft leader in a cft epoch).
func (n *Node) SwitchMode(ctx context.Context, sw *smr.EpochSwitch) (smr.Result, error) {
	if n.sel == nil {
		return smr.Result{}, smr.Errorf(smr.CodeMalformed, "mode switch: consensus_mode is %s; switches need consensus_mode auto", n.cfg.ConsensusMode)
	}
	rec := n.sel.record()
	if rec.EndIndex != 0 {
		return smr.Result{}, fmt.Errorf("%w: epoch %d is ending (a switch to %s is under way); ask again once epoch %d runs", api.ErrUnavailable, rec.Epoch, rec.Next.Mode, rec.Epoch+1)
	}
	if sw.Epoch != rec.Epoch+1 {
		return smr.Result{}, smr.Errorf(smr.CodeMalformed, "mode switch: the request starts epoch %d, but the cluster is in epoch %d (a switch starts epoch %d)", sw.Epoch, rec.Epoch, rec.Epoch+1)
	}
	if sw.Mode == rec.Mode {
		return smr.Result{}, smr.Errorf(smr.CodeMalformed, "mode switch: epoch %d already runs %s", rec.Epoch, rec.Mode)
	}
	if err := n.fsm.PrecheckEpochSwitch(sw); err != nil {
		return smr.Result{}, err
	}
	var res smr.Result
	var err error
	if n.bftMode() {
		res, err = n.bftEng().ProposeEpochSwitch(ctx, sw)
	} else {
		err = n.onLeader(ctx, func() (err error) {
			res, err = n.raftEng().ProposeEpochSwitch(ctx, sw)
			return err
		})
	}
	return n.epochAnswer(res, err)
}
