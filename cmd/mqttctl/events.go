package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// eventsCmd lists the operator's recent actions on a cluster, oldest
// first, as kubectl get events does.
func (c *cli) eventsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "events NAME [-o yaml|json]",
		Short: "The operator's recent actions on a cluster (created, updated, certificate issued, hub moved, ...), oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "", "yaml", "json":
			default:
				return fmt.Errorf("-o %q: use yaml or json (or nothing for a table)", output)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			list, err := cl.Events(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output != "" {
				return c.print(output, list)
			}
			if len(list.Items) == 0 {
				fmt.Fprintf(c.errOut, "no events for mqttcluster/%s\n", args[0])
				return nil
			}
			tw := tabwriter.NewWriter(c.out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tCOUNT\tMESSAGE")
			for _, e := range list.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", humanDuration(c.now().Sub(e.LastTime.Time)), e.Type, e.Reason, e.Count, e.Message)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml or json")
	return cmd
}
