package brokerauth

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

func TestRenderIsTheRulesInOrderWithAContentVersion(t *testing.T) {
	c := &api.MqttCluster{}
	c.Spec.Auth.ACLs = []api.ACLRule{{Topic: "devices/%u/#", Access: api.AccessReadWrite}, {Topic: "a b/+", Access: api.AccessDeny}}
	s := Render(c, nil, nil)
	want := "cluster-auth 1\nversion " + s.Version + "\nrule readwrite devices/%u/#\nrule deny a b/+\nend\n"
	if string(s.Body) != want || s.Rules != 2 || len(s.Version) != 16 {
		t.Fatalf("got %q (%d rules, version %q), want %q", s.Body, s.Rules, s.Version, want)
	}
	if again := Render(c, nil, nil); again.Version != s.Version {
		t.Error("the same rules rendered to another version: every pass would push again")
	}
	c.Spec.Auth.ACLs[0].Access = api.AccessRead
	if Render(c, nil, nil).Version == s.Version {
		t.Error("changed rules kept the version: the brokers would not be told")
	}
	if empty := Render(&api.MqttCluster{}, nil, nil); !strings.Contains(string(empty.Body), "\nend\n") || empty.Rules != 0 {
		t.Errorf("no rules: %q", empty.Body)
	}
}

func TestRenderUsersSortedWithTheirHashLimitAndRules(t *testing.T) {
	c := &api.MqttCluster{}
	max := int32(5)
	users := []api.MqttUser{
		{ObjectMeta: metav1.ObjectMeta{Name: "zed"}, Spec: api.MqttUserSpec{Cluster: "iot", Authorization: api.UserAuthorization{ACLs: []api.ACLRule{{Topic: "z/#", Access: api.AccessRead}}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "amy"}, Spec: api.MqttUserSpec{Cluster: "iot", Limits: api.UserLimits{MaxConnections: &max}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "off"}, Spec: api.MqttUserSpec{Cluster: "iot", Disabled: true}},
		{ObjectMeta: metav1.ObjectMeta{Name: "new"}, Spec: api.MqttUserSpec{Cluster: "iot"}},
	}
	sec := map[string]credentials.UserSecret{"zed": {Hash: "$7$101$s$z"}, "amy": {Hash: "$7$101$s$a"}, "off": {Hash: "$7$101$s$o"}}
	s := Render(c, users, sec)
	want := "cluster-auth 1\nversion " + s.Version + "\nuser amy $7$101$s$a 5\nuser zed $7$101$s$z\nurule read z/#\nend\n"
	if string(s.Body) != want || s.Users != 2 || s.Rules != 1 {
		t.Fatalf("got %q (%d users, %d rules), want %q", s.Body, s.Users, s.Rules, want)
	}
}

func TestClosedByPeer(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{errors.New("pingresp not received, disconnecting"), false},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
	} {
		if got := ClosedByPeer(c.err); got != c.want {
			t.Errorf("ClosedByPeer(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestBridgeOf(t *testing.T) {
	for topic, want := range map[string]string{
		"$SYS/broker/connection/iot-broker-2-bridge/state": "iot-broker-2-bridge",
		"$SYS/broker/connection//state":                    "",
		"$SYS/broker/connection/a/b/state":                 "",
		"$SYS/broker/clients/connected":                    "",
	} {
		got, ok := bridgeOf(topic)
		if got != want || ok != (want != "") {
			t.Errorf("bridgeOf(%q) = %q, %v; want %q", topic, got, ok, want)
		}
	}
}
