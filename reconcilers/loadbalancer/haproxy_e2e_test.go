//go:build e2e

package loadbalancer

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
)

// TestRealHAProxyAcceptsRenderedConfig checks every rendered variant with
// the real HAProxy of the load-balancer image (haproxy -c).
func TestRealHAProxyAcceptsRenderedConfig(t *testing.T) {
	ca, err := certs.IssueCA("iot", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := certs.IssueServer(ca, certs.ServerRequest{CommonName: "iot", DNSNames: []string{"localhost"}, Duration: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, y := range map[string]string{
		"default":       "",
		"tls-only-lc":   "spec: {replicas: 2, loadBalancer: {balance: leastconn, ports: {mqtt: 0}}}\n",
		"plain-only-rr": "spec: {replicas: 5, loadBalancer: {balance: roundrobin, ports: {mqtts: 0}}}\n",
	} {
		dir := t.TempDir()
		cfg, err := Render(cluster(t, y))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "haproxy.cfg"), cfg, 0o644)
		os.WriteFile(filepath.Join(dir, "mqtts.pem"), append(srv.CertPEM, srv.KeyPEM...), 0o644)
		out, err := exec.Command("docker", "run", "--rm", "-v", dir+":/x:ro", "swarm-mqtt/haproxy:local", "sh", "-c",
			"mkdir -p /run/secrets /run/haproxy && cp /x/mqtts.pem /run/secrets/ && haproxy -c -f /x/haproxy.cfg").CombinedOutput()
		if err != nil {
			t.Errorf("%s: haproxy -c rejects the config: %v\n%s", name, err, out)
		}
	}
}
