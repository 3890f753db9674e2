//go:build e2e

package broker

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealMosquittoRunsRenderedConfig starts the real broker image on each
// rendered variant, started by the broker's real start script (which joins
// the two password files), and checks what the config promises: anonymous
// clients refused or served, a password user served, the bridge user
// served (it logs in with the internal password file's entry).
func TestRealMosquittoRunsRenderedConfig(t *testing.T) {
	for name, y := range variants {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, err := Render(cluster(t, y), 0, Options{})
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "mosquitto.conf"), cfg, 0o644)
			ctr := "swarm-mqtt-e2e-broker-" + name
			_ = exec.Command("docker", "rm", "-f", ctr).Run()
			out, err := exec.Command("docker", "run", "-d", "--name", ctr, "-v", dir+":/x:ro", "swarm-mqtt/mosquitto:local", "sh", "-c",
				"mkdir -p /run/secrets && touch /run/secrets/mosquitto-passwd && chmod 0700 /run/secrets/mosquitto-passwd && "+
					"mosquitto_passwd -b /run/secrets/mosquitto-passwd alice wonderland && chown mosquitto /run/secrets/mosquitto-passwd && "+
					"touch /run/secrets/mosquitto-internal-passwd && chmod 0700 /run/secrets/mosquitto-internal-passwd && "+
					"mosquitto_passwd -b /run/secrets/mosquitto-internal-passwd bridge b && chown mosquitto /run/secrets/mosquitto-internal-passwd && "+
					"cp /x/mosquitto.conf "+ConfigPath+" && "+StartScript(false, SharedPlugin(cluster(t, y), 0, false))).CombinedOutput()
			if err != nil {
				t.Fatalf("docker run: %v\n%s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", ctr).Run() })
			pub := func(args ...string) error {
				return exec.Command("docker", append([]string{"exec", ctr, "mosquitto_pub", "-h", "127.0.0.1", "-t", "t", "-m", "m"}, args...)...).Run()
			}
			deadline := time.Now().Add(15 * time.Second)
			for pub("-u", "alice", "-P", "wonderland") != nil {
				if time.Now().After(deadline) {
					logs, _ := exec.Command("docker", "logs", ctr).CombinedOutput()
					t.Fatalf("the password user is not served:\n%s", logs)
				}
				time.Sleep(200 * time.Millisecond)
			}
			anonOK := pub() == nil
			wantAnon := strings.Contains(string(cfg), "allow_anonymous true")
			if anonOK != wantAnon {
				t.Errorf("anonymous publish ok=%v, config allows=%v", anonOK, wantAnon)
			}
			if pub("-u", "alice", "-P", "wrong") == nil {
				t.Error("a wrong password was accepted")
			}
			if pub("-u", BridgeUser, "-P", "b", "-p", fmt.Sprint(InternalPort)) != nil {
				t.Error("the bridge user is refused on the internal listener")
			}
			// The cluster_shared plugin is loaded, and keeps the cluster's
			// topics to the bridge user.
			if logs, _ := exec.Command("docker", "logs", ctr).CombinedOutput(); !strings.Contains(string(logs), "cluster_shared: broker 0") {
				t.Errorf("the cluster_shared plugin is not loaded:\n%s", logs)
			}
			// mosquitto_pub exits 0 on a refused PUBACK and says so.
			out, _ = exec.Command("docker", "exec", ctr, "mosquitto_pub", "-V", "5", "-q", "1", "-h", "127.0.0.1", "-u", "alice", "-P", "wonderland", "-t", "$cluster/shared/7", "-m", "x").CombinedOutput()
			if !strings.Contains(string(out), "Not authorized") {
				t.Errorf("a client may publish on $cluster/shared/: %s", out)
			}
		})
	}
}
