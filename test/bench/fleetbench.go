package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

// The fleet figures on the three-manager docker-in-docker Swarm: what one
// load-balancer task cannot hold here (each proxied client is two open
// files, and a process may have at most 20,000), three load-balancer
// tasks, one per node, can. The clients are split over worker processes
// for the same reason, and each has the three nodes' addresses (as a device
// that resolves the cluster's name to them).

const (
	fleetCluster = "fleet"
	fleetMQTTS   = 42883
	// perWorker: clients per worker process (one open file each, and the
	// process's own below the 20,000 limit).
	perWorker = 8000
)

func fleetSpec(rate int) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: 3
  broker: {persistence: {enabled: false}}
  loadBalancer: {replicas: 3, ports: {mqtt: %d, mqtts: %d}, limits: {connectionRate: %d}}
  tls: {dnsNames: [localhost]}
`, fleetCluster, fleetMQTTS-5000, fleetMQTTS, rate))
}

// runFleetBench: held clients connected through three load-balancer tasks
// (memory per connection, a probe's publish latency with 100 clients and
// with all of them), then a storm of storm clients after every
// load-balancer task is killed at once, paced at rate per task and
// unpaced (the baseline), in the same run.
func runFleetBench(ctx context.Context, cl *client.Client, nodes []haNode, held, storm, rate int) error {
	defer func() {
		_ = cl.Delete(context.Background(), fleetCluster)
		dindWaitGone(nodes[0].name, fleetCluster)
	}()
	var urls []string
	for _, n := range nodes {
		ip, err := nodeIP(n.name)
		if err != nil {
			return err
		}
		urls = append(urls, fmt.Sprintf("ssl://%s:%d", ip, fleetMQTTS))
	}
	var lines []string
	for _, r := range []int{rate, 0} {
		cfg, err := fleetUp(ctx, cl, nodes, urls, r)
		if err != nil {
			return err
		}
		if r == rate && held > 0 {
			l, err := fleetHeld(ctx, cfg, nodes, held, r)
			if err != nil {
				return err
			}
			fmt.Println(l)
			lines = append(lines, l)
		}
		l, err := fleetStorm(ctx, cfg, nodes, storm, r)
		if err != nil {
			return err
		}
		fmt.Println(l)
		lines = append(lines, l)
	}
	fmt.Println()
	for _, l := range lines {
		fmt.Println(l)
	}
	return nil
}

// fleetUp applies the fleet cluster at rate and waits until it is Ready
// on its current spec and every node's load balancer answers.
func fleetUp(ctx context.Context, cl *client.Client, nodes []haNode, urls []string, rate int) (fleetWorkerConfig, error) {
	if _, err := cl.Apply(ctx, fleetSpec(rate)); err != nil {
		return fleetWorkerConfig{}, err
	}
	if _, err := waitCluster(ctx, cl, fleetCluster, readyWith(3)); err != nil {
		return fleetWorkerConfig{}, err
	}
	// One load-balancer task per node, each on its current spec.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := sh("docker", "exec", nodes[0].name, "docker", "service", "ps", fleetCluster+"-lb",
			"--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
		up := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "Running") {
				up++
			}
		}
		if err == nil && up == len(nodes) && allDial(urls) {
			break
		}
		if time.Now().After(deadline) {
			return fleetWorkerConfig{}, fmt.Errorf("%s: %d of %d load-balancer tasks running: %v", fleetCluster, up, len(nodes), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ca, err := cl.CA(ctx, fleetCluster)
	if err != nil {
		return fleetWorkerConfig{}, err
	}
	cr, err := cl.Credentials(ctx, fleetCluster)
	if err != nil {
		return fleetWorkerConfig{}, err
	}
	return fleetWorkerConfig{URLs: urls, CA: ca.Certificate, ServerName: "localhost", User: cr.Username, Pass: cr.Password, Parallel: 128}, nil
}

func allDial(urls []string) bool {
	for _, u := range urls {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(u, "ssl://"), time.Second)
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

func (c fleetWorkerConfig) tls() *tls.Config {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(c.CA))
	return &tls.Config{RootCAs: roots, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
}

func fleetHeld(ctx context.Context, cfg fleetWorkerConfig, nodes []haNode, n, rate int) (string, error) {
	before := dindMem(nodes, fleetCluster)
	tc := cfg.tls()
	probe, err := probeLatency(cfg.URLs[0], tc, cfg.User, cfg.Pass)
	if err != nil {
		return "", err
	}
	small := cfg
	small.N, small.IDPrefix = 100, "bench-fleet-small"
	sf, err := startProcFleet(ctx, small, perWorker)
	if err != nil {
		return "", err
	}
	p100, err := probeLatency(cfg.URLs[0], tc, cfg.User, cfg.Pass)
	sf.Stop()
	if err != nil {
		return "", err
	}
	big := cfg
	big.N, big.IDPrefix = n, "bench-fleet-held"
	t0 := time.Now()
	hctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	bf, err := startProcFleet(hctx, big, perWorker)
	if err != nil {
		return "", err
	}
	defer bf.Stop()
	connect := time.Since(t0)
	pN, err := probeLatency(cfg.URLs[0], tc, cfg.User, cfg.Pass)
	if err != nil {
		return "", err
	}
	after := dindMem(nodes, fleetCluster)
	per := dindLBConnections(nodes, fleetCluster)
	return fmt.Sprintf("connections held: %d idle MQTTS clients (keepalive 60 s, %d worker processes) through 3 HAProxy tasks (one per node, connectionRate %d/s each) and 3 brokers, connected in %s; per HAProxy task %v\n"+
		"  memory per connection: HAProxy %.1f KiB (all three), brokers %.1f KiB (all three)\n"+
		"  probe publish->PUBACK p50: no fleet %s, 100 clients %s, %d clients %s; ratio %d/100: %.2f (target <= 2)",
		n, len(bf.procs), rate, connect.Round(time.Millisecond), per,
		(after["lb"]-before["lb"])/float64(n)/1024, (after["broker"]-before["broker"])/float64(n)/1024,
		probe, p100, n, pN, n, pN.Seconds()/p100.Seconds()), nil
}

func fleetStorm(ctx context.Context, cfg fleetWorkerConfig, nodes []haNode, n, rate int) (string, error) {
	c := cfg
	c.N, c.IDPrefix = n, "bench-fleet-storm"
	hctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	f, err := startProcFleet(hctx, c, perWorker)
	if err != nil {
		return "", err
	}
	defer f.Stop()
	brokers := dindBrokerTasks(nodes[0].name, fleetCluster)
	// Every load-balancer task killed in the same moment.
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, nd := range nodes {
		ctr, err := sh("docker", "exec", nd.name, "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+fleetCluster+"-lb")
		if err != nil || ctr == "" {
			return "", fmt.Errorf("no load-balancer container on %s: %v", nd.name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = sh("docker", "exec", nd.name, "docker", "kill", strings.Fields(ctr)[0])
		}()
	}
	killed := time.Now()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	back := stormBack(f, n, killed, "fleet storm")
	res := fmt.Sprintf("reconnect storm, %d MQTTS clients, all 3 load-balancer tasks killed at once, %s: %s", n, paceLabel(rate), back)
	if after := dindBrokerTasks(nodes[0].name, fleetCluster); !slices.Equal(after, brokers) {
		res += "; BROKERS RESTARTED"
	} else {
		res += "; no broker restarted"
	}
	return res, nil
}

// dindMem sums the memory of a cluster's load-balancer and broker
// containers on every node.
func dindMem(nodes []haNode, cluster string) map[string]float64 {
	out := map[string]float64{}
	for _, n := range nodes {
		s, err := sh("docker", "exec", n.name, "docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
		if err == nil {
			addMem(out, s, cluster)
		}
	}
	return out
}

// dindLBConnections is each node's HAProxy's current connections, read
// from its Prometheus endpoint inside the container.
func dindLBConnections(nodes []haNode, cluster string) []int {
	var per []int
	for _, n := range nodes {
		ctr, _ := sh("docker", "exec", n.name, "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+cluster+"-lb")
		v := -1
		if ctr != "" {
			out, _ := sh("docker", "exec", n.name, "docker", "exec", strings.Fields(ctr)[0], "sh", "-c", "echo 'show info' | socat stdio /run/haproxy/admin.sock 2>/dev/null || true")
			for _, l := range strings.Split(out, "\n") {
				if s, ok := strings.CutPrefix(l, "CurrConns: "); ok {
					v, _ = strconv.Atoi(strings.TrimSpace(s))
				}
			}
		}
		per = append(per, v)
	}
	return per
}

// dindBrokerTasks are a cluster's running broker tasks, as a manager sees them.
func dindBrokerTasks(node, cluster string) []string {
	var ids []string
	for i := 0; i < 3; i++ {
		s, _ := sh("docker", "exec", node, "docker", "service", "ps", "-q", "--filter", "desired-state=running", fmt.Sprintf("%s-broker-%d", cluster, i))
		ids = append(ids, strings.Fields(s)...)
	}
	slices.Sort(ids)
	return ids
}

// dindWaitGone waits until a cluster's services are gone.
func dindWaitGone(node, cluster string) {
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if s, _ := sh("docker", "exec", node, "docker", "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+cluster); s == "" {
			return
		}
	}
}
