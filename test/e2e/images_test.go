//go:build e2e

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
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
