package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/internal/api"
	"github.com/tandem-consensus/tandem/smr"
)

// `tandem admin mode show|set`: the consensus mode of a consensus_mode auto
// cluster (docs/operations.md, "Consensus modes and epochs").

func newModeCmd(e *clientEnv) *cobra.Command {
	m := &cobra.Command{Use: "mode", Short: "Show or switch the consensus mode of an auto-mode cluster (cft: Raft, bft: HotStuff)", Args: cobra.NoArgs}
	m.AddCommand(newModeShowCmd(e), newModeSetCmd(e))
	return m
}

func newModeShowCmd(e *clientEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show each node's epoch and mode",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return askEveryEndpoint(cmd, e, "/v1/admin/mode", "epoch", "their epoch",
				[]string{"ENDPOINT", "EPOCH", "MODE", "MEMBERS", "SINCE", "REASON"},
				func(ep string, st *api.EpochStatus) [][]string {
					state := st.Mode
					if st.Switching {
						state += " (switching)"
					}
					return [][]string{{ep, strconv.FormatUint(st.Epoch, 10), state, strings.Join(st.Members, ","), st.Since.Format(time.RFC3339), st.Reason}}
				})
		},
	}
}

func newModeSetCmd(e *clientEnv) *cobra.Command {
	var reason string
	var wait bool
	cmd := &cobra.Command{
		Use:   "set cft|bft",
		Short: "Switch the cluster to Raft (cft) or HotStuff (bft) at a new epoch",
		Long: `Ask the cluster to end its epoch and start the next one in the given mode.
The request is signed with the admin key and ordered through the current
engine, so every node checks the signature and the admin permission at the
same log index; then every node signs the state it ended with, and the next
epoch starts from the state that a quorum signed. With --wait (the default)
the command returns once every endpoint runs the new epoch.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode := args[0]
			if mode != smr.ModeCFT && mode != smr.ModeBFT {
				return fmt.Errorf("mode %q: want cft or bft", mode)
			}
			cl, err := e.conn.connect(cmd, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			var cur api.EpochStatus
			if err := cl.AdminJSON(ctx, "", http.MethodGet, "/v1/admin/mode", nil, &cur); err != nil {
				return fmt.Errorf("current epoch: %w", err)
			}
			if cur.Mode == mode && !cur.Switching {
				return fmt.Errorf("epoch %d already runs %s", cur.Epoch, mode)
			}
			body, err := json.Marshal(smr.SwitchRequest{Mode: mode, Epoch: cur.Epoch + 1, Reason: reason})
			if err != nil {
				return err
			}
			var res api.SubmitResponse
			if err := cl.AdminJSON(ctx, "", http.MethodPost, "/v1/admin/mode", body, &res); err != nil {
				return fmt.Errorf("switch to %s: %w", mode, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "epoch %d ended at index %d; epoch %d starts in %s\n", cur.Epoch, res.Result.Index, cur.Epoch+1, mode)
			if !wait {
				return nil
			}
			for {
				pending := 0
				for _, ep := range cl.Endpoints() {
					var st api.EpochStatus
					if err := cl.AdminJSON(ctx, ep, http.MethodGet, "/v1/admin/mode", nil, &st); err != nil || st.Epoch <= cur.Epoch || st.Switching {
						pending++
					}
				}
				if pending == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "every endpoint runs epoch %d in %s\n", cur.Epoch+1, mode)
					return nil
				}
				select {
				case <-ctx.Done():
					return errors.Join(fmt.Errorf("%d endpoints do not run epoch %d yet", pending, cur.Epoch+1), ctx.Err())
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the switch (at most 1 KiB)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until every endpoint runs the new epoch")
	return cmd
}
