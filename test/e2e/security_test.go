//go:build e2e

package e2e

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHAProxyRuntimeAPIOnlyForTheOperator: from inside the quickstart's
// internet-facing HAProxy container (the foothold an attacker would have,
// with every file it holds) and from the monitoring stack's Prometheus,
// both on the control network, HAProxy's runtime API answers nothing:
// plain TCP, TLS without a certificate, TLS with the MQTTS certificate,
// TLS with the listener's own admin certificate. The operator itself gets
// through (the cluster's certificate is read and served on every task).
func TestHAProxyRuntimeAPIOnlyForTheOperator(t *testing.T) {
	c := newClient(t)
	obj := waitReady(t, c, "quickstart", 90*time.Second)
	if obj.Status.Certificate == nil {
		t.Fatal("no certificate status")
	}
	if n, m, _ := strings.Cut(obj.Status.Certificate.Serving, "/"); n != m || n == "0" || n == "" {
		t.Fatalf("the operator does not reach every HAProxy task's runtime API: serving %q", obj.Status.Certificate.Serving)
	}
	lb := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=quickstart-lb")
	if lb == "" || strings.Contains(lb, "\n") {
		t.Fatalf("quickstart-lb containers: %q", lb)
	}
	ip := docker(t, "inspect", "-f", `{{(index .NetworkSettings.Networks "mqtt-operator-control").IPAddress}}`, lb)
	attempts := map[string]string{
		"plain TCP":                         "TCP:" + ip + ":9999",
		"TLS, no client certificate":        "OPENSSL:" + ip + ":9999,verify=0",
		"TLS, the MQTTS certificate":        "OPENSSL:" + ip + ":9999,verify=0,cert=/run/secrets/mqtts.pem",
		"TLS, the admin certificate itself": "OPENSSL:" + ip + ":9999,verify=0,cert=/run/secrets/admin.pem",
	}
	for name, addr := range attempts {
		out, _ := exec.Command("docker", "exec", lb, "sh", "-c", "printf 'show info\\n' | timeout 5 socat -t 3 - "+addr+" 2>&1").CombinedOutput()
		if strings.Contains(string(out), "Version:") || strings.Contains(string(out), "Uptime") {
			t.Errorf("%s from the HAProxy container: the runtime API answered:\n%s", name, out)
		}
	}
	// Prometheus is on the control network too (it scrapes HAProxy's
	// metrics there): no runtime API for it either.
	if prom := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=mqtt-monitoring_prometheus"); prom != "" {
		out, _ := exec.Command("docker", "exec", prom, "bash", "-c",
			"exec 3<>/dev/tcp/"+ip+"/9999 && printf 'show info\\n' >&3 && timeout 3 cat <&3").CombinedOutput()
		if strings.Contains(string(out), "Version:") {
			t.Errorf("the runtime API answered Prometheus:\n%s", out)
		}
	} else {
		t.Error("no Prometheus container to try from (the e2e stack runs the monitoring stack)")
	}
}

// TestBrokersSpeakTLSOnly: inside the cluster network the brokers' two
// listeners refuse plain MQTT (the clients' passwords and messages, and
// the bridges, cross nodes encrypted); with the control-plane CA and the
// broker's name, a client gets through.
func TestBrokersSpeakTLSOnly(t *testing.T) {
	c := newClient(t)
	waitReady(t, c, "quickstart", 90*time.Second)
	qs := quickstart(t)
	user, pass := qs.user, qs.pass
	b0 := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=quickstart-broker-0")
	for _, port := range []string{"1883", "1884"} {
		plain := exec.Command("docker", "exec", b0, "mosquitto_pub", "-h", "tasks.quickstart-broker-1", "-p", port, "-u", user, "-P", pass, "-t", "tls/probe", "-m", "x")
		if out, err := plain.CombinedOutput(); err == nil {
			t.Errorf("plain MQTT to broker 1's port %s was served: %s", port, out)
		}
	}
	tlsPub := exec.Command("docker", "exec", b0, "mosquitto_pub", "-h", "tasks.quickstart-broker-1", "-p", "1883", "--cafile", "/run/secrets/control-ca.crt",
		"-u", user, "-P", pass, "-t", "tls/probe", "-m", "x")
	if out, err := tlsPub.CombinedOutput(); err != nil {
		t.Fatalf("MQTT over TLS to broker 1 (verified): %v %s", err, out)
	}
}

// TestAPIRefusesPlainHTTP: the API port speaks HTTPS only; a plain HTTP
// request gets a clear 400, and no route answers.
func TestAPIRefusesPlainHTTP(t *testing.T) {
	for _, path := range []string{"/healthz", "/metrics", "/apis/mqtt.swarm/v1alpha1/mqttclusters"} {
		resp, err := http.Get("http://127.0.0.1:7950" + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
			t.Errorf("plain HTTP %s: %d %q", path, resp.StatusCode, body)
		}
	}
}
