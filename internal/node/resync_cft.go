package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/tandem-consensus/tandem/config"
	"github.com/tandem-consensus/tandem/consensus"
	raftengine "github.com/tandem-consensus/tandem/consensus/raft"
	"github.com/tandem-consensus/tandem/internal/fsutil"
	"github.com/tandem-consensus/tandem/internal/transport"
	"github.com/tandem-consensus/tandem/smr"
)

// Re-sync in cft mode (and in the Raft epochs of auto mode).
//
// The divergence is in this node's state machine, not in its Raft log
// (the log is the cluster's; a node that applies it wrongly, or whose
// memory was corrupted, holds a wrong state). Raft has no way to apply
// its log again, so the node rebuilds its state as a new member does: with
// an empty log, from the leader's InstallSnapshot (or the log from its
// start). A voter must never forget entries it acknowledged (a wiped
// voter could elect a leader that misses a committed entry), so the node
// first leaves the voters and only then resets its storage:
//
//  1. If it leads, it hands leadership over.
//  2. leave: the leader removes it from the configuration (RemoveServer)
//     and answers once that is committed. From then on every
//     configuration a leader can hold lacks it: a candidate that missed
//     the removal needs a majority of the old configuration, which meets
//     a majority of the new one that holds the entry, so it cannot win
//     with this node's vote (Raft's single-server change argument).
//  3. It stops its Raft engine, moves the Raft storage aside
//     (raft.diverged, the previous such copy is deleted), and resets the
//     state machine (empty, or the epoch's certified base state in auto
//     mode).
//  4. It starts a fresh Raft engine on an empty directory (same ID, same
//     address, same peer port) and asks the leader to add it as a
//     non-voter (join): the leader sends its snapshot or its log.
//  5. Once it has applied up to the commit index the leader reported at
//     the join, it asks the leader to make it a voter again (promote,
//     AddVoter), and serves again.
//
// The leader takes leave, join and promote only from the member itself
// (its verified node certificate), only for members of initial_members
// (and of the epoch), and join and promote never for a quarantined member.

// pathResync is the leader's endpoint for the re-sync steps (?op=leave,
// join or promote).
const pathResync = "/internal/resync"

// resyncStepTimeout bounds one re-sync step asked of the leader.
const resyncStepTimeout = 10 * time.Second

// resyncAnswer is the leader's answer to a re-sync step.
type resyncAnswer struct {
	// CommitIndex is the leader's Raft commit index when it took the
	// step.
	CommitIndex uint64 `json:"commit_index"`
}

// resyncCFT runs steps 1–5.
func (r *resyncer) resyncCFT(ctx context.Context, rep resyncReport) error {
	n := r.n
	n.ckpt.dropOwnVotes()
	// 1–2. Leave the voters through the leader.
	wait := resyncRetryMin
	for {
		eng := n.raftEng()
		if eng.Status().Role == "leader" {
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := eng.TransferLeadership(tctx, "")
			cancel()
			r.log.Info("re-sync: handing leadership over before leaving the voters", "err", err)
		} else if _, err := r.step(ctx, "leave", eng.Status().LeaderAddr); err == nil {
			break
		} else {
			r.log.Info("re-sync: the leader has not removed this node from the voters yet; trying again", "err", err)
		}
		if err := backoff(ctx, &wait); err != nil {
			return err
		}
	}
	r.log.Warn("re-sync: this node left the Raft voters; resetting its Raft storage and state machine", "index", rep.Index)
	// 3. From here on a restart resumes at the rejoin; the checkpoints
	// this node may have signed for the diverged state are never signed
	// again.
	if err := r.saveDiverged(rep, true); err != nil {
		return err
	}
	if err := n.raftEng().Stop(); err != nil {
		r.log.Warn("re-sync: stopping the Raft engine", "err", err)
	}
	// The fresh engine's configuration is built once the old engine has
	// stopped: the peer transport hands out a new Raft stream layer only
	// after the old one was closed.
	rc, rec, err := r.freshRaftConfig()
	if err != nil {
		return err
	}
	dir := raftengine.StorageDir(rc.DataDir)
	if err := moveAside(dir, dir+".diverged"); err != nil {
		return fmt.Errorf("move the diverged raft storage aside: %w", err)
	}
	if err := r.resetState(rec); err != nil {
		return err
	}
	e, err := n.startRaft(rc)
	if err != nil {
		return fmt.Errorf("restart the raft engine: %w", err)
	}
	if n.det != nil {
		n.attachRaft(e)
		n.det.pushQuarantine(ctx)
	}
	// 4–5.
	return r.rejoinCFT(ctx)
}

// rejoinCFT joins as a non-voter, catches up and is promoted.
func (r *resyncer) rejoinCFT(ctx context.Context) error {
	n := r.n
	wait := resyncRetryMin
	for {
		ans, err := r.stepAny(ctx, "join")
		if err != nil {
			r.log.Info("re-sync: no leader took this node back as a non-voter yet; trying again", "err", err)
			if err := backoff(ctx, &wait); err != nil {
				return err
			}
			continue
		}
		r.log.Info("re-sync: rejoined as a non-voter; catching up from the leader", "leader_commit", ans.CommitIndex)
		if err := r.catchUp(ctx, ans.CommitIndex); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("re-sync: not caught up yet; asking the leader again", "err", err)
			continue
		}
		break
	}
	wait = resyncRetryMin
	for {
		if _, err := r.stepAny(ctx, "promote"); err == nil {
			break
		} else {
			r.log.Info("re-sync: not promoted to voter yet; trying again", "err", err)
		}
		if err := backoff(ctx, &wait); err != nil {
			return err
		}
	}
	rec := *r.record()
	rec.Rejoining = false
	if err := r.saveRecord(rec); err != nil {
		return err
	}
	idx, _ := n.fsm.Hash()
	r.log.Info("re-sync: promoted back to voter", "applied_index", idx)
	return nil
}

// catchUp waits until this node's Raft engine has applied index.
func (r *resyncer) catchUp(ctx context.Context, index uint64) error {
	ctx, cancel := context.WithTimeout(ctx, resyncCatchUpTimeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if r.n.raftEng().Contact().AppliedIndex >= index && r.n.fsm.Initialized() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("applied %d of the leader's %d: %w", r.n.raftEng().Contact().AppliedIndex, index, ctx.Err())
		case <-t.C:
		}
	}
}

// step asks the leader at peer address addr to take op for this node.
func (r *resyncer) step(ctx context.Context, op, addr string) (resyncAnswer, error) {
	var ans resyncAnswer
	if addr == "" {
		return ans, errors.New("no leader known")
	}
	status, b, err := postPeer(ctx, r.n, addr, pathResync+"?op="+op, nil, 4<<10, resyncStepTimeout)
	if err != nil {
		return ans, err
	}
	if status != http.StatusOK {
		return ans, fmt.Errorf("%s answered %d: %s", addr, status, b)
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return ans, fmt.Errorf("leader's answer to %s: %w", op, err)
	}
	return ans, nil
}

// stepAny asks every member in turn (a fresh engine knows no leader until
// it is in the configuration); only the leader takes the step.
func (r *resyncer) stepAny(ctx context.Context, op string) (resyncAnswer, error) {
	if addr := r.n.raftEng().Status().LeaderAddr; addr != "" {
		if ans, err := r.step(ctx, op, addr); err == nil {
			return ans, nil
		}
	}
	var errs []error
	for _, m := range r.n.ckpt.peers {
		ans, err := r.step(ctx, op, m.Addr)
		if err == nil {
			return ans, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
	}
	return resyncAnswer{}, errors.Join(errs...)
}

// freshRaftConfig is the configuration of the fresh Raft engine of the
// running epoch, and the epoch's record in auto mode (nil in cft mode).
func (r *resyncer) freshRaftConfig() (raftengine.Config, *epochRecord, error) {
	n := r.n
	if n.sel == nil {
		return n.cftRaftConfig(), nil, nil
	}
	rec := n.sel.record()
	if rec.Mode != smr.ModeCFT {
		return raftengine.Config{}, nil, fmt.Errorf("epoch %d runs %s, not Raft", rec.Epoch, rec.Mode)
	}
	return n.epochRaftConfig(rec), &rec, nil
}

// baseState is the state a fresh Raft log of the running epoch (rec; nil
// in cft mode) starts from: empty in a plain cft cluster and in epoch 1,
// the certified base state of a later epoch.
func (r *resyncer) baseState(rec *epochRecord) ([]byte, error) {
	if rec != nil {
		if b, err := r.n.epochBase(*rec); err != nil || b != nil {
			return b, err
		}
	}
	return smr.NewUninitialized().Snapshot()
}

// resetState resets the state machine to the base state of the running
// epoch (baseState).
func (r *resyncer) resetState(rec *epochRecord) error {
	base, err := r.baseState(rec)
	if err != nil {
		return err
	}
	if err := r.n.fsm.Restore(base); err != nil {
		return fmt.Errorf("reset the state machine: %w", err)
	}
	return nil
}

// moveAside renames dir to to, deleting what was at to; a missing dir is
// no error. The parent directory is synced.
func moveAside(dir, to string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.RemoveAll(to); err != nil {
		return err
	}
	if err := os.Rename(dir, to); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(dir))
}

// registerResyncRPC serves the leader's side of the re-sync steps.
func (n *Node) registerResyncRPC(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathResync, func(w http.ResponseWriter, r *http.Request) {
		op := r.URL.Query().Get("op")
		id := transport.PeerIDFromContext(r.Context())
		addr, err := n.resyncMember(id, op)
		if err != nil {
			writeRPCError(w, err)
			return
		}
		eng := n.raftEng()
		if n.bftMode() || eng == nil {
			writeRPCError(w, smr.Errorf(smr.CodeMalformed, "re-sync: this node does not run Raft"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 8*time.Second)
		defer cancel()
		switch op {
		case "leave":
			err = n.RemoveMember(ctx, id)
		case "join":
			err = n.AddMember(ctx, consensus.Member{ID: id, Address: addr, Voter: false})
		case "promote":
			err = n.AddMember(ctx, consensus.Member{ID: id, Address: addr, Voter: true})
		}
		if err != nil {
			writeRPCError(w, fmt.Errorf("re-sync %s: %w", op, err))
			return
		}
		n.log.Warn("re-sync step taken for a member whose state diverged", "member", id, "op", op)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resyncAnswer{CommitIndex: eng.Status().CommitIndex})
	})
}

// resyncMember checks that member id may ask for op and returns its
// configured peer address.
func (n *Node) resyncMember(id, op string) (string, error) {
	if op != "leave" && op != "join" && op != "promote" {
		return "", smr.Errorf(smr.CodeMalformed, "re-sync: unknown step %q (leave, join or promote)", op)
	}
	ms, err := n.cfg.Members()
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(ms, func(m config.Member) bool { return m.ID == id })
	if id == "" || i < 0 {
		return "", smr.Errorf(smr.CodePermissionDenied, "re-sync: %q is not in initial_members", id)
	}
	if op == "leave" {
		return ms[i].Addr, nil
	}
	if n.quarantinedPeer(id) {
		return "", smr.Errorf(smr.CodePermissionDenied, "re-sync: %s is quarantined and is not taken back", id)
	}
	if n.sel != nil && !slices.Contains(n.sel.record().Members, id) {
		return "", smr.Errorf(smr.CodePermissionDenied, "re-sync: %s is not a member of epoch %s", id, strconv.FormatUint(n.sel.record().Epoch, 10))
	}
	return ms[i].Addr, nil
}
