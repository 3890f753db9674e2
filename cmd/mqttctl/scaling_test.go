package main

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
)

// An Auto cluster: get shows the count the operator decided, describe
// its bounds, targets, figures and next decision; a Fixed field beside
// Auto is refused with its path.
func TestAutoClusterGetAndDescribe(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	doc := "apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: auto}\nspec:\n  scaling: {mode: Auto, min: 1, max: 3, connectionsPerBroker: 20}\n"
	if r := mqttctl(t, inst, doc, "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	squash := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if r := mqttctl(t, inst, "", "describe", "auto"); !strings.Contains(squash(r.out), "Scaling: Auto, 1..3 brokers, per broker 20 connections, scale-down delay 5m") ||
		!strings.Contains(squash(r.out), "Load: <none: the operator has not reported yet>") {
		t.Fatalf("describe before a status:\n%s", r.out)
	}
	at := metav1.NewTime(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC))
	conns := int64(45)
	setStatus(t, inst, "auto", api.MqttClusterStatus{ObservedGeneration: 1, Scaling: &api.ScalingStatus{
		Replicas: 3, Desired: 3, Connections: &conns, ObservedTime: &at, LastScaleTime: &at, Next: "holding 3 brokers: up above 60 connections"}})
	r := mqttctl(t, inst, "", "get", "auto")
	if f := strings.Fields(strings.Split(r.out, "\n")[1]); len(f) < 2 || f[1] != "3" {
		t.Fatalf("get shows %q, want 3 brokers:\n%s", f, r.out)
	}
	r = mqttctl(t, inst, "", "describe", "auto")
	for _, want := range []string{"Brokers:  3 x ", "Load:  45 connections at 2026-12-02T11:00:00Z: 3 brokers wanted", "Last scale:  2026-12-02T11:00:00Z", "Next:  holding 3 brokers: up above 60 connections"} {
		if !strings.Contains(squash(r.out), squash(want)) {
			t.Errorf("describe lacks %q:\n%s", want, r.out)
		}
	}
	bad := strings.Replace(doc, "spec:\n", "spec:\n  replicas: 3\n", 1)
	if r := mqttctl(t, inst, bad, "apply", "-f", "-"); r.code != 1 || !strings.Contains(r.err, "spec.replicas: must be omitted with spec.scaling.mode Auto") {
		t.Fatalf("replicas beside Auto: %+v", r)
	}
}

func TestPerNodeClusterDescribe(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	doc := "apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: pn}\nspec:\n  scaling: {mode: PerNode}\n"
	if r := mqttctl(t, inst, doc, "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	setStatus(t, inst, "pn", api.MqttClusterStatus{ObservedGeneration: 1, Scaling: &api.ScalingStatus{Replicas: 2,
		Nodes: []api.ScalingNode{{Broker: 0, Node: "n1", Hostname: "a", Active: true}, {Broker: 1, Node: "n2", Hostname: "b"}},
		Next:  "a broker on each of 1 nodes, 1 parked; a node that joins gets one"},
		Brokers: []api.BrokerStatus{{Name: "pn-broker-0", Node: "a", State: "running"}, {Name: "pn-broker-1", Node: "b", State: "parked"}}})
	r := mqttctl(t, inst, "", "describe", "pn")
	squash := strings.Join(strings.Fields(r.out), " ")
	for _, want := range []string{"Brokers: 2 x", "Scaling: PerNode: a broker on each of 1 nodes, 1 parked", "pn-broker-1 b parked"} {
		if !strings.Contains(squash, want) {
			t.Errorf("describe lacks %q:\n%s", want, r.out)
		}
	}
}
