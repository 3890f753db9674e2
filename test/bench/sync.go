package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// syncBenchSpec: one broker with spec.sync, anonymous MQTT on port, a
// load balancer on every node; the broker is kept off avoid (Swarm's raft
// leader: losing that node stalls every Swarm write until Swarm has
// elected another leader, ~20 s here, which no operator can shorten).
func syncBenchSpec(name string, port int, avoid string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: 1
  auth: {allowAnonymous: true}
  broker: {persistence: {autosaveInterval: 1s}}
  loadBalancer: {replicas: 3, ports: {mqtt: %d, mqtts: 0}}
  placement: {constraints: ["node.id!=%s"]}
  sync: {enabled: true, delay: 1s}
`, name, port, avoid))
}

// swarmLeader is the node id and hostname of Swarm's raft leader.
func swarmLeader(node string) (id, host string, err error) {
	out, err := sh("docker", "exec", node, "docker", "node", "ls", "--filter", "role=manager", "--format", "{{.ID}} {{.ManagerStatus}} {{.Hostname}}")
	if err != nil {
		return "", "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[1] == "Leader" {
			return f[0], f[2], nil
		}
	}
	return "", "", fmt.Errorf("no Swarm leader in %q", out)
}

// setMoveOffLost rolls the operator service of the docker-in-docker Swarm
// with --move-off-lost-nodes on or off (when it is not already so) and
// waits until the roll has ended and the API answers.
func setMoveOffLost(ctx context.Context, cl *client.Client, node string, on bool) error {
	const svc, flag = "mqtt-operator_operator", "--move-off-lost-nodes"
	out, err := sh("docker", "exec", node, "docker", "service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}", svc)
	if err != nil {
		return err
	}
	var args []string
	if err := json.Unmarshal([]byte(out), &args); err != nil {
		return fmt.Errorf("%s args: %w", svc, err)
	}
	want := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, flag) })
	if !on {
		want = append(want, flag+"=false")
	}
	if slices.Equal(want, args) {
		return nil
	}
	if _, err := sh("docker", "exec", node, "docker", "service", "update", "--detach", "--args", strings.Join(want, " "), svc); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		st, _ := sh("docker", "exec", node, "docker", "service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", svc)
		if st == "completed" {
			if _, err := cl.Get(ctx, "quickstart"); err == nil {
				return nil
			}
		}
		if strings.Contains(st, "rollback") || st == "paused" {
			return fmt.Errorf("the operator's roll to %s=%v: %s", flag, on, st)
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("the operator's roll to %s=%v did not end within 5 min", flag, on)
}

func nodeIP(node string) (string, error) {
	return sh("docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "mqtt-dind").IPAddress}}`, node)
}

// retainedOn reads the retained message of topic through host:port ("" if
// none within a second).
func retainedOn(host string, port int, topic string) (string, error) {
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://%s:%d", host, port)).SetClientID(fmt.Sprintf("bench-r-%d", time.Now().UnixNano())).
		SetAutoReconnect(false).SetConnectTimeout(time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
		return "", fmt.Errorf("connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	got := make(chan string, 1)
	if tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- string(m.Payload()):
		default:
		}
	}); !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
		return "", fmt.Errorf("subscribe: %v", tok.Error())
	}
	select {
	case v := <-got:
		return v, nil
	case <-time.After(time.Second):
		return "", nil
	}
}

// publishRetained publishes a retained QoS 1 message, retrying for 10 s
// as a client would (a broker that just started refuses clients until it
// has the operator's users and rules).
func publishRetained(host string, port int, topic, payload string) error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = publishRetainedOnce(host, port, topic, payload); err == nil {
			return nil
		}
	}
	return err
}

func publishRetainedOnce(host string, port int, topic, payload string) error {
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://%s:%d", host, port)).SetClientID(fmt.Sprintf("bench-p-%d", time.Now().UnixNano())).
		SetAutoReconnect(false).SetConnectTimeout(2 * time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect: %v", tok.Error())
	}
	defer c.Disconnect(50)
	tok := c.Publish(topic, 1, true, payload)
	if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish: %v", tok.Error())
	}
	return nil
}

// arrival watches a node's copy of volume for s: it returns once the
// watcher runs, and later the time s appeared (the node's clock: the
// docker-in-docker nodes share this machine's).
func arrival(node, volume, s string, timeout time.Duration) (<-chan time.Time, error) {
	script := fmt.Sprintf(`f=/var/lib/docker/volumes/%s/_data/mosquitto.db; echo ready; i=0
while ! grep -q -a %q "$f" 2>/dev/null; do i=$((i+1)); [ $i -gt %d ] && exit 1; sleep 0.01; done; date +%%s.%%N`, volume, s, int(timeout/(10*time.Millisecond)))
	cmd := exec.Command("docker", "exec", node, "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := bufio.NewReader(out)
	if l, err := r.ReadString('\n'); err != nil || strings.TrimSpace(l) != "ready" {
		return nil, fmt.Errorf("watcher on %s: %q %v", node, l, err)
	}
	ch := make(chan time.Time, 1)
	go func() {
		defer close(ch)
		l, _ := r.ReadString('\n')
		_ = cmd.Wait()
		if f, err := strconv.ParseFloat(strings.TrimSpace(l), 64); err == nil {
			sec := int64(f)
			ch <- time.Unix(sec, int64((f-float64(sec))*1e9))
		}
	}()
	return ch, nil
}

// runSyncBench measures spec.sync on the docker-in-docker Swarm: the lag
// from a retained publish to the data on every target, and node loss to
// the broker serving its retained messages on another node.
func runSyncBench(ctx context.Context, cl *client.Client, nodes []haNode, parts map[string]bool) error {
	const name, port, topic = "bsync", 21890, "bench/retained"
	const broker, volume = name + "-broker-0", name + "-broker-0-data"
	leader, leaderHost, err := swarmLeader(nodes[0].name)
	if err != nil {
		return err
	}
	if _, err := cl.Apply(ctx, syncBenchSpec(name, port, leader)); err != nil {
		return err
	}
	defer cl.Delete(context.Background(), name)
	where := func() (src string, targets []string, err error) {
		c, err := cl.GetConsistent(ctx, name)
		if err != nil {
			return "", nil, err
		}
		if c.Status.Sync == nil {
			return "", nil, fmt.Errorf("no sync status")
		}
		for _, b := range c.Status.Sync.Brokers {
			if b.Name == broker {
				for _, t := range b.Targets {
					if t.LastSync != nil && t.Error == "" {
						targets = append(targets, t.Node)
					}
				}
				return b.Source, targets, nil
			}
		}
		return "", nil, fmt.Errorf("no broker")
	}
	waitSynced := func(timeout time.Duration) (string, []string, error) {
		deadline := time.Now().Add(timeout)
		for {
			src, ts, err := where()
			if err == nil && src != "" && len(ts) == len(nodes)-2 {
				return src, ts, nil
			}
			if time.Now().After(deadline) {
				return "", nil, fmt.Errorf("%s not synced to every other node in %s: source %q targets %v %v", name, timeout, src, ts, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	src, targets, err := waitSynced(3 * time.Minute)
	if err != nil {
		return err
	}
	srcIP, err := nodeIP(src)
	if err != nil {
		return err
	}
	if parts["lag"] {
		if err := syncLag(srcIP, port, topic, volume, targets); err != nil {
			return err
		}
	}
	if !parts["loss"] {
		return nil
	}
	// Node loss -> the broker serving its old retained messages elsewhere:
	// moved by the operator's node watch (Swarm's default dispatcher
	// heartbeat), then by Swarm alone (the watch off) with the default
	// heartbeat (5 s) and with 1 s.
	defer func() {
		_, _ = sh("docker", "exec", nodes[0].name, "docker", "swarm", "update", "--dispatcher-heartbeat", "5s")
		_ = setMoveOffLost(context.Background(), cl, nodes[0].name, true)
	}()
	for _, round := range []struct {
		what, hb string
		watch    bool
	}{{"the operator's node watch", "5s", true}, {"Swarm alone", "5s", false}, {"Swarm alone", "1s", false}} {
		if err := setMoveOffLost(ctx, cl, nodes[0].name, round.watch); err != nil {
			return err
		}
		if _, err := sh("docker", "exec", nodes[0].name, "docker", "swarm", "update", "--dispatcher-heartbeat", round.hb); err != nil {
			return err
		}
		if err := nodeLoss(nodes, leaderHost, port, topic, broker, volume, round.what+", dispatcher heartbeat "+round.hb, waitSynced); err != nil {
			return err
		}
	}
	return nil
}

// nodeLoss kills the node running broker (3 times: a power loss) and times Swarm's
// detection, the new task and the retained message served elsewhere.
func nodeLoss(nodes []haNode, leaderHost string, port int, topic, broker, volume, what string,
	waitSynced func(time.Duration) (string, []string, error)) error {
	const lossRuns = 3
	var total, down, placed []time.Duration
	for i := 0; i < lossRuns; i++ {
		src, _, err := waitSynced(3 * time.Minute)
		if err != nil {
			return err
		}
		srcIP, _ := nodeIP(src)
		payload := fmt.Sprintf("loss-%d-%d", time.Now().UnixNano(), i)
		if err := publishRetained(srcIP, port, topic, payload); err != nil {
			return err
		}
		// On the target first (the data a node loss must not lose).
		for _, n := range nodes {
			if n.name == src || n.name == leaderHost {
				continue
			}
			ch, err := arrival(n.name, volume, payload, 30*time.Second)
			if err != nil {
				return err
			}
			if _, ok := <-ch; !ok {
				return fmt.Errorf("%s never reached %s", payload, n.name)
			}
		}
		var survivor string
		for _, n := range nodes {
			if n.name != src {
				survivor = n.name
				break
			}
		}
		survivorIP, _ := nodeIP(survivor)
		start := time.Now()
		if _, err := sh("docker", "kill", src); err != nil {
			return err
		}
		// Swarm's view (node down, the task placed elsewhere) watched beside
		// the probes, which overlap: one starts every 100 ms.
		var tDown, tPlaced atomic.Int64
		stop, watched := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(watched)
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if tDown.Load() == 0 {
					if st, _ := sh("docker", "exec", survivor, "docker", "node", "inspect", src, "-f", "{{.Status.State}}"); st == "down" {
						tDown.Store(int64(time.Since(start)))
					}
				}
				if tPlaced.Load() == 0 {
					if out, _ := sh("docker", "exec", survivor, "docker", "service", "ps", broker, "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}"); strings.Contains(out, "Running") && !strings.HasPrefix(out, src+" ") {
						tPlaced.Store(int64(time.Since(start)))
					}
				}
			}
		}()
		tServed, ok := testutil.FirstSuccess(start, 100*time.Millisecond, 3*time.Minute, 40, func() bool {
			v, _ := retainedOn(survivorIP, port, topic)
			return v == payload
		})
		close(stop)
		<-watched
		if !ok {
			_, _ = sh("docker", "start", src)
			return fmt.Errorf("node loss run %d: the broker did not serve %s within 3m", i, payload)
		}
		dDown, dPlaced := time.Duration(tDown.Load()), time.Duration(tPlaced.Load())
		total, down, placed = append(total, tServed), append(down, dDown), append(placed, dPlaced)
		fmt.Printf("  node loss run %d: %s killed -> Swarm marks it down %s -> broker running elsewhere %s -> its retained message served %s\n", i+1, src, dDown.Round(time.Millisecond), dPlaced.Round(time.Millisecond), tServed.Round(time.Millisecond))
		if _, err := sh("docker", "start", src); err != nil {
			return err
		}
		if _, _, err := waitSynced(3 * time.Minute); err != nil {
			return err
		}
	}
	fmt.Printf("node loss -> broker serving its retained messages on another node, moved by %s, %d runs: min %s median %s max %s\n", what, lossRuns, pct(total, 0), pct(total, 50), pct(total, 100))
	fmt.Printf("  of which Swarm's failure detection (node marked down): median %s; down -> serving: median %s\n", pct(down, 50), pct(total, 50)-pct(down, 50))
	return nil
}

// syncLag times a retained publish on the source to the data in the copy
// on every target.
func syncLag(srcIP string, port int, topic, volume string, targets []string) error {
	const runs = 20
	var lags []time.Duration
	for i := 0; i < runs; i++ {
		payload := fmt.Sprintf("lag-%d-%d", time.Now().UnixNano(), i)
		var chans []<-chan time.Time
		for _, t := range targets {
			ch, err := arrival(t, volume, payload, 30*time.Second)
			if err != nil {
				return err
			}
			chans = append(chans, ch)
		}
		start := time.Now()
		if err := publishRetained(srcIP, port, topic, payload); err != nil {
			return err
		}
		var last time.Time
		for j, ch := range chans {
			at, ok := <-ch
			if !ok {
				return fmt.Errorf("the publish %s never reached %s", payload, targets[j])
			}
			if at.After(last) {
				last = at
			}
		}
		lags = append(lags, last.Sub(start))
	}
	fmt.Printf("\nsync lag, retained publish -> in the copy on every target (%d targets), %d runs, autosaveInterval 1s + sync delay 1s:\n", len(targets), runs)
	fmt.Printf("  p50 %s  p99 %s  (min %s max %s; expected about autosave/2 + delay + rsync)\n", pct(lags, 50), pct(lags, 99), pct(lags, 0), pct(lags, 100))
	return nil
}
