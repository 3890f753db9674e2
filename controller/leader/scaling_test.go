package leader

import (
	"slices"
	"strings"
	"testing"
	"time"

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

// Without figures (HAProxy's runtime API out of reach) the count holds.
func TestClusterAutoHoldsWithoutFigures(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.running("spec: {scaling: {mode: Auto, min: 1, max: 4, connectionsPerBroker: 100}, loadBalancer: {replicas: 1}}\n")
	if st := e.cluster().Status.Scaling; st == nil || st.Replicas != 1 || !strings.Contains(st.Next, "no load figures") {
		t.Fatalf("status.scaling %+v", st)
	}
}
