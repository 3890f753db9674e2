// Command bench measures the operator's control plane, as `make bench`
// prints it: apply latency through HTTP and raft with fsync (p50, p99 over
// 1,000 applies) and the operator's resident memory with 1,000 objects.
//
// It runs the real mqtt-operator binary (the -operator flag) as a separate
// process on loopback, with its data dir on the local disk.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

func main() {
	bin := flag.String("operator", "bin/mqtt-operator", "mqtt-operator binary")
	n := flag.Int("n", 1000, "number of applies (and stored objects)")
	only := flag.String("only", "", "comma-separated data-plane parts to run: ready, rolling, autoscale, storm, bridge, rotation, qos, onebroker, users, kill (default all)")
	stormClients := flag.Int("storm-clients", 8000, "MQTTS clients held and brought back in the storm benchmark (one HAProxy here holds at most about 9,900: its open-files limit)")
	stormRate := flag.Int("storm-rate", 200, "the paced round's spec.loadBalancer.limits.connectionRate (200: the default)")
	clients := flag.Int("clients", 8, "publishers in the QoS 1 benchmark")
	messages := flag.Int("messages", 1000, "messages per publisher in the QoS 1 benchmark")
	skipControl := flag.Bool("skip-control-plane", false, "skip the control-plane benchmark")
	loadAddr := flag.String("load", "", "load mode: publish QoS 1 to this MQTT address and print the result as JSON")
	loadUser := flag.String("load-user", "", "load mode: MQTT user")
	loadPass := flag.String("load-pass", "", "load mode: MQTT password")
	window := flag.Int("window", 1, "load mode: messages in flight per client")
	tag := flag.String("tag", "x", "load mode: client id tag")
	self := flag.String("self", "", "this program built static, run in containers on the cluster network for in-network baselines")
	ha := flag.Bool("ha", false, "run only the control plane's HA figures against the docker-in-docker Swarm of make up MANAGERS=3 (MQTTCTL_SERVERS)")
	gitB := flag.Bool("gitsync", false, "run only the git sync figures (in process)")
	syncB := flag.Bool("sync", false, "run only the broker data sync and PerNode figures (spec.sync, spec.scaling PerNode) against the docker-in-docker Swarm of make up MANAGERS=3")
	syncParts := flag.String("sync-parts", "lag,loss,pernode", "with -sync: the parts to run (lag: sync lag; loss: node loss, killed, with Swarm's default dispatcher heartbeat and with 1 s; pernode: the PerNode figures)")
	fleetB := flag.Bool("fleet", false, "run only the fleet figures (connections held by three load-balancer tasks, a storm after all three are killed) against the docker-in-docker Swarm of make up MANAGERS=3")
	fleetHeldN := flag.Int("fleet-clients", 20000, "with -fleet: MQTTS clients held")
	fleetStormN := flag.Int("fleet-storm", 10000, "with -fleet: MQTTS clients in the storm")
	fleetRate := flag.Int("fleet-rate", 200, "with -fleet: the paced round's connectionRate per load-balancer task (200: the default)")
	fleetWorker := flag.Bool("fleet-worker", false, "internal: hold a share of a fleet (config on stdin, counts on stdout)")
	cluster := flag.Bool("cluster", false, "also run the data-plane benchmarks against the operator make up deployed (MQTTCTL_SERVER, MQTTCTL_TOKEN_FILE)")
	flag.Parse()
	if *loadAddr != "" {
		if err := runLoad(*loadAddr, *loadUser, *loadPass, *clients, *messages, *window, *tag); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *fleetWorker {
		if err := runFleetWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	benchBinary = *self
	if *fleetB {
		nodes, cl, err := dindClient()
		if err == nil {
			err = runFleetBench(context.Background(), cl, nodes, *fleetHeldN, *fleetStormN, *fleetRate)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *gitB {
		if err := runGitSyncBench(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *syncB {
		nodes, cl, err := dindClient()
		parts := map[string]bool{}
		for _, p := range strings.Split(*syncParts, ",") {
			parts[strings.TrimSpace(p)] = true
		}
		if err == nil && (parts["lag"] || parts["loss"]) {
			err = runSyncBench(context.Background(), cl, nodes, parts)
		}
		if err == nil && parts["pernode"] {
			err = runPerNodeBench(context.Background(), cl, nodes)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *ha {
		tok, err := os.ReadFile(os.Getenv("MQTTCTL_TOKEN_FILE"))
		if err == nil {
			err = runHABench(context.Background(), os.Getenv("MQTTCTL_SERVERS"), strings.TrimSpace(string(tok)))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if !*skipControl {
		if err := run(*bin, *n); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if *cluster {
		tok, err := os.ReadFile(os.Getenv("MQTTCTL_TOKEN_FILE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: no API token (run make up):", err)
			os.Exit(1)
		}
		cl, err := client.New(client.Options{Server: os.Getenv("MQTTCTL_SERVER"), Token: strings.TrimSpace(string(tok)), CAFile: os.Getenv("MQTTCTL_CA_FILE"), Timeout: 10 * time.Second})
		if err == nil {
			o := clusterOpts{only: map[string]bool{}, clients: *clients, messages: *messages, stormClients: *stormClients, stormRate: *stormRate}
			for _, p := range strings.Split(*only, ",") {
				if p != "" {
					o.only[p] = true
				}
			}
			err = runClusterBench(context.Background(), cl, o)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

// dindClient: the docker-in-docker managers of make up MANAGERS=3 and a
// client of their operators (MQTTCTL_SERVERS).
func dindClient() ([]haNode, *client.Client, error) {
	tok, err := os.ReadFile(os.Getenv("MQTTCTL_TOKEN_FILE"))
	if err != nil {
		return nil, nil, err
	}
	nodes, err := haNodes(os.Getenv("MQTTCTL_SERVERS"))
	if err != nil {
		return nil, nil, err
	}
	cl, err := client.New(client.Options{Server: os.Getenv("MQTTCTL_SERVERS"), Token: strings.TrimSpace(string(tok)), CAFile: os.Getenv("MQTTCTL_CA_FILE"), Timeout: 10 * time.Second})
	return nodes, cl, err
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func run(bin string, n int) error {
	dir, err := os.MkdirTemp("", "mqtt-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	apiAddr, _ := freePort()
	raftAddr, _ := freePort()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("bench-token\n"), 0o600); err != nil {
		return err
	}
	// The production path: raft and the API over TLS with a control-plane CA.
	caBundle, caCert := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crt")
	if out, err := exec.Command(bin, "control-ca", "--out", caBundle, "--cert-out", caCert).CombinedOutput(); err != nil {
		return fmt.Errorf("control-ca: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--api-addr", apiAddr, "--raft-addr", raftAddr, "--token-file", tokenFile, "--control-ca-file", caBundle, "--log-level", "warn", "--reconcile=false")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	cl, err := client.New(client.Options{Server: "https://" + apiAddr, Token: "bench-token", CAFile: caCert})
	if err != nil {
		return err
	}
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if l, err := cl.Leader(ctx); err == nil && l.IsLeader {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("operator not leader within 20s")
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	rssIdle, _ := rss(cmd.Process.Pid)

	// Warm up connections and code paths (not counted).
	for i := 0; i < 20; i++ {
		if _, err := cl.Apply(ctx, doc(fmt.Sprintf("warm-%d", i), 3)); err != nil {
			return err
		}
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		res, err := cl.Apply(ctx, doc(fmt.Sprintf("c-%04d", i), int32(1+i%15)))
		if err != nil {
			return err
		}
		if res.Result != "created" {
			return fmt.Errorf("apply %d: %s", i, res.Result)
		}
		lat = append(lat, time.Since(t0))
	}
	total := time.Since(start)
	// Updates (spec change, generation bump) go through raft the same way.
	ulat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t0 := time.Now()
		res, err := cl.Apply(ctx, doc(fmt.Sprintf("c-%04d", i), int32(1+(i+1)%15)))
		if err != nil {
			return err
		}
		if res.Result != "configured" {
			return fmt.Errorf("update %d: %s", i, res.Result)
		}
		ulat = append(ulat, time.Since(t0))
	}
	list, err := cl.List(ctx, "")
	if err != nil {
		return err
	}
	rssFull, err := rss(cmd.Process.Pid)
	if err != nil {
		return err
	}

	fmt.Printf("control plane (one voter, raft-wal log with fsync, HTTP on loopback)\n")
	fmt.Printf("  create via HTTP+raft: n=%d p50=%s p99=%s max=%s (%.0f applies/s)   target p99 <= 15ms\n",
		n, pct(lat, 50), pct(lat, 99), pct(lat, 100), float64(n)/total.Seconds())
	fmt.Printf("  update via HTTP+raft: n=%d p50=%s p99=%s max=%s\n", n, pct(ulat, 50), pct(ulat, 99), pct(ulat, 100))
	fmt.Printf("  resident memory: %.1f MiB idle, %.1f MiB with %d objects stored   target <= 40 MiB\n",
		float64(rssIdle)/(1<<20), float64(rssFull)/(1<<20), len(list.Items))
	return nil
}

func doc(name string, replicas int32) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata:
  name: %s
  labels: {bench: "true"}
spec:
  replicas: %d
  broker: {resources: {memory: 256Mi, cpus: "0.5"}}
  tls: {dnsNames: [mqtt.example.com]}
  placement: {constraints: ["node.labels.mqtt == true"]}
`, name, replicas))
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}

func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
