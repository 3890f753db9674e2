package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

// waitCmd follows a cluster's status until a condition holds, as kubectl
// wait does. It prints the progress, per broker: a live line on a
// terminal, one line per change otherwise (CI logs).
func (c *cli) waitCmd() *cobra.Command {
	var o waitOpts
	cmd := &cobra.Command{
		Use:   "wait NAME --for=condition=Ready [--timeout=5m]",
		Short: "Wait until a cluster's condition is true (exit 1 on timeout or when the cluster stays Degraded)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.wait(cmd.Context(), args[0], o)
		},
	}
	o.flags(cmd)
	return cmd
}

type waitOpts struct {
	forCond                  string
	timeout, interval, grace time.Duration
}

func (o *waitOpts) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.forCond, "for", "condition=Ready", "condition=TYPE to wait for")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	cmd.Flags().DurationVar(&o.interval, "poll-interval", 500*time.Millisecond, "how often to read the status")
	cmd.Flags().DurationVar(&o.grace, "degraded-grace", 10*time.Second, "fail once the cluster has been Degraded this long (a retried error may clear)")
}

func (c *cli) wait(ctx context.Context, name string, o waitOpts) error {
	typ, ok := strings.CutPrefix(o.forCond, "condition=")
	if !ok || typ == "" {
		return fmt.Errorf("--for %q: use condition=TYPE, such as condition=Ready", o.forCond)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	p := c.progress()
	defer p.done()
	deadline := time.Now().Add(o.timeout)
	for {
		// A consistent read: right after an apply, a follower may not
		// have the object yet (seen: "not found" from apply --wait).
		obj, err := cl.GetConsistent(ctx, name)
		if err != nil {
			// A restarting operator (no answer, 503) is waited out, as
			// kubectl wait does; a real answer is not.
			var ce *client.Error
			if errors.As(err, &ce) && ce.Code != http.StatusServiceUnavailable {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out after %s waiting for mqttcluster/%s: %w", o.timeout, name, err)
			}
			p.show(fmt.Sprintf("mqttcluster/%s: operator unavailable: %s", name, err))
		} else {
			cond := meta.FindStatusCondition(obj.Status.Conditions, typ)
			current := obj.Status.ObservedGeneration >= obj.Generation
			if cond != nil && cond.Status == "True" && current {
				p.done()
				fmt.Fprintf(c.out, "mqttcluster/%s condition met: %s\n", obj.Name, typ)
				return nil
			}
			line := progressLine(obj)
			p.show(fmt.Sprintf("mqttcluster/%s: %s", obj.Name, line))
			if d := meta.FindStatusCondition(obj.Status.Conditions, api.ConditionDegraded); d != nil && d.Status == "True" && current && c.now().Sub(d.LastTransitionTime.Time) >= o.grace {
				return fmt.Errorf("mqttcluster/%s is Degraded (%s) since %s: %s", obj.Name, d.Reason, d.LastTransitionTime.UTC().Format(time.RFC3339), d.Message)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out after %s waiting for mqttcluster/%s condition %s: %s", o.timeout, obj.Name, typ, line)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.interval):
		}
	}
}

// progress prints changing status lines: rewritten in place on a
// terminal, one per change otherwise.
type progress struct {
	w    io.Writer
	tty  bool
	last string
	open bool
}

func (c *cli) progress() *progress {
	p := &progress{w: c.errOut}
	if f, ok := c.errOut.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(line string) {
	if line == p.last {
		return
	}
	p.last = line
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.open = true
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) done() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
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
	var brokers []string
	for _, b := range o.Status.Brokers {
		brokers = append(brokers, strings.TrimPrefix(b.Name, o.Name+"-")+" "+b.State)
	}
	if len(brokers) > 0 {
		parts = append(parts, strings.Join(brokers, ", "))
	}
	return strings.Join(parts, "; ")
}
