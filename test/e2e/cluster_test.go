//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

const scaleCluster = "e2escale"

// testSpec is a cluster of the e2e suite: no persistence (faster), one
// load balancer on ports of its own so clusters never compete for them.
func testSpec(name string, replicas, mqttPort, mqttsPort int, extra string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: %d
  broker: {persistence: {enabled: false}}
  loadBalancer: {replicas: 1, ports: {mqtt: %d, mqtts: %d}}
%s`, name, replicas, mqttPort, mqttsPort, extra))
}

func scaleSpec(replicas int) []byte {
	return testSpec(scaleCluster, replicas, 21883, 28883, "  tls: {dnsNames: [localhost]}\n")
}

// waitReady polls until the cluster's status describes its current
// generation and says Ready.
func waitReady(t *testing.T, c *client.Client, name string, timeout time.Duration) *api.MqttCluster {
	t.Helper()
	var obj *api.MqttCluster
	eventually(t, name+" Ready", timeout, func() error {
		var err error
		obj, err = c.Get(context.Background(), name)
		if err != nil {
			return err
		}
		if obj.Status.ObservedGeneration < obj.Generation || !meta.IsStatusConditionTrue(obj.Status.Conditions, api.ConditionReady) {
			return fmt.Errorf("status: %+v", obj.Status.Conditions)
		}
		return nil
	})
	return obj
}

// serviceVersions is, for each of a cluster's services, the hash of the
// spec the operator last wrote and its running task: either moves when
// the operator updates the service or Swarm restarts it. (Swarm's own
// version index moves on internal updates too, so it is not used.)
func serviceVersions(t *testing.T, cluster string) map[string]string {
	t.Helper()
	out := map[string]string{}
	lines := docker(t, "service", "ls", "--filter", "label=mqtt.swarm/cluster="+cluster, "--format", "{{.Name}}")
	for _, n := range strings.Fields(lines) {
		hash := docker(t, "service", "inspect", n, "--format", `{{index .Spec.Labels "mqtt.swarm/spec-hash"}}`)
		out[n] = hash + " " + strings.Join(strings.Fields(docker(t, "service", "ps", "-q", "--filter", "desired-state=running", n)), ",")
	}
	return out
}

func lbTask(t *testing.T, cluster string) string {
	return docker(t, "service", "ps", "-q", "--filter", "desired-state=running", cluster+"-lb")
}

// TestScaleKillAndInvalidSpec: a second cluster on other ports; scaling
// 3 -> 5 -> 2 changes HAProxy's backends without restarting it or
// dropping clients of brokers that stay; a killed broker's clients get
// through again within 1 s (HAProxy alone takes 2 s or more: its checks,
// and its connect timeout on the dead address; the operator drains the
// broker when its own connection to it closes); an invalid spec changes
// nothing in Swarm.
func TestScaleKillAndInvalidSpec(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	deleteOnCleanup(t, c, scaleCluster)
	if _, err := c.Apply(ctx, scaleSpec(3)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, scaleCluster, 120*time.Second)
	ca, err := c.CA(ctx, scaleCluster)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.Credentials(ctx, scaleCluster)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(ca.Certificate))
	e := endpoint{host: "127.0.0.1", mqtt: 21883, mqtts: 28883, user: cr.Username, pass: cr.Password, roots: roots}

	// 24 clients spread by client id over the 3 brokers.
	var conns []*conn
	var ids []string
	for i := 0; i < 24; i++ {
		id := fmt.Sprintf("scale-%02d", i)
		cn, err := dial(e, id, nil, e.user, e.pass)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cn.Disconnect(0) })
		conns, ids = append(conns, cn), append(ids, id)
	}
	var where map[string]string
	eventually(t, "every client seen in a broker's log", 20*time.Second, func() error {
		where = brokerOf(t, scaleCluster, 3, ids)
		if len(where) != len(ids) {
			return fmt.Errorf("%d of %d located", len(where), len(ids))
		}
		return nil
	})
	lbBefore, versions := lbTask(t, scaleCluster), serviceVersions(t, scaleCluster)

	// 3 -> 5: nobody is dropped, HAProxy is not touched, new brokers serve.
	if _, err := c.Apply(ctx, scaleSpec(5)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, scaleCluster, 90*time.Second)
	for _, cn := range conns {
		if cn.lost.Load() != 0 || !cn.IsConnectionOpen() {
			t.Errorf("client %s was dropped by scaling up", cn.id)
		}
	}
	now := serviceVersions(t, scaleCluster)
	for name, v := range versions {
		if now[name] != v {
			t.Errorf("scaling up updated or restarted %s (%s -> %s)", name, v, now[name])
		}
	}
	if lb := lbTask(t, scaleCluster); lb != lbBefore {
		t.Errorf("HAProxy task replaced by scaling: %s -> %s", lbBefore, lb)
	}
	var extra []string
	eventually(t, "new connections reaching the new brokers", 30*time.Second, func() error {
		id := fmt.Sprintf("new-%d", len(extra))
		extra = append(extra, id)
		if err := publishOnce(e, id); err != nil {
			return err
		}
		for _, b := range brokerOf(t, scaleCluster, 5, extra) {
			if b == scaleCluster+"-broker-3" || b == scaleCluster+"-broker-4" {
				return nil
			}
		}
		return fmt.Errorf("none of %d new clients on broker 3 or 4 yet", len(extra))
	})

	// 5 -> 2: clients of brokers 0 and 1 stay; the others are dropped and
	// get back in on a broker that stays.
	if _, err := c.Apply(ctx, scaleSpec(2)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, scaleCluster, 90*time.Second)
	stays := func(id string) bool {
		return where[id] == scaleCluster+"-broker-0" || where[id] == scaleCluster+"-broker-1"
	}
	var moved []string
	for _, cn := range conns {
		if stays(cn.id) {
			if cn.lost.Load() != 0 {
				t.Errorf("client %s of %s was dropped by scaling down", cn.id, where[cn.id])
			}
		} else {
			moved = append(moved, cn.id)
		}
	}
	if len(moved) == 0 {
		t.Fatal("no client was on broker 2, 3 or 4: the spread is not testable")
	}
	for _, id := range moved {
		cn, err := dial(e, id, nil, e.user, e.pass)
		if err != nil {
			t.Fatalf("%s reconnecting after its broker left: %v", id, err)
		}
		if err := roundTrip(cn, "e2e/moved/"+id, "back"); err != nil {
			t.Errorf("%s after reconnecting: %v", id, err)
		}
		cn.Disconnect(0)
	}
	if lb := lbTask(t, scaleCluster); lb != lbBefore {
		t.Errorf("HAProxy task replaced by scaling down: %s -> %s", lbBefore, lb)
	}

	// docker kill broker-1: a client whose id hashes to it gets through
	// (to another broker, or the restarted one) within 1 s.
	var victim string
	for _, id := range ids {
		if where[id] == scaleCluster+"-broker-1" {
			victim = id
		}
	}
	if victim == "" {
		t.Fatal("no client on broker-1")
	}
	container := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+scaleCluster+"-broker-1")
	docker(t, "kill", container)
	killed := time.Now()
	var recovered time.Duration
	for {
		if err := publishOnce(e, victim); err == nil {
			recovered = time.Since(killed)
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatal("no successful publish within 30 s of killing the broker")
		}
		time.Sleep(100 * time.Millisecond) // the client's retry interval
	}
	t.Logf("first successful publish %v after docker kill", recovered.Round(time.Millisecond))
	if recovered > time.Second {
		t.Errorf("recovery took %v, want at most 1s", recovered)
	}
	// Swarm restarts the broker; the cluster is Ready again.
	eventually(t, "broker-1 replaced", 60*time.Second, func() error {
		if now := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+scaleCluster+"-broker-1"); now == "" || now == container {
			return errStr("not yet")
		}
		return nil
	})
	waitReady(t, c, scaleCluster, 60*time.Second)

	// An invalid spec is rejected whole; nothing in Swarm changes.
	versions = serviceVersions(t, scaleCluster)
	bad := strings.Replace(string(scaleSpec(4)), "replicas: 4", "replicas: 40", 1)
	bad = strings.Replace(bad, "mqtt: 21883", "mqtt: 28883", 1)
	_, err = c.Apply(ctx, []byte(bad))
	ce, ok := err.(*client.Error)
	if !ok || ce.Code != 422 || len(ce.Causes) != 2 {
		t.Fatalf("invalid spec: %v", err)
	}
	obj, _ := c.Get(ctx, scaleCluster)
	if *obj.Spec.Replicas != 2 {
		t.Fatalf("the rejected spec was stored: replicas %d", *obj.Spec.Replicas)
	}
	// After the operator has reconciled again, still no change. Any Docker
	// event triggers a pass: create and remove a config of our own.
	n0 := reconciles(t)
	poke := exec.Command("docker", "config", "create", fmt.Sprintf("e2e-poke-%d", time.Now().UnixNano()), "-")
	poke.Stdin = strings.NewReader("poke")
	id, err := poke.Output()
	if err != nil {
		t.Fatalf("docker config create: %v", err)
	}
	docker(t, "config", "rm", strings.TrimSpace(string(id)))
	eventually(t, "the operator reconciling after the rejected apply", 45*time.Second, func() error {
		if n := reconciles(t); n <= n0 {
			return errStr("reconciles " + strconv.Itoa(n))
		}
		return nil
	})
	if now := serviceVersions(t, scaleCluster); !maps.Equal(now, versions) {
		t.Fatalf("a rejected spec changed Swarm: %v -> %v", versions, now)
	}
}

// deleteOnCleanup deletes the cluster name when the test ends and waits
// until its services are gone.
func deleteOnCleanup(t *testing.T, c *client.Client, name string) {
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), name)
		eventually(t, "the cluster's services removed", 60*time.Second, func() error {
			if n := docker(t, "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+name); n != "" {
				return errStr("services left: " + n)
			}
			return nil
		})
	})
}

// reconciles reads the operator's successful reconcile count.
func reconciles(t *testing.T) int {
	t.Helper()
	server := os.Getenv("MQTTCTL_SERVER")
	if server == "" {
		server = "https://127.0.0.1:7950"
	}
	return testutil.Metric(server, `mqttoperator_reconcile_total{result="success"}`)
}

// TestNoWritesWhenNothingChanged: an unchanged apply and an operator
// restart make no create, update or remove of the cluster's Swarm objects
// (read from Docker's own events stream).
func TestNoWritesWhenNothingChanged(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	waitReady(t, c, "quickstart", 60*time.Second)
	since := time.Now()
	doc, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Apply(ctx, doc); err != nil || res.Result != "unchanged" {
		t.Fatalf("second apply: %v %v", res, err)
	}
	old := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator")
	docker(t, "service", "update", "--detach", "--force", stack+"_operator")
	eventually(t, "a new operator that has reconciled", 90*time.Second, func() error {
		now := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator")
		if now == "" || now == old {
			return errStr("old operator still running")
		}
		if n := reconciles(t); n < 1 {
			return errStr("no reconcile yet")
		}
		return nil
	})
	until := time.Now()
	out := docker(t, "events", "--since", unix(since), "--until", unix(until),
		"--filter", "type=service", "--filter", "type=secret", "--filter", "type=config", "--filter", "type=network",
		"--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
	var writes []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " quickstart") {
			writes = append(writes, line)
		}
	}
	if len(writes) > 0 {
		t.Fatalf("writes to an unchanged cluster:\n%s", strings.Join(writes, "\n"))
	}
	// The check can fail: the operator's own restart shows up in the same
	// stream.
	if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.Contains(l, "service update "+stack+"_operator") }) {
		t.Fatalf("the events stream did not show the operator's own update:\n%s", out)
	}
}

func unix(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }
