package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// gitSyncCmd shows and triggers the operator's pull-based git sync
// (operator flags --git-repo, --git-branch, --git-path, --git-interval).
func (c *cli) gitSyncCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gitsync status | gitsync sync",
		Short: "The operator's git sync: its last commit, error and drift; or sync now",
	}
	var output string
	status := &cobra.Command{
		Use:   "status [-o yaml|json]",
		Short: "The repository, the commit applied, the last error, pruned and drifted clusters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			st, err := cl.GitSync(cmd.Context())
			if err != nil {
				return err
			}
			if output != "" {
				return c.print(output, st)
			}
			fmt.Fprintf(c.out, "Repository:   %s (branch %s", st.Repo, st.Branch)
			if st.Path != "" {
				fmt.Fprintf(c.out, ", path %s", st.Path)
			}
			fmt.Fprintln(c.out, ")")
			fmt.Fprintf(c.out, "Commit:       %s\n", or(st.Commit, "none applied yet"))
			if st.LastSuccess != nil {
				fmt.Fprintf(c.out, "Last success: %s ago\n", humanDuration(c.now().Sub(st.LastSuccess.Time)))
			}
			if st.LastError != "" {
				fmt.Fprintf(c.out, "Last error:   %s\n", st.LastError)
			}
			fmt.Fprintf(c.out, "Clusters:     %s\n", or(strings.Join(st.Applied, ", "), "none"))
			if len(st.Pruned) > 0 {
				fmt.Fprintf(c.out, "Pruned:       %s\n", strings.Join(st.Pruned, ", "))
			}
			if len(st.LastDrift) > 0 {
				fmt.Fprintf(c.out, "Drift:        %s changed by hand, put back %s ago\n", strings.Join(st.LastDrift, ", "), humanDuration(c.now().Sub(st.LastDriftTime.Time)))
			}
			return nil
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "", "yaml or json")
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Ask the leader's git sync to fetch and apply now (what the webhook does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if err := cl.GitSyncNow(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(c.out, "git sync requested")
			return nil
		},
	}
	cmd.AddCommand(status, sync)
	return cmd
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
