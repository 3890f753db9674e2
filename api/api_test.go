package api

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// invalidCase is one file of testdata/invalid: a spec and the exact field
// paths it must be rejected on.
type invalidCase struct {
	Name   string
	Doc    []byte
	Fields []string
	Schema string
}

func loadInvalidCases(t testing.TB) []invalidCase { return loadInvalidCasesIn(t, "testdata/invalid") }

func loadInvalidCasesIn(t testing.TB, dir string) []invalidCase {
	t.Helper()
	files, err := filepath.Glob(dir + "/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid cases: %v", err)
	}
	var out []invalidCase
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := invalidCase{Name: strings.TrimSuffix(filepath.Base(f), ".yaml"), Doc: doc}
		for _, line := range strings.Split(string(doc), "\n") {
			if v, ok := strings.CutPrefix(line, "# fields: "); ok {
				c.Fields = strings.Fields(v)
			}
			if v, ok := strings.CutPrefix(line, "# schema: "); ok {
				c.Schema = v
			}
		}
		if len(c.Fields) == 0 || c.Schema == "" {
			t.Fatalf("%s: missing '# fields:' or '# schema:' header", f)
		}
		out = append(out, c)
	}
	return out
}

func TestInvalidSpecsReportExactPaths(t *testing.T) {
	t.Parallel()
	cases := loadInvalidCases(t)
	if len(cases) < 30 {
		t.Fatalf("want at least 30 invalid cases, have %d", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			obj, err := Parse(c.Doc, BuiltinDefaults())
			if err == nil {
				t.Fatalf("accepted: %+v", obj.Spec)
			}
			inv, ok := err.(*InvalidError)
			if !ok {
				t.Fatalf("error is %T, want *InvalidError: %v", err, err)
			}
			var got []string
			for _, fe := range inv.Errors {
				if fe.Field == "" || fe.Reason == "" || fe.Message == "" {
					t.Errorf("incomplete field error %+v", fe)
				}
				if !strings.HasPrefix(fe.Error(), fe.Field+": ") {
					t.Errorf("message %q does not start with its path", fe.Error())
				}
				got = append(got, fe.Field)
			}
			slices.Sort(got)
			want := slices.Clone(c.Fields)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("fields = %v, want %v\n%v", got, want, err)
			}
		})
	}
}

func TestUnknownFieldMessage(t *testing.T) {
	t.Parallel()
	doc := []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: iot}\nspec:\n  loadBalancer:\n    balence: clientid\n")
	_, err := Parse(doc, BuiltinDefaults())
	inv, ok := err.(*InvalidError)
	if !ok || len(inv.Errors) != 1 {
		t.Fatalf("err = %v", err)
	}
	if got, want := inv.Errors[0].Error(), "spec.loadBalancer.balence: unknown field"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !strings.Contains(err.Error(), `MqttCluster "iot" is invalid`) {
		t.Fatalf("summary lacks the object: %q", err.Error())
	}
}

func TestExamplesAreValidUnchanged(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../examples/*.yaml")
	if len(files) < 3 {
		t.Fatalf("examples missing: %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ParseObjects(data, BuiltinDefaults()) {
			if r.Err != nil {
				t.Errorf("%s document %d: %v", f, r.Index, r.Err)
			}
		}
	}
}

func TestIotExampleKeepsEveryValue(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../examples/iot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obj, err := Parse(data, Defaults{BrokerImage: "other:1", LoadBalancerImage: "other:2"})
	if err != nil {
		t.Fatal(err)
	}
	s := obj.Spec
	checks := map[string]struct{ got, want any }{
		"replicas":   {*s.Replicas, int32(3)},
		"image":      {s.Broker.Image, "eclipse-mosquitto:2.0"},
		"persist":    {*s.Broker.Persistence.Enabled, true},
		"autosave":   {s.Broker.Persistence.AutosaveInterval, Duration("30s")},
		"memory":     {s.Broker.Resources.Memory, Quantity("256Mi")},
		"cpus":       {s.Broker.Resources.CPUs, Quantity("0.5")},
		"lbImage":    {s.LoadBalancer.Image, "haproxy:2.8"},
		"lbReplicas": {*s.LoadBalancer.Replicas, int32(2)},
		"balance":    {s.LoadBalancer.Balance, BalanceClientID},
		"mqtt":       {*s.LoadBalancer.Ports.MQTT, int32(1883)},
		"mqtts":      {*s.LoadBalancer.Ports.MQTTS, int32(8883)},
		"dns":        {s.TLS.DNSNames, []string{"mqtt.example.com"}},
		"duration":   {s.TLS.Duration, Duration("2160h")},
		"renew":      {s.TLS.RenewBefore, Duration("720h")},
		"anon":       {*s.Auth.AllowAnonymous, false},
		"secret":     {s.Auth.PasswordFileSecret, "iot-passwd"},
		"sync":       {*s.Sync.Enabled, true},
		"delay":      {s.Sync.Delay, Duration("1s")},
		"connRate":   {*s.LoadBalancer.Limits.ConnectionRate, int32(200)},
		"constraint": {s.Placement.Constraints, []string{"node.labels.mqtt == true"}},
		"label":      {obj.Labels["team"], "edge"},
	}
	for name, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
}

func TestDefaultsFillEveryField(t *testing.T) {
	t.Parallel()
	obj, err := Parse([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata:\n  name: m\n"), Defaults{BrokerImage: "local/mosquitto:1", LoadBalancerImage: "local/haproxy:1"})
	if err != nil {
		t.Fatal(err)
	}
	s := obj.Spec
	checks := map[string]struct{ got, want any }{
		"replicas":   {*s.Replicas, int32(3)},
		"image":      {s.Broker.Image, "local/mosquitto:1"},
		"persist":    {*s.Broker.Persistence.Enabled, true},
		"autosave":   {s.Broker.Persistence.AutosaveInterval, Duration("30s")},
		"lbImage":    {s.LoadBalancer.Image, "local/haproxy:1"},
		"lbReplicas": {*s.LoadBalancer.Replicas, int32(2)},
		"balance":    {s.LoadBalancer.Balance, BalanceClientID},
		"mqtt":       {*s.LoadBalancer.Ports.MQTT, int32(1883)},
		"mqtts":      {*s.LoadBalancer.Ports.MQTTS, int32(8883)},
		"duration":   {s.TLS.Duration, Duration("2160h")},
		"renew":      {s.TLS.RenewBefore, Duration("720h")},
		"anon":       {*s.Auth.AllowAnonymous, false},
		"sync":       {*s.Sync.Enabled, false},
		"delay":      {s.Sync.Delay, Duration("1s")},
		"connRate":   {*s.LoadBalancer.Limits.ConnectionRate, int32(200)},
	}
	for name, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	// Defaulting is idempotent: a stored object defaults to itself.
	again := obj.DeepCopy()
	Default(again, BuiltinDefaults())
	if !reflect.DeepEqual(again, obj) {
		t.Fatalf("defaulting twice changed the object")
	}
}

func TestRenewBeforeDefaultsToAThird(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ duration, want Duration }{
		"90 days": {"2160h", "720h"},
		"1 hour":  {"1h", "20m"},
		"3m":      {"3m", "1m"},
		"odd":     {"10m", "3m20s"},
	}
	for name, c := range cases {
		obj := &MqttCluster{}
		obj.Spec.TLS.Duration = c.duration
		Default(obj, BuiltinDefaults())
		if obj.Spec.TLS.RenewBefore != c.want {
			t.Errorf("%s: renewBefore = %s, want %s", name, obj.Spec.TLS.RenewBefore, c.want)
		}
	}
}

func TestPortZeroDisablesButIsKept(t *testing.T) {
	t.Parallel()
	obj, err := Parse([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: tlsonly}\nspec: {loadBalancer: {ports: {mqtt: 0}}}\n"), BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if *obj.Spec.LoadBalancer.Ports.MQTT != 0 || *obj.Spec.LoadBalancer.Ports.MQTTS != 8883 {
		t.Fatalf("ports = %d/%d", *obj.Spec.LoadBalancer.Ports.MQTT, *obj.Spec.LoadBalancer.Ports.MQTTS)
	}
}

func TestYAMLAndJSONRoundTrip(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../examples/iot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obj, err := Parse(data, BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := Parse(js, BuiltinDefaults())
	if err != nil {
		t.Fatalf("JSON form rejected: %v\n%s", err, js)
	}
	y, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := Parse(y, BuiltinDefaults())
	if err != nil {
		t.Fatalf("YAML form rejected: %v\n%s", err, y)
	}
	if !reflect.DeepEqual(obj, fromJSON) || !reflect.DeepEqual(obj, fromYAML) {
		t.Fatalf("round trip changed the object\njson: %s\nyaml: %s", js, y)
	}
	js2, _ := json.Marshal(fromYAML)
	if !bytes.Equal(js, js2) {
		t.Fatalf("JSON differs after a YAML round trip:\n%s\n%s", js, js2)
	}
}

func TestMultiDocumentStream(t *testing.T) {
	t.Parallel()
	stream := []byte(`# leading comment
---
apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: a}
---
# only a comment
---
apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: b}
spec: {replicas: 0}
--- 
{"apiVersion": "mqtt.swarm/v1alpha1", "kind": "MqttCluster", "metadata": {"name": "c"}}
`)
	res := ParseAll(stream, BuiltinDefaults())
	if len(res) != 3 {
		t.Fatalf("got %d documents, want 3", len(res))
	}
	if res[0].Err != nil || res[0].Object.Name != "a" {
		t.Errorf("doc 1: %v", res[0].Err)
	}
	if res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "spec.replicas") {
		t.Errorf("doc 2 should fail on spec.replicas: %v", res[1].Err)
	}
	if res[2].Err != nil || res[2].Object.Name != "c" {
		t.Errorf("doc 3: %v", res[2].Err)
	}
}

func TestSyntaxErrorIsReported(t *testing.T) {
	t.Parallel()
	_, err := Parse([]byte("metadata: [unclosed\n"), BuiltinDefaults())
	if err == nil || !strings.Contains(err.Error(), "line") {
		t.Fatalf("want a syntax error with a line number, got %v", err)
	}
	_, err = Parse([]byte(`{"metadata": {"name": "x"`), BuiltinDefaults())
	if err == nil {
		t.Fatal("truncated JSON accepted")
	}
}

func TestValidConstraints(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"node.role==manager", "node.labels.mqtt == true", "node.hostname != node-1", "engine.labels.os==linux", "node.platform.arch == x86_64", "node.id==abc123"} {
		if msg := checkConstraint(c); msg != "" {
			t.Errorf("%q rejected: %s", c, msg)
		}
	}
}

// TestInvalidUsersReportExactPaths: every invalid MqttUser case is
// rejected whole, on exactly the fields its header names.
func TestInvalidUsersReportExactPaths(t *testing.T) {
	t.Parallel()
	for _, c := range loadInvalidCasesIn(t, "testdata/invalid-users") {
		t.Run(c.Name, func(t *testing.T) {
			u, err := ParseUser(c.Doc)
			if err == nil {
				t.Fatalf("accepted: %+v", u.Spec)
			}
			inv, ok := err.(*InvalidError)
			if !ok {
				t.Fatalf("error is %T, want *InvalidError: %v", err, err)
			}
			if !strings.HasPrefix(err.Error(), "MqttUser ") {
				t.Errorf("error does not name the kind: %v", err)
			}
			var got []string
			for _, fe := range inv.Errors {
				got = append(got, fe.Field)
			}
			slices.Sort(got)
			want := slices.Clone(c.Fields)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("fields = %v, want %v\n%v", got, want, err)
			}
		})
	}
}

func TestUserDefaultsAndRoundTrip(t *testing.T) {
	u, err := ParseUser([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: d1}\nspec: {cluster: iot}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u.Spec.Authentication.Type != "password" || u.Spec.Authorization.ACLs != nil {
		t.Fatalf("defaults: %+v", u.Spec)
	}
	if again := u.DeepCopy(); !reflect.DeepEqual(again, u) {
		t.Fatalf("round trip changed the user: %+v", again)
	}
	objs := ParseObjects([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: iot}\n---\napiVersion: mqtt.swarm/v1alpha1\nkind: MqttUser\nmetadata: {name: d1}\nspec: {cluster: iot}\n"), BuiltinDefaults())
	if len(objs) != 2 || objs[0].Cluster == nil || objs[1].User == nil || objs[0].Err != nil || objs[1].Err != nil {
		t.Fatalf("mixed stream: %+v", objs)
	}
}
