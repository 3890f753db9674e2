package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// usersBench: apply -> enforced on every broker for batches of 1, 100 and
// 1,000 MqttUsers (each user's latency from its apply call to the status
// that says every broker serves it, polled every 50 ms; the baseline is
// the apply call itself, a raft commit), then ACL cost on a lone broker.
func usersBench(ctx context.Context, cl *client.Client) error {
	fmt.Printf("\nMqttUsers: apply -> served by all 3 brokers (status Ready, polled every 50 ms), by batch size\n")
	for _, n := range []int{1, 100, 1000} {
		applied := make([]time.Time, n)
		var calls []time.Duration
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		start := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				doc := fmt.Sprintf("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: bench-u%d, labels: {bench: users}}\nspec:\n  cluster: %s\n  authorization: {acls: [{topic: \"devices/bench-u%d/#\", access: readwrite}]}\n", i, benchCluster, i)
				t0 := time.Now()
				_, err := cl.ApplyUser(ctx, []byte(doc))
				mu.Lock()
				defer mu.Unlock()
				applied[i] = t0
				if err == nil {
					calls = append(calls, time.Since(t0))
				}
			}()
		}
		wg.Wait()
		ready := map[string]time.Time{}
		deadline := time.Now().Add(5 * time.Minute)
		for len(ready) < n && time.Now().Before(deadline) {
			list, err := cl.ListUsers(ctx, "bench=users")
			if err != nil {
				return err
			}
			now := time.Now()
			for _, u := range list.Items {
				if _, seen := ready[u.Name]; !seen && u.Status.ObservedGeneration >= u.Generation && meta.IsStatusConditionTrue(u.Status.Conditions, api.ConditionReady) {
					ready[u.Name] = now
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(ready) < n {
			return fmt.Errorf("%d of %d users served within 5 min", len(ready), n)
		}
		var lat []time.Duration
		for i := 0; i < n; i++ {
			lat = append(lat, ready[fmt.Sprintf("bench-u%d", i)].Sub(applied[i]))
		}
		fmt.Printf("  %5d users: all served in %s; per user p50 %s p99 %s; the apply call p50 %s (ratio p50 %.1fx)\n",
			n, time.Since(start).Round(time.Millisecond), pct(lat, 50), pct(lat, 99), pct(calls, 50), pct(lat, 50).Seconds()/pct(calls, 50).Seconds())
		list, err := cl.ListUsers(ctx, "bench=users")
		if err != nil {
			return err
		}
		for _, u := range list.Items {
			_ = cl.DeleteUser(ctx, u.Name)
		}
	}
	return aclCostBench()
}

// aclCostBench runs the broker image twice on this machine with the same
// 10,000-device password file: with the cluster plugin serving one
// pattern rule (devices/%u/#), and with no rule. Start time (docker run ->
// a device's CONNACK) and publish -> PUBACK latency of devices publishing
// on their own topics, alternating rounds.
func aclCostBench() error {
	const devices, rounds, msgs = 10000, 3, 2000
	dir, err := os.MkdirTemp("", "mqtt-bench-acl-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	var pf strings.Builder
	for i := 0; i < devices; i++ {
		line, err := credentials.PasswordLine(fmt.Sprintf("dev%d", i), fmt.Sprintf("pw%d", i))
		if err != nil {
			return err
		}
		pf.WriteString(line + "\n")
	}
	ip, _ := credentials.PasswordLine("bridge", "b")
	files := map[string]string{
		"passwd": pf.String(), "internal": ip + "\n",
		"rules":   "cluster-auth 1\nversion bench-rules\nrule readwrite devices/%u/#\nend\n",
		"norules": "cluster-auth 1\nversion bench-none\nend\n",
		"mosquitto.conf": "listener 1883\nlistener 1884\npassword_file /tmp/mosquitto-passwd\nmax_inflight_messages 100\n" +
			"plugin " + broker.PluginPath + "\nplugin_opt_broker 0\nplugin_opt_bridge_user bridge\nplugin_opt_auth true\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("\nACL cost: one broker, %d devices in its password file, %d QoS 1 messages from 10 devices on their own topics, %d rounds alternating\n", devices, msgs, rounds)
	var start, ack [2]time.Duration
	names := [2]string{"no rule          ", "devices/%u/# rule"}
	for round := 0; round < rounds; round++ {
		for k, state := range []string{"norules", "rules"} {
			s, a, err := aclRun(dir, state, msgs)
			if err != nil {
				return err
			}
			start[k] += s / rounds
			ack[k] += a / rounds
		}
	}
	for k := range names {
		fmt.Printf("  %s start -> first CONNACK %s, publish -> PUBACK mean %s\n", names[k], start[k].Round(time.Millisecond), ack[k].Round(time.Microsecond))
	}
	fmt.Printf("  with/without the rule: start %.2fx, publish latency %.2fx   target: latency <= 1.1x\n", start[1].Seconds()/start[0].Seconds(), ack[1].Seconds()/ack[0].Seconds())
	return nil
}

// aclRun starts the broker with the given state (pushed as the operator
// does, over the internal listener), and measures.
func aclRun(dir, state string, msgs int) (time.Duration, time.Duration, error) {
	const ctr, port = "bench-acl-broker", "32884"
	_, _ = sh("docker", "rm", "-f", ctr)
	defer func() { _, _ = sh("docker", "rm", "-f", ctr) }()
	t0 := time.Now()
	if _, err := sh("docker", "run", "-d", "--name", ctr, "-p", "127.0.0.1:"+port+":1883", "-v", dir+":/x:ro", "swarm-mqtt/mosquitto:local", "sh", "-c",
		"cat /x/passwd /x/internal > /tmp/mosquitto-passwd && chown mosquitto /tmp/mosquitto-passwd && exec mosquitto -c /x/mosquitto.conf"); err != nil {
		return 0, 0, err
	}
	// The operator's push, until the broker answers it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := exec.Command("docker", "exec", ctr, "mosquitto_pub", "-p", "1884", "-u", "bridge", "-P", "b", "-q", "1", "-t", "$cluster/auth/state", "-f", "/x/"+state).Run(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("the bench broker did not take its state")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var startup time.Duration
	for {
		c, err := aclClient(port, 0)
		if err == nil {
			startup = time.Since(t0)
			c.Disconnect(0)
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	var sum atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for d := 0; d < 10; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := aclClient(port, d)
			if err != nil {
				errs <- err
				return
			}
			defer c.Disconnect(0)
			for m := 0; m < msgs/10; m++ {
				t := time.Now()
				tok := c.Publish(fmt.Sprintf("devices/dev%d/t", d), 1, false, "x")
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("publish: %v", tok.Error())
					return
				}
				sum.Add(int64(time.Since(t)))
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	return startup, time.Duration(sum.Load() / int64(msgs)), nil
}

func aclClient(port string, d int) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:" + port).SetClientID(fmt.Sprintf("bench-dev%d", d)).
		SetUsername(fmt.Sprintf("dev%d", d)).SetPassword(fmt.Sprintf("pw%d", d)).SetAutoReconnect(false).SetConnectTimeout(2 * time.Second)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect dev%d: %v", d, tok.Error())
	}
	return c, nil
}
