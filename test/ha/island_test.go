//go:build e2e_ha

package ha

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// TestSpokeBridgedToACutOffSpokeMissesNothing: the bridge tree is not
// fixed. A spoke whose parent stops bridges to the next address in its
// list — another spoke — and keeps that working bridge (broker-2 →
// broker-1 once broker-0 was killed). When that spoke's node is cut off,
// the operator moves broker-1 to another node (spec.sync) and the hub
// hears it again within seconds, while broker-2's bridge stays half open
// until its keepalive runs out, then reconnects to the hub: broker-2's
// subscribers must still get everything published on the hub meanwhile
// (the hub catches the bridge up from the last time broker-2 was heard,
// not from 2 s before it reconnected). This is the node-cut loss a soak
// run found (seed 2: 238 of 2,970 lost).
func TestSpokeBridgedToACutOffSpokeMissesNothing(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	run := strconv.FormatInt(time.Now().Unix()%1000000, 36)
	name := "isl-" + run
	// Each broker on its own manager, broker-1 on one that does not lead
	// the operators (the cut then moves no leadership): Swarm puts a new
	// task on the least loaded node, so the test steers it by pausing
	// the other nodes while it scales the cluster up one broker at a time.
	b := func(i int) string { return api.BrokerService(name, i) }
	lead, err := e.leader(nodes)
	if err != nil {
		t.Fatal(err)
	}
	var home []string // home[i]: broker i's node
	for _, n := range nodes {
		if n != lead {
			home = append(home, n)
		}
	}
	home = []string{lead, home[0], home[1]}
	// only leaves the given nodes active and pauses the others.
	only := func(active ...string) {
		for _, n := range nodes {
			if slices.Contains(active, n) {
				setAvailability(t, nodes[0], n, "active")
			} else {
				setAvailability(t, nodes[0], n, "pause")
			}
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if a, _ := exec.Command("docker", "exec", nodes[0], "docker", "node", "inspect", n, "-f", "{{.Spec.Availability}}").Output(); strings.TrimSpace(string(a)) != "active" {
				setAvailability(t, nodes[0], n, "active")
			}
		}
	})
	for i := 0; i < 3; i++ {
		only(home[i])
		if _, err := e.c.Apply(ctx, syncSpec(name, i+1, 24887, "1s")); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			t.Cleanup(func() { _ = e.c.Delete(context.Background(), name) })
			e.explainOnFailure(t, name)
		}
		eventually(t, b(i)+" running on "+home[i], 120*time.Second, func() error {
			if n, state := brokerNode(e.cluster(t, name), b(i)); n != home[i] || state != "running" {
				return fmt.Errorf("%s on %q: %s", b(i), n, state)
			}
			return nil
		})
	}
	only(nodes...)
	on := map[string]string{}
	eventually(t, name+" Ready with a broker on each manager", 180*time.Second, func() error {
		c := e.cluster(t, name)
		if err := ready(c); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			n, state := brokerNode(c, b(i))
			if n != home[i] || state != "running" {
				return fmt.Errorf("%s on %q: %s", b(i), n, state)
			}
			on[b(i)] = n
		}
		return nil
	})

	// broker-0 killed: broker-2's bridge moves to broker-1 and stays there
	// once broker-0 is back. Swarm schedules the replacement task afresh:
	// the other nodes paused keep it on its node.
	only(home[0])
	ctr0 := strings.TrimSpace(onNode(t, on[b(0)], "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+b(0)))
	onNode(t, on[b(0)], "kill", ctr0)
	parent := "(tasks." + b(1) + ":1884)"
	eventually(t, b(2)+"'s bridge connected to "+b(1), 60*time.Second, func() error {
		ctr := strings.TrimSpace(onNode(t, on[b(2)], "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+b(2)))
		out, _ := exec.Command("docker", "exec", on[b(2)], "docker", "logs", ctr).CombinedOutput()
		last := ""
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "Connecting bridge (step 2)") {
				last = l
			}
		}
		if !strings.Contains(last, parent) {
			return fmt.Errorf("last bridge connection: %q", last)
		}
		return nil
	})
	eventually(t, name+" Ready again, broker-0 back", 120*time.Second, func() error {
		c := e.cluster(t, name)
		if err := ready(c); err != nil {
			return err
		}
		if n, state := brokerNode(c, b(0)); n != on[b(0)] || state != "running" {
			return fmt.Errorf("%s on %q: %s", b(0), n, state)
		}
		if n := strings.TrimSpace(onNode(t, on[b(0)], "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+b(0))); n == "" || n == ctr0 {
			return errStr("broker-0 not replaced yet")
		}
		return nil
	})
	only(nodes...)

	// A subscriber on broker-2, a publisher on broker-0 (the hub).
	ctr2 := strings.TrimSpace(onNode(t, on[b(2)], "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+b(2)))
	sub := exec.Command("docker", append([]string{"exec", on[b(2)], "docker", "exec", ctr2, "mosquitto_sub", "-i", "island-sub-" + run, "-q", "1", "-t", "island/n"}, brokerTLS...)...)
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Process.Kill(); _ = sub.Wait() })
	var mu sync.Mutex
	got := map[int]int{}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
			mu.Lock()
			if err == nil {
				got[n]++
			} else {
				got[-1]++ // the probe
			}
			mu.Unlock()
		}
	}()
	eventually(t, "the subscriber on "+b(2)+" gets a probe published on "+b(0), 30*time.Second, func() error {
		if _, err := brokerExec(t, on[b(0)], b(0), append([]string{"mosquitto_pub", "-q", "1", "-t", "island/n", "-m", "probe"}, brokerTLS...)...); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if got[-1] == 0 {
			return errStr("no probe yet")
		}
		return nil
	})

	// 20 messages a second on the hub for 30 s; broker-1's node cut off
	// from 5 s to 20 s (broker-2's bridge keepalive is 5 s).
	const total = 600
	pub := exec.Command("docker", "exec", on[b(0)], "docker", "exec", strings.TrimSpace(onNode(t, on[b(0)], "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+b(0))),
		"sh", "-c", fmt.Sprintf("i=1; while [ $i -le %d ]; do echo $i; i=$((i+1)); sleep 0.05; done | mosquitto_pub -l -q 1 -t island/n %s", total, strings.Join(brokerTLS, " ")))
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // traffic before the cut, not a wait for readiness
	cut := on[b(1)]
	ip := e.ip[cut]
	cutAt := time.Now()
	sh(t, "docker", "network", "disconnect", net, cut)
	healed := false
	heal := func() {
		if !healed {
			healed = true
			_ = exec.Command("docker", "network", "connect", "--ip", ip, net, cut).Run()
		}
	}
	t.Cleanup(heal)
	time.Sleep(15 * time.Second) // the cut's length
	heal()
	if err := pub.Wait(); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	missing := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var m []int
		for i := 1; i <= total; i++ {
			if got[i] == 0 {
				m = append(m, i)
			}
		}
		return m
	}
	// Everything published has arrived, or what is missing stays missing.
	var last []int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if last = missing(); len(last) == 0 {
			break
		}
	}
	dups := 0
	mu.Lock()
	for i := 1; i <= total; i++ {
		if got[i] > 1 {
			dups += got[i] - 1
		}
	}
	mu.Unlock()
	// What happened, for whoever reads a failure: where broker-1 runs,
	// broker-2's bridge connections and the hub's catch-ups.
	n1, _ := brokerNode(e.cluster(t, name), b(1))
	t.Logf("%s now on %s", b(1), n1)
	for _, x := range []struct{ node, svc, want string }{{on[b(2)], b(2), "Connecting bridge"}, {on[b(0)], b(0), "caught up"}} {
		ctr := strings.TrimSpace(onNode(t, x.node, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+x.svc))
		out, _ := exec.Command("docker", "exec", x.node, "docker", "logs", "-t", "--since", cutAt.Format(time.RFC3339Nano), ctr).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, x.want) {
				t.Logf("%s: %s", x.svc, l)
			}
		}
	}
	t.Logf("%s cut off for 15 s: %d of %d messages missing at %s's subscriber, %d duplicated", cut, len(last), total, b(2), dups)
	if len(last) > 0 {
		t.Errorf("missing at %s's subscriber: %d of %d, from #%d to #%d", b(2), len(last), total, last[0], last[len(last)-1])
	}
}
