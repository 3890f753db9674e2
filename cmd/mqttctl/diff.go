package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

// exitError ends mqttctl with a given status (after printing err, unless
// it is a silentError).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// diffCmd shows what apply would change, field by field, and which brokers
// it would restart, with kubectl diff's exit status: 0 no change, 1
// changes, 2 an error.
func (c *cli) diffCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|-",
		Short: "Show what apply would change, field by field, and which brokers would restart (exit 0: no change, 1: changes, 2: error)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed, err := c.diff(cmd, files)
			if err != nil {
				return exitError{2, err}
			}
			if changed {
				return exitError{1, silentError{errors.New("changes")}}
			}
			return nil
		},
	}
	filenameFlag(cmd, &files)
	return cmd
}

func (c *cli) diff(cmd *cobra.Command, files []string) (bool, error) {
	docs, err := c.readDocuments(files)
	if err != nil {
		return false, err
	}
	if _, err := c.validateAll(docs); err != nil {
		return false, err
	}
	cl, err := c.client()
	if err != nil {
		return false, err
	}
	changed := false
	for _, d := range docs {
		if api.KindOf(d.data) == api.KindMqttUser {
			ch, err := c.diffUser(cmd, cl, d)
			if err != nil {
				return false, err
			}
			changed = changed || ch
			continue
		}
		// The server defaults and validates it exactly as apply would.
		res, err := cl.ApplyDryRun(cmd.Context(), d.data)
		if err != nil {
			return false, fmt.Errorf("%s: %s", d, describeError(err))
		}
		next := res.Object
		var cur *api.MqttCluster
		if res.Result != api.Created {
			if cur, err = cl.Get(cmd.Context(), next.Name); err != nil {
				var ce *client.Error
				if !errors.As(err, &ce) || ce.Code != http.StatusNotFound {
					return false, fmt.Errorf("%s: %s", d, describeError(err))
				}
				cur = nil
			}
		}
		var plan api.BrokerPlan
		if res.Plan != nil {
			plan = *res.Plan
		}
		if res.Result != api.Unchanged {
			changed = true
		}
		writeDiff(c.out, cur, next, res.Result, plan)
	}
	return changed, nil
}

// writeDiff prints one object's changes: ~ changed, + added, - removed
// fields (metadata labels and annotations, spec), then the broker plan.
func writeDiff(w io.Writer, cur, next *api.MqttCluster, res api.ApplyResult, plan api.BrokerPlan) {
	head := fmt.Sprintf("mqttcluster/%s %s", next.Name, res)
	if cur != nil && next.Generation != cur.Generation {
		head += fmt.Sprintf(" (generation %d -> %d)", cur.Generation, next.Generation)
	}
	fmt.Fprintln(w, head)
	if res == api.Unchanged {
		return
	}
	before, after := map[string]string{}, map[string]string{}
	if cur != nil {
		flatten("", diffView(cur), before)
	}
	flatten("", diffView(next), after)
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	}) {
		b, inB := before[k]
		a, inA := after[k]
		switch {
		case inB && inA && a != b:
			fmt.Fprintf(w, "  ~ %s: %s -> %s\n", k, b, a)
		case inA && !inB:
			fmt.Fprintf(w, "  + %s: %s\n", k, a)
		case inB && !inA:
			fmt.Fprintf(w, "  - %s: %s\n", k, b)
		}
	}
	var parts []string
	if len(plan.Restart) > 0 {
		parts = append(parts, "restart "+strings.Join(plan.Restart, ", "))
	}
	if len(plan.Add) > 0 {
		parts = append(parts, "add "+strings.Join(plan.Add, ", "))
	}
	if len(plan.Remove) > 0 {
		parts = append(parts, "remove "+strings.Join(plan.Remove, ", "))
	}
	if len(parts) == 0 {
		parts = append(parts, "none restarts")
	}
	fmt.Fprintf(w, "  brokers: %s\n", strings.Join(parts, "; "))
}

// diffView is the part of an object a user writes.
func diffView(o *api.MqttCluster) any {
	b, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"labels": o.Labels, "annotations": o.Annotations},
		"spec":     o.Spec,
	})
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// flatten maps every leaf of a JSON value to its path (a.b[0].c, and
// a["key.with/dots"]) and its JSON text.
func flatten(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			p := prefix + "." + k
			if !plainKey.MatchString(k) {
				p = prefix + "[" + fmt.Sprintf("%q", k) + "]"
			}
			if prefix == "" {
				p = k
			}
			flatten(p, val, out)
		}
	case []any:
		for i, val := range x {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), val, out)
		}
	case nil:
	default:
		b, _ := json.Marshal(x)
		out[prefix] = string(b)
	}
}

// diffUser says whether applying a user document would create or change
// it (its spec and labels against the stored user's).
func (c *cli) diffUser(cmd *cobra.Command, cl *client.Client, d document) (bool, error) {
	next, err := api.ParseUser(d.data)
	if err != nil {
		return false, err
	}
	cur, err := cl.GetUser(cmd.Context(), next.Name)
	var ce *client.Error
	switch {
	case errors.As(err, &ce) && ce.Code == http.StatusNotFound:
		fmt.Fprintf(c.out, "mqttuser/%s created\n", next.Name)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%s: %s", d, describeError(err))
	}
	a, _ := json.Marshal(cur.Spec)
	b, _ := json.Marshal(next.Spec)
	if string(a) == string(b) && maps.Equal(cur.Labels, next.Labels) {
		fmt.Fprintf(c.out, "mqttuser/%s unchanged\n", next.Name)
		return false, nil
	}
	fmt.Fprintf(c.out, "mqttuser/%s configured\n", next.Name)
	before, after := map[string]string{}, map[string]string{}
	flatten("", map[string]any{"spec": toMap(cur.Spec), "labels": toMap(cur.Labels)}, before)
	flatten("", map[string]any{"spec": toMap(next.Spec), "labels": toMap(next.Labels)}, after)
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(before, after))) {
		switch bv, inB := before[k]; {
		case !inB:
			fmt.Fprintf(c.out, "  + %s: %s\n", k, after[k])
		case after[k] == "" && bv != "":
			if _, inA := after[k]; !inA {
				fmt.Fprintf(c.out, "  - %s: %s\n", k, bv)
			}
		case bv != after[k]:
			fmt.Fprintf(c.out, "  ~ %s: %s -> %s\n", k, bv, after[k])
		}
	}
	return true, nil
}

func toMap(v any) map[string]any {
	var m map[string]any
	b, _ := json.Marshal(v)
	_ = json.Unmarshal(b, &m)
	return m
}

func mergeKeys(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
