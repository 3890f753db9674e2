package scaling

import (
	"slices"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

func node(id string, labels map[string]string) Node {
	return Node{ID: id, Hostname: "host-" + id, Role: "worker", OS: "linux", Arch: "x86_64", Ready: true, Active: true, Labels: labels}
}

func TestAdmitsReadsConstraintsAsSwarmDoes(t *testing.T) {
	t.Parallel()
	n := node("a", map[string]string{"zone": "Edge"})
	n.Role = "manager"
	for _, c := range []struct {
		constraints []string
		want        bool
	}{
		{nil, true},
		{[]string{"node.labels.zone==edge"}, true}, // case-insensitive
		{[]string{"node.labels.zone == edge", "node.role==manager"}, true},
		{[]string{"node.labels.zone!=edge"}, false},
		{[]string{"node.labels.rack==1"}, false}, // missing label
		{[]string{"node.labels.rack!=1"}, true},
		{[]string{"node.role!=manager"}, false},
		{[]string{"node.hostname==host-a", "node.platform.os==linux", "node.platform.arch==x86_64", "node.id==a"}, true},
		{[]string{"engine.labels.ssd==true"}, false},
	} {
		if got, why := Admits(c.constraints, n); got != c.want || (!got && why == "") {
			t.Errorf("%v: %v (%s), want %v", c.constraints, got, why, c.want)
		}
	}
}

func brokersOf(st api.ScalingStatus) map[string]int32 {
	out := map[string]int32{}
	for _, b := range st.Nodes {
		if b.Active {
			out[b.Node] = b.Broker
		}
	}
	return out
}

// A broker per admitted node, tied to it: a join adds one, a drain or a
// label gone parks it (index and data kept), a return brings the same
// index back, and a node gone for good hands its index to the next one.
func TestPerNodeTiesABrokerToEachNode(t *testing.T) {
	t.Parallel()
	edge := map[string]string{"role": "mqtt"}
	cons := []string{"node.labels.role==mqtt"}
	nodes := []Node{node("c", edge), node("a", edge), node("b", nil)}
	d := PerNode(cons, nil, nodes, false)
	if got := brokersOf(d.Status); len(got) != 2 || got["a"] != 0 || got["c"] != 1 || d.Status.Replicas != 2 || len(d.Events) != 2 {
		t.Fatalf("first: %v replicas %d events %v", got, d.Status.Replicas, d.Events)
	}
	// Unchanged: nothing happens.
	again := PerNode(cons, &d.Status, nodes, false)
	if len(again.Events) != 0 || !slices.Equal(again.Status.Nodes, d.Status.Nodes) {
		t.Fatalf("unchanged nodes changed the status: %v %v", again.Events, again.Status.Nodes)
	}
	// b gets the label: broker 2.
	nodes[2].Labels = edge
	d = PerNode(cons, &d.Status, nodes, false)
	if got := brokersOf(d.Status); got["b"] != 2 || d.Status.Replicas != 3 {
		t.Fatalf("join: %v", got)
	}
	// a is drained: broker 0 parked, the others keep theirs.
	nodes[1].Active = false
	d = PerNode(cons, &d.Status, nodes, false)
	c := &api.MqttCluster{}
	c.Spec.Scaling.Mode = api.ScalingPerNode
	c.Status.Scaling = &d.Status
	if got := brokersOf(d.Status); len(got) != 2 || got["c"] != 1 || got["b"] != 2 || d.Status.Replicas != 3 ||
		!api.Parked(c)[0] || len(d.Events) != 1 || !strings.Contains(d.Events[0].Message, "broker 0 parked: node host-a is drained") {
		t.Fatalf("drain: %v parked %v events %v", got, api.Parked(c), d.Events)
	}
	// a returns: broker 0 again.
	nodes[1].Active = true
	d = PerNode(cons, &d.Status, nodes, false)
	if got := brokersOf(d.Status); got["a"] != 0 || d.Events[0].Reason != "BrokerReturned" {
		t.Fatalf("return: %v %v", got, d.Events)
	}
	// c leaves the Swarm for good, d joins: d takes broker 1.
	nodes = []Node{nodes[1], nodes[2], node("d", edge)}
	d = PerNode(cons, &d.Status, nodes, false)
	if got := brokersOf(d.Status); got["d"] != 1 || got["a"] != 0 || got["b"] != 2 || d.Status.Replicas != 3 {
		t.Fatalf("replace: %v %v", got, d.Events)
	}
	if api.BrokerNode(&api.MqttCluster{Spec: c.Spec, Status: api.MqttClusterStatus{Scaling: &d.Status}}, 1) != "d" {
		t.Fatal("broker 1 not tied to d")
	}
}

func TestPerNodeStopsAtFifteenBrokers(t *testing.T) {
	t.Parallel()
	var nodes []Node
	for i := 0; i < 17; i++ {
		nodes = append(nodes, node(string(rune('a'+i)), nil))
	}
	d := PerNode(nil, nil, nodes, false)
	if d.Status.Replicas != 15 || len(brokersOf(d.Status)) != 15 {
		t.Fatalf("replicas %d", d.Status.Replicas)
	}
	warned := 0
	for _, e := range d.Events {
		if e.Reason == "NoBrokerSlot" {
			warned++
		}
	}
	if warned != 2 {
		t.Fatalf("events %v", d.Events)
	}
}
