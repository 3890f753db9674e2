//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func userDoc(name, cluster, rules string) []byte {
	return []byte(fmt.Sprintf("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: %s}\nspec:\n  cluster: %s\n  authorization:\n    acls:\n%s", name, cluster, rules))
}

// userReady waits until the user's status says every broker serves it
// and returns its password.
func userReady(t *testing.T, c *client.Client, name string) string {
	t.Helper()
	eventually(t, "user "+name+" Ready", time.Minute, func() error {
		u, err := c.GetUser(context.Background(), name)
		if err != nil {
			return err
		}
		if u.Status.ObservedGeneration < u.Generation || !meta.IsStatusConditionTrue(u.Status.Conditions, api.ConditionReady) {
			return fmt.Errorf("status: %+v", u.Status)
		}
		return nil
	})
	cred, err := c.UserCredentials(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return cred.Password
}

// closedWithin waits until every connection reports a loss and returns
// how long that took.
func closedWithin(t *testing.T, what string, conns map[int]*conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		open := 0
		for _, c := range conns {
			if c.lost.Load() == 0 {
				open++
			}
		}
		if open == 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: %d of %d connections still open after %s", what, open, len(conns), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUsersAppliedLiveOnEveryBroker: MqttUsers on the quickstart cluster,
// each checked on every broker (clients pinned by their log line): a
// subscribe-only user cannot publish, its deny wins over its wider read; a
// password rotation closes the user's live connection on every broker
// within 2 s, refuses the old password and accepts the new one; a deleted
// user's connections are closed within 2 s and it cannot log in again; 100
// clients of another user see none of it. A broker killed by Swarm comes
// back serving the users before it lets any client in.
func TestUsersAppliedLiveOnEveryBroker(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	e := quickstart(t)
	const cluster = "quickstart"
	for _, u := range []string{"e2e-reader", "e2e-device"} {
		t.Cleanup(func() { _ = c.DeleteUser(context.Background(), u) })
	}
	if _, err := c.ApplyUser(ctx, userDoc("e2e-reader", cluster, "      - {topic: \"sensors/#\", access: read}\n      - {topic: \"sensors/secret/#\", access: deny}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyUser(ctx, userDoc("e2e-device", cluster, "      - {topic: \"devices/e2e-device/#\", access: readwrite}\n")); err != nil {
		t.Fatal(err)
	}
	readerPw, devicePw := userReady(t, c, "e2e-reader"), userReady(t, c, "e2e-device")

	// 100 clients of the generated user, plain and TLS.
	bystanders := connectBystanders(t, e, "users-bystander", 100)
	obs := &observer{got: map[string]time.Time{}}
	watcher, err := dial(e, "users-observer", nil, e.user, e.pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watcher.Disconnect(0) })
	if tok := watcher.Subscribe("sensors/#", 1, obs.handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}

	reader := e
	reader.user, reader.pass = "e2e-reader", readerPw
	readers := pinnedOn(t, cluster, reader, 3, "reader", nil)
	for i, r := range readers {
		for filter, want := range map[string]byte{"sensors/#": 1, "sensors/secret/#": 0x80, "other/#": 0x80} {
			tok := r.Subscribe(filter, 1, nil)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe %s: %v", filter, tok.Error())
			}
			if got := tok.(*mqtt.SubscribeToken).Result()[filter]; got != want {
				t.Errorf("broker %d: the reader's subscription to %s got %#x, want %#x", i, filter, got, want)
			}
		}
		r.Publish("sensors/x", 1, false, fmt.Sprint("reader-", i)).WaitTimeout(5 * time.Second)
		watcher.Publish("sensors/marker", 1, false, fmt.Sprint("m-", i)).WaitTimeout(5 * time.Second)
		eventually(t, "marker", 10*time.Second, func() error {
			if !obs.has(fmt.Sprintf("sensors/marker m-%d", i)) {
				obs.mu.Lock()
				defer obs.mu.Unlock()
				return fmt.Errorf("not yet (observer connected %v, lost %d, got %v)", watcher.IsConnectionOpen(), watcher.lost.Load(), obs.got)
			}
			return nil
		})
		if obs.has(fmt.Sprintf("sensors/x reader-%d", i)) {
			t.Errorf("broker %d: a read-only user published", i)
		}
	}

	// Rotation: every live connection of the device closes, the old
	// password stops working, the new one works.
	device := e
	device.user, device.pass = "e2e-device", devicePw
	devices := pinnedOn(t, cluster, device, 3, "device", nil)
	start := time.Now()
	if _, err := c.RotatePassword(ctx, "e2e-device"); err != nil {
		t.Fatal(err)
	}
	took := closedWithin(t, "rotation", devices, 2*time.Second)
	t.Logf("rotation: the device's connections on 3 brokers closed %s after the request", took.Round(time.Millisecond))
	var newPw string
	eventually(t, "the new password", 10*time.Second, func() error {
		cred, err := c.UserCredentials(ctx, "e2e-device")
		if err != nil || cred.Password == devicePw {
			return fmt.Errorf("not rotated yet")
		}
		newPw = cred.Password
		return nil
	})
	if cl, err := dial(e, "device-old", nil, "e2e-device", devicePw); err == nil {
		cl.Disconnect(0)
		t.Error("the old password still works after the rotation")
	}
	cl, err := dial(e, "device-new", nil, "e2e-device", newPw)
	if err != nil {
		t.Fatalf("the new password is refused: %v", err)
	}
	cl.Disconnect(0)
	t.Logf("rotation to a working new password: %s", time.Since(start).Round(time.Millisecond))

	// Deletion: the reader's connections close everywhere.
	start = time.Now()
	if err := c.DeleteUser(ctx, "e2e-reader"); err != nil {
		t.Fatal(err)
	}
	took = closedWithin(t, "deletion", readers, 2*time.Second)
	t.Logf("deletion: the reader's connections on 3 brokers closed %s after the delete", took.Round(time.Millisecond))
	if cl, err := dial(e, "reader-again", nil, "e2e-reader", readerPw); err == nil {
		cl.Disconnect(0)
		t.Error("a deleted user logged in")
	}
	noneDropped(t, bystanders, "while users changed")

	// Drift: a state published on broker-1 by hand (with the bridges'
	// password, from inside its container) is put back by the operator
	// and reported as an event.
	ctr1 := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+cluster+"-broker-1"))
	if len(ctr1) == 0 {
		t.Fatal("no broker-1 container")
	}
	out, err := exec.Command("docker", "exec", ctr1[0], "sh", "-c",
		`pw=$(sed -n 's/^remote_password //p' /run/secrets/mosquitto.d/bridge.conf); printf 'cluster-auth 1\nversion by-hand\nend\n' > /tmp/s; `+
			`mosquitto_pub -h localhost -p 1884 --cafile /run/secrets/control-ca.crt --insecure -u bridge -P "$pw" -q 1 -t '$cluster/auth/state' -f /tmp/s`).CombinedOutput()
	if err != nil {
		t.Fatalf("publishing a state by hand: %v\n%s", err, out)
	}
	driftAt := time.Now()
	eventually(t, "the drift put back", 30*time.Second, func() error {
		logs := testutil.RunningLogs(cluster + "-broker-1")
		i := strings.LastIndex(logs, "applied state by-hand")
		if i < 0 || !strings.Contains(logs[i:], "cluster_auth: applied state ") || strings.Count(logs[i:], "applied state") < 2 {
			return fmt.Errorf("not put back yet")
		}
		return nil
	})
	t.Logf("drift: a state published by hand was put back %s later", time.Since(driftAt).Round(time.Millisecond))
	eventually(t, "the drift reported", 30*time.Second, func() error {
		evs, err := c.Events(ctx, cluster)
		if err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Reason == "AuthDrift" && strings.Contains(ev.Message, "by-hand") {
				return nil
			}
		}
		return fmt.Errorf("no AuthDrift event")
	})

	// A broker killed: its new task serves the users before any client.
	svc := cluster + "-broker-1"
	old := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc))
	if len(old) == 0 {
		t.Fatal("no broker-1 container")
	}
	// A device whose id hashes to broker-1 reconnects every 50 ms
	// throughout: HAProxy sends it back to broker-1 as soon as its
	// listener opens, which is before the operator has pushed the users.
	hammer := devices[1].id
	stop := make(chan struct{})
	var tries, refused atomic.Int32
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			tries.Add(1)
			if cl, err := dial(e, hammer, nil, "e2e-device", newPw); err == nil {
				cl.Disconnect(0)
			} else {
				refused.Add(1)
			}
		}
	}()
	docker(t, "kill", old[0])
	var logs string
	var clients atomic.Int32
	eventually(t, "broker-1 back with users", time.Minute, func() error {
		ids := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc))
		if len(ids) == 0 || ids[0] == old[0] {
			return fmt.Errorf("not restarted yet")
		}
		logs = testutil.RunningLogs(svc)
		if !strings.Contains(logs, "cluster_auth: applied state") || !strings.Contains(logs, " as "+hammer+" ") {
			return fmt.Errorf("no state, or the device not back on broker-1 yet")
		}
		return nil
	})
	close(stop)
	applied := strings.Index(logs, "cluster_auth: applied state")
	for _, line := range strings.Split(logs[:applied], "\n") {
		if strings.Contains(line, "New client connected") && !strings.Contains(line, "u'"+api.BridgeUser+"'") {
			clients.Add(1)
			t.Errorf("broker-1 let a client in before it had the users: %s", line)
		}
	}
	t.Logf("broker-1 restarted: %d clients let in before its users arrived; the device tried %d times, %d refused (the gate, or broker-1 down)", clients.Load(), tries.Load(), refused.Load())
}
