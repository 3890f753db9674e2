package main

// The data-plane benchmarks of step 2, run against the operator deployed
// by `make up` (hack/up.sh) on the local Swarm, each against a baseline
// measured in the same run:
//
//   - apply -> Ready of a 3-broker cluster, vs the same services created
//     by hand with `docker service create` (same configs, secrets, images,
//     the same "running for 3 s" readiness rule);
//   - QoS 1 publish throughput and latency through HAProxy, vs straight to
//     one broker published on a host port;
//   - docker kill of a broker -> first successful publish of a client that
//     retries every 100 ms, vs a Swarm-only broker service (one published
//     broker, restarted by Swarm with its default restart policy).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/loadbalancer"
)

const (
	benchCluster = "bench"
	benchMQTT    = 31883
	handMQTT     = 33883
	directMQTT   = 32883
	soloMQTT     = 35883
	stableFor    = 3 * time.Second
)

func benchSpec(name string, mqttPort int) string {
	return fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: 3
  broker: {image: "swarm-mqtt/mosquitto:local", persistence: {enabled: false}}
  loadBalancer: {image: "swarm-mqtt/haproxy:local", replicas: 1, ports: {mqtt: %d, mqtts: %d}}
  tls: {dnsNames: [localhost]}
`, name, mqttPort, mqttPort+5000)
}

func sh(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// clusterOpts selects and sizes the data-plane benchmarks.
type clusterOpts struct {
	only                    map[string]bool // ready, qos, kill; empty: all
	clients, messages       int
	stormClients, stormRate int
}

func (o clusterOpts) want(part string) bool { return len(o.only) == 0 || o.only[part] }

func runClusterBench(ctx context.Context, cl *client.Client, o clusterOpts) error {
	cleanup := func() {
		removeOperatorCluster(ctx, cl)
		removeHandMade()
	}
	cleanup()
	defer cleanup()

	// 1. Apply -> Ready through the operator, and the same services by
	// hand (configs, secrets, network, 3 brokers and HAProxy, each with
	// docker service create), in alternating rounds from a clean Swarm.
	if o.want("ready") {
		var ops, hands []time.Duration
		for round := 0; round < 3; round++ {
			d, err := applyReady(ctx, cl)
			if err != nil {
				return err
			}
			ops = append(ops, d)
			cr, err := cl.Credentials(ctx, benchCluster)
			if err != nil {
				return err
			}
			removeOperatorCluster(ctx, cl)
			h, err := byHand(cr.Username, cr.Password)
			if err != nil {
				return err
			}
			hands = append(hands, h)
			removeHandMade()
		}
		fmt.Printf("\napply -> Ready, 3 brokers + 1 HAProxy (ready = every task running for %s), 3 rounds\n", stableFor)
		fmt.Printf("  operator (mqttctl apply, poll status):      min %s median %s max %s\n", pct(ops, 0), pct(ops, 50), pct(ops, 100))
		fmt.Printf("  by hand (docker service create x4 + wait):  min %s median %s max %s\n", pct(hands, 0), pct(hands, 50), pct(hands, 100))
		fmt.Printf("  ratio operator/by-hand (median): %.2f   target <= 1.2\n", pct(ops, 50).Seconds()/pct(hands, 50).Seconds())
	}
	if o.want("rolling") {
		if err := rollingBench(ctx, cl); err != nil {
			return err
		}
	}
	if o.want("autoscale") {
		if err := autoscaleBench(ctx, cl); err != nil {
			return err
		}
	}
	if o.want("storm") {
		if err := stormBench(ctx, cl, o.stormClients, o.stormRate); err != nil {
			return err
		}
	}
	if !o.want("qos") && !o.want("kill") && !o.want("bridge") && !o.want("rotation") && !o.want("onebroker") && !o.want("users") {
		return nil
	}
	if _, err := applyReady(ctx, cl); err != nil {
		return err
	}
	cr, err := cl.Credentials(ctx, benchCluster)
	if err != nil {
		return err
	}
	// The bridge figures first: the QoS 1 load replicates every message to
	// every broker and leaves the bridges busy for a while.
	if o.want("bridge") {
		if err := bridgeBench(ctx, cl, cr.Username, cr.Password); err != nil {
			return err
		}
	}
	if o.want("rotation") {
		if err := rotationBench(ctx, cl, cr.Username, cr.Password); err != nil {
			return err
		}
	}
	if o.want("qos") {
		if err := qosBench(cr.Username, cr.Password, o.clients, o.messages); err != nil {
			return err
		}
	}
	if o.want("onebroker") {
		if err := directBroker(cr.Username, cr.Password); err != nil {
			return err
		}
		if err := oneBrokerBench(cr.Username, cr.Password); err != nil {
			return err
		}
	}
	if o.want("users") {
		if err := usersBench(ctx, cl); err != nil {
			return err
		}
	}
	if o.want("kill") {
		return killBench(ctx, cl, cr.Username, cr.Password)
	}
	return nil
}

func applyReady(ctx context.Context, cl *client.Client) (time.Duration, error) {
	t0 := time.Now()
	if _, err := cl.Apply(ctx, []byte(benchSpec(benchCluster, benchMQTT))); err != nil {
		return 0, err
	}
	if err := waitClusterReady(ctx, cl, benchCluster, 3*time.Minute); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// removeOperatorCluster deletes the bench cluster and waits until the
// operator has removed its services and network.
func removeOperatorCluster(ctx context.Context, cl *client.Client) {
	_ = cl.Delete(ctx, benchCluster)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		svcs, _ := sh("docker", "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+benchCluster)
		nets, _ := sh("docker", "network", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+benchCluster)
		if svcs == "" && nets == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeHandMade removes the baseline services, configs, secrets, network.
func removeHandMade() {
	for _, s := range []string{"bench-hand-broker-0", "bench-hand-broker-1", "bench-hand-broker-2", "bench-hand-lb", "bench-direct", "bench-solo"} {
		_, _ = sh("docker", "service", "rm", s)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if out, _ := sh("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name=bench-hand-lb"); out == "" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, kind := range []string{"config", "secret"} {
		out, _ := sh("docker", kind, "ls", "-q", "--filter", "label=bench=hand")
		for _, id := range strings.Fields(out) {
			_, _ = sh("docker", kind, "rm", id)
		}
	}
	for time.Now().Before(deadline) {
		if _, err := sh("docker", "network", "rm", "bench-hand-net"); err == nil || !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// qosBench: QoS 1 through HAProxy vs straight to one broker. Latency is
// measured with one message in flight per client (a light load: the time
// the extra hop adds); throughput with a window of messages in flight per
// client (what a busy publisher gets), in alternating rounds.
func qosBench(user, password string, clients, perClient int) error {
	if err := directBroker(user, password); err != nil {
		return err
	}
	fromHost := func(addr string, n, window int, tag string) (loadResult, error) {
		return loadAddr(addr, user, password, n, perClient, window, tag)
	}
	lat, tput, err := compareQoS(fromHost, fmt.Sprintf("127.0.0.1:%d", directMQTT), fmt.Sprintf("127.0.0.1:%d", benchMQTT), clients, "h")
	if err != nil {
		return err
	}
	fmt.Printf("\nQoS 1 publish latency (2 clients x %d messages x 2 rounds, one in flight each: publish -> PUBACK)\n", perClient)
	fmt.Printf("  straight to one broker: p50 %s  p99 %s\n", pct(lat[0].lat, 50), pct(lat[0].lat, 99))
	fmt.Printf("  through HAProxy:        p50 %s  p99 %s\n", pct(lat[1].lat, 50), pct(lat[1].lat, 99))
	fmt.Printf("  p50 added by HAProxy: %s   target <= 0.3ms\n", (pct(lat[1].lat, 50) - pct(lat[0].lat, 50)).Round(time.Microsecond))
	fmt.Printf("QoS 1 publish throughput (%d clients x %d messages x 2 rounds, %d in flight each)\n", clients, perClient, qosWindow)
	fmt.Printf("  straight to one broker: %7.0f msg/s\n", tput[0].rate())
	fmt.Printf("  through HAProxy:        %7.0f msg/s\n", tput[1].rate())
	fmt.Printf("  ratio: %.2f   target >= 0.9\n", tput[1].rate()/tput[0].rate())
	if benchBinary != "" {
		return inNetworkQoS(benchBinary, user, password, clients, perClient)
	}
	return nil
}

// qosWindow is how many messages each client keeps in flight in the
// throughput runs.
const qosWindow = 64

// compareQoS runs, in alternating rounds, the latency load (2 clients, one
// message in flight) and the throughput load (clients, qosWindow in
// flight) against the direct address and the HAProxy address. It returns
// [direct, HAProxy] for latency and for throughput.
func compareQoS(run func(addr string, n, window int, tag string) (loadResult, error), direct, lb string, clients int, tag string) (lat, tput [2]loadResult, err error) {
	for round := 0; round < 2; round++ {
		for i, addr := range []string{direct, lb} {
			r, err := run(addr, 2, 1, fmt.Sprintf("%sl%d%d", tag, i, round))
			if err != nil {
				return lat, tput, fmt.Errorf("latency load on %s: %w", addr, err)
			}
			lat[i].add(r)
		}
		for i, addr := range []string{direct, lb} {
			r, err := run(addr, clients, qosWindow, fmt.Sprintf("%st%d%d", tag, i, round))
			if err != nil {
				return lat, tput, fmt.Errorf("throughput load on %s: %w", addr, err)
			}
			tput[i].add(r)
		}
	}
	return lat, tput, nil
}

// benchBinary is this program built static, for -load runs in containers
// (set by main from -self).
var benchBinary string

// killBench: docker kill of a broker -> first successful publish, with
// HAProxy's connect timeout at its default (the baseline) and at 100 ms,
// then against one broker that Swarm alone restarts.
func killBench(ctx context.Context, cl *client.Client, user, password string) error {
	// The baseline: the operator restarted with --drain-lost-brokers=false
	// (HAProxy's checks and connect timeout, and the operator's next pass
	// once Swarm reports the task gone); then the operator's default.
	rounds := []string{"without the lost-broker drain", "with it"}
	runs := map[string][]time.Duration{}
	for _, round := range rounds {
		if err := setDrainLost(ctx, cl, round != rounds[0]); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			d, err := killOurs(ctx, cl, user, password, i)
			if err != nil {
				return err
			}
			runs[round] = append(runs[round], d)
		}
	}
	var solo []time.Duration
	if err := soloBroker(user, password); err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		d, err := killAndRetry("bench-solo", soloMQTT, user, password, fmt.Sprintf("solo-%d", i))
		if err != nil {
			return err
		}
		solo = append(solo, d)
	}
	fmt.Printf("\ndocker kill of a broker -> first successful QoS 1 publish (client retries every 100ms), 3 runs each, connectTimeout %s\n", api.DefaultConnectTimeout)
	for _, round := range rounds {
		fmt.Printf("  %-29s: min %s median %s max %s\n", round, pct(runs[round], 0), pct(runs[round], 50), pct(runs[round], 100))
	}
	base, now := pct(runs[rounds[0]], 50), pct(runs[rounds[1]], 50)
	fmt.Printf("  ratio with / without the drain (median): %.3f   target: <= 0.2 s\n", now.Seconds()/base.Seconds())
	fmt.Printf("  Swarm-only (one published broker, restarted by Swarm): min %s median %s max %s\n", pct(solo, 0), pct(solo, 50), pct(solo, 100))
	fmt.Printf("  ratio operator/Swarm-only (median): %.3f\n", now.Seconds()/pct(solo, 50).Seconds())
	return nil
}

// setDrainLost restarts the operator of make up with
// --drain-lost-brokers=on, when it is not already so, and waits until its
// API answers again.
func setDrainLost(ctx context.Context, cl *client.Client, on bool) error {
	const svc = "mqtt-operator_operator"
	out, err := sh("docker", "service", "inspect", "--format", "{{json .Spec.TaskTemplate.ContainerSpec.Args}}", svc)
	if err != nil {
		return err
	}
	var args []string
	if err := json.Unmarshal([]byte(out), &args); err != nil {
		return fmt.Errorf("%s args: %w", svc, err)
	}
	want := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.HasPrefix(a, "--drain-lost-brokers") })
	if !on {
		want = append(want, "--drain-lost-brokers=false")
	}
	if slices.Equal(want, args) {
		return nil
	}
	if _, err := sh("docker", "service", "update", "--quiet", "--args", strings.Join(want, " "), svc); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := cl.Get(ctx, benchCluster); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the operator's API did not answer within 2 min of its restart")
}

func waitClusterReady(ctx context.Context, cl *client.Client, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		o, err := cl.Get(ctx, name)
		if err == nil && o.Status.ObservedGeneration >= o.Generation && meta.IsStatusConditionTrue(o.Status.Conditions, api.ConditionReady) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not Ready within %s", name, timeout)
}

// byHand creates the same objects the operator makes, with the docker CLI,
// and waits with the same readiness rule.
func byHand(user, password string) (time.Duration, error) {
	c, err := api.Parse([]byte(benchSpec("bench-hand", handMQTT)), api.BuiltinDefaults())
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "bench-hand-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	m, _, _, err := credentials.Next(nil, c, time.Now())
	if err != nil {
		return 0, err
	}
	handMaterial = m
	line, _ := credentials.PasswordLine(user, password)
	internal, _ := credentials.PasswordLine(broker.BridgeUser, "bench-bridge-pw")
	files := map[string][]byte{"passwd": []byte(line + "\n"), "internal": []byte(internal + "\n"), "tls.pem": credentials.HAProxyPEM(m)}
	for i := 1; i < 3; i++ {
		b, err := broker.RenderBridge("bench-hand", i, "bench-bridge-pw", broker.Options{})
		if err != nil {
			return 0, err
		}
		files[fmt.Sprintf("bridge-%d", i)] = b
	}
	for i := 0; i < 3; i++ {
		b, err := broker.Render(c, i, broker.Options{})
		if err != nil {
			return 0, err
		}
		files[fmt.Sprintf("broker-%d.conf", i)] = b
	}
	lbConf, err := loadbalancer.Render(c, loadbalancer.Options{})
	if err != nil {
		return 0, err
	}
	files["haproxy.cfg"] = lbConf
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return 0, err
		}
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	start := time.Now()
	cmds := [][]string{
		{"docker", "network", "create", "-d", "overlay", "--attachable", "bench-hand-net"},
		{"docker", "secret", "create", "--label", "bench=hand", "bench-hand-passwd", f("passwd")},
		{"docker", "secret", "create", "--label", "bench=hand", "bench-hand-internal", f("internal")},
		{"docker", "secret", "create", "--label", "bench=hand", "bench-hand-bridge-1", f("bridge-1")},
		{"docker", "secret", "create", "--label", "bench=hand", "bench-hand-bridge-2", f("bridge-2")},
		{"docker", "secret", "create", "--label", "bench=hand", "bench-hand-tls", f("tls.pem")},
		{"docker", "config", "create", "--label", "bench=hand", "bench-hand-lb", f("haproxy.cfg")},
	}
	for i := 0; i < 3; i++ {
		cmds = append(cmds, []string{"docker", "config", "create", "--label", "bench=hand", fmt.Sprintf("bench-hand-broker-%d", i), f(fmt.Sprintf("broker-%d.conf", i))})
	}
	for i := 0; i < 3; i++ {
		n := fmt.Sprintf("bench-hand-broker-%d", i)
		args := []string{"docker", "service", "create", "--detach", "--quiet", "--name", n, "--label", "bench=hand",
			"--network", "name=bench-hand-net,alias=" + n, "--endpoint-mode", "dnsrr", "--hostname", n,
			"--config", fmt.Sprintf("source=%s,target=%s,mode=0444", n, broker.ConfigPath),
			"--secret", "source=bench-hand-passwd,target=mosquitto-passwd,mode=0444",
			"--secret", "source=bench-hand-internal,target=mosquitto-internal-passwd,mode=0444"}
		if i > 0 {
			args = append(args, "--secret", fmt.Sprintf("source=bench-hand-bridge-%d,target=%s,mode=0400", i, broker.BridgeFileName))
		}
		cmds = append(cmds, append(args, "--restart-delay", "1s", "swarm-mqtt/mosquitto:local", "/bin/sh", "-c", broker.StartScript(false, "")))
	}
	cmds = append(cmds, []string{"docker", "service", "create", "--detach", "--quiet", "--name", "bench-hand-lb", "--label", "bench=hand",
		"--network", "bench-hand-net", "--endpoint-mode", "dnsrr", "--replicas-max-per-node", "1",
		"--publish", fmt.Sprintf("mode=host,published=%d,target=%d", handMQTT, handMQTT),
		"--publish", fmt.Sprintf("mode=host,published=%d,target=%d", handMQTT+5000, handMQTT+5000),
		"--config", fmt.Sprintf("source=bench-hand-lb,target=%s,mode=0444", loadbalancer.ConfigPath),
		"--secret", "source=bench-hand-tls,target=mqtts.pem,mode=0400",
		"--restart-delay", "1s", "swarm-mqtt/haproxy:local"})
	for _, cmd := range cmds {
		if _, err := sh(cmd...); err != nil {
			return 0, err
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if stableServices("label=bench=hand", 4) {
			return time.Since(start), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, errors.New("hand-made services not running within 3 minutes")
}

// stableServices reports whether n services matching filter each have a
// task running for stableFor.
func stableServices(filter string, n int) bool {
	out, err := sh("docker", "service", "ls", "-q", "--filter", filter)
	if err != nil || len(strings.Fields(out)) != n {
		return false
	}
	for _, id := range strings.Fields(out) {
		ts, err := sh("docker", "service", "ps", id, "--filter", "desired-state=running", "--format", "{{.CurrentState}}")
		if err != nil || !strings.HasPrefix(ts, "Running") {
			return false
		}
		ps, err := sh("docker", "inspect", "--format", "{{.Status.Timestamp.Unix}}", firstTask(id))
		if err != nil {
			return false
		}
		var sec int64
		fmt.Sscan(ps, &sec)
		if time.Since(time.Unix(sec, 0)) < stableFor {
			return false
		}
	}
	return true
}

func firstTask(service string) string {
	out, _ := sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", service)
	if f := strings.Fields(out); len(f) > 0 {
		return f[0]
	}
	return ""
}

// directBroker is one broker of the same image and configuration,
// published on a host port: the baseline without HAProxy.
func directBroker(user, password string) error {
	if _, err := sh("docker", "service", "inspect", "bench-direct"); err == nil {
		return nil // made by an earlier part of this run
	}
	c, _ := api.Parse([]byte(benchSpec("bench-direct", directMQTT)), api.BuiltinDefaults())
	conf, _ := broker.Render(c, 0, broker.Options{})
	return publishedBroker("bench-direct", directMQTT, conf, user, password, "1s")
}

// soloBroker is the Swarm-only setup: one published broker with Swarm's
// default restart policy, nothing in front.
func soloBroker(user, password string) error {
	c, _ := api.Parse([]byte(benchSpec("bench-solo", soloMQTT)), api.BuiltinDefaults())
	conf, _ := broker.Render(c, 0, broker.Options{})
	return publishedBroker("bench-solo", soloMQTT, conf, user, password, "")
}

func publishedBroker(name string, port int, conf []byte, user, password, restartDelay string) error {
	passwdLine, err := credentials.PasswordLine(user, password)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_ = os.WriteFile(filepath.Join(dir, "conf"), conf, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwdLine+"\n"), 0o600)
	if _, err := sh("docker", "config", "create", "--label", "bench=hand", name+"-conf", filepath.Join(dir, "conf")); err != nil {
		return err
	}
	if _, err := sh("docker", "secret", "create", "--label", "bench=hand", name+"-passwd", filepath.Join(dir, "passwd")); err != nil {
		return err
	}
	internal, _ := credentials.PasswordLine(broker.BridgeUser, "bench-bridge-pw")
	_ = os.WriteFile(filepath.Join(dir, "internal"), []byte(internal+"\n"), 0o600)
	if _, err := sh("docker", "secret", "create", "--label", "bench=hand", name+"-internal", filepath.Join(dir, "internal")); err != nil {
		return err
	}
	args := []string{"docker", "service", "create", "--detach", "--quiet", "--name", name, "--label", "bench=" + name,
		"--publish", fmt.Sprintf("mode=host,published=%d,target=1883", port),
		"--config", fmt.Sprintf("source=%s-conf,target=%s,mode=0444", name, broker.ConfigPath),
		"--secret", fmt.Sprintf("source=%s-passwd,target=mosquitto-passwd,mode=0444", name),
		"--secret", fmt.Sprintf("source=%s-internal,target=mosquitto-internal-passwd,mode=0444", name)}
	if restartDelay != "" {
		args = append(args, "--restart-delay", restartDelay)
	}
	args = append(args, "swarm-mqtt/mosquitto:local", "/bin/sh", "-c", broker.StartScript(false, ""))
	if _, err := sh(args...); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if err := tryPublish(port, user, password, "probe-"+name); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not serving on %d", name, port)
}

func connect(port int, user, pass, id string) (mqtt.Client, error) {
	return connectAddr(fmt.Sprintf("127.0.0.1:%d", port), user, pass, id)
}

func connectAddr(addr, user, pass, id string) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(time.Second).SetCleanSession(true)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s to %s: %v", id, addr, tok.Error())
	}
	return c, nil
}

func tryPublish(port int, user, pass, id string) error {
	c, err := connect(port, user, pass, id)
	if err != nil {
		return err
	}
	defer c.Disconnect(0)
	tok := c.Publish("bench/probe", 1, false, "x")
	if !tok.WaitTimeout(time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish: %v", tok.Error())
	}
	return nil
}

type loadResult struct {
	lat     []time.Duration
	n       int
	elapsed time.Duration
}

func (r *loadResult) add(o loadResult) {
	r.lat = append(r.lat, o.lat...)
	r.n += o.n
	r.elapsed += o.elapsed
}

func (r loadResult) rate() float64 { return float64(r.n) / r.elapsed.Seconds() }

// connectAll connects n clients with ids <prefix>-0 … <prefix>-(n-1); the
// returned function disconnects them (also after an error).
func connectAll(addr, user, pass, prefix string, n int) ([]mqtt.Client, func(), error) {
	var conns []mqtt.Client
	closeAll := func() {
		for _, c := range conns {
			c.Disconnect(0)
		}
	}
	for i := 0; i < n; i++ {
		c, err := connectAddr(addr, user, pass, fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	return conns, closeAll, nil
}

// loadAddr runs clients publishers, each publishing perClient QoS 1 messages
// with at most window unacknowledged, and records publish -> PUBACK times.
func loadAddr(addr, user, pass string, clients, perClient, window int, tag string) (loadResult, error) {
	conns, closeAll, err := connectAll(addr, user, pass, "bench-"+tag, clients)
	if err != nil {
		return loadResult{}, err
	}
	defer closeAll()
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	payload := strings.Repeat("x", 64)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			type pending struct {
				tok mqtt.Token
				t0  time.Time
			}
			var q []pending
			wait := func(p pending) bool {
				if !p.tok.WaitTimeout(10*time.Second) || p.tok.Error() != nil {
					errs[i] = fmt.Errorf("publish of client %d: %v", i, p.tok.Error())
					return false
				}
				lat[i] = append(lat[i], time.Since(p.t0))
				return true
			}
			topic := fmt.Sprintf("bench/%s/%d", tag, i)
			for j := 0; j < perClient; j++ {
				if len(q) == window {
					if !wait(q[0]) {
						return
					}
					q = q[1:]
				}
				q = append(q, pending{c.Publish(topic, 1, false, payload), time.Now()})
			}
			for _, p := range q {
				if !wait(p) {
					return
				}
			}
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start)}
	for i := range lat {
		res.lat = append(res.lat, lat[i]...)
	}
	res.n = len(res.lat)
	return res, errors.Join(errs...)
}

// killOurs kills the broker a client id lands on and times the client's
// first successful publish through HAProxy.
func killOurs(ctx context.Context, cl *client.Client, user, pass string, run int) (time.Duration, error) {
	if err := waitClusterReady(ctx, cl, benchCluster, 2*time.Minute); err != nil {
		return 0, err
	}
	id := fmt.Sprintf("victim-%d-%d", run, time.Now().UnixNano()%100000)
	if err := tryPublish(benchMQTT, user, pass, id); err != nil {
		return 0, err
	}
	var svc string
	deadline := time.Now().Add(10 * time.Second)
	for svc == "" && time.Now().Before(deadline) {
		for i := 0; i < 3; i++ {
			n := fmt.Sprintf("%s-broker-%d", benchCluster, i)
			logs, _ := exec.Command("docker", "service", "logs", "--raw", n).CombinedOutput()
			if regexp.MustCompile(` as ` + id + ` \(`).Match(logs) {
				svc = n
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if svc == "" {
		return 0, fmt.Errorf("client %s not found in any broker's log", id)
	}
	return killAndRetry(svc, benchMQTT, user, pass, id)
}

// killAndRetry kills service's container and retries publishing as id
// until it works.
func killAndRetry(service string, port int, user, pass, id string) (time.Duration, error) {
	container, err := sh("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+service)
	if err != nil || container == "" {
		return 0, fmt.Errorf("no container for %s: %v", service, err)
	}
	if _, err := sh("docker", "kill", container); err != nil {
		return 0, err
	}
	killed := time.Now()
	var last error
	for time.Since(killed) < 60*time.Second {
		if last = tryPublish(port, user, pass, id); last == nil {
			return time.Since(killed), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: no successful publish within 60s of the kill (last: %v)", service, last)
}

// locate connects clients with fresh ids until one sits on each wanted
// broker (balance: clientid hashes the id), found from the brokers' logs.
func locate(port int, user, pass, prefix string, want []int, handler mqtt.MessageHandler) (map[int]mqtt.Client, error) {
	out := map[int]mqtt.Client{}
	for round := 0; round < 6 && len(out) < len(want); round++ {
		ids := map[string]mqtt.Client{}
		for i := 0; i < 12; i++ {
			id := fmt.Sprintf("%s-%d-%d", prefix, round, i)
			c, err := connect(port, user, pass, id)
			if err != nil {
				return nil, err
			}
			ids[id] = c
		}
		deadline := time.Now().Add(10 * time.Second)
		found := map[string]int{}
		for len(found) < len(ids) && time.Now().Before(deadline) {
			for b := 0; b < 3; b++ {
				logs, _ := exec.Command("docker", "service", "logs", "--raw", fmt.Sprintf("%s-broker-%d", benchCluster, b)).CombinedOutput()
				for id := range ids {
					if strings.Contains(string(logs), " as "+id+" (") {
						found[id] = b
					}
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		for id, c := range ids {
			b, ok := found[id]
			if _, taken := out[b]; ok && !taken && slices.Contains(want, b) {
				out[b] = c
				continue
			}
			c.Disconnect(0)
		}
	}
	if len(out) < len(want) {
		return nil, fmt.Errorf("could not place %s clients on brokers %v", prefix, want)
	}
	return out, nil
}

// bridgeBench: delivery latency on the same broker vs across the bridges
// (spoke 1 -> hub 0 -> spoke 2: two bridge hops), and the time from
// killing the hub to the first cross-broker delivery.
func bridgeBench(ctx context.Context, cl *client.Client, user, pass string) error {
	type sample struct {
		mu  sync.Mutex
		lat []time.Duration
		got map[string]time.Time
	}
	mk := func() *sample { return &sample{got: map[string]time.Time{}} }
	record := func(s *sample) mqtt.MessageHandler {
		return func(_ mqtt.Client, m mqtt.Message) {
			now := time.Now()
			var sent int64
			var seq string
			fmt.Sscanf(string(m.Payload()), "%d %s", &sent, &seq)
			s.mu.Lock()
			s.lat = append(s.lat, now.Sub(time.Unix(0, sent)))
			if _, ok := s.got[seq]; !ok {
				s.got[seq] = now
			}
			s.mu.Unlock()
		}
	}
	pubs, err := locate(benchMQTT, user, pass, "lat-pub", []int{1, 2}, nil)
	if err != nil {
		return err
	}
	subs, err := locate(benchMQTT, user, pass, "lat-sub", []int{1, 2}, nil)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range pubs {
			c.Disconnect(0)
		}
		for _, c := range subs {
			c.Disconnect(0)
		}
	}()
	same, cross := mk(), mk()
	for b, s := range map[int]*sample{1: same, 2: cross} {
		if tok := subs[b].Subscribe("bench/lat", 1, record(s)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("subscribe: %v", tok.Error())
		}
	}
	const n = 2000
	for k := 0; k < n; k++ {
		tok := pubs[1].Publish("bench/lat", 1, false, fmt.Sprintf("%d %d", time.Now().UnixNano(), k))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("publish: %v", tok.Error())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		same.mu.Lock()
		cross.mu.Lock()
		done := len(same.lat) >= n && len(cross.lat) >= n
		same.mu.Unlock()
		cross.mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	same.mu.Lock()
	cross.mu.Lock()
	fmt.Printf("\ndelivery latency, QoS 1, %d messages from a publisher on broker 1, one in flight\n", n)
	fmt.Printf("  subscriber on the same broker:            n=%d p50 %s p99 %s\n", len(same.lat), pct(same.lat, 50), pct(same.lat, 99))
	fmt.Printf("  subscriber on broker 2 (two bridge hops): n=%d p50 %s p99 %s\n", len(cross.lat), pct(cross.lat, 50), pct(cross.lat, 99))
	fmt.Printf("  cross-broker p50 minus same-broker p50: %s   target <= 2ms\n", (pct(cross.lat, 50) - pct(same.lat, 50)).Round(time.Microsecond))
	same.mu.Unlock()
	cross.mu.Unlock()

	// Hub kill: publisher on broker 2 every 20 ms, subscriber on broker 1.
	var runs []time.Duration
	for run := 0; run < 3; run++ {
		if err := waitClusterReady(ctx, cl, benchCluster, 2*time.Minute); err != nil {
			return err
		}
		// The star has re-formed around broker 0 once both spokes' latest
		// bridge connection is to broker 0.
		if err := waitStar(30 * time.Second); err != nil {
			return err
		}
		s := mk()
		topic := fmt.Sprintf("bench/hub/%d", run)
		if tok := subs[1].Subscribe(topic, 1, record(s)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("subscribe: %v", tok.Error())
		}
		var killedAt time.Time
		var killSeq int
		stop := make(chan struct{})
		done := make(chan struct{})
		var mu sync.Mutex
		seqNow := 0
		go func() {
			defer close(done)
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				mu.Lock()
				seqNow = k
				mu.Unlock()
				pubs[2].Publish(topic, 1, false, fmt.Sprintf("%d %d", time.Now().UnixNano(), k)).WaitTimeout(2 * time.Second)
			}
		}()
		for flowing := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			s.mu.Lock()
			n := len(s.got)
			s.mu.Unlock()
			if n >= 5 {
				break
			}
			if time.Now().After(flowing) {
				close(stop)
				return errors.New("no traffic across the bridges before the kill")
			}
		}
		var container string
		for found := time.Now().Add(20 * time.Second); container == "" && time.Now().Before(found); time.Sleep(100 * time.Millisecond) {
			container, _ = sh("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+benchCluster+"-broker-0")
		}
		if container == "" {
			close(stop)
			ps, _ := sh("docker", "service", "ps", benchCluster+"-broker-0")
			return fmt.Errorf("no running hub container:\n%s", ps)
		}
		if _, err := sh("docker", "kill", container); err != nil {
			close(stop)
			return err
		}
		killedAt = time.Now()
		mu.Lock()
		killSeq = seqNow + 1 // published after the kill returned
		mu.Unlock()
		var first time.Duration
		for time.Since(killedAt) < 30*time.Second && first == 0 {
			s.mu.Lock()
			for seq, at := range s.got {
				var k int
				fmt.Sscanf(seq, "%d", &k)
				if k >= killSeq && (first == 0 || at.Sub(killedAt) < first) {
					first = at.Sub(killedAt)
				}
			}
			s.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		<-done
		if first == 0 {
			return errors.New("no cross-broker delivery within 30 s of the hub kill")
		}
		runs = append(runs, first)
	}
	fmt.Printf("hub (broker 0) killed -> first cross-broker delivery (broker 2 -> broker 1) of a message published after the kill, 3 runs\n")
	fmt.Printf("  min %s median %s max %s   target <= 5s\n", pct(runs, 0), pct(runs, 50), pct(runs, 100))
	return nil
}

// waitStar polls the brokers' logs until the latest bridge connection of
// brokers 1 and 2 is to broker 0. It reads the logs itself rather than the
// operator's status: a bridge switching back to broker 0 makes no Docker
// event, so the status can lag it until the next resync.
func waitStar(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		last := map[int]string{}
		parent := map[int]int{}
		for j := 0; j < 3; j++ {
			logs, _ := exec.Command("docker", "service", "logs", "--raw", "--timestamps", fmt.Sprintf("%s-broker-%d", benchCluster, j)).CombinedOutput()
			for _, line := range strings.Split(string(logs), "\n") {
				for i := 1; i < 3; i++ {
					if (strings.Contains(line, "New bridge connected from") || strings.Contains(line, "New client connected from")) && strings.Contains(line, fmt.Sprintf(" as %s-broker-%d-bridge ", benchCluster, i)) {
						if ts := strings.Fields(line)[0]; ts > last[i] {
							last[i], parent[i] = ts, j
						}
					}
				}
			}
		}
		if p1, ok1 := parent[1]; ok1 && p1 == 0 {
			if p2, ok2 := parent[2]; ok2 && p2 == 0 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the bridges did not re-form a star around broker 0")
}

// inNetwork runs the load generator (this binary, -load) in a container on
// the cluster's overlay network, against addr, and returns its result.
func inNetwork(bin, network, addr, user, pass string, clients, perClient, window int, tag string) (loadResult, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return loadResult{}, err
	}
	out, err := sh("docker", "run", "--rm", "--network", network, "-v", abs+":/bench:ro", "swarm-mqtt/debian-base:bookworm",
		"/bench", "-load", addr, "-load-user", user, "-load-pass", pass, "-clients", fmt.Sprint(clients),
		"-messages", fmt.Sprint(perClient), "-window", fmt.Sprint(window), "-tag", tag)
	if err != nil {
		return loadResult{}, err
	}
	var r struct {
		LatNs     []int64 `json:"latNs"`
		ElapsedNs int64   `json:"elapsedNs"`
	}
	if err := json.Unmarshal([]byte(out[strings.LastIndex(out, "\n")+1:]), &r); err != nil {
		return loadResult{}, fmt.Errorf("load result: %v: %s", err, out)
	}
	res := loadResult{n: len(r.LatNs), elapsed: time.Duration(r.ElapsedNs)}
	for _, l := range r.LatNs {
		res.lat = append(res.lat, time.Duration(l))
	}
	return res, nil
}

// runLoad is the -load mode: one load run, its result as JSON on stdout.
func runLoad(addr, user, pass string, clients, perClient, window int, tag string) error {
	r, err := loadAddr(addr, user, pass, clients, perClient, window, tag)
	if err != nil {
		return err
	}
	out := struct {
		LatNs     []int64 `json:"latNs"`
		ElapsedNs int64   `json:"elapsedNs"`
	}{ElapsedNs: int64(r.elapsed)}
	for _, l := range r.lat {
		out.LatNs = append(out.LatNs, int64(l))
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
	return nil
}

// inNetworkQoS compares, from inside the cluster network (both paths then
// include the bridges' replication), one broker straight against HAProxy.
func inNetworkQoS(bin, user, pass string, clients, perClient int) error {
	inNet := func(addr string, n, window int, tag string) (loadResult, error) {
		return inNetwork(bin, benchCluster+"-net", addr, user, pass, n, perClient, window, tag)
	}
	lat, tput, err := compareQoS(inNet, fmt.Sprintf("tasks.%s-broker-1:1883", benchCluster), fmt.Sprintf("tasks.%s-lb:%d", benchCluster, benchMQTT), clients, "n")
	if err != nil {
		return err
	}
	fmt.Printf("the same inside the cluster network, both paths into the bridged cluster: one broker straight vs HAProxy\n")
	fmt.Printf("  latency p50: straight %s, via HAProxy %s: +%s   target <= 0.3ms\n", pct(lat[0].lat, 50), pct(lat[1].lat, 50), (pct(lat[1].lat, 50) - pct(lat[0].lat, 50)).Round(time.Microsecond))
	fmt.Printf("  throughput: straight %.0f msg/s, via HAProxy %.0f msg/s: ratio %.2f   target >= 0.9\n", tput[0].rate(), tput[1].rate(), tput[1].rate()/tput[0].rate())
	return nil
}
