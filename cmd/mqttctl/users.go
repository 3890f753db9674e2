package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

// userRef reads user/NAME (or mqttuser/NAME).
func userRef(s string) (string, bool) {
	for _, p := range []string{"user/", "users/", "mqttuser/", "mqttusers/"} {
		if n, ok := strings.CutPrefix(s, p); ok {
			return n, true
		}
	}
	return "", false
}

func objectLabels(o api.Object) map[string]string {
	if o.User != nil {
		return o.User.Labels
	}
	return o.Cluster.Labels
}

// prune deletes the clusters and users matching selector that are not
// in the files.
func (c *cli) prune(cmd *cobra.Command, cl *client.Client, selector string, inFiles map[string]bool) error {
	var gone []string
	users, err := cl.ListUsers(cmd.Context(), selector)
	if err != nil {
		return err
	}
	for _, u := range users.Items {
		if !inFiles["mqttuser/"+u.Name] {
			gone = append(gone, "user/"+u.Name)
		}
	}
	list, err := cl.List(cmd.Context(), selector)
	if err != nil {
		return err
	}
	for _, o := range list.Items {
		if !inFiles["mqttcluster/"+o.Name] {
			gone = append(gone, o.Name)
		}
	}
	return c.each(len(gone), func(i int) (string, error) {
		if user, ok := userRef(gone[i]); ok {
			if err := cl.DeleteUser(cmd.Context(), user); err != nil {
				return "", fmt.Errorf("prune mqttuser/%s: %s", user, describeError(err))
			}
			return fmt.Sprintf("mqttuser/%s pruned", user), nil
		}
		if err := cl.Delete(cmd.Context(), gone[i]); err != nil {
			return "", fmt.Errorf("prune mqttcluster/%s: %s", gone[i], describeError(err))
		}
		return fmt.Sprintf("mqttcluster/%s pruned", gone[i]), nil
	})
}

// getUsers lists users (or shows one) as a table, yaml, json or names.
func (c *cli) getUsers(cmd *cobra.Command, args []string, output, selector string) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	if len(args) > 1 {
		return errors.New("get users takes at most one NAME")
	}
	if selector != "" {
		if _, err := labels.Parse(selector); err != nil {
			return fmt.Errorf("-l %q: %w", selector, err)
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var items []api.MqttUser
	if len(args) == 1 {
		u, err := cl.GetUser(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if output == "yaml" || output == "json" {
			return c.print(output, u)
		}
		items = []api.MqttUser{*u}
	} else {
		list, err := cl.ListUsers(cmd.Context(), selector)
		if err != nil {
			return err
		}
		if output == "yaml" || output == "json" {
			return c.print(output, list)
		}
		items = list.Items
	}
	if output == "name" {
		for _, u := range items {
			fmt.Fprintf(c.out, "mqttuser/%s\n", u.Name)
		}
		return nil
	}
	if len(items) == 0 {
		fmt.Fprintln(c.errOut, "No users found.")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 8, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tCLUSTER\tREADY\tRULES\tBROKERS\tAGE")
	for _, u := range items {
		ready := "Unknown"
		for _, cd := range u.Status.Conditions {
			if cd.Type == api.ConditionReady {
				ready = string(cd.Status)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", u.Name, u.Spec.Cluster, ready, len(u.Spec.Authorization.ACLs),
			orNone(strings.TrimPrefix(u.Status.Brokers, "served by ")), humanDuration(c.now().Sub(u.CreationTimestamp.Time)))
	}
	return w.Flush()
}

func (c *cli) describeUser(u *api.MqttUser) {
	w := tabwriter.NewWriter(c.out, 0, 8, 2, ' ', 0)
	p := func(k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
	p("Name:", u.Name)
	var ls []string
	for k, v := range u.Labels {
		ls = append(ls, k+"="+v)
	}
	sort.Strings(ls)
	p("Labels:", strings.Join(ls, ","))
	p("Cluster:", u.Spec.Cluster)
	p("Disabled:", u.Spec.Disabled)
	p("Authentication:", u.Spec.Authentication.Type+" (mqttctl get credentials user/"+u.Name+")")
	if u.Status.PasswordIssuedAt != nil {
		p("Password issued:", u.Status.PasswordIssuedAt.UTC().Format(time.RFC3339))
	}
	if m := u.Spec.Limits.MaxConnections; m != nil {
		p("Max connections:", *m)
	}
	p("Generation:", u.Generation)
	p("Observed generation:", u.Status.ObservedGeneration)
	p("Brokers:", orNone(u.Status.Brokers))
	w.Flush()
	fmt.Fprintln(c.out, "Rules (with the cluster's spec.auth.acls):")
	if len(u.Spec.Authorization.ACLs) == 0 {
		fmt.Fprintln(c.out, "  <none of its own>")
	}
	tw := tabwriter.NewWriter(c.out, 0, 8, 2, ' ', 0)
	for _, r := range u.Spec.Authorization.ACLs {
		fmt.Fprintf(tw, "  %s\t%s\n", r.Access, r.Topic)
	}
	tw.Flush()
	fmt.Fprintln(c.out, "Conditions:")
	for _, cd := range u.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cd.Type, cd.Status, cd.Reason, cd.Message)
	}
	tw.Flush()
}

func (c *cli) rotatePasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-password NAME",
		Short: "Give a user a new generated password (its live connections are closed; the old password stops working)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			name, _ := userRef(args[0])
			if name == "" {
				name = args[0]
			}
			res, err := cl.RotatePassword(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "mqttuser/%s password rotation requested at %s\n", res.Name, res.RequestedAt)
			return nil
		},
	}
}

// checkOutput refuses an -o that get does not print.
func checkOutput(output string) error {
	switch output {
	case "", "wide", "yaml", "json", "name":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use yaml, json, wide or name", output)
}
