package cluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/loadbalancer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/status"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// rollout is one pass's view of a rolling update of the brokers: a change
// that replaces brokers' tasks goes one broker at a time, the next only
// once every broker runs its current spec and has run StableAfter; each is
// drained in HAProxy (no new connection) before it is replaced, and made
// ready again once its new task is stable. With updatePolicy.approval
// manual, nothing rolls until the generation is approved.
type rollout struct {
	loaded   bool
	services map[int]dswarm.Service
	latest   map[string]dswarm.Task // by service id
	// started: the broker this pass replaces; held: waiting for approval;
	// waiting: the broker the rollout waits for.
	started, waiting string
	held             []string
	control          *loadbalancer.ControlNetwork
}

func (r *Reconciler) approved(c *api.MqttCluster) bool {
	return c.Spec.UpdatePolicy.Approval != api.ApprovalManual || c.Annotations[api.ApprovedGenerationAnnotation] == strconv.FormatInt(c.Generation, 10)
}

func (r *Reconciler) loadBrokers(ctx context.Context, c *api.MqttCluster, ro *rollout) error {
	if ro.loaded {
		return nil
	}
	svcs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return err
	}
	tasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return err
	}
	ro.services, ro.latest = map[int]dswarm.Service{}, map[string]dswarm.Task{}
	for _, s := range svcs {
		if i, err := strconv.Atoi(s.Spec.Labels[broker.LabelIndex]); err == nil {
			ro.services[i] = s
		}
	}
	for _, t := range tasks {
		if prev, ok := ro.latest[t.ServiceID]; !ok || status.Newer(t, prev) {
			ro.latest[t.ServiceID] = t
		}
	}
	ro.loaded = true
	return nil
}

// healthy: the broker's newest task runs its service's current spec, is
// running and has run StableAfter.
func (r *Reconciler) healthy(ro *rollout, s dswarm.Service) bool {
	t, ok := ro.latest[s.ID]
	return ok && t.Status.State == dswarm.TaskStateRunning && t.DesiredState == dswarm.TaskStateRunning && swarm.RunsCurrentSpec(t, s) && status.Stable(t, r.now(), r.stableAfter())
}

// mayUpdate is the broker reconciler's MayUpdate.
func (r *Reconciler) mayUpdate(ctx context.Context, c *api.MqttCluster, ro *rollout, i int, cur dswarm.Service) (bool, error) {
	if !r.approved(c) {
		ro.held = append(ro.held, cur.Spec.Name)
		return false, nil
	}
	if ro.started != "" {
		return false, nil // one at a time
	}
	if err := r.loadBrokers(ctx, c, ro); err != nil {
		return false, err
	}
	// A broker that does not run well anyway is replaced at once: waiting
	// could not make the cluster more available (and a fix must roll).
	if r.healthy(ro, cur) {
		for j, s := range ro.services {
			if j != i && !r.healthy(ro, s) {
				ro.waiting = s.Spec.Name
				return false, nil
			}
		}
		r.drain(ctx, c, ro, i)
	}
	ro.started = cur.Spec.Name
	r.event(c.Name, api.EventNormal, "RollingUpdate", "replacing %s's task (one broker at a time)", cur.Spec.Name)
	return true, nil
}

// drain puts broker i in drain on every running HAProxy task, so no new
// client is sent to it; its clients are disconnected when Swarm stops it
// and reconnect to the others (HAProxy's hash skips a drained server).
func (r *Reconciler) drain(ctx context.Context, c *api.MqttCluster, ro *rollout, i int) {
	if ro.control == nil {
		return
	}
	addrs := r.lbAdmin(ctx, c, ro.control)
	for _, addr := range addrs {
		if err := r.runtime(c.Name).SetServerState(ctx, addr, loadbalancer.ServerName(i), "drain"); err != nil {
			r.log().Warn("drain in HAProxy failed", "cluster", c.Name, "broker", i, "haproxy", addr, "err", err)
		}
	}
	// Then its clients are moved a few at a time (the rest go when Swarm
	// stops it): DrainRate per second per HAProxy task, DrainBudget at most.
	for _, addr := range addrs {
		n, err := r.runtime(c.Name).ShutdownSessions(ctx, addr, loadbalancer.ServerName(i), DrainRate, DrainBudget/time.Duration(max(len(addrs), 1)))
		if err != nil {
			r.log().Warn("closing sessions in HAProxy failed", "cluster", c.Name, "broker", i, "haproxy", addr, "err", err)
			continue
		}
		if n > 0 {
			r.log().Info("moved clients off a drained broker", "cluster", c.Name, "broker", i, "haproxy", addr, "sessions", n)
		}
	}
}

// DrainRate and DrainBudget bound how a drained broker's clients are moved
// before it restarts: sessions closed per second, and the time spent.
const (
	DrainRate   = 100
	DrainBudget = 10 * time.Second
)

// undrain makes ready again, on every running HAProxy task, the drained
// brokers whose new task is stable (or that no longer exist). It reads the
// state from HAProxy, so a drain left by an operator that died mid-way is
// undone too.
func (r *Reconciler) undrain(ctx context.Context, c *api.MqttCluster, ro *rollout) error {
	if ro.control == nil {
		return nil
	}
	ro.loaded = false // after this pass's writes
	if err := r.loadBrokers(ctx, c, ro); err != nil {
		return err
	}
	rt := r.runtime(c.Name)
	for _, addr := range r.lbAdmin(ctx, c, ro.control) {
		drained, err := rt.DrainedServers(ctx, addr)
		if err != nil {
			continue
		}
		for name := range drained {
			i, err := strconv.Atoi(strings.TrimPrefix(name, "broker-"))
			if err != nil {
				continue
			}
			if s, ok := ro.services[i]; ok && !r.healthy(ro, s) {
				continue
			}
			if err := r.fence(); err != nil {
				return err
			}
			if err := rt.SetServerState(ctx, addr, name, "ready"); err != nil {
				r.log().Warn("undrain in HAProxy failed", "cluster", c.Name, "server", name, "err", err)
				continue
			}
			r.log().Info("broker ready again in HAProxy", "cluster", c.Name, "server", name, "haproxy", addr)
		}
	}
	return nil
}

// lbAdmin lists the runtime API addresses of a cluster's running HAProxy
// tasks.
func (r *Reconciler) lbAdmin(ctx context.Context, c *api.MqttCluster, control *loadbalancer.ControlNetwork) []string {
	tasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, loadbalancer.ComponentSvc))
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range tasks {
		if t.DesiredState != dswarm.TaskStateRunning || t.Status.State != dswarm.TaskStateRunning {
			continue
		}
		if ip := swarm.TaskAddress(t, control.Name); ip != "" {
			out = append(out, loadbalancer.AdminAddr(ip))
		}
	}
	return out
}

// rolloutMessage says what the rollout waits for ("" when nothing).
func (ro *rollout) message(c *api.MqttCluster) string {
	switch {
	case len(ro.held) > 0:
		return fmt.Sprintf("awaiting approval to restart %s (mqttctl diff shows the change; mqttctl approve %s)", strings.Join(ro.held, ", "), c.Name)
	case ro.started != "":
		return "rolling: replacing " + ro.started
	case ro.waiting != "":
		return "rolling: waiting for " + ro.waiting + " to run its new spec"
	}
	return ""
}
