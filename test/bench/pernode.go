package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

// perNodeBenchSpec: anonymous MQTT on port, a load balancer on two nodes,
// autosave at 1 h (queued messages exist only in the state a broker saves
// when it stops), and the scaling part of the spec.
func perNodeBenchSpec(name string, port int, scaling string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
%s
  auth: {allowAnonymous: true}
  broker: {persistence: {autosaveInterval: 1h}}
  loadBalancer: {replicas: 2, ports: {mqtt: %d, mqtts: 0}}
`, name, scaling, port))
}

// brokerTLS: a Mosquitto client inside a broker's container, against the
// broker itself (TLS on its client port).
var brokerTLS = []string{"-h", "127.0.0.1", "-p", "1883", "--cafile", "/run/secrets/control-ca.crt", "--insecure"}

// inBroker runs a Mosquitto client in broker svc's container on node.
func inBroker(node, svc string, args ...string) (string, error) {
	ctr, err := sh("docker", "exec", node, "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)
	if err != nil || ctr == "" {
		return "", fmt.Errorf("no container of %s on %s", svc, node)
	}
	out, err := exec.Command("docker", append([]string{"exec", node, "docker", "exec", ctr}, append(args, brokerTLS...)...)...).CombinedOutput()
	return string(out), err
}

// waitCluster polls name until ok says yes (or 4 minutes pass).
func waitCluster(ctx context.Context, cl *client.Client, name string, ok func(*api.MqttCluster) error) (*api.MqttCluster, error) {
	deadline := time.Now().Add(4 * time.Minute)
	for {
		c, err := cl.GetConsistent(ctx, name)
		if err == nil {
			if err = ok(c); err == nil {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyWith: Ready at the latest generation (and SyncHealthy with sync),
// n brokers running.
func readyWith(n int) func(*api.MqttCluster) error {
	return func(c *api.MqttCluster) error {
		conds := []string{api.ConditionReady}
		if c.Spec.Sync.Enabled != nil && *c.Spec.Sync.Enabled {
			conds = append(conds, api.ConditionSyncHealthy)
		}
		for _, ct := range conds {
			if c.Status.ObservedGeneration < c.Generation || !meta.IsStatusConditionTrue(c.Status.Conditions, ct) {
				return fmt.Errorf("not %s: %+v", ct, meta.FindStatusCondition(c.Status.Conditions, ct))
			}
		}
		running := 0
		for _, b := range c.Status.Brokers {
			if b.State == "running" {
				running++
			}
		}
		if running != n {
			return fmt.Errorf("%d/%d brokers running", running, n)
		}
		return nil
	}
}

func brokerOn(c *api.MqttCluster, svc string) string {
	for _, b := range c.Status.Brokers {
		if b.Name == svc {
			return b.Node
		}
	}
	return ""
}

// drainMove: a persistent session on broker i of cluster name (already
// Ready with n brokers) with four QoS 1 messages queued, the broker's node
// drained: the time until the four are delivered on the node it moved to.
func drainMove(ctx context.Context, cl *client.Client, nodes []haNode, name string, i, n int) (time.Duration, error) {
	c, err := waitCluster(ctx, cl, name, readyWith(n))
	if err != nil {
		return 0, err
	}
	svc := api.BrokerService(name, i)
	home := brokerOn(c, svc)
	id := fmt.Sprintf("bench-pn-%d", time.Now().UnixNano())
	if out, err := inBroker(home, svc, "mosquitto_sub", "-i", id, "-c", "-q", "1", "-t", "bench/q", "-E"); err != nil {
		return 0, fmt.Errorf("subscribe on %s: %v %s", home, err, out)
	}
	for k := 0; k < 4; k++ {
		if out, err := inBroker(home, svc, "mosquitto_pub", "-q", "1", "-t", "bench/q", "-m", fmt.Sprintf("queued-%d", k)); err != nil {
			return 0, fmt.Errorf("publish on %s: %v %s", home, err, out)
		}
	}
	via := nodes[0].name
	if via == home {
		via = nodes[1].name
	}
	start := time.Now()
	if _, err := sh("docker", "exec", via, "docker", "node", "update", "--availability", "drain", home); err != nil {
		return 0, err
	}
	defer func() { _, _ = sh("docker", "exec", via, "docker", "node", "update", "--availability", "active", home) }()
	deadline := start.Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			if nd.name == home {
				continue
			}
			out, _ := inBroker(nd.name, svc, "mosquitto_sub", "-i", id, "-c", "-q", "1", "-t", "bench/q", "-C", "4", "-W", "2")
			if got := strings.Count(out, "queued-"); got == 4 {
				return time.Since(start), nil
			} else if got > 0 {
				return 0, fmt.Errorf("%s on %s delivered %d of the 4 queued messages: %q", svc, nd.name, got, out)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s's queued messages not delivered within 3m of the drain of %s", svc, home)
}

// runPerNodeBench measures scaling PerNode on the docker-in-docker Swarm
// of make up MANAGERS=3, each figure against its Fixed-mode counterpart
// in the same run: a drained node's broker (with spec.sync) serving its
// queued messages elsewhere, and a joining worker's broker Ready.
func runPerNodeBench(ctx context.Context, cl *client.Client, nodes []haNode) error {
	const runs = 2
	var fixed, pernode []time.Duration
	for r := 0; r < runs; r++ {
		for _, m := range []struct {
			name, scaling string
			out           *[]time.Duration
			broker, n     int
		}{
			{"bpf", "  replicas: 1\n  sync: {enabled: true, delay: 1s}", &fixed, 0, 1},
			{"bpn", "  scaling: {mode: PerNode}\n  sync: {enabled: true, delay: 1s}", &pernode, 1, len(nodes)},
		} {
			if _, err := cl.Apply(ctx, perNodeBenchSpec(m.name, 21891, m.scaling)); err != nil {
				return err
			}
			d, err := drainMove(ctx, cl, nodes, m.name, m.broker, m.n)
			if err != nil {
				return err
			}
			*m.out = append(*m.out, d)
			if _, err := waitCluster(ctx, cl, m.name, readyWith(m.n)); err != nil {
				return err
			}
			if err := cl.Delete(ctx, m.name); err != nil {
				return err
			}
			if err := gone(ctx, cl, nodes[0].name, m.name); err != nil {
				return err
			}
		}
	}
	fmt.Printf("\nnode drained -> its broker's persistent session serving its 4 queued QoS 1 messages on another node (spec.sync, autosave 1h: only in the state saved at the stop), %d runs each:\n", runs)
	fmt.Printf("  Fixed (Swarm moves the broker): median %s (min %s max %s)\n", ms(pct(fixed, 50)), ms(pct(fixed, 0)), ms(pct(fixed, 100)))
	fmt.Printf("  PerNode (the operator sends it away): median %s (min %s max %s)  ratio %.2f\n", ms(pct(pernode, 50)), ms(pct(pernode, 0)), ms(pct(pernode, 100)),
		float64(pct(pernode, 50))/float64(pct(fixed, 50)))

	// A worker joins: its broker Ready, against one more broker by hand.
	const name = "bpj"
	if _, err := cl.Apply(ctx, perNodeBenchSpec(name, 21892, "  replicas: 3")); err != nil {
		return err
	}
	defer cl.Delete(context.Background(), name)
	if _, err := waitCluster(ctx, cl, name, readyWith(3)); err != nil {
		return err
	}
	start := time.Now()
	if _, err := cl.Apply(ctx, perNodeBenchSpec(name, 21892, "  replicas: 4")); err != nil {
		return err
	}
	if _, err := waitCluster(ctx, cl, name, readyWith(4)); err != nil {
		return err
	}
	byHand := time.Since(start)
	if _, err := cl.Apply(ctx, perNodeBenchSpec(name, 21892, "  scaling: {mode: PerNode}")); err != nil {
		return err
	}
	if _, err := waitCluster(ctx, cl, name, readyWith(len(nodes))); err != nil {
		return err
	}
	const worker = "mqtt-m5"
	root, _ := filepath.Abs(".")
	defer func() {
		_, _ = sh("docker", "exec", worker, "docker", "swarm", "leave", "--force")
		_, _ = sh("docker", "exec", nodes[0].name, "docker", "node", "rm", "--force", worker)
		_, _ = sh("docker", "rm", "-f", worker)
		_ = os.RemoveAll("/var/lib/" + worker)
	}()
	joinStart := time.Now()
	if out, err := exec.Command(filepath.Join(root, "hack/dind.sh"), "worker", "5").CombinedOutput(); err != nil {
		return fmt.Errorf("worker: %v %s", err, out)
	}
	joined := time.Since(joinStart)
	start = time.Now()
	c, err := waitCluster(ctx, cl, name, readyWith(len(nodes)+1))
	if err != nil {
		return err
	}
	perNode := time.Since(start)
	if on := brokerOn(c, api.BrokerService(name, len(nodes))); on != worker {
		return fmt.Errorf("the new broker runs on %q, not on %s", on, worker)
	}
	fmt.Printf("a node joins -> its broker running and the cluster Ready: PerNode %s after the join (the node's own start and join: %s; its images pulled from the registry), one more broker by hand (Fixed, spec.replicas 3 -> 4, images on the nodes): %s  ratio %.2f\n",
		perNode.Round(time.Millisecond), joined.Round(time.Millisecond), byHand.Round(time.Millisecond), float64(perNode)/float64(byHand))
	return nil
}

// gone waits until the cluster's services are removed (the next cluster
// of the bench reuses its port).
func gone(ctx context.Context, cl *client.Client, via, name string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := cl.Get(ctx, name); err != nil && strings.Contains(err.Error(), "not found") {
			out, _ := sh("docker", "exec", via, "docker", "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+name)
			if out == "" {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not gone within 2m", name)
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
