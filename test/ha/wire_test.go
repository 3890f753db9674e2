//go:build e2e_ha

package ha

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// TestNoSecretOnTheWire captures the traffic between the docker-in-docker
// managers (tcpdump on their bridge: every inter-node hop, the overlays'
// VXLAN packets included) during a write forwarded by a follower, a
// certificate renewal pushed into HAProxy tasks on other nodes, and a
// broker data sync, then looks for the secrets those carry: the API
// token, the pushed certificate's PEM (which travels with its private key
// in one runtime API command), the sync agents' password. None is found;
// the capture did see the hops (packets on the API, raft, runtime API and
// VXLAN ports).
func TestNoSecretOnTheWire(t *testing.T) {
	e := setup(t)
	e.waitVoters(t, 3)
	e.waitReady(t)
	ctx := context.Background()
	netID := sh(t, "docker", "network", "inspect", "-f", "{{.Id}}", net)
	pcap := filepath.Join(t.TempDir(), "wire.pcap")
	dump := exec.Command("timeout", "600", "tcpdump", "-i", "br-"+netID[:12], "-s", "0", "-U", "-n", "-w", pcap)
	stderr, _ := dump.StderrPipe()
	if err := dump.Start(); err != nil {
		t.Fatalf("tcpdump (hack/e2e-ha.sh installs it): %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = dump.Process.Signal(os.Interrupt)
			_ = dump.Wait()
		}
	}
	defer stop()
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(listening)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start")
	}

	// 1. A write through a follower: the token crosses to the leader.
	leader, err := e.leader(nodes)
	if err != nil {
		t.Fatal(err)
	}
	follower := others(nodes, leader)[0]
	fc, err := client.New(client.Options{Server: e.api(follower), Token: e.token, CAFile: testutil.CAFile(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	fe := *e
	fe.c = fc
	if err := fe.applyWith(ctx, e.quickstart(t), "wire-test", ""); err != nil {
		t.Fatalf("a write through %s: %v", follower, err)
	}

	// 2. A renewal, pushed into the HAProxy tasks (on other nodes than
	// the leader's, for at least one of them).
	before := e.quickstart(t).Status.Certificate.Serial
	if _, err := e.c.RenewCertificate(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	var certPEM []byte
	eventually(t, "the renewed certificate served by every HAProxy task", 60*time.Second, func() error {
		c := e.quickstart(t)
		st := c.Status.Certificate
		if st == nil || st.Serial == before {
			return fmt.Errorf("serial still %s", before)
		}
		if n, m, _ := strings.Cut(st.Serving, "/"); n != m || n == "0" {
			return fmt.Errorf("serving %s", st.Serving)
		}
		for _, ep := range c.Status.Endpoints {
			if host, ok := strings.CutPrefix(ep, "mqtts://"); ok {
				conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served certificate
				if err != nil {
					return err
				}
				certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: conn.ConnectionState().PeerCertificates[0].Raw})
				conn.Close()
				return nil
			}
		}
		return fmt.Errorf("no mqtts endpoint in %v", c.Status.Endpoints)
	})
	lbNodes := strings.Fields(onNode(t, nodes[0], "service", "ps", cluster+"-lb", "--filter", "desired-state=running", "--format", "{{.Node}}"))
	crossed := false
	for _, n := range lbNodes {
		crossed = crossed || n != leader
	}
	if !crossed {
		t.Logf("every HAProxy task runs on the leader's node (%s): the push did not cross the wire", leader)
	}

	// 3. A broker data sync between nodes.
	const name, port = "w1", 22883
	if _, err := e.c.Apply(ctx, syncSpec(name, 1, port, "1s")); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.c.Delete(context.Background(), name) }()
	var home string
	eventually(t, name+" Ready and SyncHealthy", 120*time.Second, func() error {
		c := e.cluster(t, name)
		home, _ = brokerNode(c, name+"-broker-0")
		return healthy(c)
	})
	nonce := fmt.Sprint(time.Now().UnixNano())
	pub := deviceClient(t, e.ip[home], port, "wire-"+nonce, true)
	if err := wait(pub.Publish("w1/retained", 1, true, "retained-"+nonce)); err != nil {
		t.Fatal(err)
	}
	pub.Disconnect(100)
	for _, n := range others(nodes, home) {
		eventually(t, "the retained message in the copy on "+n, 30*time.Second, func() error {
			if !copyHas(n, name+"-broker-0-data", "retained-"+nonce) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}
	agent := onNode(t, home, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+name+"-sync")
	syncPassword := onNode(t, home, "exec", agent, "cat", "/run/secrets/sync-password")
	stop()

	// A sync agent sits on the control network too, with a certificate
	// from the control-plane CA (its own, OU sync-agent): HAProxy's
	// runtime API answers it nothing, plain or with that certificate.
	var lbIP string
	for _, n := range nodes {
		if id := onNode(t, n, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+cluster+"-lb"); id != "" {
			lbIP = onNode(t, n, "inspect", "-f", `{{(index .NetworkSettings.Networks "mqtt-operator-control").IPAddress}}`, strings.Fields(id)[0])
			break
		}
	}
	for what, cmd := range map[string]string{
		"plain TCP": "exec 3<>/dev/tcp/" + lbIP + "/9999 && printf 'show info\\n' >&3 && timeout 3 cat <&3",
		"TLS with the agent's certificate": "printf 'show info\\n' | timeout 5 openssl s_client -quiet -connect " + lbIP + ":9999 " +
			"-cert /run/secrets/sync-tls.pem -key /run/secrets/sync-tls.pem -CAfile /run/secrets/control-ca.crt",
	} {
		out, _ := exec.Command("docker", "exec", home, "docker", "exec", agent, "bash", "-c", cmd+" 2>&1").CombinedOutput()
		if strings.Contains(string(out), "Version:") || strings.Contains(string(out), "Uptime") {
			t.Errorf("HAProxy's runtime API answered a sync agent (%s):\n%s", what, out)
		}
	}

	raw, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	var certLines []string
	for _, l := range strings.Split(string(certPEM), "\n") {
		if len(l) == 64 {
			certLines = append(certLines, l)
		}
	}
	secrets := map[string]string{"the API token": e.token, "the sync password": strings.TrimSpace(syncPassword)}
	for i, l := range certLines {
		secrets[fmt.Sprintf("line %d of the pushed certificate's PEM", i)] = l
	}
	for what, s := range secrets {
		if len(s) < 16 {
			t.Fatalf("%s is too short to look for (%q)", what, s)
		}
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("%s is on the wire in clear", what)
		}
	}
	// The detector works: the retained message went from this host to
	// the cluster's plain MQTT port (plain by design) and is found.
	if !bytes.Contains(raw, []byte("retained-"+nonce)) {
		t.Error("the plain MQTT publish is not in the capture: the capture or the search is broken")
	}
	// The capture saw the hops it should have.
	for _, filter := range []string{"tcp port 7950", "tcp port 7951", "udp port 4789"} {
		out, _ := exec.Command("tcpdump", "-r", pcap, "-n", filter).Output()
		if n := bytes.Count(out, []byte("\n")); n == 0 {
			t.Errorf("the capture has no packet for %q", filter)
		} else {
			t.Logf("%s: %d packets", filter, n)
		}
	}
	t.Logf("captured %d bytes; looked for %d secrets", len(raw), len(secrets))
}
