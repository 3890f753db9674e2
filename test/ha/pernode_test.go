//go:build e2e_ha

package ha

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

func perNodeSpec(name string, port int, extra string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  scaling: {mode: PerNode}
  auth: {allowAnonymous: true}
  loadBalancer: {replicas: 2, ports: {mqtt: %d, mqtts: 0}}
%s`, name, port, extra))
}

// brokerExec runs a Mosquitto client inside broker svc's container on
// node, against the broker itself (TLS on its client port).
func brokerExec(t *testing.T, node, svc string, args ...string) (string, error) {
	t.Helper()
	ctr := strings.TrimSpace(onNode(t, node, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc))
	if ctr == "" {
		return "", fmt.Errorf("no container of %s on %s", svc, node)
	}
	out, err := exec.Command("docker", append([]string{"exec", node, "docker", "exec", ctr}, args...)...).CombinedOutput()
	return string(out), err
}

var brokerTLS = []string{"-h", "127.0.0.1", "-p", "1883", "--cafile", "/run/secrets/control-ca.crt", "--insecure"}

// TestPerNodeBrokersFollowTheNodes: scaling PerNode puts a broker on each
// of the three managers, pinned; a node drained parks its broker (the
// cluster Ready on the others) and its return brings the same broker back
// on it with its data — a persistent session's queued messages delivered;
// a worker that joins gets a broker of its own, serving through HAProxy.
func TestPerNodeBrokersFollowTheNodes(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const name, port = "pn", 24885
	if _, err := e.c.Apply(ctx, perNodeSpec(name, port, "  broker: {persistence: {autosaveInterval: 1h}}\n")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), name) })
	e.explainOnFailure(t, name)
	var c *api.MqttCluster
	eventually(t, name+" Ready with a broker on each manager", 180*time.Second, func() error {
		c = e.cluster(t, name)
		if err := ready(c); err != nil {
			return err
		}
		if api.Brokers(c) != len(nodes) || len(api.Parked(c)) != 0 {
			return fmt.Errorf("brokers %d parked %v", api.Brokers(c), api.Parked(c))
		}
		return nil
	})
	// Each broker runs on the node it is tied to.
	home := map[int]string{}
	for _, b := range c.Status.Scaling.Nodes {
		on, state := brokerNode(c, api.BrokerService(name, int(b.Broker)))
		if on != b.Hostname || state != "running" {
			t.Fatalf("broker %d tied to %s runs on %q (%s)", b.Broker, b.Hostname, on, state)
		}
		home[int(b.Broker)] = b.Hostname
	}

	// A persistent session on the broker of the last manager, with three
	// QoS 1 messages queued for it.
	const k = 2
	node, svc := home[k], api.BrokerService(name, k)
	if out, err := brokerExec(t, node, svc, append([]string{"mosquitto_sub", "-i", "pn-sub", "-c", "-q", "1", "-t", "pn/q", "-E"}, brokerTLS...)...); err != nil {
		t.Fatalf("subscribe: %v %s", err, out)
	}
	for i := 0; i < 3; i++ {
		if out, err := brokerExec(t, node, svc, append([]string{"mosquitto_pub", "-q", "1", "-t", "pn/q", "-m", fmt.Sprintf("queued-%d", i)}, brokerTLS...)...); err != nil {
			t.Fatalf("publish: %v %s", err, out)
		}
	}

	// Drained: broker k parked, the cluster Ready on the two others.
	setAvailability(t, nodes[0], node, "drain")
	t.Cleanup(func() {
		setAvailability(t, nodes[0], node, "active")
	})
	eventually(t, svc+" parked, the cluster Ready without it", 120*time.Second, func() error {
		c = e.cluster(t, name)
		if !api.Parked(c)[k] {
			return fmt.Errorf("not parked: %+v", c.Status.Scaling)
		}
		if _, state := brokerNode(c, svc); state != "parked" {
			return fmt.Errorf("broker state %s", state)
		}
		return ready(c)
	})
	// Its container stops (Mosquitto saves its state on the way out).
	eventually(t, "the parked broker's container gone", 30*time.Second, func() error {
		if out := strings.TrimSpace(onNode(t, node, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)); out != "" {
			return fmt.Errorf("still running: %s", out)
		}
		return nil
	})

	// Back: the same broker on the same node, its session and queue kept.
	setAvailability(t, nodes[0], node, "active")
	back := time.Now()
	eventually(t, svc+" back on "+node, 120*time.Second, func() error {
		c = e.cluster(t, name)
		if on, state := brokerNode(c, svc); on != node || state != "running" {
			return fmt.Errorf("%s on %q (%s)", svc, on, state)
		}
		return ready(c)
	})
	t.Logf("node back -> its broker running and the cluster Ready in %s", time.Since(back).Round(100*time.Millisecond))
	out, err := brokerExec(t, node, svc, append([]string{"mosquitto_sub", "-i", "pn-sub", "-c", "-q", "1", "-t", "pn/q", "-C", "3", "-W", "10"}, brokerTLS...)...)
	if err != nil || strings.Count(out, "queued-") != 3 {
		t.Fatalf("the returned broker's queued messages: %v %q", err, out)
	}

	// A worker joins: a broker of its own, serving through HAProxy.
	joined := time.Now()
	addWorker(t, 5)
	next := api.BrokerService(name, len(nodes))
	eventually(t, next+" on mqtt-m5, the cluster Ready", 180*time.Second, func() error {
		c = e.cluster(t, name)
		if on, state := brokerNode(c, next); on != "mqtt-m5" || state != "running" {
			return fmt.Errorf("%s on %q (%s)", next, on, state)
		}
		return ready(c)
	})
	t.Logf("worker joined -> its broker running and the cluster Ready in %s", time.Since(joined).Round(100*time.Millisecond))
	if len(c.Status.Endpoints) == 0 {
		t.Fatal("no endpoint in the status")
	}
	lb := strings.TrimPrefix(strings.Split(c.Status.Endpoints[0], ":")[1], "//") // mqtt://IP:PORT
	served := false
	for i := 0; i < 60 && !served; i++ {
		id := fmt.Sprintf("pn-probe-%d", i)
		cl, err := mqttClient(lb, port, id, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		cl.Disconnect(50)
		logs := onNode(t, nodes[0], "service", "logs", "--raw", next)
		served = strings.Contains(logs, " as "+id+" ")
	}
	if !served {
		t.Fatalf("none of 60 clients through HAProxy reached %s", next)
	}
}

// TestPerNodeWithSyncMovesADrainedNodesBroker: with spec.sync, the broker
// of a drained node is not parked: it runs on another node from the state
// it saved when the drain stopped it (a persistent session's queued
// messages delivered there, the last one published just before the
// drain), and goes home when the node returns, with what was queued
// meanwhile.
func TestPerNodeWithSyncMovesADrainedNodesBroker(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const name, port = "pns", 24886
	if _, err := e.c.Apply(ctx, perNodeSpec(name, port, "  broker: {persistence: {autosaveInterval: 1h}}\n  sync: {enabled: true, delay: 1s}\n")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), name) })
	e.explainOnFailure(t, name)
	const k = 2
	svc, volume := api.BrokerService(name, k), api.BrokerVolume(api.BrokerService(name, k))
	// On failure, before the cluster goes: what the agents and the
	// broker's containers said, on every node.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, n := range nodes {
			for _, s := range []string{name + "-sync", svc} {
				ids, _ := exec.Command("docker", "exec", n, "docker", "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+s).Output()
				for _, id := range strings.Fields(string(ids)) {
					out, _ := exec.Command("docker", "exec", n, "docker", "logs", "--timestamps", id).CombinedOutput()
					st, _ := exec.Command("docker", "exec", n, "docker", "inspect", "--format", "{{json .State}}", id).CombinedOutput()
					t.Logf("%s %s %s %s:\n%s", n, s, id, st, out)
				}
			}
		}
	})
	var node string
	eventually(t, name+" Ready and SyncHealthy with a broker on each manager", 180*time.Second, func() error {
		c := e.cluster(t, name)
		if err := healthy(c); err != nil {
			return err
		}
		if api.Brokers(c) != len(nodes) {
			return fmt.Errorf("brokers %d", api.Brokers(c))
		}
		var st string
		node, st = brokerNode(c, svc)
		if st != "running" || node == "" {
			return fmt.Errorf("%s on %q (%s)", svc, node, st)
		}
		return nil
	})
	// A client id and payloads of this run's: the volumes outlive a
	// deleted cluster.
	run := fmt.Sprint(time.Now().UnixNano())
	queued, awayMsg := "queued-"+run+"-", "away-"+run+"-"
	sub := append([]string{"mosquitto_sub", "-i", "pns-sub-" + run, "-c", "-q", "1", "-t", "pns/q"}, brokerTLS...)
	pub := func(on, msg string) {
		t.Helper()
		if out, err := brokerExec(t, on, svc, append([]string{"mosquitto_pub", "-q", "1", "-t", "pns/q", "-m", msg}, brokerTLS...)...); err != nil {
			t.Fatalf("publish on %s: %v %s", on, err, out)
		}
	}
	if out, err := brokerExec(t, node, svc, append(sub, "-E")...); err != nil {
		t.Fatalf("subscribe: %v %s", err, out)
	}
	for i := 0; i < 3; i++ {
		pub(node, fmt.Sprintf("%s%d", queued, i))
	}
	pub(node, queued+"late")
	// With autosave at 1h the messages are only in the state the broker
	// saves when the drain stops it: handed off by the node's stopping
	// sync agent, or lost.
	for _, n := range others(nodes, node) {
		if copyHas(n, volume, queued) {
			t.Fatalf("a queued message reached %s before the drain: the test cannot tell the handoff", n)
		}
	}
	setAvailability(t, nodes[0], node, "drain")
	t.Cleanup(func() {
		setAvailability(t, nodes[0], node, "active")
	})
	drained := time.Now()
	var away string
	eventually(t, svc+" running on another node, the cluster Ready", 120*time.Second, func() error {
		c := e.cluster(t, name)
		if !api.Away(c)[k] || len(api.Parked(c)) != 0 {
			return fmt.Errorf("away %v parked %v", api.Away(c), api.Parked(c))
		}
		var st string
		if away, st = brokerNode(c, svc); away == node || st != "running" {
			return fmt.Errorf("%s on %q (%s)", svc, away, st)
		}
		return ready(c)
	})
	t.Logf("node drained -> its broker running on %s and the cluster Ready in %s", away, time.Since(drained).Round(100*time.Millisecond))
	// Read for 5 s, not up to a count: mosquitto_sub -C disconnects from
	// the last message's callback, and the broker may not have every
	// acknowledgment by then (seen: QoS 1 redelivers what was not
	// acknowledged, at home after the return).
	received := func(on string) string {
		t.Helper()
		out, _ := brokerExec(t, on, svc, append(sub, "-W", "5")...) // exits 27 when the 5 s are up
		return out
	}
	out := received(away)
	for _, m := range []string{"0", "1", "2", "late"} {
		if !strings.Contains(out, queued+m+"\n") {
			t.Fatalf("the moved broker's queued messages (the last one saved at the stop): %s missing from %q", queued+m, out)
		}
	}
	// Queued while it is away, delivered at home: the return is a
	// planned move (stopped, saved, the newest copy pulled first).
	pub(away, awayMsg+"0")
	pub(away, awayMsg+"1")

	setAvailability(t, nodes[0], node, "active")
	back := time.Now()
	eventually(t, svc+" back on "+node, 120*time.Second, func() error {
		c := e.cluster(t, name)
		if on, st := brokerNode(c, svc); on != node || st != "running" || api.Away(c)[k] {
			return fmt.Errorf("%s on %q (%s), away %v", svc, on, st, api.Away(c))
		}
		return ready(c)
	})
	t.Logf("node back -> its broker home and the cluster Ready in %s", time.Since(back).Round(100*time.Millisecond))
	out = received(node)
	if !strings.Contains(out, awayMsg+"0\n") || !strings.Contains(out, awayMsg+"1\n") || strings.Contains(out, queued) {
		t.Fatalf("messages queued while away, after the return (and none of those delivered before it): %q", out)
	}
}

// ready: the cluster's status describes its generation and says Ready.
func ready(c *api.MqttCluster) error {
	if c.Status.ObservedGeneration < c.Generation || !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		return fmt.Errorf("%+v", meta.FindStatusCondition(c.Status.Conditions, api.ConditionReady))
	}
	return nil
}
