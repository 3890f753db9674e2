//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
)

// TestImagesRunRealComponents checks the locally built images start their
// real programs: Mosquitto serves a publish to a subscriber, HAProxy has the
// Prometheus exporter, the sync image has lsyncd and rsync.
func TestImagesRunRealComponents(t *testing.T) {
	name := "swarm-mqtt-e2e-mosquitto"
	_ = exec.Command("docker", "rm", "-f", name).Run()
	docker(t, "run", "-d", "--name", name, "--label", "swarm-mqtt.e2e=true", "swarm-mqtt/mosquitto:local",
		"sh", "-c", "printf 'listener 1883 127.0.0.1\\nallow_anonymous true\\n' > /tmp/m.conf && exec mosquitto -c /tmp/m.conf")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })

	eventually(t, "mosquitto accepting connections", 20*time.Second, func() error {
		return exec.Command("docker", "exec", name, "mosquitto_pub", "-h", "127.0.0.1", "-t", "probe", "-m", "x").Run()
	})
	// A retained message is served to a subscriber that comes later.
	docker(t, "exec", name, "mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-r", "-t", "e2e/retained", "-m", "hello-swarm")
	got := docker(t, "exec", name, "mosquitto_sub", "-h", "127.0.0.1", "-q", "1", "-t", "e2e/retained", "-C", "1", "-W", "10")
	if got != "hello-swarm" {
		t.Fatalf("subscriber got %q", got)
	}

	if out := docker(t, "run", "--rm", "swarm-mqtt/haproxy:local", "haproxy", "-vv"); !strings.Contains(out, "+PROMEX") {
		t.Errorf("haproxy lacks the Prometheus exporter:\n%s", out)
	}
	if out := docker(t, "run", "--rm", "swarm-mqtt/sync:local", "sh", "-c", "lsyncd --version && rsync --version"); !strings.Contains(out, "rsync  version") {
		t.Errorf("sync image: %s", out)
	}
}

// TestImageContract: a broker image that is no Mosquitto image (the Debian
// base: a shell, no mosquitto) stops at start with a line saying why, and
// the cluster is Degraded with that reason, naming the broker; with the
// right image again it becomes Ready. The same for a load-balancer image
// Docker cannot run as one (the Debian base: no command).
func TestImageContract(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	const name = "e2eimg"
	good := testSpec(name, 1, 20883, 20884, "")
	bad := []byte(strings.Replace(string(good), "broker: {", "broker: {image: swarm-mqtt/debian-base:bookworm, ", 1))
	t.Cleanup(func() {
		_ = c.Delete(ctx, name)
		eventually(t, name+" removed", 60*time.Second, func() error {
			if n := docker(t, "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+name); n != "" {
				return errStr("services left")
			}
			return nil
		})
	})
	if _, err := c.Apply(ctx, bad); err != nil {
		t.Fatal(err)
	}
	want := name + "-broker-0: image contract: no mosquitto in this image"
	applied := time.Now()
	waitImageContract(t, c, name, want)
	t.Logf("a broker image without mosquitto: Degraded (ImageContract) %v after the apply", time.Since(applied).Round(100*time.Millisecond))
	if _, err := c.Apply(ctx, good); err != nil {
		t.Fatal(err)
	}
	obj := waitReady(t, c, name, 120*time.Second)
	if d := meta.FindStatusCondition(obj.Status.Conditions, api.ConditionDegraded); d == nil || d.Status != metav1.ConditionFalse {
		t.Errorf("Degraded after the right image: %+v", d)
	}

	// The load balancer's image: the Debian base has no command to run.
	badLB := []byte(strings.Replace(string(good), "loadBalancer: {", "loadBalancer: {image: swarm-mqtt/debian-base:bookworm, ", 1))
	if string(badLB) == string(good) {
		t.Fatal("the test spec has no loadBalancer section to change")
	}
	if _, err := c.Apply(ctx, badLB); err != nil {
		t.Fatal(err)
	}
	wantLB := name + "-lb: No command specified (a load-balancer image needs HAProxy 2.4 or later"
	applied = time.Now()
	waitImageContract(t, c, name, wantLB)
	t.Logf("a load-balancer image with no command: Degraded (ImageContract) %v after the apply", time.Since(applied).Round(100*time.Millisecond))
	if _, err := c.Apply(ctx, good); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, name, 120*time.Second)
}

// waitImageContract waits until the cluster is Degraded for its image
// contract, with want in the message.
func waitImageContract(t *testing.T, c *client.Client, name, want string) {
	t.Helper()
	eventually(t, "Degraded: "+want, 90*time.Second, func() error {
		obj, err := c.Get(context.Background(), name)
		if err != nil {
			return err
		}
		d := meta.FindStatusCondition(obj.Status.Conditions, api.ConditionDegraded)
		if d == nil || d.Status != metav1.ConditionTrue || d.Reason != "ImageContract" || !strings.Contains(d.Message, want) {
			return fmt.Errorf("Degraded %+v", d)
		}
		return nil
	})
}
