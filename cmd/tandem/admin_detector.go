package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
	"github.com/tandem-consensus/tandem/detector/gitexport"
	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// The detector's admin verbs: `tandem admin quarantine list|lift` and
// `tandem admin evidence list|show|export`. Every node keeps its own
// quarantine list and evidence, so list and lift go to every endpoint;
// the evidence verbs ask the first endpoint that answers (pick a node with
// --endpoints).

func newDetectorCmds(e *clientEnv) []*cobra.Command {
	q := &cobra.Command{Use: "quarantine", Short: "List quarantined members or lift a quarantine (bft mode)", Args: cobra.NoArgs}
	q.AddCommand(newQuarantineListCmd(e), newQuarantineLiftCmd(e))
	ev := &cobra.Command{Use: "evidence", Short: "List, show or export the evidence of misbehaviour a node has verified (bft mode)", Args: cobra.NoArgs}
	ev.AddCommand(newEvidenceListCmd(e), newEvidenceShowCmd(e), newEvidenceExportCmd(e))
	return []*cobra.Command{q, ev}
}

func newQuarantineListCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Show every node's quarantine list: one row per node and quarantined member",
		Long: `Ask every endpoint for its quarantine list. Each node decides for itself from
the evidence it has verified, so correct nodes list the same members. A node
that does not answer gets a row with the error, and the command then exits
non-zero. -o json adds the lift history and the evidence of each entry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return askEveryEndpoint(cmd, e, "/v1/admin/quarantine", "view", "their quarantine list",
				[]string{"NODE", "QUARANTINED", "SINCE", "EVIDENCE", "REASON"},
				func(_ string, v *api.QuarantineView) [][]string {
					if len(v.Quarantined) == 0 {
						return [][]string{{v.Node, "-", "-", "-", "(none)"}}
					}
					var rows [][]string
					for _, q := range v.Quarantined {
						rows = append(rows, []string{v.Node, q.Node, q.Since.Format(time.RFC3339), strconv.Itoa(len(q.Evidence)), q.Reason})
					}
					return rows
				})
		},
	}
}

func newQuarantineLiftCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "lift ID",
		Short: "Lift member ID's quarantine on every endpoint",
		Long: `Lift member ID's quarantine on every endpoint (each node keeps its own list,
so give every node's endpoint). The lift is recorded with the admin key that
signed it; the offences it covers are forgiven, so the same proofs, relayed
again, do not quarantine the member again, while a new offence does.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
			body, err := json.Marshal(api.LiftRequest{Node: args[0]})
			if err != nil {
				return err
			}
			type liftRow struct {
				Endpoint string         `json:"endpoint"`
				Lifted   *api.LiftEntry `json:"lifted,omitempty"`
				Error    string         `json:"error,omitempty"`
			}
			var out []liftRow
			var rows [][]string
			failed := 0
			for _, ep := range cl.Endpoints() {
				var l api.LiftEntry
				if err := cl.AdminJSON(ctx, ep, http.MethodPost, "/v1/admin/quarantine/lift", body, &l); err != nil {
					var se *client.APIError
					if errors.As(err, &se) && se.Code == smr.CodeNotFound {
						out = append(out, liftRow{Endpoint: ep, Error: se.Message})
						rows = append(rows, []string{ep, "not quarantined there"})
						continue
					}
					failed++
					out = append(out, liftRow{Endpoint: ep, Error: err.Error()})
					rows = append(rows, []string{ep, "error: " + err.Error()})
					continue
				}
				out = append(out, liftRow{Endpoint: ep, Lifted: &l})
				rows = append(rows, []string{ep, "lifted by " + l.Operator})
			}
			if format == outputJSON {
				err = writeJSON(cmd.OutOrStdout(), out)
			} else {
				err = writeTable(cmd.OutOrStdout(), []string{"ENDPOINT", "RESULT"}, rows)
			}
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("lift of %s failed on %d of %d endpoints", args[0], failed, len(cl.Endpoints()))
			}
			return nil
		},
	}
}

func newEvidenceListCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the evidence records a node has verified",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			var v api.EvidenceListView
			if err := cl.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/evidence", nil, &v); err != nil {
				return explain("evidence list", err)
			}
			if format == outputJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			rows := make([][]string, 0, len(v.Evidence))
			for _, s := range v.Evidence {
				rows = append(rows, []string{shortHash(s.ID), s.Kind, s.Offender, strconv.FormatUint(s.Epoch, 10), strconv.FormatBool(s.Verified), s.Summary})
			}
			return writeTable(cmd.OutOrStdout(), []string{"ID", "KIND", "OFFENDER", "EPOCH", "VERIFIED", "SUMMARY"}, rows)
		},
	}
}

func newEvidenceShowCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Print one evidence record in its JSON form (which carries its canonical encoding)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := strings.ToLower(strings.TrimSpace(args[0]))
			if len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
				return fmt.Errorf("evidence id %q: want the 64 hex digits `tandem admin evidence list -o json` prints", args[0])
			}
			cl, err := e.conn.connect(cmd, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			var v json.RawMessage
			if err := cl.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/evidence/"+url.PathEscape(id), nil, &v); err != nil {
				return explain("evidence show", err)
			}
			return writeRawJSON(cmd.OutOrStdout(), v)
		},
	}
}

func newEvidenceExportCmd(e *clientEnv) *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "export --format json|git [--out PATH]",
		Short: "Export a node's evidence as JSON or as a Git repository",
		Long: `Export every evidence record a node holds.

--format json writes {"node", "evidence": [...]} (each record in its JSON form,
which carries its canonical encoding) to --out, or to standard output.

--format git writes a bare Git repository into the directory --out (which must
not exist or be empty): the node's 2P-BFT-Log of attestations, one signed
message per record, in DESIGN's Git form (branches <author>/last and frontier).
Audit it with plain git, e.g. git --git-dir DIR log --format='%an %s' frontier.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch format {
			case "json":
			case "git":
				if out == "" {
					return errors.New("--format git needs --out DIR (a directory that does not exist or is empty)")
				}
			default:
				return fmt.Errorf("--format %q: want json or git", format)
			}
			cl, err := e.conn.connect(cmd, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			uri := "/v1/admin/evidence/export?format=" + format
			if format == "json" {
				var v json.RawMessage
				if err := cl.AdminJSON(ctx, "", http.MethodGet, uri, nil, &v); err != nil {
					return explain("evidence export", err)
				}
				if out == "" {
					return writeRawJSON(cmd.OutOrStdout(), v)
				}
				var buf bytes.Buffer
				if err := writeRawJSON(&buf, v); err != nil {
					return err
				}
				return os.WriteFile(out, buf.Bytes(), 0o600)
			}
			var g api.GitExport
			if err := cl.AdminJSON(ctx, "", http.MethodGet, uri, nil, &g); err != nil {
				return explain("evidence export", err)
			}
			repo := &gitexport.Repo{Objects: g.Objects, Refs: g.Refs, Head: g.Head}
			if err := repo.Write(out); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %d objects and %d refs to %s\n", len(g.Objects), len(g.Refs), out)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "json", "json or git")
	cmd.Flags().StringVar(&out, "out", "", "file (json) or directory (git) to write; json defaults to standard output")
	return cmd
}
