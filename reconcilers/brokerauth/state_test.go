package brokerauth

import (
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

func TestRenderIsTheRulesInOrderWithAContentVersion(t *testing.T) {
	c := &api.MqttCluster{}
	c.Spec.Auth.ACLs = []api.ACLRule{{Topic: "devices/%u/#", Access: api.AccessReadWrite}, {Topic: "a b/+", Access: api.AccessDeny}}
	s := Render(c)
	want := "cluster-auth 1\nversion " + s.Version + "\nrule readwrite devices/%u/#\nrule deny a b/+\nend\n"
	if string(s.Body) != want || s.Rules != 2 || len(s.Version) != 16 {
		t.Fatalf("got %q (%d rules, version %q), want %q", s.Body, s.Rules, s.Version, want)
	}
	if again := Render(c); again.Version != s.Version {
		t.Error("the same rules rendered to another version: every pass would push again")
	}
	c.Spec.Auth.ACLs[0].Access = api.AccessRead
	if Render(c).Version == s.Version {
		t.Error("changed rules kept the version: the brokers would not be told")
	}
	if empty := Render(&api.MqttCluster{}); !strings.Contains(string(empty.Body), "\nend\n") || empty.Rules != 0 {
		t.Errorf("no rules: %q", empty.Body)
	}
}
