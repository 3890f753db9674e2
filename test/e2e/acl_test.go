//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

const aclCluster, aclPort, aclTLSPort = "e2eacl", 23883, 23884

// aclSpec: the ACL cluster, with a limit of 5 connections a minute per
// client id at HAProxy.
func aclSpec(rules string) []byte { return aclSpecN(3, rules) }

func aclSpecN(replicas int, rules string) []byte {
	return []byte(strings.Replace(string(testSpec(aclCluster, replicas, aclPort, aclTLSPort, "  tls: {dnsNames: [localhost]}\n  auth:\n    acls:\n"+rules)),
		"loadBalancer: {replicas: 1,", "loadBalancer: {limits: {connectionRatePerClient: 5}, replicas: 1,", 1))
}

// aclsApplied waits until every broker serves the cluster's current rules
// (the ACLsApplied condition for the current generation) and returns the
// condition's message.
func aclsApplied(t *testing.T, c *client.Client, timeout time.Duration) string {
	t.Helper()
	var msg string
	eventually(t, "ACLsApplied", timeout, func() error {
		o, err := c.Get(context.Background(), aclCluster)
		if err != nil {
			return err
		}
		cond := meta.FindStatusCondition(o.Status.Conditions, api.ConditionACLsApplied)
		if o.Status.ObservedGeneration < o.Generation || cond == nil || cond.Status != "True" {
			return fmt.Errorf("status: %+v", o.Status.Conditions)
		}
		msg = cond.Message
		return nil
	})
	return msg
}

// observer is a client reading devices/# and recording what arrives.
type observer struct {
	mu  sync.Mutex
	got map[string]time.Time
}

func (o *observer) handler(_ mqtt.Client, m mqtt.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got[m.Topic()+" "+string(m.Payload())] = time.Now()
}

func (o *observer) has(k string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.got[k]
	return ok
}

// TestACLsEnforcedOnEveryBrokerAndAppliedLive: spec.auth.acls (a %c
// pattern rule, a read rule, a deny) are enforced on each broker, through
// 1883 and 8883; a tightened rule takes effect on every broker within 2 s
// of the apply with no broker restarted and no other client dropped; the
// bridges' internal user is refused at the load balancer even with its
// real password.
func TestACLsEnforcedOnEveryBrokerAndAppliedLive(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	rules := "      - {topic: \"devices/%c/#\", access: readwrite}\n" +
		"      - {topic: \"devices/#\", access: read}\n" +
		"      - {topic: \"devices/+/secret\", access: deny}\n"
	if _, err := c.Apply(ctx, aclSpec(rules)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), aclCluster) })
	waitReady(t, c, aclCluster, 3*time.Minute)
	t.Logf("ACLsApplied: %s", aclsApplied(t, c, time.Minute))
	cred, err := c.Credentials(ctx, aclCluster)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := c.CA(ctx, aclCluster)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(ca.Certificate))
	e := endpoint{host: "127.0.0.1", mqtt: aclPort, mqtts: aclTLSPort, user: cred.Username, pass: cred.Password, roots: roots}

	obs := &observer{got: map[string]time.Time{}}
	watcher, err := dial(e, "acl-observer", nil, e.user, e.pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watcher.Disconnect(0) })
	if tok := watcher.Subscribe("devices/#", 1, obs.handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe devices/#: %v", tok.Error())
	}
	// Bystanders, plain and TLS: none may be dropped by what follows.
	bystanders := connectBystanders(t, e, "acl-bystander", 20)
	before := serviceVersions(t, aclCluster)

	// One device per broker (pinned by its log line), each checked there.
	devices := pinnedOn(t, aclCluster, e, 3, "dev", nil)
	pub := func(d *conn, topic, payload string) {
		t.Helper()
		if tok := d.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tok.Error())
		}
	}
	for i, d := range devices {
		pub(d, "devices/"+d.id+"/x", "own")
		pub(d, "devices/other/x", "foreign")
		pub(d, "devices/"+d.id+"/secret", "secret")
		pub(d, "devices/"+d.id+"/marker", "m") // after the others, same path
		eventually(t, "broker "+fmt.Sprint(i)+" marker", 10*time.Second, func() error {
			if !obs.has("devices/" + d.id + "/marker m") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if !obs.has("devices/" + d.id + "/x own") {
			t.Errorf("broker %d: a device's publish on its own topic was not delivered", i)
		}
		if obs.has("devices/other/x foreign") {
			t.Errorf("broker %d: a device published on another device's topic", i)
		}
		if obs.has("devices/" + d.id + "/secret secret") {
			t.Errorf("broker %d: a deny rule did not win over the device's own readwrite rule", i)
		}
		tok := d.Subscribe("other/#", 1, nil)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		if q := tok.(*mqtt.SubscribeToken).Result()["other/#"]; q != 0x80 {
			t.Errorf("broker %d: a subscription no rule allows was granted (qos %d)", i, q)
		}
	}
	// Through 8883 too.
	tlsDev, err := dial(e, "tls-dev", e.tls("localhost"), e.user, e.pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tlsDev.Disconnect(0) })
	pub(tlsDev, "devices/other/x", "foreign-tls")
	pub(tlsDev, "devices/tls-dev/x", "own-tls")
	eventually(t, "TLS device delivered", 10*time.Second, func() error {
		if !obs.has("devices/tls-dev/x own-tls") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if obs.has("devices/other/x foreign-tls") {
		t.Error("through 8883: a device published on another device's topic")
	}

	// Tightened live: devices may only read their topics. Each device
	// publishes a numbered probe every 100 ms; a broker enforces the new
	// rule from the first probe after which none arrives.
	sent := map[int]map[int]time.Time{}
	var smu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, d := range devices {
		sent[i] = map[int]time.Time{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 60; k++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				smu.Lock()
				sent[i][k] = time.Now()
				smu.Unlock()
				d.Publish(fmt.Sprintf("devices/%s/probe", d.id), 1, false, fmt.Sprint(k)).WaitTimeout(2 * time.Second)
			}
		}()
	}
	for _, d := range devices {
		eventually(t, "probes flowing from "+d.id, 10*time.Second, func() error {
			if !obs.has(fmt.Sprintf("devices/%s/probe 0", d.id)) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}
	applied := time.Now()
	tight := strings.Replace(rules, "devices/%c/#\", access: readwrite", "devices/%c/#\", access: read", 1)
	if _, err := c.Apply(ctx, aclSpec(tight)); err != nil {
		t.Fatal(err)
	}
	t.Logf("ACLsApplied after the change: %s", aclsApplied(t, c, time.Minute))
	wg.Wait()
	close(stop)
	var worst time.Duration
	for i, d := range devices {
		last := -1
		for k := 0; k < 60; k++ {
			if obs.has(fmt.Sprintf("devices/%s/probe %d", d.id, k)) {
				last = k
			}
		}
		if last == 59 {
			t.Errorf("broker %d: the tightened rule was never enforced", i)
			continue
		}
		took := time.Duration(0)
		if last >= 0 {
			took = sent[i][last+1].Sub(applied)
		}
		t.Logf("broker %d enforces the tightened rule %s after the apply", i, took.Round(time.Millisecond))
		worst = max(worst, took)
	}
	if worst > 2*time.Second {
		t.Errorf("a broker enforced the tightened rule %s after the apply: want within 2 s", worst)
	}
	if after := serviceVersions(t, aclCluster); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a rule change restarted services:\n%v\n%v", before, after)
	}
	noneDropped(t, bystanders, "by a rule change")

	// Scale 3 -> 5 under a stream of new clients (a new id every 100 ms,
	// each publishing where the rules allow no one): the new brokers serve
	// the rules before they let any client in, so nothing gets through.
	stopH := make(chan struct{})
	var hammered atomic.Int32
	go func() {
		for n := 0; ; n++ {
			select {
			case <-stopH:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if cl, err := dial(e, fmt.Sprintf("scale-hammer-%d", n), nil, e.user, e.pass); err == nil {
				hammered.Add(1)
				cl.Publish("devices/other/scale", 1, false, fmt.Sprint(n)).WaitTimeout(2 * time.Second)
				cl.Disconnect(0)
			}
		}
	}()
	if _, err := c.Apply(ctx, aclSpecN(5, tight)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, aclCluster, 3*time.Minute)
	aclsApplied(t, c, time.Minute)
	close(stopH)
	for i := 3; i < 5; i++ {
		logs := testutil.RunningLogs(fmt.Sprintf("%s-broker-%d", aclCluster, i))
		at := strings.Index(logs, "cluster_auth: applied state")
		if at < 0 {
			t.Fatalf("broker %d never applied the rules:\n%s", i, logs)
		}
		for _, line := range strings.Split(logs[:at], "\n") {
			if strings.Contains(line, "New client connected") && !strings.Contains(line, "u'"+api.BridgeUser+"'") {
				t.Errorf("new broker %d let a client in before it had the rules: %s", i, line)
			}
		}
		t.Logf("new broker %d: %d clients connected after its rules arrived", i, strings.Count(logs[at:], "as scale-hammer-"))
	}
	obs.mu.Lock()
	for k := range obs.got {
		if strings.HasPrefix(k, "devices/other/scale ") {
			t.Errorf("a forbidden publish got through during the scale-up: %s", k)
		}
	}
	obs.mu.Unlock()
	t.Logf("scale 3 -> 5: %d clients connected during it", hammered.Load())

	// A client id reconnecting in a loop: the 6th connection in a minute is
	// refused at HAProxy; another id is not affected.
	accepted := 0
	for i := 0; i < 8; i++ {
		if cl, err := dial(e, "acl-looper", nil, e.user, e.pass); err == nil {
			accepted++
			cl.Disconnect(0)
		}
	}
	if accepted != 5 {
		t.Errorf("a client id connecting 8 times in a row got %d connections: want 5 (connectionRatePerClient)", accepted)
	}
	if cl, err := dial(e, "acl-other", nil, e.user, e.pass); err != nil {
		t.Errorf("another client id is refused while one is rate-limited: %v", err)
	} else {
		cl.Disconnect(0)
	}

	// The bridges' user, with its real password (read from a broker's
	// bridge section), is refused at the load balancer.
	ctr := strings.Fields(docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+aclCluster+"-broker-1"))
	if len(ctr) == 0 {
		t.Fatal("no broker-1 container")
	}
	conf, err := exec.Command("docker", "exec", ctr[0], "cat", "/run/secrets/mosquitto.d/bridge.conf").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^remote_password (\S+)$`).FindSubmatch(conf)
	if m == nil {
		t.Fatal("no bridge password in the bridge section")
	}
	for _, tc := range []bool{false, true} {
		var cfg = e.tls("localhost")
		if !tc {
			cfg = nil
		}
		if b, err := dial(e, "not-a-bridge", cfg, api.BridgeUser, string(m[1])); err == nil {
			b.Disconnect(0)
			t.Errorf("the internal user logged in through the load balancer (tls=%v)", tc)
		}
	}
}

// connectBystanders connects n clients of e's user, half plain, half TLS,
// closed when the test ends.
func connectBystanders(t *testing.T, e endpoint, prefix string, n int) []*conn {
	t.Helper()
	var out []*conn
	for i := 0; i < n; i++ {
		tc := e.tls("localhost")
		if i%2 == 0 {
			tc = nil
		}
		b, err := dial(e, fmt.Sprintf("%s-%d", prefix, i), tc, e.user, e.pass)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		t.Cleanup(func() { b.Disconnect(0) })
	}
	return out
}

// noneDropped fails for every client that lost its connection.
func noneDropped(t *testing.T, clients []*conn, while string) {
	t.Helper()
	for _, b := range clients {
		if b.lost.Load() != 0 || !b.IsConnectionOpen() {
			t.Errorf("%s was dropped %s", b.id, while)
		}
	}
}
