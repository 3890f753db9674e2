package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/test/chaos"
)

const (
	stormCluster = "storm"
	stormMQTT    = 36883
)

func stormSpec(rate int) string {
	limits := fmt.Sprintf(", limits: {connectionRate: %d}", rate) // 0: unpaced
	return fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: 3
  broker: {persistence: {enabled: false}}
  loadBalancer: {replicas: 1, ports: {mqtt: %d, mqtts: %d}%s}
  tls: {dnsNames: [localhost]}
`, stormCluster, stormMQTT, stormMQTT+5000, limits)
}

// stormBench: the connections one load-balancer replica in front of 3
// brokers holds (memory per connection of HAProxy and of the brokers,
// a probe's publish latency with 100 clients and with all of them), then
// the load balancer killed under all of them: time until 99% and 100% are
// back, unpaced (the baseline) and paced (connectionRate), in the same run.
func stormBench(ctx context.Context, cl *client.Client, n, rate int) error {
	defer func() {
		_ = cl.Delete(ctx, stormCluster)
		waitGone(stormCluster)
	}()
	var rounds []string
	for _, r := range []int{0, rate} {
		if _, err := cl.Apply(ctx, []byte(stormSpec(r))); err != nil {
			return err
		}
		if err := waitClusterReady(ctx, cl, stormCluster, 3*time.Minute); err != nil {
			return err
		}
		ca, err := cl.CA(ctx, stormCluster)
		if err != nil {
			return err
		}
		cr, err := cl.Credentials(ctx, stormCluster)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(ca.Certificate))
		tc := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
		url := fmt.Sprintf("ssl://%s:%d", chaos.FleetHost("127.0.0.1"), stormMQTT+5000)
		line, err := stormRound(ctx, url, tc, cr.Username, cr.Password, n, r, r == 0)
		if err != nil {
			return err
		}
		rounds = append(rounds, line)
	}
	fmt.Println()
	for _, l := range rounds {
		fmt.Println(l)
	}
	return nil
}

func stormRound(ctx context.Context, url string, tc *tls.Config, user, pass string, n, rate int, held bool) (string, error) {
	before := memOf()
	probe, err := probeLatency(url, tc, user, pass)
	if err != nil {
		return "", err
	}
	small := &chaos.Fleet{URL: url, TLS: tc, User: user, Pass: pass, N: 100, IDPrefix: "bench-small"}
	if err := small.Start(ctx, 32); err != nil {
		return "", err
	}
	p100, err := probeLatency(url, tc, user, pass)
	small.Stop()
	if err != nil {
		return "", err
	}
	f := &chaos.Fleet{URL: url, TLS: tc, User: user, Pass: pass, N: n, IDPrefix: "bench-storm", Cap: 5 * time.Second}
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := f.Start(sctx, 128); err != nil {
		return "", err
	}
	defer f.Stop()
	connect := time.Since(t0)
	pN, err := probeLatency(url, tc, user, pass)
	if err != nil {
		return "", err
	}
	after := memOf()
	out := ""
	if held {
		lb := (after["lb"] - before["lb"]) / float64(n)
		br := (after["broker"] - before["broker"]) / float64(n)
		out += fmt.Sprintf("connections held: %d idle MQTTS clients (keepalive 60 s) through 1 HAProxy and 3 brokers, connected in %s\n", n, connect.Round(time.Millisecond))
		out += fmt.Sprintf("  memory per connection: HAProxy %.1f KiB, brokers %.1f KiB (all three)\n", lb/1024, br/1024)
		out += fmt.Sprintf("  probe publish->PUBACK p50: no fleet %s, 100 clients %s, %d clients %s; ratio %d/100: %.2f (target <= 2)\n",
			probe, p100, n, pN, n, pN.Seconds()/p100.Seconds())
	}
	lbc, err := sh("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stormCluster+"-lb")
	if err != nil || lbc == "" {
		return "", fmt.Errorf("no load-balancer container: %v", err)
	}
	brokers := brokerTasks(stormCluster)
	killed := time.Now()
	if _, err := sh("docker", "kill", strings.Fields(lbc)[0]); err != nil {
		return "", err
	}
	back := stormBack(f, n, killed, "storm")
	res := fmt.Sprintf("reconnect storm, %d MQTTS clients, the load balancer killed, %s: %s", n, paceLabel(rate), back)
	if after := brokerTasks(stormCluster); !slices.Equal(after, brokers) {
		res += "; BROKERS RESTARTED"
	} else {
		res += "; no broker restarted"
	}
	return out + res, nil
}

// stormFleet is what a storm figure reads of a fleet (test/chaos.Fleet,
// or procFleet, one split over worker processes).
type stormFleet interface {
	Connected() int
	Lost() int
	LastError() string
	WaitConnected(n int, deadline time.Time) bool
}

// stormBack waits, after the kill at killed, until the n clients have
// all lost their connection (at most a minute), then until 99 % and all
// are connected again (at most 5 min from the kill), saying where the
// storm stands on stderr every 10 s; it returns the two times.
func stormBack(f stormFleet, n int, killed time.Time, label string) string {
	for f.Lost() < n && time.Since(killed) < time.Minute {
		time.Sleep(20 * time.Millisecond)
	}
	deadline := killed.Add(5 * time.Minute)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Second):
				fmt.Fprintf(os.Stderr, "  %s +%s: %d of %d connected, %d losses; last connect error %q\n",
					label, time.Since(killed).Round(time.Second), f.Connected(), n, f.Lost(), f.LastError())
			}
		}
	}()
	ok99 := f.WaitConnected(n*99/100, deadline)
	t99 := time.Since(killed)
	ok100 := f.WaitConnected(n, deadline)
	t100 := time.Since(killed)
	return fmt.Sprintf("99%% back in %s, 100%% in %s", fmtWait(ok99, t99), fmtWait(ok100, t100))
}

// paceLabel names a storm round by its connectionRate per task (0: none).
func paceLabel(rate int) string {
	if rate > 0 {
		return fmt.Sprintf("paced (connectionRate %d/s per load-balancer task)", rate)
	}
	return "unpaced (baseline)"
}

func fmtWait(ok bool, d time.Duration) string {
	if !ok {
		return "not within " + d.Round(time.Second).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// probeLatency is the median of 50 QoS 1 publishes (publish -> PUBACK) of
// one client.
func probeLatency(url string, tc *tls.Config, user, pass string) (time.Duration, error) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetTLSConfig(tc).SetClientID(fmt.Sprintf("probe-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return 0, fmt.Errorf("probe connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	var lat []time.Duration
	for i := 0; i < 50; i++ {
		t0 := time.Now()
		if tok := c.Publish("bench/probe", 1, false, "x"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return 0, fmt.Errorf("probe publish: %v", tok.Error())
		}
		lat = append(lat, time.Since(t0))
	}
	return pct(lat, 50), nil
}

// memOf sums the memory of the storm cluster's load-balancer and broker
// containers (docker stats), in bytes.
func memOf() map[string]float64 {
	out := map[string]float64{}
	if s, err := sh("docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"); err == nil {
		addMem(out, s, stormCluster)
	}
	return out
}

// addMem adds the memory of cluster's containers in s (docker stats lines
// "NAME USAGE / LIMIT") to out["lb"] and out["broker"], in bytes.
func addMem(out map[string]float64, s, cluster string) {
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], cluster+"-") {
			continue
		}
		kind := "broker"
		if strings.HasPrefix(f[0], cluster+"-lb") {
			kind = "lb"
		} else if !strings.HasPrefix(f[0], cluster+"-broker") {
			continue
		}
		out[kind] += parseMem(f[1])
	}
}

func parseMem(s string) float64 {
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * u.mult
		}
	}
	return 0
}

// brokerTasks are a cluster's running broker tasks.
func brokerTasks(cluster string) []string {
	var ids []string
	for i := 0; i < 3; i++ {
		s, _ := sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", fmt.Sprintf("%s-broker-%d", cluster, i))
		ids = append(ids, strings.Fields(s)...)
	}
	slices.Sort(ids)
	return ids
}

// waitGone waits until a cluster's services are gone.
func waitGone(cluster string) {
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if s, _ := sh("docker", "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+cluster); s == "" {
			return
		}
	}
}
