package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// certificateCmd groups certificate actions; renew asks for a new server
// certificate now (Strimzi uses an annotation for this; here it is a verb).
func (c *cli) certificateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Certificate actions on a cluster",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "renew NAME",
		Short: "Issue a new server certificate for a cluster now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.RenewCertificate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "mqttcluster/%s certificate renewal requested at %s\n", res.Name, res.RequestedAt)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rotate-ca NAME",
		Short: "Start a CA rotation: the new CA joins the CA bundle now and signs after spec.tls.caOverlap",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			res, err := cl.RotateCA(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "mqttcluster/%s CA rotation requested at %s\n", res.Name, res.RequestedAt)
			return nil
		},
	})
	return cmd
}
