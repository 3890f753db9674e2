//go:build e2e_ha

package ha

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// dindEnv is .local/dind.env (hack/dind.sh up): DOCKER_HOST and the TLS
// settings of the docker-in-docker Swarm's Docker API, and its registry.
func dindEnv(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root(), ".local", "dind.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(s.Text(), "export "), "="); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// outside runs the docker CLI from this machine against the Swarm, as a
// user drives a remote one: DOCKER_HOST, mutual TLS.
func outside(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	cmd.Env = os.Environ()
	for k, v := range dindEnv(t) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s (DOCKER_HOST): %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestInstalledFromOutsideThroughARegistry: make up MANAGERS=3 installs as
// on a real Swarm. The docker CLI reaches the nodes only through their
// Docker API, which takes mutual TLS and nothing else; every service runs
// an image from the registry, which every node pulled (none was loaded into
// a node); the registry speaks TLS and wants a login; and the quickstart
// cluster serves MQTTS with a certificate that verifies.
func TestInstalledFromOutsideThroughARegistry(t *testing.T) {
	e := setup(t)
	de := dindEnv(t)
	reg := de["REGISTRY"]
	pki := de["DOCKER_CERT_PATH"]
	if reg == "" || pki == "" {
		t.Fatalf("dind.env has no REGISTRY or DOCKER_CERT_PATH: %v", de)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(readFile(t, filepath.Join(pki, "ca.pem")))) {
		t.Fatal("no CA certificate in the dind PKI")
	}
	clientCert, err := tls.LoadX509KeyPair(filepath.Join(pki, "cert.pem"), filepath.Join(pki, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(url string, cfg *tls.Config, user, pass string) (int, string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	t.Run("each node's Docker API takes mutual TLS only", func(t *testing.T) {
		for _, n := range nodes {
			base := "https://" + e.ip[n] + ":2376/info"
			code, body, err := get(base, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}, "", "")
			if err != nil || code != http.StatusOK || !strings.Contains(body, `"ControlAvailable":true`) {
				t.Errorf("%s with the client certificate: %d %v (%.80s)", n, code, err, body)
			}
			if code, _, err := get(base, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, "", ""); err == nil {
				t.Errorf("%s answered %d to a client with no certificate", n, code)
			}
			if code, _, err := get("http://"+e.ip[n]+":2376/info", nil, "", ""); err == nil && code == http.StatusOK {
				t.Errorf("%s answered plain HTTP", n)
			}
			if code, _, err := get("http://"+e.ip[n]+":2375/info", nil, "", ""); err == nil {
				t.Errorf("%s answered plain HTTP on 2375: %d", n, code)
			}
		}
	})

	t.Run("the CLI drives the Swarm through DOCKER_HOST", func(t *testing.T) {
		managers := strings.Fields(outside(t, "node", "ls", "--filter", "role=manager", "--format", "{{.Hostname}}"))
		if len(managers) != len(nodes) {
			t.Fatalf("managers through DOCKER_HOST: %v", managers)
		}
	})

	t.Run("every service runs an image from the registry", func(t *testing.T) {
		lines := strings.Split(outside(t, "service", "ls", "--format", "{{.Name}} {{.Image}}"), "\n")
		seen := 0
		for _, l := range lines {
			name, image, _ := strings.Cut(l, " ")
			if !strings.HasPrefix(name, stack+"_") && !strings.HasPrefix(name, cluster+"-") {
				continue
			}
			seen++
			if !strings.HasPrefix(image, reg+"/") {
				t.Errorf("service %s runs %s, not an image from %s", name, image, reg)
			}
		}
		if seen < 5 { // the operator, three brokers, the load balancer
			t.Errorf("only %d services of the stack and quickstart: %v", seen, lines)
		}
	})

	t.Run("every node pulled, none was loaded", func(t *testing.T) {
		for _, n := range nodes {
			repos := strings.Fields(onNode(t, n, "image", "ls", "--format", "{{.Repository}}"))
			pulledOperator := false
			for _, r := range repos {
				if strings.HasPrefix(r, "swarm-mqtt/") {
					t.Errorf("%s has the local image %s (loaded, not pulled)", n, r)
				}
				pulledOperator = pulledOperator || r == reg+"/swarm-mqtt/operator"
			}
			if !pulledOperator {
				t.Errorf("%s has no %s/swarm-mqtt/operator: %v", n, reg, repos)
			}
		}
	})

	t.Run("the registry speaks TLS and wants a login", func(t *testing.T) {
		url := "https://" + reg + "/v2/_catalog"
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		pass := strings.TrimSpace(readFile(t, de["REGISTRY_PASSWORD_FILE"]))
		if code, _, err := get(url, cfg, "", ""); err != nil || code != http.StatusUnauthorized {
			t.Errorf("no login: %d %v, want 401", code, err)
		}
		if code, _, err := get(url, cfg, de["REGISTRY_USER"], pass+"x"); err != nil || code != http.StatusUnauthorized {
			t.Errorf("a wrong password: %d %v, want 401", code, err)
		}
		code, body, err := get(url, cfg, de["REGISTRY_USER"], pass)
		var cat struct{ Repositories []string }
		if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &cat) != nil || !strings.Contains(strings.Join(cat.Repositories, " "), "swarm-mqtt/operator") {
			t.Errorf("with the login: %d %v %.200s", code, err, body)
		}
		if _, _, err := get("http://"+reg+"/v2/_catalog", nil, "", ""); err == nil {
			if code, _, _ := get("http://"+reg+"/v2/_catalog", nil, de["REGISTRY_USER"], pass); code == http.StatusOK {
				t.Error("the registry serves plain HTTP")
			}
		}
	})

	t.Run("quickstart serves MQTTS, the certificate verified", func(t *testing.T) {
		ctx := t.Context()
		ca, err := e.c.CA(ctx, cluster)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := e.c.Credentials(ctx, cluster)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ca.Certificate)) {
			t.Fatal("no certificate in the cluster's CA")
		}
		var endpoint string
		for _, ep := range e.quickstart(t).Status.Endpoints {
			if h, ok := strings.CutPrefix(ep, "mqtts://"); ok {
				endpoint = h
				break
			}
		}
		if endpoint == "" {
			t.Fatal("no mqtts endpoint")
		}
		got := make(chan string, 1)
		o := mqtt.NewClientOptions().AddBroker("ssl://" + endpoint).SetClientID("install-check").
			SetUsername(cr.Username).SetPassword(cr.Password).SetAutoReconnect(false).
			SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		c := mqtt.NewClient(o)
		if err := wait(c.Connect()); err != nil {
			t.Fatalf("MQTTS to %s: %v", endpoint, err)
		}
		defer c.Disconnect(0)
		if err := wait(c.Subscribe("install/check", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })); err != nil {
			t.Fatal(err)
		}
		if err := wait(c.Publish("install/check", 1, false, "hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m != "hello" {
				t.Fatalf("got %q", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatal(fmt.Errorf("no message back through %s", endpoint))
		}
	})
}
