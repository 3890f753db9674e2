//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func root() string { p, _ := filepath.Abs("../.."); return p }

func newClient(t *testing.T) *client.Client {
	t.Helper()
	server := os.Getenv("MQTTCTL_SERVER")
	if server == "" {
		server = "https://127.0.0.1:7950"
	}
	tokFile := os.Getenv("MQTTCTL_TOKEN_FILE")
	if tokFile == "" {
		tokFile = filepath.Join(root(), ".local", "api-token")
	}
	tok, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatalf("no API token (run hack/up.sh first): %v", err)
	}
	c, err := client.New(client.Options{Server: server, Token: strings.TrimSpace(string(tok)), CAFile: testutil.CAFile(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

const stack = "mqtt-operator"

// TestOperatorInSwarmKeepsObjectsAcrossRestart applies objects to the
// operator running as a Swarm service, forces Swarm to replace its task,
// and checks every object is exactly as it was.
func TestOperatorInSwarmKeepsObjectsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	if l, err := c.Leader(ctx); err != nil || !l.IsLeader {
		t.Fatalf("operator is not a leader: %+v %v", l, err)
	}
	iot, err := os.ReadFile(filepath.Join(root(), "examples", "iot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The operator reconciles these for real: ports of their own, so their
	// load balancers never take the quickstart cluster's.
	doc := []byte(strings.NewReplacer("name: iot", "name: e2e-restart", "mqtt: 1883", "mqtt: 25883", "mqtts: 8883", "mqtts: 26883").Replace(string(iot)))
	deleted := false
	t.Cleanup(func() {
		if !deleted { // a failed run leaves nothing behind either
			_ = c.Delete(ctx, "e2e-restart")
			_ = c.Delete(ctx, "e2e-defaults")
		}
	})
	res, err := c.Apply(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != "created" && res.Result != "unchanged" {
		t.Fatalf("apply: %s", res.Result)
	}
	// The image defaults come from the operator's flags (the stack's
	// BROKER_IMAGE), not the built-in ones.
	minimal := []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: e2e-defaults}\nspec: {replicas: 1, loadBalancer: {replicas: 1, ports: {mqtt: 0, mqtts: 24883}}}\n")
	res, err = c.Apply(ctx, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if res.Object.Spec.Broker.Image == api.DefaultBrokerImage {
		t.Errorf("broker image default is the built-in one, not the operator flag's: %s", res.Object.Spec.Broker.Image)
	}
	// Invalid input is rejected whole and stores nothing.
	before, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Apply(ctx, []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: e2e-bad}\nspec: {replicas: 99}\n"))
	if ce, ok := err.(*client.Error); !ok || ce.Code != 422 || len(ce.Causes) != 1 || ce.Causes[0].Field != "spec.replicas" {
		t.Fatalf("invalid spec: %v", err)
	}
	if _, err := c.Get(ctx, "e2e-bad"); err == nil {
		t.Fatal("a rejected object was stored")
	}

	oldTask := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator")
	docker(t, "service", "update", "--detach", "--force", stack+"_operator")
	eventually(t, "a new operator task serving", 90*time.Second, func() error {
		now := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator")
		if now == "" || now == oldTask {
			return errStr("old task still running")
		}
		_, err := c.List(ctx, "")
		return err
	})
	restarted, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	// The operator writes status as it reconciles, so resourceVersion and
	// status move; what the user stored must be exactly as it was.
	if !reflect.DeepEqual(userView(before), userView(restarted)) {
		t.Fatalf("objects differ after the operator was restarted:\nbefore %+v\nafter  %+v", userView(before), userView(restarted))
	}
	// The token never reaches the operator's logs.
	tok, _ := os.ReadFile(filepath.Join(root(), ".local", "api-token"))
	logs := []byte(testutil.ServiceLogs(stack + "_operator"))
	if len(logs) == 0 || strings.Contains(string(logs), strings.TrimSpace(string(tok))) {
		t.Errorf("operator logs are empty or contain the API token (%d bytes)", len(logs))
	}
	// Nor a private key or the generated user's password.
	cr, err := c.Credentials(ctx, "quickstart")
	if err != nil {
		t.Fatal(err)
	}
	for what, secret := range map[string]string{"a private key": "PRIVATE KEY", "the MQTT password": cr.Password} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("operator logs contain %s", what)
		}
	}
	for _, n := range []string{"e2e-restart", "e2e-defaults"} {
		if err := c.Delete(ctx, n); err != nil {
			t.Errorf("delete %s: %v", n, err)
		}
	}
	deleted = true
}

func userView(l *api.MqttClusterList) []api.MqttCluster { return testutil.UserView(l) }

type errStr string

func (e errStr) Error() string { return string(e) }

// TestHintsWorkInANewShell: what make up prints works in a shell that
// sourced nothing: bin/mqttctl finds the operator through the context
// make up wrote (a shell with no MQTTCTL_ variable, only HOME and PATH),
// and reports the server's version.
func TestHintsWorkInANewShell(t *testing.T) {
	env := []string{"HOME=" + os.Getenv("HOME"), "PATH=" + os.Getenv("PATH")}
	if v := os.Getenv("MQTTCTL_CONFIG"); v != "" {
		env = append(env, "MQTTCTL_CONFIG="+v)
	}
	for _, args := range [][]string{{"get"}, {"describe", "quickstart"}, {"events", "quickstart"}, {"version"}, {"config", "get-contexts"}} {
		cmd := exec.Command(filepath.Join(root(), "bin", "mqttctl"), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mqttctl %s in a new shell: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "version" && !strings.Contains(string(out), "Server: mqtt-operator") {
			t.Errorf("version: %s", out)
		}
	}
}
