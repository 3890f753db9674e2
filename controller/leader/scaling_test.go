package leader

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// eventsWith lists the stored events with reason.
func (e *clusterEnv) eventsWith(reason string) []api.Event {
	var out []api.Event
	for _, ev := range e.events() {
		if ev.Reason == reason {
			out = append(out, ev)
		}
	}
	return out
}

// An Auto cluster follows HAProxy's connection count: up at once, down
// after the delay, one broker at a time, the removed broker drained in
// HAProxy (its sessions moved) before its service goes; its decisions are
// events and status.scaling; a settled cluster writes nothing.
func TestClusterAutoScalesWithTheConnections(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	spec := "spec: {scaling: {mode: Auto, min: 2, max: 4, connectionsPerBroker: 100, scaleDownDelay: 30s}, loadBalancer: {replicas: 1}}\n"
	e.running(spec)
	addrs := e.attachLB(1)
	rt.connections = map[string]int64{addrs[0]: 20}
	e.reconcile()
	c := e.cluster()
	if got := written(e.fake.Calls(), "CreateService"); !slices.Contains(got, "iot-broker-1") || slices.Contains(got, "iot-broker-2") {
		t.Fatalf("created %v, want brokers 0 and 1 (min 2)", got)
	}
	if st := c.Status.Scaling; st == nil || st.Replicas != 2 || st.Connections == nil || *st.Connections != 20 {
		t.Fatalf("status.scaling %+v", c.Status.Scaling)
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		t.Fatalf("not Ready at 2: %+v", c.Status.Conditions)
	}

	// 250 connections need 3.
	rt.connections[addrs[0]] = 250
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "CreateService"); !slices.Equal(got, []string{"iot-broker-2"}) {
		t.Fatalf("scale-up created %v", got)
	}
	if ev := e.eventsWith("ScaledUp"); len(ev) != 1 || !strings.Contains(ev[0].Message, "2 → 3 brokers: 250 connections") {
		t.Fatalf("events %v", ev)
	}
	e.runAll()
	e.attachLB(1)
	e.now = e.now.Add(time.Minute)
	e.reconcile()
	e.reconcile()
	e.fake.ResetCalls()
	e.reconcile()
	if calls := e.fake.Calls(); len(written(calls, "UpdateService"))+len(written(calls, "CreateService"))+len(written(calls, "RemoveService")) != 0 {
		t.Fatalf("a settled Auto cluster wrote: %v", calls)
	}
	if st := e.cluster().Status.Scaling; st.Replicas != 3 || !strings.Contains(st.Next, "holding 3") {
		t.Fatalf("status.scaling %+v", st)
	}

	// Down to 40: not before the delay.
	rt.connections[addrs[0]] = 40
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "RemoveService"); len(got) != 0 {
		t.Fatalf("removed %v at once", got)
	}
	if st := e.cluster().Status.Scaling; st.LowSince == nil || !strings.Contains(st.Next, "down to 2") {
		t.Fatalf("status.scaling %+v", st)
	}
	e.now = e.now.Add(31 * time.Second)
	rt.states = nil
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "RemoveService"); !slices.Equal(got, []string{"iot-broker-2"}) {
		t.Fatalf("scale-down removed %v", got)
	}
	drain, moved := slices.Index(rt.states, addrs[0]+" broker-2 drain"), slices.Index(rt.states, addrs[0]+" broker-2 shutdown-sessions")
	if drain < 0 || moved < drain {
		t.Fatalf("broker 2 not drained, then its sessions moved, before its removal: %v", rt.states)
	}
	if ev := e.eventsWith("ScaledDown"); len(ev) != 1 || !strings.Contains(ev[0].Message, "3 → 2 brokers") {
		t.Fatalf("events %v", ev)
	}
	// Its slot stays drained: its container may still be stopping.
	e.reconcile()
	if !rt.drained[addrs[0]]["broker-2"] {
		t.Fatalf("the removed broker's slot made ready again: %v", rt.states)
	}
	// min holds.
	e.runAll()
	e.now = e.now.Add(time.Hour)
	rt.connections[addrs[0]] = 0
	e.fake.ResetCalls()
	e.reconcile()
	e.reconcile()
	if got := written(e.fake.Calls(), "RemoveService"); len(got) != 0 {
		t.Fatalf("went below min: removed %v", got)
	}
}

// An Auto cluster with a message target follows the brokers' own figures
// ($SYS publish/received/1min, heard by the users pusher): the highest
// recent one counts, a figure older than loadAge does not.
func TestClusterAutoScalesWithTheMessageRate(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.withControlNetwork()
	e.running("spec: {scaling: {mode: Auto, min: 1, max: 4, messagesPerSecondPerBroker: 100, scaleDownDelay: 30s}, loadBalancer: {replicas: 1}}\n")
	e.attachLB(1)
	// 250 messages/s (15,000 a minute) need 3 brokers.
	e.rec.BrokerLoad("iot", 0, 15000)
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "CreateService"); !slices.Equal(got, []string{"iot-broker-1", "iot-broker-2"}) {
		t.Fatalf("scale-up created %v", got)
	}
	if ev := e.eventsWith("ScaledUp"); len(ev) != 1 || !strings.Contains(ev[0].Message, "1 → 3 brokers") || !strings.Contains(ev[0].Message, "250 messages/s") {
		t.Fatalf("events %v", ev)
	}
	e.runAll()
	e.attachLB(1)
	e.reconcile()
	// The figure goes stale (the pusher heard nothing for loadAge): the
	// count holds, whatever the time.
	e.now = e.now.Add(2 * time.Minute)
	e.fake.ResetCalls()
	e.reconcile()
	e.now = e.now.Add(time.Minute)
	e.reconcile()
	if got := written(e.fake.Calls(), "RemoveService"); len(got) != 0 {
		t.Fatalf("scaled down on a stale figure: removed %v", got)
	}
	// 40 messages/s now, on two brokers: down after the delay (one step).
	e.rec.BrokerLoad("iot", 1, 2400)
	e.rec.BrokerLoad("iot", 2, 1800)
	e.reconcile()
	e.now = e.now.Add(31 * time.Second)
	e.rec.BrokerLoad("iot", 1, 2400)
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "RemoveService"); !slices.Equal(got, []string{"iot-broker-2"}) {
		t.Fatalf("scale-down removed %v", got)
	}
}

// Without figures (HAProxy's runtime API out of reach) the count holds.
func TestClusterAutoHoldsWithoutFigures(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.running("spec: {scaling: {mode: Auto, min: 1, max: 4, connectionsPerBroker: 100}, loadBalancer: {replicas: 1}}\n")
	if st := e.cluster().Status.Scaling; st == nil || st.Replicas != 1 || !strings.Contains(st.Next, "no load figures") {
		t.Fatalf("status.scaling %+v", st)
	}
}

// brokerPlacement is broker i's service's constraints and task count.
func (e *clusterEnv) brokerPlacement(i int) ([]string, uint64) {
	e.t.Helper()
	svcs, _ := e.fake.Services(context.Background(), nil)
	for _, s := range svcs {
		if s.Spec.Name == api.BrokerService("iot", i) {
			return s.Spec.TaskTemplate.Placement.Constraints, *s.Spec.Mode.Replicated.Replicas
		}
	}
	e.t.Fatalf("no service for broker %d", i)
	return nil, 0
}

func swarmNode(id string, labels map[string]string) dswarm.Node {
	return dswarm.Node{ID: id, Description: dswarm.NodeDescription{Hostname: "host-" + id}, Status: dswarm.NodeStatus{State: dswarm.NodeStateReady, Addr: "10.0.0.9"},
		Spec: dswarm.NodeSpec{Availability: dswarm.NodeAvailabilityActive, Role: dswarm.NodeRoleManager, Annotations: dswarm.Annotations{Labels: labels}}}
}

// PerNode: a broker on each node spec.placement admits, pinned to it; a
// node drained parks its broker (drained in HAProxy first, then scaled to
// 0) and the cluster is Ready without it; the node's return brings the
// same broker back; a node that joins gets the next one.
func TestClusterPerNodeTiesBrokersToNodes(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	mqtt := map[string]string{"mqtt": "yes"}
	e.fake.NodeList = []dswarm.Node{swarmNode("n1", mqtt), swarmNode("n2", mqtt), swarmNode("n3", nil)}
	e.running("spec: {scaling: {mode: PerNode}, placement: {constraints: [node.labels.mqtt==yes]}, loadBalancer: {replicas: 1}}\n")
	e.runAll()
	addrs := e.attachLB(1)
	e.reconcile()
	c := e.cluster()
	if api.Brokers(c) != 2 || !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		t.Fatalf("brokers %d, conditions %+v", api.Brokers(c), c.Status.Conditions)
	}
	for i, node := range []string{"n1", "n2"} {
		if cons, n := e.brokerPlacement(i); !slices.Equal(cons, []string{"node.id==" + node}) || n != 1 {
			t.Fatalf("broker %d: %v x%d, want pinned to %s", i, cons, n, node)
		}
	}

	// n2 drained: broker 1 drained in HAProxy, then scaled to 0.
	e.fake.NodeList[1].Spec.Availability = dswarm.NodeAvailabilityDrain
	rt.states = nil
	e.fake.ResetCalls()
	e.reconcile()
	if _, n := e.brokerPlacement(1); n != 0 {
		t.Fatalf("broker 1 still has %d task(s) on a drained node", n)
	}
	if d := slices.Index(rt.states, addrs[0]+" broker-1 drain"); d < 0 {
		t.Fatalf("broker 1 not drained in HAProxy before it stopped: %v", rt.states)
	}
	if ev := e.eventsWith("BrokerParked"); len(ev) != 1 || !strings.Contains(ev[0].Message, "node host-n2 is drained") {
		t.Fatalf("events %v", ev)
	}
	e.runAll()
	e.attachLB(1)
	e.now = e.now.Add(time.Minute)
	e.reconcile()
	c = e.cluster()
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) || c.Status.Brokers[1].State != "parked" || c.Status.Brokers[1].Bridge != nil {
		t.Fatalf("with broker 1 parked: %+v %+v", c.Status.Conditions, c.Status.Brokers)
	}
	// A settled PerNode cluster writes nothing.
	e.fake.ResetCalls()
	e.reconcile()
	if w := written(e.fake.Calls(), "UpdateService"); len(w) != 0 {
		t.Fatalf("settled, updated %v", w)
	}

	// n2 back: broker 1 again, on n2.
	e.fake.NodeList[1].Spec.Availability = dswarm.NodeAvailabilityActive
	e.reconcile()
	if cons, n := e.brokerPlacement(1); n != 1 || !slices.Equal(cons, []string{"node.id==n2"}) {
		t.Fatalf("broker 1 after the return: %v x%d", cons, n)
	}
	// n3 gets the label: broker 2 on it.
	e.fake.NodeList[2].Spec.Labels = mqtt
	e.reconcile()
	if cons, n := e.brokerPlacement(2); n != 1 || !slices.Equal(cons, []string{"node.id==n3"}) {
		t.Fatalf("broker 2: %v x%d", cons, n)
	}
}

// With spec.sync, a PerNode broker whose node is drained is not parked: it
// runs on another node (its data follows it, as any moved broker's), and
// goes home when the node returns.
func TestClusterPerNodeWithSyncSendsABrokerAway(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.withSync()
	e.running("spec: {scaling: {mode: PerNode}, sync: {enabled: true}, loadBalancer: {replicas: 1}}\n")
	e.runAll()
	e.runAgents()
	e.reconcile()
	if c := e.cluster(); api.Brokers(c) != 2 {
		t.Fatalf("brokers %d: %+v", api.Brokers(c), c.Status.Scaling)
	}
	if cons, n := e.brokerPlacement(1); !slices.Equal(cons, []string{"node.id==n2"}) || n != 1 {
		t.Fatalf("broker 1: %v x%d, want pinned to n2", cons, n)
	}

	// n2 drained: broker 1 runs elsewhere, not parked.
	e.fake.NodeList[1].Spec.Availability = dswarm.NodeAvailabilityDrain
	e.reconcile()
	if cons, n := e.brokerPlacement(1); !slices.Equal(cons, []string{"node.id!=n2"}) || n != 1 {
		t.Fatalf("broker 1 with n2 drained: %v x%d, want one task off n2", cons, n)
	}
	c := e.cluster()
	if len(api.Parked(c)) != 0 || !api.Away(c)[1] || c.Status.Scaling.Desired != 2 {
		t.Fatalf("parked %v away %v desired %d", api.Parked(c), api.Away(c), c.Status.Scaling.Desired)
	}
	if ev := e.eventsWith("BrokerAway"); len(ev) != 1 || !strings.Contains(ev[0].Message, "broker 1 moves off node node-2, which is drained") {
		t.Fatalf("events %v", ev)
	}
	if ev := e.eventsWith("BrokerParked"); len(ev) != 0 {
		t.Fatalf("parked with sync on: %v", ev)
	}

	// n2 back: broker 1 pinned to it again.
	e.fake.NodeList[1].Spec.Availability = dswarm.NodeAvailabilityActive
	e.reconcile()
	if cons, n := e.brokerPlacement(1); !slices.Equal(cons, []string{"node.id==n2"}) || n != 1 {
		t.Fatalf("broker 1 after the return: %v x%d", cons, n)
	}
}
