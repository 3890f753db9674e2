//go:build e2e

package brokerauth

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// broker runs the real broker image with the rendered config and start
// script, the cluster plugin in auth mode: alice (password file) and the
// internal user "bridge".
type testBroker struct {
	t   *testing.T
	ctr string
	dir string
}

func startBroker(t *testing.T, name string, persist bool) *testBroker {
	t.Helper()
	return startBrokerAs(t, name, persist, 0, "")
}

// startBrokerAs runs the broker as broker i of its cluster (a spoke when
// i > 0, without a bridge here), with extra plugin options.
func startBrokerAs(t *testing.T, name string, persist bool, i int, extra string) *testBroker {
	t.Helper()
	c := testutil.Cluster(t, fmt.Sprintf("spec: {broker: {persistence: {enabled: %v}}}\n", persist))
	cfg, err := broker.Render(c, 0, broker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "mosquitto.conf"), cfg, 0o644)
	plugin := strings.Replace(broker.SharedPlugin(c, i, true), "plugin_opt_auth_grace 10", "plugin_opt_auth_grace 2", 1) + extra
	b := &testBroker{t: t, ctr: "swarm-mqtt-e2e-auth-" + name, dir: dir}
	_ = exec.Command("docker", "rm", "-f", b.ctr).Run()
	out, err := exec.Command("docker", "run", "-d", "--name", b.ctr, "-v", dir+":/x:ro", "swarm-mqtt/mosquitto:local", "sh", "-c",
		"mkdir -p /run/secrets && touch /run/secrets/mosquitto-passwd && chmod 0700 /run/secrets/mosquitto-passwd && "+
			"mosquitto_passwd -b /run/secrets/mosquitto-passwd alice wonderland && chown mosquitto /run/secrets/mosquitto-passwd && "+
			"touch /run/secrets/mosquitto-internal-passwd && chmod 0700 /run/secrets/mosquitto-internal-passwd && "+
			"mosquitto_passwd -b /run/secrets/mosquitto-internal-passwd bridge b && chown mosquitto /run/secrets/mosquitto-internal-passwd && "+
			"cp /x/mosquitto.conf "+broker.ConfigPath+" && "+broker.StartScript(false, plugin)).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", b.ctr).Run() })
	b.waitLog("cluster_auth: waiting", 15*time.Second)
	return b
}

func (b *testBroker) logs() string {
	out, _ := exec.Command("docker", "logs", b.ctr).CombinedOutput()
	return string(out)
}

func (b *testBroker) waitLog(s string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(b.logs(), s) {
		if time.Now().After(deadline) {
			b.t.Fatalf("no %q in the broker's log within %s:\n%s", s, d, b.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pub publishes at QoS 1 with MQTT 5 and returns mosquitto_pub's output
// and error (a refused PUBACK prints "Not authorized").
func (b *testBroker) pub(args ...string) (string, error) {
	out, err := exec.Command("docker", append([]string{"exec", b.ctr, "mosquitto_pub", "-V", "5", "-q", "1", "-h", "127.0.0.1", "-m", "m"}, args...)...).CombinedOutput()
	return string(out), err
}

// allowedPub: the publish is accepted (connected, PUBACK success).
func (b *testBroker) allowedPub(args ...string) bool {
	out, err := b.pub(args...)
	return err == nil && !strings.Contains(out, "Not authorized") && !strings.Contains(out, "rror")
}

// sub subscribes with MQTT 5 and says whether the SUBACK granted it
// (exiting on the SUBACK, within 5 s: 1 s was short on a busy machine).
func (b *testBroker) sub(args ...string) bool {
	out, _ := exec.Command("docker", append([]string{"exec", b.ctr, "mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-W", "5", "-E", "-d"}, args...)...).CombinedOutput()
	return strings.Contains(string(out), "Subscribed") && !strings.Contains(string(out), "denied") && !strings.Contains(string(out), "135")
}

// push publishes a state as the internal user, as the operator does.
func (b *testBroker) push(state string) {
	b.t.Helper()
	os.WriteFile(filepath.Join(b.dir, "state"), []byte(state), 0o644)
	out, err := exec.Command("docker", "exec", b.ctr, "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(broker.InternalPort),
		"-u", "bridge", "-P", "b", "-q", "1", "-t", Topic, "-f", "/x/state").CombinedOutput()
	if err != nil {
		b.t.Fatalf("push: %v\n%s", err, out)
	}
}

func hash(t *testing.T, password string) string {
	line, err := credentials.PasswordLine("x", password)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(line, "x:")
}

// TestPluginEnforcesPushedUsersAndRules runs the broker image's cluster
// plugin against real clients: the gate before the first state, pattern
// rules with %c and %u, deny over allow, a user of the state with its own
// rules, a password rotation and a removal closing the user's live
// connection, and the kept state served after a restart with no operator.
func TestPluginEnforcesPushedUsersAndRules(t *testing.T) {
	b := startBroker(t, "rules", true)
	alice := []string{"-u", "alice", "-P", "wonderland"}

	// The gate: nobody but the internal user before the first state.
	if b.allowedPub(append(alice, "-t", "x")...) {
		t.Fatal("a client was served before the broker had its users and rules")
	}

	dash := hash(t, "dash-pw-1")
	c := &api.MqttCluster{}
	c.Spec.Auth.ACLs = []api.ACLRule{
		{Topic: "devices/%c/#", Access: api.AccessReadWrite},
		{Topic: "devices/+/admin", Access: api.AccessDeny},
		{Topic: "users/%u/#", Access: api.AccessWrite},
	}
	st := Render(c, nil, nil)
	body := strings.Replace(string(st.Body), "end\n", "user dash "+dash+"\nurule read telemetry/#\nuser lim "+hash(t, "lim-pw")+" 1\nurule readwrite lim/#\n", 1) + "end\n"
	body = strings.Replace(body, "end\nend\n", "end\n", 1)
	b.push(body)
	b.waitLog("cluster_auth: applied state "+st.Version, 5*time.Second)

	checks := []struct {
		what string
		ok   bool
		want bool
	}{
		{"alice as client a publishes on devices/a/x", b.allowedPub(append(alice, "-i", "a", "-t", "devices/a/x")...), true},
		{"alice as client a publishes on devices/b/x", b.allowedPub(append(alice, "-i", "a", "-t", "devices/b/x")...), false},
		{"alice as client a subscribes to devices/a/#", b.sub(append(alice, "-i", "a", "-t", "devices/a/#")...), true},
		{"alice as client a subscribes to devices/b/#", b.sub(append(alice, "-i", "a", "-t", "devices/b/#")...), false},
		{"alice as client a subscribes to devices/#", b.sub(append(alice, "-i", "a", "-t", "devices/#")...), false},
		{"alice as client a publishes on devices/a/admin (deny wins)", b.allowedPub(append(alice, "-i", "a", "-t", "devices/a/admin")...), false},
		{"alice publishes on users/alice/x", b.allowedPub(append(alice, "-t", "users/alice/x")...), true},
		{"alice publishes on users/bob/x", b.allowedPub(append(alice, "-t", "users/bob/x")...), false},
		{"alice publishes on a topic no rule allows", b.allowedPub(append(alice, "-t", "other")...), false},
		{"a client id holding + is refused its pattern", b.allowedPub(append(alice, "-i", "a+", "-t", "devices/a+/x")...), false},
		{"dash logs in and subscribes to telemetry/#", b.sub("-u", "dash", "-P", "dash-pw-1", "-t", "telemetry/#"), true},
		{"dash (read only) publishes on telemetry/x", b.allowedPub("-u", "dash", "-P", "dash-pw-1", "-t", "telemetry/x"), false},
		{"dash with a wrong password", b.allowedPub("-u", "dash", "-P", "nope", "-t", "users/dash/x"), false},
		{"dash publishes on users/dash/x (cluster rule, %u)", b.allowedPub("-u", "dash", "-P", "dash-pw-1", "-t", "users/dash/x"), true},
	}
	for _, c := range checks {
		if c.ok != c.want {
			t.Errorf("%s: allowed=%v, want %v", c.what, c.ok, c.want)
		}
	}

	// lim may hold one connection: a second is refused while the first
	// lives, and accepted once it is gone.
	if out, err := exec.Command("docker", "exec", "-d", b.ctr, "sh", "-c",
		"mosquitto_sub -h 127.0.0.1 -u lim -P lim-pw -i lim-1 -t lim/# -W 3 >/dev/null 2>&1").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b.waitLog("as lim-1", 5*time.Second)
	if b.allowedPub("-u", "lim", "-P", "lim-pw", "-i", "lim-2", "-t", "lim/x") {
		t.Error("a user at its maxConnections got a second connection")
	}
	b.waitLog("Client lim-1 disconnected", 10*time.Second)
	if !b.allowedPub("-u", "lim", "-P", "lim-pw", "-i", "lim-3", "-t", "lim/x") {
		t.Error("a user under its maxConnections again is refused")
	}

	// A live connection of dash is closed when its password changes; the
	// old password is refused and the new one accepted.
	if out, err := exec.Command("docker", "exec", "-d", b.ctr, "sh", "-c",
		"mosquitto_sub -h 127.0.0.1 -u dash -P dash-pw-1 -i dash-live -t telemetry/# >/tmp/live.out 2>&1; echo gone >/tmp/live.done").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b.waitLog("as dash-live", 5*time.Second)
	rotated := strings.Replace(body, dash, hash(t, "dash-pw-2"), 1)
	rotated = strings.Replace(rotated, "version "+st.Version, "version rotated", 1)
	start := time.Now()
	b.push(rotated)
	for exec.Command("docker", "exec", b.ctr, "test", "-e", "/tmp/live.done").Run() != nil {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("dash's live connection is still open 5 s after its password changed:\n%s", b.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a rotated user's live connection closed %s after the push", time.Since(start).Round(time.Millisecond))
	if b.allowedPub("-u", "dash", "-P", "dash-pw-1", "-t", "users/dash/x") {
		t.Error("the old password still works after the rotation")
	}
	if !b.allowedPub("-u", "dash", "-P", "dash-pw-2", "-t", "users/dash/x") {
		t.Error("the new password is refused after the rotation")
	}

	// A restart with no operator: the gate holds for the grace, then the
	// kept state is served.
	if out, err := exec.Command("docker", "restart", "-t", "1", b.ctr).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b.waitLog("serving the kept one", 10*time.Second)
	if !b.allowedPub("-u", "dash", "-P", "dash-pw-2", "-t", "users/dash/x") {
		t.Error("the kept state is not served after a restart with no operator")
	}
	if b.allowedPub(append(alice, "-i", "a", "-t", "devices/b/x")...) {
		t.Error("the kept rules are not enforced after a restart")
	}

	// No cluster rules: a user with rules of its own is held to them, a
	// client with none may do everything.
	b.push("cluster-auth 1\nversion own-only\nuser dash " + hash(t, "dash-pw-3") + "\nurule read telemetry/#\nend\n")
	b.waitLog("applied state own-only", 5*time.Second)
	if !b.allowedPub(append(alice, "-t", "anything/x")...) {
		t.Error("with no cluster rule, a client with no rules of its own was refused")
	}
	if b.allowedPub("-u", "dash", "-P", "dash-pw-3", "-t", "anything/x") {
		t.Error("a user with rules of its own published where none allows")
	}
}

// TestPluginAdmitsClientsOnceJoined: a spoke that starts refuses clients
// (the internal user aside) until another broker's gossip reaches it over
// its bridge — here published by hand as the internal user, as a bridge
// delivers it — or, alone, until its join grace has passed; the hub
// (broker 0, TestPluginEnforcesPushedUsersAndRules) admits them at once.
func TestPluginAdmitsClientsOnceJoined(t *testing.T) {
	alice := []string{"-u", "alice", "-P", "wonderland", "-t", "x"}
	empty := Render(&api.MqttCluster{}, nil, nil)

	b := startBrokerAs(t, "join", false, 1, "plugin_opt_join_grace 30\n")
	b.push(string(empty.Body))
	b.waitLog("cluster_auth: applied state "+empty.Version, 5*time.Second)
	if b.allowedPub(alice...) {
		t.Fatal("a spoke that has heard no other broker admitted a client")
	}
	b.waitLog("refusing clients until this broker has joined the cluster", time.Second)
	if out, err := exec.Command("docker", "exec", b.ctr, "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(broker.InternalPort),
		"-u", "bridge", "-P", "b", "-t", "$cluster/shared/0", "-n").CombinedOutput(); err != nil {
		t.Fatalf("gossip: %v\n%s", err, out)
	}
	if !b.allowedPub(alice...) {
		t.Fatalf("a joined spoke refused a client:\n%s", b.logs())
	}
	b.waitLog("joined the cluster (broker 0 heard", time.Second)

	alone := startBrokerAs(t, "alone", false, 2, "plugin_opt_join_grace 3\n")
	alone.push(string(empty.Body))
	alone.waitLog("cluster_auth: applied state "+empty.Version, 5*time.Second)
	start := time.Now()
	for !alone.allowedPub(alice...) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("a spoke alone still refuses clients after its grace:\n%s", alone.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(alone.logs(), "no other broker heard in 3 s: admitting clients alone") {
		t.Fatalf("the spoke alone did not say why it admits clients:\n%s", alone.logs())
	}
}

// TestLoadFiguresReachTheInternalUser: the broker publishes its message
// rate on LoadTopic (Mosquitto's $SYS, every 10 s), and the internal user
// the operator's pusher logs in as may read it (spec.scaling Auto reads
// it there).
func TestLoadFiguresReachTheInternalUser(t *testing.T) {
	b := startBroker(t, "load", false)
	internal := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(broker.InternalPort), "-u", "bridge", "-P", "b"}
	for i := 0; i < 20; i++ {
		if out, err := exec.Command("docker", append(append([]string{"exec", b.ctr, "mosquitto_pub"}, internal...), "-q", "1", "-t", "load/x", "-m", "m")...).CombinedOutput(); err != nil {
			t.Fatalf("publish: %v %s", err, out)
		}
	}
	out, err := exec.Command("docker", append(append([]string{"exec", b.ctr, "mosquitto_sub"}, internal...), "-t", LoadTopic, "-C", "2", "-W", "25")...).CombinedOutput()
	if err != nil {
		t.Fatalf("no load figure on %s within 25 s: %v %s", LoadTopic, err, out)
	}
	// The retained first figure may predate the publishes; the next one
	// counts them.
	lines := strings.Fields(string(out))
	v, err := strconv.ParseFloat(lines[len(lines)-1], 64)
	if err != nil || v <= 0 {
		t.Fatalf("load figure %q: %v, want a positive rate per minute", out, err)
	}
}
