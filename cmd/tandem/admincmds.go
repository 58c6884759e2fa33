package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
)

func newAdminCmd(g *globalOptions) *cobra.Command {
	e := newClientEnv(g)
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Inspect and operate the cluster: status, members, leadership, snapshots",
		Long: `Inspect and operate the cluster. status and members need no key; the other
verbs are signed with --key and need the admin permission.`,
		Args: cobra.NoArgs,
	}
	e.conn.bind(cmd.PersistentFlags())
	snap := &cobra.Command{Use: "snapshot", Short: "Save or restore a snapshot of the state machine", Args: cobra.NoArgs}
	snap.AddCommand(newSnapshotSaveCmd(e), newSnapshotRestoreCmd(e))
	cmd.AddCommand(
		newAdminStatusCmd(e),
		newAdminMembersCmd(e),
		newTransferLeaderCmd(e),
		newForceViewChangeCmd(e),
		snap,
		newAddMemberCmd(e),
		newRemoveMemberCmd(e),
	)
	cmd.AddCommand(newDetectorCmds(e)...)
	cmd.AddCommand(newModeCmd(e))
	return cmd
}

// statusRow is one entry of `admin status -o json`.
type statusRow struct {
	Endpoint string             `json:"endpoint"`
	Status   *client.NodeStatus `json:"status,omitempty"`
	Error    string             `json:"error,omitempty"`
}

func newAdminStatusCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the status of every endpoint, one row per node",
		Long: `Ask every endpoint for its status: role, term, leader, commit and applied
index and the state hash at the applied index (equal hashes at equal applied
indexes mean equal state). In bft mode the columns are the view, the current
view's leader, the view of the highest QC and the committed block height. A node that does not answer gets a row with the
error, and the command then exits non-zero.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := e.g.format()
			if err != nil {
				return err
			}
			cl, err := e.conn.connect(cmd, false)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			all := cl.StatusAll(ctx)
			bft := false
			for _, s := range all {
				bft = bft || (s.Err == nil && s.Status.Mode == "bft")
			}
			failed := 0
			out := make([]statusRow, len(all))
			rows := make([][]string, len(all))
			for i, s := range all {
				out[i] = statusRow{Endpoint: s.Endpoint, Status: s.Status}
				if s.Err != nil {
					failed++
					out[i].Error = rootCause(s.Err).Error()
					rows[i] = []string{s.Endpoint, "unreachable", "-", "-", "-", "-", "error: " + out[i].Error}
					if bft {
						rows[i] = []string{s.Endpoint, "unreachable", "-", "-", "-", "-", "-", "-", "error: " + out[i].Error}
					}
					continue
				}
				st := s.Status
				if bft {
					rows[i] = []string{orDash(st.NodeID), orDash(st.Role), fmt.Sprint(st.View), orDash(st.LeaderID), fmt.Sprint(st.HighQCView),
						fmt.Sprint(st.CommittedHeight), fmt.Sprint(st.CommitIndex), fmt.Sprint(st.AppliedIndex), shortHash(st.StateHash)}
					continue
				}
				rows[i] = []string{orDash(st.NodeID), orDash(st.Role), fmt.Sprint(st.Term), orDash(st.LeaderID),
					fmt.Sprint(st.CommitIndex), fmt.Sprint(st.AppliedIndex), shortHash(st.StateHash)}
			}
			switch {
			case format == outputJSON:
				err = writeJSON(cmd.OutOrStdout(), out)
			case bft:
				err = writeTable(cmd.OutOrStdout(), []string{"NODE", "ROLE", "VIEW", "LEADER", "HIGH_QC", "HEIGHT", "COMMIT", "APPLIED", "HASH"}, rows)
			default:
				err = writeTable(cmd.OutOrStdout(), []string{"NODE", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "HASH"}, rows)
			}
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d endpoints did not report their status", failed, len(all))
			}
			return nil
		},
	}
}

// rootCause drops the retry summary of a one-node request: the status
// table has one row per node, so the last attempt's error says it all.
func rootCause(err error) error {
	var re *client.RetryError
	if errors.As(err, &re) && re.Last != nil {
		return re.Last
	}
	return err
}

// shortHash abbreviates a hex state hash for the table.
func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return orDash(h)
}

func newAdminMembersCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the members of the consensus configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := e.g.format()
			if err != nil {
				return err
			}
			cl, err := e.conn.connect(cmd, false)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			ms, err := cl.Members(ctx)
			if err != nil {
				return err
			}
			if format == outputJSON {
				if ms == nil {
					ms = []client.Member{}
				}
				return writeJSON(cmd.OutOrStdout(), ms)
			}
			rows := make([][]string, len(ms))
			for i, m := range ms {
				rows[i] = []string{m.ID, m.Address, fmt.Sprint(m.Voter), fmt.Sprint(m.Leader)}
			}
			return writeTable(cmd.OutOrStdout(), []string{"ID", "ADDRESS", "VOTER", "LEADER"}, rows)
		},
	}
}

// adminVerb builds a signed admin verb: run does the request and returns
// the message printed on success (and the JSON object printed with -o json).
func adminVerb(e *clientEnv, cmd *cobra.Command, what func(args []string) string, run func(cmd *cobra.Command, cl *client.Client, args []string) (string, any, error)) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		format, err := e.g.format()
		if err != nil {
			return err
		}
		cl, err := e.conn.connect(cmd, true)
		if err != nil {
			return err
		}
		defer cl.Close()
		msg, obj, err := run(cmd, cl, args)
		if err != nil {
			return explain(what(args), err)
		}
		if format == outputJSON {
			return writeJSON(cmd.OutOrStdout(), obj)
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
		return err
	}
	return cmd
}

func newTransferLeaderCmd(e *clientEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Move leadership to node ID, or to any suitable node",
		Args:  cobra.MaximumNArgs(1),
	}
	return adminVerb(e, cmd, func([]string) string { return "leadership transfer" },
		func(cmd *cobra.Command, cl *client.Client, args []string) (string, any, error) {
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			if err := cl.TransferLeader(ctx, id); err != nil {
				return "", nil, err
			}
			msg := "leadership transferred"
			if id != "" {
				msg += " to " + id
			}
			return msg, map[string]any{"transferred": true, "id": id}, nil
		})
}

func newAddMemberCmd(e *clientEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add-member ID ADDR",
		Short: "Add node ID, reachable by its peers at ADDR (its peer address), as a voter",
		Args:  cobra.ExactArgs(2),
	}
	return adminVerb(e, cmd, func(a []string) string { return "add member " + a[0] },
		func(cmd *cobra.Command, cl *client.Client, args []string) (string, any, error) {
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			if err := cl.AddMember(ctx, args[0], args[1]); err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("member %s (%s) added", args[0], args[1]), map[string]any{"added": args[0], "address": args[1]}, nil
		})
}

func newRemoveMemberCmd(e *clientEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove-member ID",
		Short: "Remove node ID from the consensus configuration",
		Args:  cobra.ExactArgs(1),
	}
	return adminVerb(e, cmd, func(a []string) string { return "remove member " + a[0] },
		func(cmd *cobra.Command, cl *client.Client, args []string) (string, any, error) {
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			if err := cl.RemoveMember(ctx, args[0]); err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("member %s removed", args[0]), map[string]any{"removed": args[0]}, nil
		})
}

// snapshotSaveOptions are the flags of `admin snapshot save`.
type snapshotSaveOptions struct {
	force bool
}

func newSnapshotSaveCmd(e *clientEnv) *cobra.Command {
	o := &snapshotSaveOptions{}
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Download a snapshot of the state machine into FILE",
		Long: `Download a snapshot of the state machine into FILE (mode 0600: it holds the
ACL). The file appears only once the download is complete; an existing FILE
is kept unless --force is given.`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVar(&o.force, "force", false, "replace FILE if it exists")
	return adminVerb(e, cmd, func([]string) string { return "snapshot save" },
		func(cmd *cobra.Command, cl *client.Client, args []string) (string, any, error) {
			path := args[0]
			if !o.force {
				if _, err := os.Stat(path); err == nil {
					return "", nil, fmt.Errorf("snapshot save: %s exists; choose another file or pass --force", path)
				}
			}
			tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
			if err != nil {
				return "", nil, fmt.Errorf("snapshot save: %w", err)
			}
			defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			idx, err := cl.SnapshotSave(ctx, tmp)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(tmp.Name(), 0o600)
			}
			if err == nil {
				err = os.Rename(tmp.Name(), path)
			}
			if err != nil {
				return "", nil, fmt.Errorf("snapshot save to %s: %w", path, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("snapshot at index %d saved to %s (%d bytes)", idx, path, fi.Size()),
				map[string]any{"index": idx, "file": path, "bytes": fi.Size()}, nil
		})
}

func newSnapshotRestoreCmd(e *clientEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore the cluster's state machine to the snapshot in FILE",
		Long: `Upload the snapshot in FILE; the leader verifies its hash and applies it
through the log, replacing the state of every node. Writes made after the
snapshot was taken are lost.`,
		Args: cobra.ExactArgs(1),
	}
	return adminVerb(e, cmd, func([]string) string { return "snapshot restore" },
		func(cmd *cobra.Command, cl *client.Client, args []string) (string, any, error) {
			f, err := os.Open(args[0])
			if err != nil {
				return "", nil, fmt.Errorf("snapshot restore: %w", err)
			}
			defer f.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			if err := cl.SnapshotRestore(ctx, f); err != nil {
				if errors.Is(err, client.ErrNoKey) {
					return "", nil, err
				}
				return "", nil, fmt.Errorf("snapshot restore from %s: %w", args[0], err)
			}
			return fmt.Sprintf("snapshot %s restored", args[0]), map[string]any{"restored": args[0]}, nil
		})
}

// askEveryEndpoint sends a signed admin GET of path to every endpoint (each
// node answers for itself) and prints the answers: with -o json one object
// per endpoint, {"endpoint", key: answer} or {"endpoint", "error"}; else a
// table with header whose rows rows makes of each answer, and a row with
// the error for an endpoint that did not answer. It then fails, counting
// the endpoints that did not report what.
func askEveryEndpoint[T any](cmd *cobra.Command, e *clientEnv, path, key, what string, header []string, rows func(ep string, v *T) [][]string) error {
	format, err := e.g.format()
	if err != nil {
		return err
	}
	cl, err := e.conn.connect(cmd, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := e.conn.context(cmd)
	defer cancel()
	var out []map[string]any
	var table [][]string
	failed := 0
	for _, ep := range cl.Endpoints() {
		v := new(T)
		if err := cl.AdminJSON(ctx, ep, http.MethodGet, path, nil, v); err != nil {
			failed++
			out = append(out, map[string]any{"endpoint": ep, "error": err.Error()})
			row := []string{ep}
			for range len(header) - 2 {
				row = append(row, "-")
			}
			table = append(table, append(row, "error: "+err.Error()))
			continue
		}
		out = append(out, map[string]any{"endpoint": ep, key: v})
		table = append(table, rows(ep, v)...)
	}
	if format == outputJSON {
		err = writeJSON(cmd.OutOrStdout(), out)
	} else {
		err = writeTable(cmd.OutOrStdout(), header, table)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d endpoints did not report %s", failed, len(cl.Endpoints()), what)
	}
	return nil
}
