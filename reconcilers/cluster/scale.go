package cluster

import (
	"context"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/rollout"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/scaling"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// AutoscaleRefresh is how often a cluster with spec.scaling.mode Auto is
// reconciled, so its count follows the load.
const AutoscaleRefresh = 5 * time.Second

// loadAge bounds how old a broker's load figure may be to count (Mosquitto
// publishes it every 10 s).
const loadAge = 90 * time.Second

// scaled is c with the broker count of its scaling mode for this pass
// (c itself for Fixed).
func (r *Reconciler) scaled(ctx context.Context, c *api.MqttCluster) (*api.MqttCluster, error) {
	switch {
	case c.Spec.Scaling.Auto():
		return r.autoscale(ctx, c), nil
	case c.Spec.Scaling.PerNode():
		return r.perNode(ctx, c)
	}
	return c, nil
}

// autoscale decides the broker count of an Auto cluster for this pass
// (scaling.Decide, from HAProxy's connections and the brokers' message
// rates) and returns a copy of c that runs it: spec.replicas set, and
// status.scaling the decision. c is not changed.
func (r *Reconciler) autoscale(ctx context.Context, c *api.MqttCluster) *api.MqttCluster {
	f := scaling.Figures{MessagesPerSecond: r.messageRate(c.Name, api.Brokers(c))}
	if control, err := r.controlNetwork(ctx); err == nil && control != nil {
		g := &rollout.Gate{Swarm: r.Swarm, OperatorID: r.OperatorID, Cluster: c, Control: control, Runtime: r.runtime(c.Name),
			Fence: r.fence, Now: r.now, Log: r.log()}
		if n, ok := g.Connections(ctx); ok {
			f.Connections = &n
		}
	}
	ready := meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) && c.Status.ObservedGeneration == c.Generation &&
		!r.removing(ctx, c)
	d := scaling.Decide(scaling.Input{Spec: c.Spec.Scaling, Prev: c.Status.Scaling, Figures: f, Ready: ready, Now: r.now()})
	r.scalingEvents(c.Name, d.Events)
	cc := c.DeepCopy()
	n := d.Status.Replicas
	cc.Spec.Replicas = &n
	cc.Status.Scaling = &d.Status
	return cc
}

// removing: a broker past the count in use is still being removed (with
// spec.sync: stopped, its last state syncing), or the services cannot be
// read. The next scale-down waits for it.
func (r *Reconciler) removing(ctx context.Context, c *api.MqttCluster) bool {
	svcs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return true
	}
	n := api.Brokers(c)
	for _, s := range svcs {
		if i, err := strconv.Atoi(s.Spec.Labels[broker.LabelIndex]); err == nil && i >= n {
			return true
		}
	}
	return false
}

// perNode ties a broker to every node that admits one (scaling.PerNode)
// and returns a copy of c that runs them: spec.replicas the indexes in
// use, status.scaling which node each is tied to and which are parked (or
// away, with spec.sync).
func (r *Reconciler) perNode(ctx context.Context, c *api.MqttCluster) (*api.MqttCluster, error) {
	nodes, err := r.Swarm.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var ns []scaling.Node
	for _, n := range nodes {
		ns = append(ns, scaling.NodeOf(n))
	}
	d := scaling.PerNode(c.Spec.Placement.Constraints, c.Status.Scaling, ns, c.Spec.Sync.Enabled != nil && *c.Spec.Sync.Enabled)
	r.scalingEvents(c.Name, d.Events)
	cc := c.DeepCopy()
	n := d.Status.Replicas
	cc.Spec.Replicas = &n
	cc.Status.Scaling = &d.Status
	return cc, nil
}

func (r *Reconciler) scalingEvents(cluster string, evs []api.Event) {
	for _, e := range evs {
		r.log().Info("scaling: "+e.Message, "cluster", cluster, "reason", e.Reason)
		r.event(cluster, e.Type, e.Reason, "%s", e.Message)
	}
}

// BrokerLoad takes what broker i of cluster says of the PUBLISH packets
// it receives, per minute (the auth pusher's OnLoad).
func (r *Reconciler) BrokerLoad(cluster string, i int, perMinute float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	byBroker(&r.loads, cluster)[i] = brokerLoad{perMinute: perMinute, at: r.now()}
}

type brokerLoad struct {
	perMinute float64
	at        time.Time
}

// messageRate is the cluster's message rate, per second: the highest
// recent figure of its first n brokers (each receives every message once;
// one that has just started has a lower average). Nil: none heard lately.
func (r *Reconciler) messageRate(cluster string, n int) *float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rate *float64
	for i, l := range r.loads[cluster] {
		if i >= n || r.now().Sub(l.at) > loadAge {
			continue
		}
		if v := l.perMinute / 60; rate == nil || v > *rate {
			rate = &v
		}
	}
	return rate
}
