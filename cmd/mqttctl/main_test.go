package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

type run struct {
	code     int
	out, err string
}

func mqttctl(t *testing.T, inst *servertest.Instance, stdin string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	if inst != nil {
		args = append([]string{"--server", inst.URL}, args...)
	}
	c := &cli{in: strings.NewReader(stdin), out: &out, errOut: &errb, now: func() time.Time { return time.Now().Add(90 * time.Minute) }}
	code := c.run(args)
	return run{code, out.String(), errb.String()}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, name+".golden", []byte(got))
}

// withToken gives the CLI the test server's token and clears every other
// MQTTCTL_ setting a developer's shell may hold (a sourced
// .local/quickstart.env points at a live operator).
func withToken(t *testing.T) {
	t.Setenv("MQTTCTL_TOKEN", servertest.Token)
	for _, k := range []string{"MQTTCTL_TOKEN_FILE", "MQTTCTL_SERVER", "MQTTCTL_SERVERS", "MQTTCTL_CA_FILE"} {
		t.Setenv(k, "")
	}
}

func TestApplyGetDescribeDelete(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	r := mqttctl(t, inst, "", "apply", "-f", "../../examples/")
	if r.code != 0 || r.out != "mqttcluster/iot created\nmqttcluster/minimal created\nmqttcluster/edge created\nmqttcluster/quickstart created\nmqttcluster/durable created\nmqttuser/dashboard created\n" {
		t.Fatalf("apply: %+v", r)
	}
	// Users: listed, described, their password readable once the leader
	// made it (none runs here: a clear 404), deleted by kind/name.
	r = mqttctl(t, inst, "", "get", "users")
	if r.code != 0 || !strings.Contains(r.out, "dashboard   quickstart   Unknown   3") {
		t.Fatalf("get users: %+v", r)
	}
	r = mqttctl(t, inst, "", "describe", "user/dashboard")
	if r.code != 0 || !strings.Contains(r.out, "write  commands/#") || !strings.Contains(r.out, "Max connections:") {
		t.Fatalf("describe user: %+v", r)
	}
	r = mqttctl(t, inst, "", "get", "credentials", "user/dashboard")
	if r.code != 1 || !strings.Contains(r.err, "not made yet") {
		t.Fatalf("user credentials before the leader: %+v", r)
	}
	r = mqttctl(t, inst, "", "apply", "-f", "../../examples/users.yaml")
	if r.code != 0 || r.out != "mqttuser/dashboard unchanged\n" {
		t.Fatalf("user re-apply: %+v", r)
	}
	r = mqttctl(t, inst, "", "rotate-password", "dashboard")
	if r.code != 0 || !strings.Contains(r.out, "mqttuser/dashboard password rotation requested at") {
		t.Fatalf("rotate-password: %+v", r)
	}
	r = mqttctl(t, inst, "", "delete", "user/dashboard")
	if r.code != 0 || r.out != "mqttuser/dashboard deleted\n" {
		t.Fatalf("delete user: %+v", r)
	}
	r = mqttctl(t, inst, "", "apply", "-f", "../../examples/iot.yaml")
	if r.code != 0 || r.out != "mqttcluster/iot unchanged\n" {
		t.Fatalf("re-apply: %+v", r)
	}
	iot, _ := os.ReadFile("../../examples/iot.yaml")
	r = mqttctl(t, inst, strings.Replace(string(iot), "replicas: 3", "replicas: 5", 1), "apply", "-f", "-")
	if r.code != 0 || r.out != "mqttcluster/iot configured\n" {
		t.Fatalf("apply stdin: %+v", r)
	}

	r = mqttctl(t, inst, "", "get")
	if r.code != 0 {
		t.Fatalf("get: %+v", r)
	}
	golden(t, "get", r.out)
	r = mqttctl(t, inst, "", "get", "-o", "wide")
	golden(t, "get-wide", r.out)
	r = mqttctl(t, inst, "", "get", "-l", "team=edge", "-o", "name")
	golden(t, "get-selector-name", r.out)

	r = mqttctl(t, inst, "", "get", "iot", "-o", "yaml")
	if r.code != 0 {
		t.Fatalf("get -o yaml: %+v", r)
	}
	var obj api.MqttCluster
	if err := yaml.UnmarshalStrict([]byte(r.out), &obj); err != nil || obj.Generation != 2 || *obj.Spec.Replicas != 5 {
		t.Fatalf("get -o yaml does not round-trip: %v\n%s", err, r.out)
	}
	golden(t, "get-yaml", redact(r.out))
	// What get -o yaml prints can be applied back unchanged.
	r = mqttctl(t, inst, mqttctl(t, inst, "", "get", "iot", "-o", "yaml").out, "apply", "-f", "-")
	if r.code != 0 || r.out != "mqttcluster/iot unchanged\n" {
		t.Fatalf("apply of get -o yaml: %+v", r)
	}
	r = mqttctl(t, inst, "", "get", "iot", "-o", "json")
	if r.code != 0 || !strings.Contains(r.out, `"name": "iot"`) {
		t.Fatalf("get -o json: %+v", r)
	}

	r = mqttctl(t, inst, "", "describe", "quickstart")
	golden(t, "describe", redact(r.out))
	// With a status: conditions, brokers and the bridge tree.
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	setStatus(t, inst, "quickstart", api.MqttClusterStatus{
		ObservedGeneration: 1, Hub: "quickstart-broker-0", CAFingerprint: "AB:CD",
		Endpoints:  []string{"mqtt://10.0.0.1:1883", "mqtts://10.0.0.1:8883"},
		Conditions: []metav1.Condition{{Type: api.ConditionReady, Status: "True", Reason: "AllRunning", Message: "3/3 brokers running", LastTransitionTime: now}},
		Brokers: []api.BrokerStatus{
			{Name: "quickstart-broker-0", Node: "node-1", State: "running", Since: &now},
			{Name: "quickstart-broker-1", Node: "node-2", State: "running", Since: &now, Bridge: &api.BridgeStatus{Parent: "quickstart-broker-0", Connected: true, Since: &now}},
			{Name: "quickstart-broker-2", Node: "node-3", State: "running", Since: &now, Bridge: &api.BridgeStatus{Parent: "quickstart-broker-0", Connected: false, Since: &now}},
		},
	})
	r = mqttctl(t, inst, "", "describe", "quickstart")
	golden(t, "describe-status", redact(r.out))

	r = mqttctl(t, inst, "", "delete", "-f", "../../examples/minimal.yaml")
	if r.code != 0 || r.out != "mqttcluster/minimal deleted\n" {
		t.Fatalf("delete -f: %+v", r)
	}
	r = mqttctl(t, inst, "", "delete", "minimal")
	if r.code != 1 || r.err != "error: mqttclusters \"minimal\" not found\n" {
		t.Fatalf("delete missing: %+v", r)
	}
	r = mqttctl(t, inst, "", "get", "nope")
	if r.code != 1 || r.err != "error: mqttclusters \"nope\" not found\n" {
		t.Fatalf("get missing: %+v", r)
	}
}

var redactRE = regexp.MustCompile(`(?m)^(\s*(uid|creationTimestamp|resourceVersion|UID|Created|Resource version):\s*).*$`)

func redact(s string) string { return redactRE.ReplaceAllString(s, "${1}REDACTED") }

func TestInvalidInputChangesNothing(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	dir := t.TempDir()
	good, _ := os.ReadFile("../../examples/minimal.yaml")
	os.WriteFile(filepath.Join(dir, "a.yaml"), good, 0o644)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: b}\nspec: {replicas: 0, loadBalancer: {balence: x}}\n"), 0o644)
	r := mqttctl(t, inst, "", "apply", "-f", dir)
	if r.code != 1 || r.out != "" {
		t.Fatalf("apply of a dir with an invalid file: %+v", r)
	}
	golden(t, "apply-invalid", strings.ReplaceAll(r.err, dir, "DIR"))
	if objs, _ := inst.Store.List(api.KindMqttCluster); len(objs) != 0 {
		t.Fatalf("an invalid apply stored %d objects", len(objs))
	}
}

func TestValidateOffline(t *testing.T) {
	t.Setenv("MQTTCTL_SERVER", "http://127.0.0.1:1")
	r := mqttctl(t, nil, "", "validate", "-f", "../../api/testdata/invalid/many-errors.yaml")
	if r.code != 1 {
		t.Fatalf("%+v", r)
	}
	golden(t, "validate-invalid", r.err)
	r = mqttctl(t, nil, "", "validate", "-f", "../../examples/iot.yaml")
	if r.code != 0 || r.out != "mqttcluster/iot valid\n" {
		t.Fatalf("%+v", r)
	}
}

func TestErrorsAreMessagesNotTraces(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	t.Setenv("MQTTCTL_TOKEN", "wrong")
	r := mqttctl(t, inst, "", "get")
	if r.code != 1 || r.err != "error: the bearer token is not valid\n" {
		t.Fatalf("wrong token: %+v", r)
	}
	t.Setenv("MQTTCTL_TOKEN", "")
	r = mqttctl(t, inst, "", "get")
	if r.code != 1 || !strings.HasPrefix(r.err, "error: a bearer token is required") {
		t.Fatalf("no token: %+v", r)
	}
	r = mqttctl(t, nil, "", "--server", "http://127.0.0.1:1", "get")
	if r.code != 1 || !strings.Contains(r.err, "connection refused") || strings.Contains(r.err, "goroutine") {
		t.Fatalf("unreachable: %+v", r)
	}
	r = mqttctl(t, nil, "", "get", "-o", "xml")
	if r.code != 1 || !strings.Contains(r.err, "unknown output format") {
		t.Fatalf("bad -o: %+v", r)
	}
	r = mqttctl(t, inst, "", "leader")
	if r.code != 0 || !strings.Contains(r.out, "Leader:") || !strings.Contains(r.out, inst.Store.NodeID()) {
		t.Fatalf("leader: %+v", r)
	}
	r = mqttctl(t, inst, "", "peers")
	if r.code != 0 || !strings.Contains(r.out, "Voter") {
		t.Fatalf("peers: %+v", r)
	}
	r = mqttctl(t, nil, "", "completion", "bash")
	if r.code != 0 || !strings.Contains(r.out, "mqttctl") {
		t.Fatalf("completion: %+v", r.code)
	}
}
