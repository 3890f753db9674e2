package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/client"
)

// waitCmd follows a cluster's status until a condition holds, as kubectl
// wait does. It prints one line each time the progress changes.
func (c *cli) waitCmd() *cobra.Command {
	var forCond string
	var timeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "wait NAME --for=condition=Ready [--timeout=5m]",
		Short: "Wait until a cluster's condition is true (exit 1 on timeout)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			typ, ok := strings.CutPrefix(forCond, "condition=")
			if !ok || typ == "" {
				return fmt.Errorf("--for %q: use condition=TYPE, such as condition=Ready", forCond)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			deadline := time.Now().Add(timeout)
			last := ""
			for {
				o, err := cl.Get(cmd.Context(), args[0])
				if err != nil {
					// A restarting operator (no answer, 503) is waited
					// out, as kubectl wait does; a real answer is not.
					var ce *client.Error
					if errors.As(err, &ce) && ce.Code != http.StatusServiceUnavailable {
						return err
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("timed out after %s waiting for mqttcluster/%s: %w", timeout, args[0], err)
					}
					if line := "operator unavailable: " + err.Error(); line != last {
						fmt.Fprintf(c.errOut, "mqttcluster/%s: %s\n", args[0], line)
						last = line
					}
					select {
					case <-cmd.Context().Done():
						return cmd.Context().Err()
					case <-time.After(interval):
					}
					continue
				}
				cond := meta.FindStatusCondition(o.Status.Conditions, typ)
				current := o.Status.ObservedGeneration >= o.Generation
				if cond != nil && cond.Status == "True" && current {
					fmt.Fprintf(c.out, "mqttcluster/%s condition met: %s\n", o.Name, typ)
					return nil
				}
				if line := progressLine(o); line != last {
					fmt.Fprintf(c.errOut, "mqttcluster/%s: %s\n", o.Name, line)
					last = line
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("timed out after %s waiting for mqttcluster/%s condition %s: %s", timeout, o.Name, typ, last)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().StringVar(&forCond, "for", "condition=Ready", "condition=TYPE to wait for")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	cmd.Flags().DurationVar(&interval, "poll-interval", 500*time.Millisecond, "how often to read the status")
	return cmd
}

func progressLine(o *api.MqttCluster) string {
	var parts []string
	if c := meta.FindStatusCondition(o.Status.Conditions, api.ConditionReady); c != nil {
		parts = append(parts, c.Message)
	} else {
		parts = append(parts, "not reconciled yet")
	}
	if c := meta.FindStatusCondition(o.Status.Conditions, api.ConditionDegraded); c != nil && c.Status == "True" {
		parts = append(parts, "degraded: "+c.Message)
	}
	return strings.Join(parts, "; ")
}
