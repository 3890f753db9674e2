//go:build e2e_ha

package ha

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// syncSpec is a cluster with spec.sync, anonymous plain MQTT on port, a
// load balancer on every node.
func syncSpec(name string, replicas, port int, autosave string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: %d
  auth: {allowAnonymous: true}
  broker: {persistence: {autosaveInterval: %s}}
  loadBalancer: {replicas: 3, ports: {mqtt: %d, mqtts: 0}}
  sync: {enabled: true, delay: 1s}
`, name, replicas, autosave, port))
}

// mqttClient connects to host:port with a client id; clean=false keeps
// the session (and queues QoS 1 messages) while it is away.
func mqttClient(host string, port int, id string, clean bool, onMsg mqtt.MessageHandler) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://%s:%d", host, port)).SetClientID(id).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second).SetOrderMatters(false)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s to %s:%d: %v", id, host, port, tok.Error())
	}
	return c, nil
}

// deviceClient connects as a device does, trying again every poll for up
// to 15 s while the connection is refused: a broker that has just started
// (or restarted) admits clients only once it has joined the cluster and
// has the operator's users, at most 10 s (README "Chaos soak"), and a
// cluster's Ready says its bridges are up, not that every broker has
// heard the others' gossip yet.
func deviceClient(t *testing.T, host string, port int, id string, clean bool) mqtt.Client {
	t.Helper()
	var c mqtt.Client
	eventually(t, "connecting "+id, 15*time.Second, func() error {
		var err error
		c, err = mqttClient(host, port, id, clean, nil)
		return err
	})
	return c
}

// setAvailability sets a node's availability through manager via, as
// `docker node update` does, trying again for up to 30 s while Swarm
// refuses: "update out of sequence" (the node object changed between the
// CLI's read and its write, as Swarm updates a node's status itself: the
// optimistic-concurrency conflict a client retries), or its managers are
// electing a leader (right after a node cut). An error that lasts fails
// the test with Swarm's answer.
func setAvailability(t *testing.T, via, node, availability string) {
	t.Helper()
	eventually(t, "node update --availability "+availability+" "+node, 30*time.Second, func() error {
		if out, err := exec.Command("docker", "exec", via, "docker", "node", "update", "--availability", availability, node).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// addWorker starts node mqtt-m<i> and joins it to the Swarm as a worker;
// it leaves and is removed when the test ends.
func addWorker(t *testing.T, i int) {
	t.Helper()
	name := fmt.Sprintf("mqtt-m%d", i)
	sh(t, root()+"/hack/dind.sh", "worker", strconv.Itoa(i))
	t.Cleanup(func() {
		_ = exec.Command("docker", "exec", name, "docker", "swarm", "leave", "--force").Run()
		_ = exec.Command("docker", "exec", nodes[0], "docker", "node", "rm", "--force", name).Run()
		_ = exec.Command("docker", "rm", "-f", name).Run()
		_ = os.RemoveAll("/var/lib/" + name)
	})
}

// receiveQueued connects a persistent session back (id, clean session
// off) and waits for n distinct messages queued for it.
func receiveQueued(t *testing.T, host string, port int, id string, n int, within time.Duration) {
	t.Helper()
	got := make(chan string, 100)
	sub, err := mqttClient(host, port, id, false, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Disconnect(100)
	seen := map[string]bool{}
	deadline := time.After(within)
	for len(seen) < n {
		select {
		case p := <-got:
			seen[p] = true
		case <-deadline:
			t.Fatalf("queued messages received by %s: %d of %d: %v", id, len(seen), n, seen)
		}
	}
}

func wait(tok mqtt.Token) error {
	if !tok.WaitTimeout(5 * time.Second) {
		return fmt.Errorf("timed out")
	}
	return tok.Error()
}

// copyHas reports whether a node's copy of a broker volume holds s
// (Mosquitto's database keeps topics and payloads as they are).
func copyHas(node, volume, s string) bool {
	out, _ := exec.Command("docker", "exec", node, "grep", "-a", "-c", s, "/var/lib/docker/volumes/"+volume+"/_data/mosquitto.db").Output()
	return strings.TrimSpace(string(out)) != "" && strings.TrimSpace(string(out)) != "0"
}

func (e *env) cluster(t *testing.T, name string) *api.MqttCluster {
	t.Helper()
	var c *api.MqttCluster
	eventually(t, "reading "+name, 30*time.Second, func() error {
		var err error
		c, err = e.c.GetConsistent(context.Background(), name)
		return err
	})
	return c
}

func syncTargets(c *api.MqttCluster, brokerName string) (source string, targets []string) {
	if c.Status.Sync == nil {
		return "", nil
	}
	for _, b := range c.Status.Sync.Brokers {
		if b.Name == brokerName {
			for _, t := range b.Targets {
				targets = append(targets, t.Node)
			}
			slices.Sort(targets)
			return b.Source, targets
		}
	}
	return "", nil
}

func brokerNode(c *api.MqttCluster, brokerName string) (node, state string) {
	for _, b := range c.Status.Brokers {
		if b.Name == brokerName {
			return b.Node, b.State
		}
	}
	return "", ""
}

func healthy(c *api.MqttCluster) error {
	for _, ct := range []string{api.ConditionReady, api.ConditionSyncHealthy} {
		if !meta.IsStatusConditionTrue(c.Status.Conditions, ct) {
			return fmt.Errorf("%s: %+v", ct, meta.FindStatusCondition(c.Status.Conditions, ct))
		}
	}
	return nil
}

func taskID(t *testing.T, via, service string) string {
	return onNode(t, via, "service", "ps", service, "--filter", "desired-state=running", "-q", "--no-trunc")
}

// TestBrokerDataFollowsItsBroker: spec.sync on a real three-manager
// Swarm with real lsyncd and rsync.
func TestBrokerDataFollowsItsBroker(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const name, port = "s1", 21883
	const broker, volume = name + "-broker-0", name + "-broker-0-data"
	if _, err := e.c.Apply(ctx, syncSpec(name, 1, port, "1s")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), name) })
	e.explainOnFailure(t, name)
	var home string
	eventually(t, name+" Ready and SyncHealthy, its broker's node the source and the two others targets", 120*time.Second, func() error {
		c := e.cluster(t, name)
		if err := healthy(c); err != nil {
			return err
		}
		home, _ = brokerNode(c, broker)
		if src, targets := syncTargets(c, broker); src != home || !slices.Equal(targets, others(nodes, home)) {
			return fmt.Errorf("broker on %s: source %s, targets %v", home, src, targets)
		}
		return nil
	})
	rest := others(nodes, home)
	syncPanelsHaveSeries(t, e, name)

	// A persistent session with a QoS 1 subscription, offline while
	// messages are queued for it, and a retained message.
	nonce := fmt.Sprint(time.Now().UnixNano())
	sub := deviceClient(t, e.ip[rest[0]], port, "keeper-"+nonce, false)
	if err := wait(sub.Subscribe("s1/queue", 1, nil)); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(100)
	pub := deviceClient(t, e.ip[rest[0]], port, "pub-"+nonce, true)
	if err := wait(pub.Publish("s1/retained", 1, true, "retained-"+nonce)); err != nil {
		t.Fatal(err)
	}
	const queued = 5
	for i := 0; i < queued; i++ {
		if err := wait(pub.Publish("s1/queue", 1, false, fmt.Sprintf("queued-%s-%d", nonce, i))); err != nil {
			t.Fatal(err)
		}
	}
	pub.Disconnect(100)
	// Saved within the autosave interval (1 s), synced a delay (1 s) later.
	took := eventually(t, "the queued and retained messages in the copies on both targets", 30*time.Second, func() error {
		for _, n := range rest {
			if !copyHas(n, volume, fmt.Sprintf("queued-%s-%d", nonce, queued-1)) || !copyHas(n, volume, "retained-"+nonce) {
				return fmt.Errorf("not on %s yet", n)
			}
		}
		return nil
	})
	t.Logf("published → on both targets in %s", took.Round(time.Millisecond))

	// The receivers refuse a push from a node that is not the source, and
	// a push into a broker that runs on the receiver.
	agentOn := func(node string) string {
		return onNode(t, node, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+name+"-sync")
	}
	pw := onNode(t, rest[0], "exec", agentOn(rest[0]), "cat", "/run/secrets/sync-password")
	// From inside an agent (with its certificate: through the tunnel, as
	// lsyncd's rsync goes), the rules still decide by the pusher's real
	// address, which the tunnel passes on.
	const tunnel = "RSYNC_CONNECT_PROG=/usr/local/bin/mqtt-operator sync-connect --tls-file /run/secrets/sync-tls.pem --ca-file /run/secrets/control-ca.crt %H:873"
	tryPushWith := func(from, to string, env ...string) (string, error) {
		ip := onNode(t, to, "inspect", agentOn(to), "-f", `{{(index .NetworkSettings.Networks "mqtt-operator-control").IPAddress}}`)
		args := []string{"exec", from, "docker", "exec", "-e", "RSYNC_PASSWORD=" + pw}
		for _, kv := range env {
			args = append(args, "-e", kv)
		}
		args = append(args, agentOn(from), "timeout", "20", "rsync", "-a", "--contimeout=5", "/etc/hostname", "rsync://sync@"+ip+"/"+volume+"/")
		out, err := exec.Command("docker", args...).CombinedOutput()
		return string(out), err
	}
	tryPush := func(from, to string) (string, error) { return tryPushWith(from, to, tunnel) }
	// Without the tunnel (plain rsync, password known): no rsync daemon
	// answers on the network at all.
	if out, err := tryPushWith(rest[0], rest[1]); err == nil || strings.Contains(out, "is not the source") || strings.Contains(out, "@RSYNCD") {
		t.Fatalf("a plain rsync connection reached the daemon: %v\n%s", err, out)
	}
	if out, err := tryPush(rest[0], rest[1]); err == nil || !strings.Contains(out, "is not the source") {
		t.Fatalf("a push from a node that is not the source was not refused: %v\n%s", err, out)
	}
	if out, err := tryPush(rest[0], home); err == nil || !strings.Contains(out, "runs on this node") {
		t.Fatalf("a push into the node running the broker was not refused: %v\n%s", err, out)
	}

	// Stop the broker's node: Swarm reschedules the broker on another
	// node, where it starts from the copy.
	stopped := time.Now()
	sh(t, "docker", "stop", home)
	t.Cleanup(func() { _ = exec.Command("docker", "start", home).Run() })
	var moved string
	eventually(t, "the broker running on another node", 120*time.Second, func() error {
		cl, err := e.c.GetConsistent(ctx, name)
		if err != nil {
			return err
		}
		n, st := brokerNode(cl, broker)
		if n == home || st != "running" {
			return fmt.Errorf("broker on %s, %s", n, st)
		}
		moved = n
		return nil
	})
	var retained string
	took = eventually(t, "the retained message served on "+moved, 60*time.Second, func() error {
		var err error
		retained, err = readRetained(e.ip[moved], port, "reader-"+nonce, "s1/retained")
		return err
	})
	if retained != "retained-"+nonce {
		t.Fatalf("retained message after the move: %q, want %q", retained, "retained-"+nonce)
	}
	t.Logf("node stopped → retained message served on %s: %s (probe %s)", moved, time.Since(stopped).Round(time.Millisecond), took.Round(time.Millisecond))
	// The subscriber comes back to its session and gets what was queued.
	receiveQueued(t, e.ip[moved], port, "keeper-"+nonce, queued, 15*time.Second)

	// A change on the new node, then the old node returns: it becomes a
	// target again and its old copy is replaced, never the other way.
	pub = deviceClient(t, e.ip[moved], port, "pub2-"+nonce, true)
	if err := wait(pub.Publish("s1/retained", 1, true, "after-"+nonce)); err != nil {
		t.Fatal(err)
	}
	pub.Disconnect(100)
	sh(t, "docker", "start", home)
	wait3 := eventually(t, home+" back as a target, with the new data", 120*time.Second, func() error {
		cl, err := e.c.GetConsistent(ctx, name)
		if err != nil {
			return err
		}
		src, ts := syncTargets(cl, broker)
		if src != moved || !slices.Contains(ts, home) {
			return fmt.Errorf("source %s, targets %v", src, ts)
		}
		if !copyHas(home, volume, "after-"+nonce) {
			return fmt.Errorf("the copy on %s does not have the new retained message yet", home)
		}
		return nil
	})
	t.Logf("old node started → a target with the new data in %s", wait3.Round(time.Millisecond))
	if !copyHas(moved, volume, "after-"+nonce) {
		t.Fatalf("the running broker's data on %s lost the new retained message", moved)
	}
	// And through MQTT: the retained message is the new one.
	c2, err := mqttClient(e.ip[moved], port, "reader2-"+nonce, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := make(chan string, 1)
	if err := wait(c2.Subscribe("s1/retained", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case r <- string(m.Payload()):
		default:
		}
	})); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-r:
		if v != "after-"+nonce {
			t.Fatalf("retained message after the old node returned: %q, want %q", v, "after-"+nonce)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained message after the old node returned")
	}
	c2.Disconnect(100)

	// Targets follow the nodes: a drained node is dropped, an active one
	// comes back, a new worker becomes one; the broker is not restarted.
	task := taskID(t, moved, broker)
	drain := others(nodes, moved)[0]
	if drain == home {
		drain = others(nodes, moved)[1]
	}
	setAvailability(t, moved, drain, "drain")
	eventually(t, drain+" dropped from the targets", 60*time.Second, func() error {
		cl, err := e.c.GetConsistent(ctx, name)
		if err != nil {
			return err
		}
		if _, ts := syncTargets(cl, broker); slices.Contains(ts, drain) || len(ts) == 0 {
			return fmt.Errorf("targets %v", ts)
		}
		return nil
	})
	setAvailability(t, moved, drain, "active")
	eventually(t, drain+" a target again", 60*time.Second, func() error {
		cl, err := e.c.GetConsistent(ctx, name)
		if err != nil {
			return err
		}
		if _, ts := syncTargets(cl, broker); !slices.Contains(ts, drain) {
			return fmt.Errorf("targets %v", ts)
		}
		return nil
	})
	addWorker(t, 4)
	eventually(t, "the new worker mqtt-m4 a target", 120*time.Second, func() error {
		cl, err := e.c.GetConsistent(ctx, name)
		if err != nil {
			return err
		}
		if _, ts := syncTargets(cl, broker); !slices.Contains(ts, "mqtt-m4") {
			return fmt.Errorf("targets %v", ts)
		}
		if !copyHas("mqtt-m4", volume, "after-"+nonce) {
			return fmt.Errorf("no copy on mqtt-m4 yet")
		}
		return nil
	})
	if now := taskID(t, moved, broker); now != task {
		t.Fatalf("the broker's task changed while targets changed: %s -> %s", task, now)
	}
}

// TestScaleDownSyncsTheLastState: a broker removed by a scale-down is
// stopped first (Mosquitto saves its state) and that state synced before
// its service goes. The autosave interval is an hour, so only the stop
// can have written the message to disk.
func TestScaleDownSyncsTheLastState(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const name, port = "s2", 21884
	const volume = name + "-broker-1-data"
	if _, err := e.c.Apply(ctx, syncSpec(name, 2, port, "1h")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), name) })
	e.explainOnFailure(t, name)
	var c *api.MqttCluster
	eventually(t, name+" Ready and SyncHealthy", 120*time.Second, func() error {
		c = e.cluster(t, name)
		return healthy(c)
	})
	home, _ := brokerNode(c, name+"-broker-1")
	nonce := fmt.Sprint(time.Now().UnixNano())
	// Retained messages reach every broker over the bridges.
	pub := deviceClient(t, e.ip[nodes[0]], port, "pub-"+nonce, true)
	if err := wait(pub.Publish("s2/last", 1, true, "final-"+nonce)); err != nil {
		t.Fatal(err)
	}
	pub.Disconnect(100)
	eventually(t, "broker 1 holding the retained message", 30*time.Second, func() error {
		ctr := strings.TrimSpace(onNode(t, home, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+name+"-broker-1"))
		out, _ := exec.Command("docker", "exec", home, "docker", "exec", ctr, "mosquitto_sub", "-h", "127.0.0.1", "-p", "1883", "--cafile", "/run/secrets/control-ca.crt", "--insecure", "-t", "s2/last", "-C", "1", "-W", "2").Output()
		if strings.TrimSpace(string(out)) != "final-"+nonce {
			return fmt.Errorf("broker 1 has %q", out)
		}
		return nil
	})
	doc := syncSpec(name, 1, port, "1h")
	if _, err := e.c.Apply(ctx, doc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "broker 1's service removed", 120*time.Second, func() error {
		if out, _ := exec.Command("docker", "exec", nodes[0], "docker", "service", "ls", "-q", "--filter", "name="+name+"-broker-1").Output(); strings.TrimSpace(string(out)) != "" {
			return fmt.Errorf("still there")
		}
		return nil
	})
	for _, n := range others(nodes, home) {
		if !copyHas(n, volume, "final-"+nonce) {
			t.Errorf("the copy of broker 1 on %s lacks the message it held when it was stopped", n)
		}
	}
	if t.Failed() {
		// What the operator saw: the events (a removal without a confirmed
		// sync says why) and the agents' logs on broker 1's node.
		if ev, err := e.c.Events(ctx, name); err == nil {
			for _, x := range ev.Items {
				t.Logf("event %s %s: %s", x.Type, x.Reason, x.Message)
			}
		}
		agent := strings.TrimSpace(onNode(t, home, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+name+"-sync"))
		if f := strings.Fields(agent); len(f) > 0 {
			out, _ := exec.Command("docker", "exec", home, "docker", "logs", "--tail", "40", f[0]).CombinedOutput()
			t.Logf("sync agent on %s:\n%s", home, out)
		}
	}

	// spec.sync.enabled: false removes the agents and their secret; the
	// cluster stays Ready.
	if _, err := e.c.Apply(ctx, []byte(strings.Replace(string(syncSpec(name, 1, port, "1h")), "enabled: true", "enabled: false", 1))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sync agents and their secret removed, the cluster Ready", 120*time.Second, func() error {
		for _, args := range [][]string{{"service", "ls", "-q", "--filter", "name=" + name + "-sync"}, {"secret", "ls", "-q", "--filter", "name=" + name + "-sync-password"}} {
			if out, _ := exec.Command("docker", append([]string{"exec", nodes[0], "docker"}, args...)...).Output(); strings.TrimSpace(string(out)) != "" {
				return fmt.Errorf("%v: still there", args)
			}
		}
		c := e.cluster(t, name)
		if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) || meta.FindStatusCondition(c.Status.Conditions, api.ConditionSyncHealthy) != nil || c.Status.Sync != nil {
			return fmt.Errorf("status: %+v", c.Status.Conditions)
		}
		return nil
	})
}

// syncPanelsHaveSeries: every metric the dashboard's sync panels query
// (those marked mqttRequires: sync, which the one-node e2e Swarm cannot
// fill) has a series for the cluster in an operator's /metrics.
func syncPanelsHaveSeries(t *testing.T, e *env, cluster string) {
	t.Helper()
	metric := regexp.MustCompile(`mqttoperator_[a-z_]+`)
	recorded := regexp.MustCompile(`mqtt_[a-z_]+:[a-z_0-9:]+`)
	rules := testutil.RecordingRules(t, "../..")
	var names []string
	for _, p := range testutil.DashboardPanels(t, "../..") {
		if p.Requires != "sync" {
			continue
		}
		for _, tg := range p.Targets {
			// A recorded series (rules.yml) stands for what its rule reads.
			expr := recorded.ReplaceAllStringFunc(tg.Expr, func(r string) string { return rules[r] })
			names = append(names, metric.FindAllString(expr, -1)...)
		}
	}
	if len(names) == 0 {
		t.Fatal("the dashboard has no sync panel query")
	}
	eventually(t, "the sync panels' metrics have series for "+cluster, 30*time.Second, func() error {
		text, err := testutil.Scrape(e.api(nodes[0]))
		if err != nil {
			return err
		}
		for _, n := range names {
			if !regexp.MustCompile(`(?m)^` + n + `\{[^}]*cluster="` + cluster + `"`).MatchString(text) {
				return fmt.Errorf("no %s series for %s", n, cluster)
			}
		}
		return nil
	})
	t.Logf("sync panels: %v have series for %s", names, cluster)
}
