package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tandem-consensus/tandem/client"
)

func newForceViewChangeCmd(e *clientEnv) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "force-view-change",
		Short: "Change the leader now: a view change in bft mode, a leadership transfer in cft mode",
		Long: `Change the leader now, e.g. when the current one is slow or before maintenance.

In bft mode this forces a view change: the request goes to every endpoint, a
replica leaves its view once f+1 members asked, and the next view's leader
follows the rotation (--to, if given, must name that node). In cft mode the
leader hands leadership to --to, or to the most up-to-date follower.
The command ends once the change happened, and prints the new leader.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&to, "to", "", "node ID of the new leader (cft: any voter; bft: must be the next view's leader)")
	return adminVerb(e, cmd, func([]string) string { return "force view change" },
		func(cmd *cobra.Command, cl *client.Client, _ []string) (string, any, error) {
			ctx, cancel := e.conn.context(cmd)
			defer cancel()
			if err := cl.TransferLeader(ctx, to); err != nil {
				return "", nil, err
			}
			obj := map[string]any{"changed": true}
			leader := to
			for _, st := range cl.StatusAll(ctx) {
				if leader != "" {
					obj["leader"] = leader
					break
				}
				if st.Status != nil && st.Status.LeaderID != "" {
					leader = st.Status.LeaderID
					obj["mode"], obj["leader"], obj["term"] = st.Status.Mode, leader, st.Status.Term
					break
				}
			}
			msg := "leader changed"
			if leader != "" {
				msg = fmt.Sprintf("leader changed: %s leads now", leader)
			}
			return msg, obj, nil
		})
}
