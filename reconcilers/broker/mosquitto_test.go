package broker

import (
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func cluster(t *testing.T, yaml string) *api.MqttCluster { return testutil.Cluster(t, yaml) }

var variants = map[string]string{
	"default":     "",
	"anonymous":   "spec: {auth: {allowAnonymous: true}, broker: {persistence: {enabled: false}}}\n",
	"user-secret": "spec: {auth: {passwordFileSecret: iot-passwd}, broker: {persistence: {autosaveInterval: 1500ms}}}\n",
}

func TestRenderGolden(t *testing.T) {
	for name, y := range variants {
		got, err := Render(cluster(t, y), 1, Options{})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Golden(t, name+".conf", got)
	}
}

func TestRenderRules(t *testing.T) {
	t.Parallel()
	cfg, _ := Render(cluster(t, "spec: {broker: {persistence: {autosaveInterval: 1500ms}}}\n"), 0, Options{})
	for want, present := range map[string]bool{
		"listener 1883 0.0.0.0":                      true,
		"autosave_interval 2\n":                      true,
		"allow_anonymous false":                      true,
		"password_file " + JoinedPasswordFile + "\n": true,
		"per_listener_settings true":                 false,
		"broker iot-broker-0":                        true,
	} {
		if strings.Contains(string(cfg), want) != present {
			t.Errorf("%q present=%v\n%s", want, !present, cfg)
		}
	}
	if _, err := Render(&api.MqttCluster{}, 0, Options{}); err == nil {
		t.Fatal("an undefaulted spec rendered")
	}
}

func TestRenderTLSGolden(t *testing.T) {
	got, err := Render(cluster(t, ""), 1, Options{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Golden(t, "tls.conf", got)
	bridge, err := RenderBridge("iot", 1, "pw", Options{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bridge_cafile " + CAFile, "bridge_insecure false", "addresses tasks.iot-broker-0:1884"} {
		if !strings.Contains(string(bridge), want) {
			t.Errorf("bridge over TLS: no %q in\n%s", want, bridge)
		}
	}
	if plain, _ := RenderBridge("iot", 1, "pw", Options{}); strings.Contains(string(plain), "bridge_cafile") {
		t.Error("a plain bridge with a CA file")
	}
	if n := strings.Count(string(got), "certfile "+TLSFile); n != 2 {
		t.Errorf("%d listeners with TLS, want both", n)
	}
}

// TestCatchUpFollowsTheSpecAndTheMemoryLimit: the plugin keeps messages
// for spec.broker.catchUp.window, in at most a quarter of the broker's
// memory limit and at most 64Mi; a window of 0s turns catch-up off.
func TestCatchUpFollowsTheSpecAndTheMemoryLimit(t *testing.T) {
	for name, tc := range map[string]struct {
		spec string
		want string
	}{
		"default":      {"spec: {}\n", "plugin_opt_catchup_seconds 60\nplugin_opt_catchup_bytes 67108864\n"},
		"small memory": {"spec: {broker: {resources: {memory: 64Mi}, catchUp: {window: 2m}}}\n", "plugin_opt_catchup_seconds 120\nplugin_opt_catchup_bytes 16777216\n"},
		"large memory": {"spec: {broker: {resources: {memory: 4Gi}}}\n", "plugin_opt_catchup_seconds 60\nplugin_opt_catchup_bytes 67108864\n"},
		"off":          {"spec: {broker: {catchUp: {window: 0s}}}\n", "plugin_opt_catchup_seconds 0\n"},
	} {
		if got := SharedPlugin(cluster(t, tc.spec), 1, false); !strings.Contains(got, tc.want) {
			t.Errorf("%s: plugin section\n%s\nwants %q", name, got, tc.want)
		}
	}
}
