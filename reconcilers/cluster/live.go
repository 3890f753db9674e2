package cluster

// What the operator hears live from the brokers over its own connections
// to them (the auth pusher): a broker gone, a broker reached again, a
// bridge up or down.

import (
	"context"
	"maps"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/bridges"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/rollout"
)

// BrokerLost takes broker i of cluster (of n brokers) out of HAProxy at
// once (rollout.Gate.Lost): the operator's own connection to it was
// closed by the broker's side (the auth pusher's OnLost). When the
// connections to every broker of the cluster are found closed, the
// operator's own network is the likelier cause, and HAProxy is left to
// its checks. It may run beside a pass: it only reads Swarm and talks to
// HAProxy, fenced.
func (r *Reconciler) BrokerLost(ctx context.Context, cluster string, i, n int) {
	if r.ControlNetwork == "" {
		return
	}
	r.mu.Lock()
	byBroker(&r.lost, cluster)[i] = true
	all := true
	for j := 0; j < n; j++ {
		all = all && r.lost[cluster][j]
	}
	r.mu.Unlock()
	if all {
		r.log().Warn("broker lost: the operator's connections to every broker of the cluster closed; HAProxy left to its checks",
			"cluster", cluster, "broker", api.BrokerService(cluster, i))
		return
	}
	t0 := time.Now()
	control, err := r.controlNetwork(ctx)
	if err != nil {
		r.log().Warn("broker lost: control network", "cluster", cluster, "err", err)
		return
	}
	c := &api.MqttCluster{}
	c.Name = cluster
	g := &rollout.Gate{Swarm: r.Swarm, OperatorID: r.OperatorID, Cluster: c, Control: control, Runtime: r.runtime(cluster),
		Fence: r.fence, Now: r.now, Log: r.log()}
	closed, err := g.Lost(ctx, i)
	if err != nil {
		r.log().Warn("broker lost: not taken out of HAProxy", "cluster", cluster, "broker", i, "err", err)
		return
	}
	r.log().Info("broker lost: drained in HAProxy until it is back and joined", "cluster", cluster, "broker", api.BrokerService(cluster, i),
		"streamsClosed", closed, "took", time.Since(t0).Round(time.Millisecond).String())
}

// BrokerReached says the operator's connection to broker i of cluster is
// up (again): a broker found gone is back (its new task), or was never
// gone. It returns whether it had been found gone.
func (r *Reconciler) BrokerReached(cluster string, i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lost[cluster][i] {
		return false
	}
	delete(r.lost[cluster], i)
	return true
}

// gone says whether broker i of cluster was found gone and not reached
// since.
func (r *Reconciler) gone(cluster string) func(int) bool {
	return func(i int) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.lost[cluster][i]
	}
}

// bridgeState is what a broker last said of its own bridge, and when it
// was heard.
type bridgeState struct {
	connected bool
	at        time.Time
}

// BridgeState takes what broker i of cluster says of one of its bridges
// (the auth pusher's OnBridge): the next pass feeds it to the bridge
// tracker beside what the parents' logs say. It returns whether it
// changed what was known.
func (r *Reconciler) BridgeState(cluster string, i int, bridge string, connected bool) bool {
	if bridge != api.BridgeClientID(cluster, i) {
		return false // not its bridge to its parent
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	states := byBroker(&r.bridgeStates, cluster)
	prev, known := states[i]
	states[i] = bridgeState{connected: connected, at: r.now()}
	return !known || prev.connected != connected
}

// notifyBridges feeds tr what cluster's first n brokers last said of
// their bridges.
func (r *Reconciler) notifyBridges(tr *bridges.Tracker, cluster string, n int) {
	r.mu.Lock()
	states := maps.Clone(r.bridgeStates[cluster])
	r.mu.Unlock()
	for i, st := range states {
		if i < n {
			tr.Notify(i, st.connected, st.at)
		}
	}
}

// byBroker is cluster's map in *m (by cluster, then broker), made when
// missing (r.mu held).
func byBroker[V any](m *map[string]map[int]V, cluster string) map[int]V {
	if *m == nil {
		*m = map[string]map[int]V{}
	}
	if (*m)[cluster] == nil {
		(*m)[cluster] = map[int]V{}
	}
	return (*m)[cluster]
}
