package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// approveCmd lets a held change that restarts brokers roll
// (spec.updatePolicy.approval: manual).
func (c *cli) approveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "approve NAME",
		Short: "Let a cluster's held broker restarts roll (updatePolicy.approval: manual; mqttctl diff shows them first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			gen, err := cl.Approve(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "mqttcluster/%s generation %d approved: its brokers roll one at a time\n", args[0], gen)
			return nil
		},
	}
}
