//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/test/chaos"
)

// stormClients is the fleet TestReconnectStorm brings back (issue 21's
// "a storm of 2,000 clients after a load-balancer kill"); make bench -only
// storm measures larger ones.
const stormClients = 2000

// TestReconnectStorm: 2,000 MQTTS clients connected through the quickstart
// cluster's load balancer, which is then killed: Swarm starts a new one,
// every client is back (reconnecting with jittered backoff, as device SDKs
// do) before the deadline, and no broker restarted under the storm.
func TestReconnectStorm(t *testing.T) {
	e := quickstart(t)
	lbService := "quickstart-lb"
	brokersBefore := brokerTaskIDs(t)
	f := &chaos.Fleet{URL: fmt.Sprintf("ssl://%s:%d", chaos.FleetHost(e.host), e.mqtts), TLS: e.tls("localhost"), User: e.user, Pass: e.pass,
		N: stormClients, IDPrefix: "storm", Cap: 3 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := f.Start(ctx, 64); err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	t.Logf("%d MQTTS clients connected in %v", f.N, time.Since(start).Round(10*time.Millisecond))

	lb := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+lbService))
	if len(lb) != 1 {
		t.Fatalf("load-balancer containers: %v", lb)
	}
	killed := time.Now()
	docker(t, "kill", lb[0])
	// Every client noticed (the kill closes their sockets).
	eventually(t, "every client seeing its connection lost", 30*time.Second, func() error {
		if f.Lost() < f.N {
			return fmt.Errorf("only %d of %d", f.Lost(), f.N)
		}
		return nil
	})
	deadline := killed.Add(90 * time.Second)
	if !f.WaitConnected(f.N*99/100, deadline) {
		t.Fatalf("99%%: only %d of %d clients back %v after the kill", f.Connected(), f.N, time.Since(killed).Round(time.Second))
	}
	p99 := time.Since(killed)
	if !f.WaitConnected(f.N, deadline) {
		t.Fatalf("100%%: only %d of %d clients back %v after the kill", f.Connected(), f.N, time.Since(killed).Round(time.Second))
	}
	all := time.Since(killed)
	t.Logf("load balancer killed with %d MQTTS clients: 99%% back in %v, all in %v", f.N, p99.Round(10*time.Millisecond), all.Round(10*time.Millisecond))
	if after := brokerTaskIDs(t); !slices.Equal(after, brokersBefore) {
		t.Fatalf("brokers restarted under the storm: tasks %v -> %v", brokersBefore, after)
	}
	// No broker was marked down by the new load balancer: a busy broker
	// marked down has every session cut, and those come back as more storm.
	for _, id := range strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+lbService)) {
		out, _ := exec.Command("docker", "logs", id).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "is DOWN") && !strings.Contains(l, "maintenance") {
				t.Errorf("a broker was marked down under the storm: %s", l)
			}
		}
	}
}

// brokerTaskIDs are the running quickstart broker tasks.
func brokerTaskIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, strings.Fields(docker(t, "service", "ps", "-q", "--filter", "desired-state=running", fmt.Sprintf("quickstart-broker-%d", i)))...)
	}
	slices.Sort(ids)
	return ids
}
