package loadbalancer

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

var update = flag.Bool("update", false, "rewrite golden files")

func cluster(t *testing.T, yaml string) *api.MqttCluster {
	t.Helper()
	c, err := api.Parse([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: iot}\n"+yaml), api.BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRenderGolden(t *testing.T) {
	cases := map[string]string{
		"default":       "",
		"tls-only-lc":   "spec: {replicas: 2, loadBalancer: {balance: leastconn, ports: {mqtt: 0}}}\n",
		"plain-only-rr": "spec: {replicas: 5, loadBalancer: {balance: roundrobin, ports: {mqtts: 0, mqtt: 11883}}}\n",
	}
	for name, y := range cases {
		got, err := Render(cluster(t, y))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join("testdata", name+".cfg")
		if *update {
			os.WriteFile(p, got, 0o644)
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (go test -update)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from %s:\n%s", name, p, got)
		}
	}
}

func TestRenderRules(t *testing.T) {
	t.Parallel()
	cfg, _ := Render(cluster(t, "spec: {replicas: 3}\n"))
	s := string(cfg)
	checks := map[string]bool{
		"server broker-2 tasks.iot-broker-2:1883 check\n":          true,
		"server broker-3 tasks.iot-broker-3:1883 check disabled\n": true,
		"server broker-14 ":                         true,
		"server broker-15 ":                         false,
		"balance hash var(sess.cid)":                true,
		"bind :8883 ssl crt /run/secrets/mqtts.pem": true,
		"ssl-min-ver TLSv1.2":                       true,
		"prometheus-exporter":                       true,
	}
	for want, present := range checks {
		if strings.Contains(s, want) != present {
			t.Errorf("%q present=%v, want %v", want, !present, present)
		}
	}
	if _, err := Render(&api.MqttCluster{}); err == nil {
		t.Fatal("an undefaulted spec rendered")
	}
}
