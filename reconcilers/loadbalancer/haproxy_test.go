package loadbalancer

import (
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func cluster(t *testing.T, yaml string) *api.MqttCluster { return testutil.Cluster(t, yaml) }

func TestRenderGolden(t *testing.T) {
	cases := map[string]struct {
		y string
		o Options
	}{
		"default":       {y: ""},
		"client-rate":   {y: "spec: {loadBalancer: {limits: {connectionRatePerClient: 10}}}\n"},
		"session-rate":  {y: "spec: {loadBalancer: {limits: {connectionRate: 500}}}\n"},
		"tls-only-lc":   {y: "spec: {replicas: 2, loadBalancer: {balance: leastconn, ports: {mqtt: 0}}}\n"},
		"plain-only-rr": {y: "spec: {replicas: 5, loadBalancer: {balance: roundrobin, ports: {mqtts: 0, mqtt: 11883}}}\n"},
		"admin":         {y: "", o: Options{AdminSubnets: []string{"10.0.9.0/24", "fd00::/64"}}},
		"admin-tls":     {y: "", o: Options{AdminSubnets: []string{"10.0.9.0/24"}, AdminTLS: true}},
		"client-auth":   {y: "spec: {tls: {clientAuth: required, clientCASecret: fleet-ca}}\n"},
	}
	for name, tc := range cases {
		got, err := Render(cluster(t, tc.y), tc.o)
		if err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, name+".cfg", got)
	}
}

func TestRenderRules(t *testing.T) {
	t.Parallel()
	cfg, _ := Render(cluster(t, "spec: {replicas: 3}\n"), Options{})
	// The configuration does not depend on the broker count: scaling
	// never reloads HAProxy.
	if other, _ := Render(cluster(t, "spec: {replicas: 7}\n"), Options{}); string(other) != string(cfg) {
		t.Error("configuration changes with spec.replicas")
	}
	s := string(cfg)
	checks := map[string]bool{
		"server broker-2 tasks.iot-broker-2:1883 check\n":   true,
		"server broker-14 tasks.iot-broker-14:1883 check\n": true,
		"disabled":                                  false,
		"server broker-14 ":                         true,
		"server broker-15 ":                         false,
		"balance hash var(sess.cid)":                true,
		"bind :8883 ssl crt /run/secrets/mqtts.pem": true,
		"ssl-min-ver TLSv1.2":                       true,
		"prometheus-exporter":                       true,
		"maxconnrate 200\n":                         true, // the default pacing
	}
	for want, present := range checks {
		if strings.Contains(s, want) != present {
			t.Errorf("%q present=%v, want %v", want, !present, present)
		}
	}
	if _, err := Render(&api.MqttCluster{}, Options{}); err == nil {
		t.Fatal("an undefaulted spec rendered")
	}
	// connectionRate 0: no pacing at all.
	unpaced, _ := Render(cluster(t, "spec: {loadBalancer: {limits: {connectionRate: 0}}}\n"), Options{})
	if strings.Contains(string(unpaced), "maxconnrate") {
		t.Error("connectionRate 0 rendered a maxconnrate")
	}
}

func TestRenderBackendTLSGolden(t *testing.T) {
	got, err := Render(cluster(t, ""), Options{AdminSubnets: []string{"10.0.9.0/24"}, AdminTLS: true, BackendTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "backend-tls.cfg", got)
	if !strings.Contains(string(got), "server broker-3 tasks.iot-broker-3:1883 check verifyhost tasks.iot-broker-3\n") {
		t.Error("broker-3 is not checked by its name")
	}
}
