package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/internal/identity"
	"github.com/tandem-consensus/tandem/smr"
)

// addDatasetCommands adds `tandem dataset` (create, invite, revoke, set,
// sync, get, list) to root.
func addDatasetCommands(root *cobra.Command, g *globalOptions) {
	e := newClientEnv(g)
	d := &datasetEnv{clientEnv: e}
	cmd := group(e, "dataset", "Shared datasets that invited agents edit offline and merge (BFT Tiny Merge)")
	cmd.Long = `A dataset is a fixed number of fixed-size cells that invited agents edit.
Agents edit a local replica offline ("set"), then "sync" pushes their signed
changes through consensus and pulls the merged state. Per cell the higher
global seq wins, and on a tie the greater value; raising a cell's global seq
costs the agent local seqs it signed, capped per agent. See docs/datasets.md.

Local replicas live under --state-dir (default ~/.tandem/datasets), one file
per dataset and agent key; the key comes from the usual --key setting.`
	cmd.PersistentFlags().StringVar(&d.stateDir, "state-dir", "", "directory of local replicas (default ~/.tandem/datasets)")
	cmd.AddCommand(
		d.newCreateCmd(),
		d.newMemberCmd("invite", smr.OpInviteAgent, "Invite an agent (or, with --admin, a dataset admin)"),
		d.newMemberCmd("revoke", smr.OpRevokeAgent, "Revoke an agent (or, with --admin, a dataset admin); its merged values stay"),
		d.newSetCmd(),
		d.newSyncCmd(),
		d.newGetCmd(),
		readVerb(e, "list", "List the datasets of the cluster", smr.QueryDatasets, false, renderDatasets),
	)
	root.AddCommand(cmd)
}

// datasetEnv is what the dataset verbs share.
type datasetEnv struct {
	*clientEnv
	stateDir string
}

func (d *datasetEnv) newCreateCmd() *cobra.Command {
	var spec client.DatasetSpec
	var seq uint64
	cmd := &cobra.Command{
		Use:   "create NAME --cells N --cell-size B",
		Short: "Create a dataset (needs dataset.create or admin); you become its admin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for i, a := range spec.Agents {
				if _, err := smr.ParseKey(a); err != nil {
					return fmt.Errorf("--agent %d: %w (a client public key as printed by `tandem keygen`)", i+1, err)
				}
			}
			return d.write(cmd, seq, smr.Command{Op: smr.OpCreateDataset, Dataset: args[0], Cells: spec.Cells, CellSize: spec.CellSize,
				StepLimit: spec.StepLimit, MaxAgentSeqs: spec.MaxAgentSeqs, Agents: spec.Agents})
		},
	}
	f := cmd.Flags()
	f.IntVar(&spec.Cells, "cells", 0, fmt.Sprintf("number of cells (1..%d)", smr.MaxDatasetCells))
	f.IntVar(&spec.CellSize, "cell-size", 0, fmt.Sprintf("bytes per cell (1..%d; cells x size at most %d)", smr.MaxCellSize, smr.MaxDatasetBytes))
	f.Uint64Var(&spec.StepLimit, "step-limit", 0, "largest raise of a cell's global seq by one change (0: no limit)")
	f.Uint64Var(&spec.MaxAgentSeqs, "max-agent-seqs", 0, fmt.Sprintf("cap on the local seqs an agent may sign (default and maximum %d)", uint64(smr.DefaultMaxAgentSeqs)))
	f.StringArrayVar(&spec.Agents, "agent", nil, "invite this agent key at creation (repeatable)")
	_ = cmd.MarkFlagRequired("cells")
	_ = cmd.MarkFlagRequired("cell-size")
	bindSeq(cmd, &seq)
	return cmd
}

func (d *datasetEnv) newMemberCmd(verb string, op smr.Op, short string) *cobra.Command {
	var admin bool
	var seq uint64
	cmd := &cobra.Command{
		Use:   verb + " NAME KEY",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := smr.ParseKey(args[1]); err != nil {
				return fmt.Errorf("KEY: %w (a client public key as printed by `tandem keygen`)", err)
			}
			role := smr.RoleAgent
			if admin {
				role = smr.RoleAdmin
			}
			return d.write(cmd, seq, smr.Command{Op: op, Dataset: args[0], Subject: args[1], Role: role})
		},
	}
	cmd.Flags().BoolVar(&admin, "admin", false, "the dataset admin role (may invite and revoke) instead of the agent role")
	bindSeq(cmd, &seq)
	return cmd
}

// replicaPath returns the file of the local replica of dataset name for
// agent: <state dir>/<escaped name>@<agent>.json.
func (d *datasetEnv) replicaPath(name, agent string) (string, error) {
	dir := d.stateDir
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("--state-dir is not set and the home directory is unknown: %w", err)
		}
		dir = filepath.Join(home, ".tandem", "datasets")
	}
	esc := url.PathEscape(name)
	if strings.HasPrefix(esc, ".") {
		esc = "%2E" + esc[1:]
	}
	return filepath.Join(dir, esc+"@"+agent+".json"), nil
}

// agentKey loads the signing key from the connection settings without
// needing endpoints, so that local verbs work offline.
func (d *datasetEnv) agentKey(cmd *cobra.Command) (ed25519.PrivateKey, error) {
	s, err := d.conn.resolve(cmd.Flags())
	if err != nil {
		return nil, err
	}
	if s.key.value == "" {
		return nil, fmt.Errorf("no client key: the agent's key signs its changes; set --key, %s or key_file in a --client-config file", envKey)
	}
	k, err := identity.LoadKeyFile(s.key.value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.key.source, err)
	}
	return k, nil
}

// openReplica opens the local replica of name, or, when there is none,
// fetches the dataset from the cluster (connecting with connect) and
// returns a new replica. created reports the latter.
func (d *datasetEnv) openReplica(cmd *cobra.Command, name string, key ed25519.PrivateKey, connect func() (*client.Client, error)) (r *client.Replica, path string, created bool, err error) {
	path, err = d.replicaPath(name, smr.FormatKey(key.Public().(ed25519.PublicKey)))
	if err != nil {
		return nil, "", false, err
	}
	r, err = client.OpenReplica(path, key)
	if err == nil {
		return r, path, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", false, err
	}
	cl, err := connect()
	if err != nil {
		return nil, "", false, fmt.Errorf("no local replica of dataset %q at %s, and fetching it from the cluster failed: %w", name, path, err)
	}
	ctx, cancel := d.conn.context(cmd)
	defer cancel()
	r, err = client.FetchReplica(ctx, cl, name, key)
	if err != nil {
		return nil, "", false, fmt.Errorf("no local replica of dataset %q at %s, and fetching it from the cluster failed: %w", name, path, err)
	}
	return r, path, true, nil
}

// parseValue turns the VALUE argument into bytes: text as given, or hex
// with --hex.
func parseValue(s string, isHex bool) ([]byte, error) {
	if !isHex {
		return []byte(s), nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("VALUE: not hex (--hex): %w", err)
	}
	return b, nil
}

// setOutput is what `dataset set` prints.
type setOutput struct {
	Dataset   string               `json:"dataset"`
	Replica   string               `json:"replica"`
	Change    smr.DatasetChange    `json:"change"`
	Pending   int                  `json:"pending"`
	Budget    client.ReplicaBudget `json:"budget"`
	NewLocal  bool                 `json:"new_replica"`
	Synced    bool                 `json:"synced"`
	SyncIndex uint64               `json:"sync_index,omitempty"`
}

func (d *datasetEnv) newSetCmd() *cobra.Command {
	var g uint64
	var isHex bool
	cmd := &cobra.Command{
		Use:   "set NAME CELL VALUE [--global-seq G]",
		Short: "Record a change of a cell in the local replica (offline; push it with sync)",
		Long: `Record, in the local replica, the agent's signed change of CELL to VALUE.
VALUE is text (or hex with --hex) of at most the cell size; shorter values
are padded with zero bytes. --global-seq defaults to one above the cell's
global seq in the local view; a higher one costs more local seqs. Nothing
is sent: run "tandem dataset sync NAME". Without a local replica yet, the
dataset is fetched from the cluster first.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := d.g.format()
			if err != nil {
				return err
			}
			cell, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("CELL: %q is not a cell index", args[1])
			}
			value, err := parseValue(args[2], isHex)
			if err != nil {
				return err
			}
			key, err := d.agentKey(cmd)
			if err != nil {
				return err
			}
			var cl *client.Client
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			connect := func() (*client.Client, error) {
				var err error
				cl, err = d.conn.connect(cmd, true)
				return cl, err
			}
			r, path, created, err := d.openReplica(cmd, args[0], key, connect)
			if err != nil {
				return err
			}
			ch, err := r.SetAt(cell, value, g)
			if err != nil {
				return err
			}
			if err := r.Save(path); err != nil {
				return err
			}
			out := setOutput{Dataset: args[0], Replica: path, Change: ch, Pending: len(r.Pending()), Budget: r.Budget(), NewLocal: created}
			if format == outputJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeFields(cmd.OutOrStdout(),
				[2]string{"Dataset", out.Dataset},
				[2]string{"Cell", fmt.Sprint(ch.Cell)},
				[2]string{"Global seq", fmt.Sprint(ch.GlobalSeq)},
				[2]string{"Local seq", fmt.Sprint(ch.LocalSeq)},
				[2]string{"Value", renderValue(ch.Value)},
				[2]string{"Pending", fmt.Sprintf("%d change(s); run `tandem dataset sync %s`", out.Pending, args[0])},
				[2]string{"Signed local seqs", fmt.Sprintf("%d of %d (reserved %d, spent %d)", out.Budget.SignedMax, out.Budget.Cap, out.Budget.Reserved, out.Budget.RemoteSpent)},
				[2]string{"Replica", path},
			)
		},
	}
	cmd.Flags().Uint64Var(&g, "global-seq", 0, "global seq of the change (default: one above the cell's in the local view)")
	cmd.Flags().BoolVar(&isHex, "hex", false, "VALUE is hex")
	return cmd
}

// syncOutput is what `dataset sync` prints.
type syncOutput struct {
	Dataset            string            `json:"dataset"`
	Index              uint64            `json:"index"`
	Version            uint64            `json:"version"`
	Syncs              int               `json:"syncs"`
	Accepted           int               `json:"accepted"`
	Lost               int               `json:"lost"`
	Rejected           int               `json:"rejected"`
	Changes            []changeOutput    `json:"changes"`
	StatementsRejected []statementOutput `json:"statements_rejected"`
	Replica            string            `json:"replica"`
}

type statementOutput struct {
	Agent       string           `json:"agent"`
	MaxLocalSeq uint64           `json:"max_local_seq"`
	Reason      smr.SyncRejected `json:"reason"`
	Message     string           `json:"message,omitempty"`
}

type changeOutput struct {
	Agent     string           `json:"agent"`
	Own       bool             `json:"own"`
	LocalSeq  uint64           `json:"local_seq"`
	Cell      uint32           `json:"cell"`
	GlobalSeq uint64           `json:"global_seq"`
	Verdict   client.Verdict   `json:"verdict"`
	Reason    smr.SyncRejected `json:"reason,omitempty"`
	Message   string           `json:"message,omitempty"`
}

func (d *datasetEnv) newSyncCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sync NAME",
		Short: "Push the local replica's pending changes through consensus and pull the merged state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := d.g.format()
			if err != nil {
				return err
			}
			cl, err := d.conn.connect(cmd, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			key, err := d.agentKey(cmd)
			if err != nil {
				return err
			}
			r, path, _, err := d.openReplica(cmd, args[0], key, func() (*client.Client, error) { return cl, nil })
			if err != nil {
				return err
			}
			ctx, cancel := d.conn.context(cmd)
			defer cancel()
			rep, syncErr := r.Sync(ctx, cl)
			// Save what was settled even when a later sync failed.
			if err := r.Save(path); err != nil {
				return errors.Join(syncErr, err)
			}
			if syncErr != nil {
				if client.IsOutcomeUnknown(syncErr) {
					return &syncOutcomeUnknownError{name: args[0], err: syncErr}
				}
				return syncErr
			}
			out := syncOutput{Dataset: args[0], Index: rep.Index, Version: rep.Version, Syncs: rep.Syncs,
				Accepted: rep.Accepted(), Lost: rep.Lost(), Rejected: rep.Rejected(),
				Changes: []changeOutput{}, StatementsRejected: []statementOutput{}, Replica: path}
			for _, s := range rep.StatementsRejected {
				out.StatementsRejected = append(out.StatementsRejected, statementOutput{Agent: smr.FormatKey(s.Statement.Agent),
					MaxLocalSeq: s.Statement.MaxLocalSeq, Reason: s.Reason, Message: s.Message})
			}
			for _, c := range rep.Changes {
				out.Changes = append(out.Changes, changeOutput{Agent: smr.FormatKey(c.Change.Agent), Own: c.Own, LocalSeq: c.Change.LocalSeq,
					Cell: c.Change.Cell, GlobalSeq: c.Change.GlobalSeq, Verdict: c.Verdict, Reason: c.Reason, Message: c.Message})
			}
			if format == outputJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			w := cmd.OutOrStdout()
			if err := writeFields(w,
				[2]string{"Dataset", out.Dataset},
				[2]string{"Pulled at index", fmt.Sprint(out.Index)},
				[2]string{"Version", fmt.Sprint(out.Version)},
				[2]string{"Sent", fmt.Sprintf("%d change(s) in %d sync(s): %d accepted, %d lost, %d rejected", len(out.Changes), out.Syncs, out.Accepted, out.Lost, out.Rejected)},
			); err != nil {
				return err
			}
			if len(out.Changes) == 0 && len(out.StatementsRejected) == 0 {
				return nil
			}
			t := table{header: []string{"AGENT", "LOCAL_SEQ", "CELL", "GLOBAL_SEQ", "VERDICT", "REASON"}}
			for _, c := range out.Changes {
				t.rows = append(t.rows, []string{shortKey(c.Agent, c.Own), fmt.Sprint(c.LocalSeq), fmt.Sprint(c.Cell), fmt.Sprint(c.GlobalSeq), string(c.Verdict), reasonText(c.Reason, c.Message)})
			}
			for _, s := range out.StatementsRejected {
				t.rows = append(t.rows, []string{shortKey(s.Agent, false), "max " + fmt.Sprint(s.MaxLocalSeq), "-", "-", "statement rejected", reasonText(s.Reason, s.Message)})
			}
			fmt.Fprintln(w)
			return writeTable(w, t.header, t.rows)
		},
	}
}

// syncOutcomeUnknownError explains a sync whose outcome is unknown. Unlike
// other writes it is resolved by syncing again, not by repeating a seq:
// the changes it sent stay pending in the local replica, and the next
// sync settles those the lost one merged (the cluster answers replayed)
// and merges the others. It wraps the SDK error, so exitCode sees it.
type syncOutcomeUnknownError struct {
	name string
	err  error
}

func (e *syncOutcomeUnknownError) Error() string {
	return fmt.Sprintf("outcome unknown: a sync of dataset %q may or may not have been applied.\n"+
		"Its changes stay pending in the local replica. Syncing again is safe: run `tandem dataset sync %s`; "+
		"changes the lost sync merged come back as replayed and are settled, the others are merged then.\n"+
		"cause: %v", e.name, e.name, e.err)
}

func (e *syncOutcomeUnknownError) Unwrap() error { return e.err }

// reasonText renders a rejection: its message, else its reason code.
func reasonText(reason smr.SyncRejected, msg string) string {
	if msg != "" {
		return msg
	}
	return orDash(string(reason))
}

// shortKey abbreviates an agent key for tables.
func shortKey(k string, own bool) string {
	if len(k) > 10 {
		k = k[:10] + "…"
	}
	if own {
		k += " (you)"
	}
	return k
}

// getCell is one cell as `dataset get` prints it.
type getCell struct {
	Cell      int    `json:"cell"`
	GlobalSeq uint64 `json:"global_seq"`
	Value     []byte `json:"value"`
	Pending   bool   `json:"pending,omitempty"` // the local view differs from the pulled state
}

// localGetOutput is what `dataset get` (local) prints as JSON.
type localGetOutput struct {
	Dataset     smr.DatasetInfo      `json:"dataset"`
	Agent       string               `json:"agent"`
	PulledIndex uint64               `json:"pulled_index"`
	Budget      client.ReplicaBudget `json:"budget"`
	Pending     []smr.DatasetChange  `json:"pending"`
	Cells       []getCell            `json:"cells"`
	Replica     string               `json:"replica"`
}

func (d *datasetEnv) newGetCmd() *cobra.Command {
	var remote, all, stale, fast bool
	cmd := &cobra.Command{
		Use:   "get NAME [--remote]",
		Short: "Show the local replica of a dataset (or, with --remote, the cluster's state)",
		Long: `Show a dataset's cells. Without --remote: the local replica's view (the
state last pulled merged with pending changes), offline. With --remote: a
linearizable read of the cluster, with the agents' budgets (with a
committee in the client config, accepted on f+1 matching signed answers
of the members). Only cells that are not fresh (global seq 0, zero bytes)
are listed unless --all is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := d.g.format()
			if err != nil {
				return err
			}
			if remote {
				var opts []client.ReadOption
				if stale {
					opts = append(opts, client.Stale())
				}
				if fast {
					opts = append(opts, client.FastRead())
				}
				return d.getRemote(cmd, args[0], format, all, opts)
			}
			if stale || fast {
				return errors.New("--stale and --fast choose how the cluster is read: use them with --remote (the local replica is read offline)")
			}
			key, err := d.agentKey(cmd)
			if err != nil {
				return err
			}
			path, err := d.replicaPath(args[0], smr.FormatKey(key.Public().(ed25519.PublicKey)))
			if err != nil {
				return err
			}
			r, err := client.OpenReplica(path, key)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no local replica of dataset %q for this key at %s: run `tandem dataset sync %s` first, or use --remote", args[0], path, args[0])
			}
			if err != nil {
				return err
			}
			pulled, idx := r.Remote()
			out := localGetOutput{Dataset: r.Dataset(), Agent: r.Agent(), PulledIndex: idx, Budget: r.Budget(), Pending: r.Pending(), Replica: path}
			for i, c := range r.Cells() {
				pending := smr.CompareCells(c, pulled[i]) != 0
				if all || pending || !freshCell(c) {
					out.Cells = append(out.Cells, getCell{Cell: i, GlobalSeq: c.GlobalSeq, Value: c.Value, Pending: pending})
				}
			}
			if format == outputJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			w := cmd.OutOrStdout()
			info := out.Dataset
			if err := writeFields(w,
				[2]string{"Dataset", fmt.Sprintf("%s (created at index %d)", info.Name, info.Created)},
				[2]string{"Shape", fmt.Sprintf("%d cells of %d bytes", info.Cells, info.CellSize)},
				[2]string{"Agent", out.Agent},
				[2]string{"Pulled at index", fmt.Sprint(out.PulledIndex)},
				[2]string{"Pending", fmt.Sprintf("%d change(s)", len(out.Pending))},
				[2]string{"Signed local seqs", fmt.Sprintf("%d of %d (reserved %d, spent %d)", out.Budget.SignedMax, out.Budget.Cap, out.Budget.Reserved, out.Budget.RemoteSpent)},
			); err != nil {
				return err
			}
			t := table{header: []string{"CELL", "GLOBAL_SEQ", "VALUE", "PENDING"}}
			for _, c := range out.Cells {
				p := "-"
				if c.Pending {
					p = "yes"
				}
				t.rows = append(t.rows, []string{fmt.Sprint(c.Cell), fmt.Sprint(c.GlobalSeq), renderValue(c.Value), p})
			}
			fmt.Fprintln(w)
			return writeTable(w, t.header, t.rows)
		},
	}
	cmd.Flags().BoolVar(&remote, "remote", false, "read the cluster's state instead of the local replica")
	cmd.Flags().BoolVar(&all, "all", false, "list every cell, fresh ones too")
	cmd.Flags().BoolVar(&stale, "stale", false, "with --remote: answer from the receiving node's local state without confirming with the leader (bft clusters: f+1 matching signed answers from the members' local state)")
	cmd.Flags().BoolVar(&fast, "fast", false, "with --remote, bft clusters: accept n-f matching signed answers from the members' local state at one index, else read through consensus (without a committee: like --stale)")
	return cmd
}

func (d *datasetEnv) getRemote(cmd *cobra.Command, name, format string, all bool, opts []client.ReadOption) error {
	cl, err := d.conn.connect(cmd, false)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := d.conn.context(cmd)
	defer cancel()
	raw, _, err := cl.Query(ctx, smr.Query{Kind: smr.QueryDataset, Key: name}, opts...)
	if err != nil {
		return err
	}
	if format == outputJSON {
		return writeRawJSON(cmd.OutOrStdout(), raw)
	}
	info, err := decodeOneOrMany[smr.DatasetInfo](raw)
	if err != nil || len(info) != 1 {
		return fmt.Errorf("query dataset: the cluster returned an unexpected value: %v", err)
	}
	return renderRemoteDataset(cmd, info[0], all)
}

func renderRemoteDataset(cmd *cobra.Command, info smr.DatasetInfo, all bool) error {
	w := cmd.OutOrStdout()
	step := "none"
	if info.StepLimit > 0 {
		step = fmt.Sprint(info.StepLimit)
	}
	if err := writeFields(w,
		[2]string{"Dataset", fmt.Sprintf("%s (created at index %d)", info.Name, info.Created)},
		[2]string{"Shape", fmt.Sprintf("%d cells of %d bytes", info.Cells, info.CellSize)},
		[2]string{"Step limit", step},
		[2]string{"Max agent seqs", fmt.Sprint(info.MaxAgentSeqs)},
		[2]string{"Version", fmt.Sprint(info.Version)},
		[2]string{"Admins", orDash(strings.Join(info.Admins, ","))},
	); err != nil {
		return err
	}
	at := table{header: []string{"AGENT", "INVITED", "SIGNED_MAX", "SPENT", "AVAILABLE", "LAST_SEQ"}}
	for _, a := range info.Agents {
		at.rows = append(at.rows, []string{a.Agent, fmt.Sprint(a.Invited), fmt.Sprint(a.SignedMax), fmt.Sprint(a.Spent), fmt.Sprint(a.Available), fmt.Sprint(a.LastSeq)})
	}
	fmt.Fprintln(w)
	if err := writeTable(w, at.header, at.rows); err != nil {
		return err
	}
	ct := table{header: []string{"CELL", "GLOBAL_SEQ", "VALUE"}}
	listed := map[int]smr.CellInfo{}
	for _, c := range info.Values {
		listed[c.Cell] = c
	}
	zero := make([]byte, info.CellSize)
	for i := range info.Cells {
		c, ok := listed[i]
		if !ok {
			if !all {
				continue
			}
			c = smr.CellInfo{Cell: i, Value: zero}
		}
		ct.rows = append(ct.rows, []string{fmt.Sprint(c.Cell), fmt.Sprint(c.GlobalSeq), renderValue(c.Value)})
	}
	fmt.Fprintln(w)
	return writeTable(w, ct.header, ct.rows)
}

func renderDatasets(raw json.RawMessage) (table, error) {
	ds, err := decodeOneOrMany[smr.DatasetInfo](raw)
	if err != nil {
		return table{}, err
	}
	t := table{header: []string{"DATASET", "CREATED", "CELLS", "CELL_SIZE", "STEP_LIMIT", "MAX_AGENT_SEQS", "AGENTS", "VERSION"}}
	for _, d := range ds {
		t.rows = append(t.rows, []string{d.Name, fmt.Sprint(d.Created), fmt.Sprint(d.Cells), fmt.Sprint(d.CellSize),
			fmt.Sprint(d.StepLimit), fmt.Sprint(d.MaxAgentSeqs), fmt.Sprint(d.AgentCount), fmt.Sprint(d.Version)})
	}
	return t, nil
}

func freshCell(c smr.Cell) bool {
	if c.GlobalSeq != 0 {
		return false
	}
	for _, b := range c.Value {
		if b != 0 {
			return false
		}
	}
	return true
}

// renderValue shows a cell value as quoted text when, without its zero
// padding, it is printable UTF-8, and as hex otherwise.
func renderValue(v []byte) string {
	trimmed := strings.TrimRight(string(v), "\x00")
	if utf8.ValidString(trimmed) && !strings.ContainsFunc(trimmed, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0 }) {
		return strconv.Quote(trimmed)
	}
	return "0x" + hex.EncodeToString(v)
}
