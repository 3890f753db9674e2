//go:build e2e_ha

package ha

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// swarmLeaderNode is the hostname of Swarm's raft leader.
func swarmLeaderNode(t *testing.T) string {
	t.Helper()
	// Right after a test that cut a node off, Swarm may be electing its
	// leader (a seed-12 run read no leader 2 s into the next test).
	var leader string
	eventually(t, "a Swarm leader", 30*time.Second, func() error {
		out, err := exec.Command("docker", "exec", nodes[0], "docker", "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}").CombinedOutput()
		if err != nil {
			return fmt.Errorf("node ls: %v %s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if h, st, _ := strings.Cut(strings.TrimSpace(l), " "); st == "Leader" {
				leader = h
				return nil
			}
		}
		return fmt.Errorf("no leader in %q", out)
	})
	return leader
}

// readRetained connects to host:port, subscribes to topic and returns the
// retained message served (1 s at most).
func readRetained(host string, port int, id, topic string) (string, error) {
	c, err := mqttClient(host, port, id, true, nil)
	if err != nil {
		return "", err
	}
	defer c.Disconnect(50)
	r := make(chan string, 1)
	if err := wait(c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case r <- string(m.Payload()):
		default:
		}
	})); err != nil {
		return "", err
	}
	select {
	case v := <-r:
		return v, nil
	case <-time.After(time.Second):
		return "", fmt.Errorf("no retained message")
	}
}

// TestLostNodesBrokerMovesAheadOfSwarm: a node running a broker of a
// cluster with spec.sync loses power (its docker-in-docker container
// killed). The operator finds it lost (its sync agent silent to the
// operator and to the other agents for 2 s) and moves the broker at once:
// its retained message and the QoS 1 messages queued for a persistent
// session are served through another node's load balancer before Swarm
// has even marked the node down (default 5 s heartbeat). When the node
// returns, the broker's exclusion of it is lifted without restarting it.
// The broker is kept off Swarm's raft leader: losing that node stalls
// every Swarm write until Swarm elects another (README).
func TestLostNodesBrokerMovesAheadOfSwarm(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := strconv.FormatInt(time.Now().Unix()%1000000, 36)
	name, port := "nl-"+run, 21896
	broker, home, spare := offLeaderCluster(t, e, name, port)
	volume := broker + "-data"

	// A persistent session offline with queued QoS 1 messages, and a
	// retained message, saved (autosave 1 s) and synced to the spare node.
	sub := deviceClient(t, e.ip[spare], port, "keeper-"+run, false)
	if err := wait(sub.Subscribe(name+"/queue", 1, nil)); err != nil {
		t.Fatal(err)
	}
	sub.Disconnect(100)
	pub := deviceClient(t, e.ip[spare], port, "pub-"+run, true)
	const queued = 3
	if err := wait(pub.Publish(name+"/retained", 1, true, "retained-"+run)); err != nil {
		t.Fatal(err)
	}
	for i := range queued {
		if err := wait(pub.Publish(name+"/queue", 1, false, fmt.Sprintf("queued-%s-%d", run, i))); err != nil {
			t.Fatal(err)
		}
	}
	pub.Disconnect(100)
	eventually(t, "the messages in the copy on "+spare, 30*time.Second, func() error {
		if !copyHas(spare, volume, fmt.Sprintf("queued-%s-%d", run, queued-1)) || !copyHas(spare, volume, "retained-"+run) {
			return fmt.Errorf("not there yet")
		}
		return nil
	})

	// Power loss.
	homeID := nodeID(t, home)
	killed := time.Now()
	sh(t, "docker", "kill", home)
	t.Cleanup(func() { _ = exec.Command("docker", "start", home).Run() })
	// Swarm's own detection, watched beside the probes.
	var down atomic.Int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for down.Load() == 0 {
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if st, _ := exec.Command("docker", "exec", spare, "docker", "node", "inspect", home, "-f", "{{.Status.State}}").Output(); strings.TrimSpace(string(st)) == "down" {
				down.Store(int64(time.Since(killed)))
			}
		}
	}()
	var probes atomic.Int64
	served, ok := testutil.FirstSuccess(killed, 100*time.Millisecond, 60*time.Second, 40, func() bool {
		v, err := readRetained(e.ip[spare], port, fmt.Sprintf("reader-%s-%d", run, probes.Add(1)), name+"/retained")
		return err == nil && v == "retained-"+run
	})
	close(stopWatch)
	<-watched
	if !ok {
		t.Fatalf("the retained message not served through %s within 60 s of the node loss", spare)
	}
	t.Logf("%s killed at %s → retained message served on %s after %s (Swarm marked the node down: %v)", home, killed.UTC().Format("15:04:05.000"), spare, served.Round(time.Millisecond), time.Duration(down.Load()).Round(time.Millisecond))
	// Where the time went: the new broker's and its agent's first lines.
	for _, svc := range []string{broker, name + "-sync"} {
		if id := strings.Fields(onNode(t, spare, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)); len(id) > 0 {
			out, _ := exec.Command("docker", "exec", spare, "docker", "logs", "-t", id[0]).CombinedOutput()
			lines := strings.Split(string(out), "\n")
			t.Logf("%s on %s:\n%s", svc, spare, strings.Join(lines[:min(len(lines), 12)], "\n"))
		}
	}
	// And the operators' lines about the cluster (the leader's: the node
	// lost, the broker moved, HAProxy re-addressed).
	for _, n := range nodes {
		if n == home {
			continue
		}
		for _, l := range strings.Split(e.operatorLogs(t, n, killed), "\n") {
			if strings.Contains(l, name) {
				t.Logf("operator on %s: %s", n, l)
			}
		}
	}
	if d := time.Duration(down.Load()); d != 0 && d < served {
		t.Errorf("Swarm marked %s down (%s) before the broker served again (%s): the operator did not move it ahead of Swarm", home, d.Round(time.Millisecond), served.Round(time.Millisecond))
	}
	if served > 8*time.Second {
		t.Errorf("served again after %s, want at most 8 s (3.6-4.6 s measured here, 5.9 s once on a loaded CI run; 5 s aimed; Swarm alone 12-45 s)", served.Round(time.Millisecond))
	}
	receiveQueued(t, e.ip[spare], port, "keeper-"+run, queued, 10*time.Second)
	movedTask := taskID(t, spare, broker)
	// (Events are stored with the leader's next writes: it may serve
	// before.)
	eventually(t, "a NodeLost event naming "+home, 15*time.Second, func() error {
		evs, err := e.c.Events(ctx, name)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(evs.Items, func(x api.Event) bool { return x.Reason == "NodeLost" && strings.Contains(x.Message, home) }) {
			return fmt.Errorf("none in %+v", evs.Items)
		}
		return nil
	})

	// The node returns: its exclusion is lifted and the broker keeps
	// running where it is.
	sh(t, "docker", "start", home)
	eventually(t, "the exclusion of "+home+" lifted", 180*time.Second, func() error {
		cons := onNode(t, spare, "service", "inspect", broker, "-f", "{{.Spec.TaskTemplate.Placement.Constraints}}")
		if strings.Contains(cons, "node.id!="+homeID) {
			return fmt.Errorf("placement %s", cons)
		}
		return nil
	})
	if now := taskID(t, spare, broker); now != movedTask {
		t.Errorf("lifting the exclusion replaced the broker's task: %s, was %s", now, movedTask)
	}
	eventually(t, name+" Ready with "+home+" a target again", 120*time.Second, func() error {
		c := e.cluster(t, name)
		if err := healthy(c); err != nil {
			return err
		}
		if _, ts := syncTargets(c, broker); !slices.Contains(ts, home) {
			return fmt.Errorf("targets %v", ts)
		}
		return nil
	})
}

// offLeaderCluster applies a one-broker cluster with spec.sync kept off
// Swarm's raft leader (losing that node stalls every Swarm write until
// Swarm elects another: README), deleted when the test ends, and waits
// until it is Ready and SyncHealthy with the broker's data synced to the
// one other node it may run on: home runs the broker, spare is that node.
func offLeaderCluster(t *testing.T, e *env, name string, port int) (broker, home, spare string) {
	t.Helper()
	broker = name + "-broker-0"
	leaderHost := swarmLeaderNode(t)
	spec := strings.Replace(string(syncSpec(name, 1, port, "1s")), "  sync:", "  placement: {constraints: [\"node.id!="+nodeID(t, leaderHost)+"\"]}\n  sync:", 1)
	if _, err := e.c.Apply(context.Background(), []byte(spec)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.c.Delete(context.Background(), name) })
	e.explainOnFailure(t, name)
	eventually(t, name+" Ready and SyncHealthy, synced to the other node it may run on", 120*time.Second, func() error {
		c := e.cluster(t, name)
		if err := healthy(c); err != nil {
			return err
		}
		home, _ = brokerNode(c, broker)
		rest := slices.DeleteFunc(others(nodes, home), func(n string) bool { return n == leaderHost })
		if src, targets := syncTargets(c, broker); src != home || len(rest) != 1 || !slices.Contains(targets, rest[0]) {
			return fmt.Errorf("broker on %s: source %s, targets %v", home, src, targets)
		}
		spare = rest[0]
		return nil
	})
	return broker, home, spare
}

// nodeID is a node's Swarm id.
func nodeID(t *testing.T, host string) string {
	return strings.TrimSpace(onNode(t, nodes[0], "node", "inspect", host, "-f", "{{.ID}}"))
}

// containerState is a container's state on a node: running, and when it
// started and finished (RFC 3339, one clock: the nodes share the host's).
func containerState(node, id string) (running bool, started, finished time.Time, err error) {
	out, err := exec.Command("docker", "exec", node, "docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}} {{.State.FinishedAt}}", id).Output()
	if err != nil {
		return false, time.Time{}, time.Time{}, err
	}
	f := strings.Fields(string(out))
	if len(f) != 3 {
		return false, time.Time{}, time.Time{}, fmt.Errorf("state %q", out)
	}
	started, _ = time.Parse(time.RFC3339Nano, f[1])
	finished, _ = time.Parse(time.RFC3339Nano, f[2])
	return f[0] == "true", started, finished, nil
}

// TestCutOffNodeStopsItsBrokerBeforeItRunsElsewhere: the node of a broker
// of a cluster with spec.sync is cut off from the others (its network
// disconnected: it keeps running, unlike a power loss). Its sync agent,
// hearing no peer and no operator, stops the broker there (the fence)
// before the operator's node watch has it started on another node: the
// two never run at the same time, so the broker's clients on each side
// of the partition are never served by two copies of its sessions. When
// the network heals, the cluster converges with the broker where it
// moved.
func TestCutOffNodeStopsItsBrokerBeforeItRunsElsewhere(t *testing.T) {
	e := setup(t)
	run := strconv.FormatInt(time.Now().Unix()%1000000, 36)
	name := "fc-" + run
	broker, home, spare := offLeaderCluster(t, e, name, 21897)
	ids := strings.Fields(onNode(t, home, "ps", "-q", "--no-trunc", "--filter", "label=com.docker.swarm.service.name="+broker))
	if len(ids) != 1 {
		t.Fatalf("broker containers on %s: %v", home, ids)
	}
	old := ids[0]

	ip := e.ip[home]
	cut := time.Now()
	sh(t, "docker", "network", "disconnect", net, home)
	healed := false
	heal := func() {
		if !healed {
			healed = true
			_ = exec.Command("docker", "network", "connect", "--ip", ip, net, home).Run()
		}
	}
	t.Cleanup(heal)
	// Both ends, one clock: when the cut-off copy stopped, when the new one
	// started.
	var stopped, started time.Time
	var moved string
	for stopped.IsZero() || started.IsZero() {
		if time.Since(cut) > 60*time.Second {
			t.Fatalf("within 60 s of the cut: the copy on %s stopped %v, a copy on %s started %v", home, stopped, spare, started)
		}
		if stopped.IsZero() {
			if running, _, fin, err := containerState(home, old); err == nil && !running {
				stopped = fin
			}
		}
		if started.IsZero() {
			if ids := strings.Fields(onNode(t, spare, "ps", "-q", "--no-trunc", "--filter", "label=com.docker.swarm.service.name="+broker)); len(ids) > 0 {
				if running, st, _, err := containerState(spare, ids[0]); err == nil && running {
					started, moved = st, ids[0]
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s cut off at %s: its copy of %s stopped %s later, the copy on %s started %s later", home, cut.UTC().Format("15:04:05.000"), broker, stopped.Sub(cut).Round(time.Millisecond), spare, started.Sub(cut).Round(time.Millisecond))
	if !stopped.Before(started) {
		t.Errorf("the copy on %s started (%s) before the cut-off one stopped (%s): both ran at once", spare, started.Format("15:04:05.000"), stopped.Format("15:04:05.000"))
	}
	// The agent's own container (service logs would go through a manager).
	out, _ := exec.Command("docker", "exec", home, "sh", "-c", "docker logs $(docker ps -q --filter label=com.docker.swarm.service.name="+name+"-sync) 2>&1").CombinedOutput()
	if !strings.Contains(string(out), "fenced") {
		t.Errorf("the agent on %s does not say it fenced:\n%s", home, out)
	}

	heal()
	eventually(t, name+" Ready and SyncHealthy after the heal, the broker where it moved", 180*time.Second, func() error {
		c := e.cluster(t, name)
		if err := healthy(c); err != nil {
			return err
		}
		if on, _ := brokerNode(c, broker); on != spare {
			return fmt.Errorf("broker on %s", on)
		}
		return nil
	})
	if ids := strings.Fields(onNode(t, spare, "ps", "-q", "--no-trunc", "--filter", "label=com.docker.swarm.service.name="+broker)); len(ids) != 1 || ids[0] != moved {
		t.Errorf("the moved broker's container on %s is %v, was %s: restarted by the heal", spare, ids, moved)
	}
}
