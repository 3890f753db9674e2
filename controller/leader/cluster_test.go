package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/metrics"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/cluster"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/issuer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/loadbalancer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// leaderSwitch wraps a store so a test can take leadership away.
type leaderSwitch struct {
	*store.Store
	lost atomic.Bool
	// stale: this node still believes it leads (IsLeader), but a quorum
	// says otherwise, as for a leader that was paused past its lease.
	stale atomic.Bool
}

func (l *leaderSwitch) IsLeader() bool { return !l.lost.Load() && l.Store.IsLeader() }

// VerifyLeader: a lost leadership is what a quorum would answer.
func (l *leaderSwitch) VerifyLeader() error {
	if l.lost.Load() || l.stale.Load() {
		return store.ErrNotLeader
	}
	return l.Store.VerifyLeader()
}

type clusterEnv struct {
	t       *testing.T
	store   *leaderSwitch
	fake    *swarm.Fake
	objects *objects.Objects
	rec     *Clusters
	now     time.Time
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	e := &clusterEnv{t: t, store: &leaderSwitch{Store: openStore(t)}, fake: swarm.NewFake(), now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	e.fake.NodeList = []dswarm.Node{{ID: "n1", Description: dswarm.NodeDescription{Hostname: "node-1"}, Status: dswarm.NodeStatus{Addr: "10.0.0.1"}}}
	e.objects = &objects.Objects{Store: e.store}
	e.rec = &Clusters{Objects: e.objects, Reconciler: &cluster.Reconciler{Leadership: e.store, Credentials: e.objects, Swarm: e.fake, OperatorID: "op", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return e.now }}}
	return e
}

func (e *clusterEnv) apply(specYAML string) {
	e.t.Helper()
	c, err := api.Parse([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: iot}\n"+specYAML), api.BuiltinDefaults())
	if err != nil {
		e.t.Fatal(err)
	}
	spec, _ := json.Marshal(c.Spec)
	if _, _, err := e.store.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: c.Name, Spec: spec}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *clusterEnv) reconcile() Result {
	e.t.Helper()
	res, err := e.rec.Reconcile(context.Background(), "iot")
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (e *clusterEnv) cluster() *api.MqttCluster {
	e.t.Helper()
	c, err := objects.ToCluster(e.store.Get(api.KindMqttCluster, "iot"))
	if err != nil {
		e.t.Fatal(err)
	}
	// What the reconciler writes is what the API accepts as a status.
	if errs := api.ValidateStatus(&c.Status, c.Generation); len(errs) > 0 {
		e.t.Fatalf("the reconciler wrote a status the API would refuse: %v", errs)
	}
	return c
}

// runAll gives every service a task that has been running for a minute,
// and has broker 0's log show every other broker's bridge connecting.
func (e *clusterEnv) runAll() {
	svcs, _ := e.fake.Services(context.Background(), nil)
	e.fake.TaskList = nil
	e.fake.Logs = map[string][]swarm.LogLine{}
	for _, s := range svcs {
		var i int
		if _, err := fmt.Sscanf(s.Spec.Name, "iot-broker-%d", &i); err == nil && i > 0 {
			e.fake.Logs["iot-broker-0"] = append(e.fake.Logs["iot-broker-0"], swarm.LogLine{
				Time: e.now.Add(-50 * time.Second),
				Text: fmt.Sprintf("New bridge connected from 10.0.0.%d:40000 as iot-broker-%d-bridge (p2, c1, k5, u'bridge').", i, i),
			})
		}
	}
	for _, s := range svcs {
		n := uint64(1)
		if s.Spec.Mode.Replicated != nil && s.Spec.Mode.Replicated.Replicas != nil {
			n = *s.Spec.Mode.Replicated.Replicas
		}
		for i := uint64(0); i < n; i++ {
			e.fake.TaskList = append(e.fake.TaskList, dswarm.Task{
				ID: s.ID + "-t", ServiceID: s.ID, NodeID: "n1", DesiredState: dswarm.TaskStateRunning,
				Annotations: dswarm.Annotations{Labels: s.Spec.Labels},
				Status:      dswarm.TaskStatus{State: dswarm.TaskStateRunning, Timestamp: e.now.Add(-time.Minute)},
				Spec:        s.Spec.TaskTemplate,
			})
		}
	}
}

// running applies a spec and brings it to Ready: a first pass creates the
// services, their tasks run, a second pass observes them.
func (e *clusterEnv) running(specYAML string) {
	e.t.Helper()
	e.apply(specYAML)
	e.reconcile()
	e.runAll()
	e.reconcile()
}

func written(calls []swarm.Call, method string) []string {
	var out []string
	for _, c := range calls {
		if c.Method == method {
			out = append(out, c.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestClusterReconcileCreatesThenStaysQuiet(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {tls: {dnsNames: [mqtt.example.com]}, loadBalancer: {replicas: 1}}\n")
	res := e.reconcile()
	calls := e.fake.Calls()
	if got := written(calls, "CreateService"); !slices.Equal(got, []string{"iot-broker-0", "iot-broker-1", "iot-broker-2", "iot-lb"}) {
		t.Fatalf("services created: %v", got)
	}
	// Secrets: client and internal password files, the certificate, and
	// the bridge sections of brokers 1 and 2 (broker 0 is the root).
	var kinds []string
	for _, n := range written(calls, "CreateSecret") {
		kinds = append(kinds, n[:strings.LastIndex(n, "-")])
	}
	if !slices.Equal(kinds, []string{"iot-bridge-1", "iot-bridge-2", "iot-internal-passwd", "iot-passwd", "iot-tls"}) {
		t.Fatalf("secrets created: %v", written(calls, "CreateSecret"))
	}
	if got := written(calls, "CreateNetwork"); !slices.Equal(got, []string{"iot-net"}) {
		t.Fatalf("networks: %v", got)
	}
	// Nothing runs yet: not Ready, progressing, polled soon.
	c := e.cluster()
	if meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) || !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionProgressing) {
		t.Fatalf("conditions before tasks run: %+v", c.Status.Conditions)
	}
	if res.RequeueAfter != time.Second {
		t.Fatalf("requeue while progressing: %v", res.RequeueAfter)
	}
	// The HAProxy service publishes both ports in host mode, mounts the
	// certificate secret, and runs at most one task per node.
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "loadbalancer"})
	lb := svcs[0].Spec
	if len(lb.EndpointSpec.Ports) != 2 || lb.EndpointSpec.Ports[0].PublishMode != dswarm.PortConfigPublishModeHost || lb.TaskTemplate.Placement.MaxReplicas != 1 ||
		!strings.HasPrefix(lb.TaskTemplate.ContainerSpec.Secrets[0].SecretName, "iot-tls-") {
		t.Fatalf("load balancer spec: %+v", lb)
	}

	// Tasks running: Ready, endpoints per load-balancer node, CA fingerprint.
	e.runAll()
	e.now = e.now.Add(time.Second)
	res = e.reconcile()
	c = e.cluster()
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) || meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionDegraded) {
		t.Fatalf("conditions with tasks running: %+v", c.Status.Conditions)
	}
	if !slices.Equal(c.Status.Endpoints, []string{"mqtt://10.0.0.1:1883", "mqtts://10.0.0.1:8883"}) || c.Status.CAFingerprint == "" || c.Status.ObservedGeneration != 1 {
		t.Fatalf("status: %+v", c.Status)
	}
	if len(c.Status.Brokers) != 3 || c.Status.Brokers[2].Node != "node-1" || c.Status.Brokers[2].State != "running" {
		t.Fatalf("brokers: %+v", c.Status.Brokers)
	}
	// Requeued at the certificate's renewal time: 2160h lifetime, renewed
	// 720h before expiry, issued one second ago.
	if want := 1440*time.Hour - time.Second - 5*time.Minute; res.RequeueAfter < want-time.Minute || res.RequeueAfter > 1440*time.Hour {
		t.Fatalf("requeue at renewal: %v", res.RequeueAfter)
	}

	// Unchanged spec, unchanged Swarm: no Swarm write, no status write.
	e.fake.ResetCalls()
	before := e.store.Get(api.KindMqttCluster, "iot").ModifyIndex
	e.now = e.now.Add(time.Minute)
	e.reconcile()
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("second pass wrote to Swarm: %v", calls)
	}
	if after := e.store.Get(api.KindMqttCluster, "iot").ModifyIndex; after != before {
		t.Fatalf("second pass rewrote the status (%d -> %d)", before, after)
	}
}

func TestClusterReconcileKeepsSecretsOutOfStatusAndReissuesOnNameChange(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.running("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	var m credentials.Material
	if err := json.Unmarshal(e.store.Get(objects.KindCredentials, "iot").Spec, &m); err != nil {
		t.Fatal(err)
	}
	status := string(e.store.Get(api.KindMqttCluster, "iot").Status)
	keyBody := strings.Split(string(m.Server.KeyPEM), "\n")[1]
	for _, secret := range []string{"PRIVATE KEY", keyBody, m.Password} {
		if strings.Contains(status, secret) {
			t.Fatalf("status holds a secret: %s", status)
		}
	}

	// A new DNS name: a new certificate in a new secret, HAProxy pointed at
	// it, the old secret pruned; brokers untouched.
	e.fake.ResetCalls()
	e.apply("spec: {replicas: 1, loadBalancer: {replicas: 1}, tls: {dnsNames: [new.example.com]}}\n")
	e.reconcile()
	calls := e.fake.Calls()
	if got := written(calls, "UpdateService"); !slices.Equal(got, []string{"iot-lb"}) {
		t.Fatalf("updated services: %v", got)
	}
	created, removed := written(calls, "CreateSecret"), written(calls, "RemoveSecret")
	if len(created) != 1 || len(removed) != 1 || !strings.HasPrefix(created[0], "iot-tls-") || created[0] == removed[0] {
		t.Fatalf("secret rotation: created %v removed %v", created, removed)
	}
	var m2 credentials.Material
	_ = json.Unmarshal(e.store.Get(objects.KindCredentials, "iot").Spec, &m2)
	if m2.Reason != "DNSNamesChanged" || string(m2.CA.CertPEM) != string(m.CA.CertPEM) || m2.Password != m.Password {
		t.Fatalf("reissue: reason %q, CA kept %v, password kept %v", m2.Reason, string(m2.CA.CertPEM) == string(m.CA.CertPEM), m2.Password == m.Password)
	}
}

func TestClusterReconcileMissingSecretIsACondition(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {auth: {passwordFileSecret: nope}}\n")
	if _, err := e.rec.Reconcile(context.Background(), "iot"); err != nil {
		t.Fatalf("a missing user secret is a condition, not a retried error: %v", err)
	}
	c := e.cluster()
	d := meta.FindStatusCondition(c.Status.Conditions, api.ConditionDegraded)
	if d == nil || d.Status != "True" || d.Reason != "MissingSecret" || !strings.Contains(d.Message, `"nope"`) {
		t.Fatalf("degraded condition: %+v", d)
	}
	if got := written(e.fake.Calls(), "CreateService"); len(got) != 1 || got[0] != "iot-lb" {
		// The load balancer does not depend on the brokers' password file.
		t.Fatalf("services created with a missing secret: %v", got)
	}
}

func TestClusterDeleteCleansUpOnlyOwnedObjects(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {replicas: 2}\n")
	e.reconcile()
	foreign := dswarm.ServiceSpec{Annotations: dswarm.Annotations{Name: "someone-else", Labels: map[string]string{swarm.LabelCluster: "iot"}}}
	if _, err := e.fake.CreateService(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	if found, _ := e.rec.Discover(context.Background()); !slices.Equal(found, []string{"iot"}) {
		t.Fatalf("discover: %v", found)
	}
	if _, err := e.store.Delete(store.DeleteRequest{Kind: api.KindMqttCluster, Name: "iot"}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	left, _ := e.fake.Services(context.Background(), nil)
	if len(left) != 1 || left[0].Spec.Name != "someone-else" {
		t.Fatalf("services left: %+v", left)
	}
	for _, kind := range []string{"secrets", "configs", "networks"} {
		var n int
		switch kind {
		case "secrets":
			s, _ := e.fake.Secrets(context.Background(), nil)
			n = len(s)
		case "configs":
			c, _ := e.fake.Configs(context.Background(), nil)
			n = len(c)
		case "networks":
			c, _ := e.fake.Networks(context.Background(), nil)
			n = len(c)
		}
		if n != 0 {
			t.Errorf("%d %s left", n, kind)
		}
	}
	if e.store.Get(objects.KindCredentials, "iot") != nil {
		t.Error("credentials left in the store")
	}
}

func TestClusterReconcileStopsWritingWhenLeadershipIsLost(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {replicas: 2}\n")
	e.store.lost.Store(true)
	_, err := e.rec.Reconcile(context.Background(), "iot")
	if !errors.Is(err, cluster.ErrNotLeaderAnyMore) || len(e.fake.Calls()) != 0 {
		t.Fatalf("not leader: err %v, writes %v", err, e.fake.Calls())
	}
	// A leader that thinks it still leads but is not confirmed by a quorum
	// (paused past its lease, or cut off) writes nothing either.
	e.store.lost.Store(false)
	e.store.stale.Store(true)
	_, err = e.rec.Reconcile(context.Background(), "iot")
	if !errors.Is(err, cluster.ErrNotLeaderAnyMore) || len(e.fake.Calls()) != 0 {
		t.Fatalf("stale leader: err %v, writes %v", err, e.fake.Calls())
	}
}

func TestClusterStatusSaysWhyATaskDoesNotRun(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	e.reconcile()
	e.runAll()
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "loadbalancer"})
	for i, task := range e.fake.TaskList {
		if task.ServiceID == svcs[0].ID {
			e.fake.TaskList[i].Status = dswarm.TaskStatus{State: dswarm.TaskStatePending, Err: "no suitable node (host-mode port already in use on 1 node)", Timestamp: e.now}
		}
	}
	e.reconcile()
	r := meta.FindStatusCondition(e.cluster().Status.Conditions, api.ConditionReady)
	if r == nil || r.Status != "False" || !strings.Contains(r.Message, "iot-lb: no suitable node (host-mode port already in use") {
		t.Fatalf("ready condition: %+v", r)
	}
}

func TestClusterNotReadyWhileATaskRunsAnOldSpec(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.running("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	if !meta.IsStatusConditionTrue(e.cluster().Status.Conditions, api.ConditionReady) {
		t.Fatal("not Ready with every task on the current spec")
	}
	// A spec change: the services are updated, but the running tasks are
	// still the old ones until Swarm replaces them.
	e.apply("spec: {replicas: 1, loadBalancer: {replicas: 1}, broker: {persistence: {autosaveInterval: 10s}}}\n")
	e.reconcile()
	if meta.IsStatusConditionTrue(e.cluster().Status.Conditions, api.ConditionReady) {
		t.Fatal("Ready while the broker still runs the old spec")
	}
	e.runAll()
	e.reconcile()
	if !meta.IsStatusConditionTrue(e.cluster().Status.Conditions, api.ConditionReady) {
		t.Fatal("not Ready once the new tasks run")
	}
}

func TestClusterRenewRequestRotatesTheServerCertificate(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	reg := prometheus.NewRegistry()
	m, err := metrics.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	e.rec.Metrics = m
	e.running("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	e.fake.ResetCalls()
	// What mqttctl certificate renew does: annotate with the request time.
	o := e.store.Get(api.KindMqttCluster, "iot")
	e.now = e.now.Add(time.Minute)
	ann := map[string]string{credentials.RenewAnnotation: e.now.Format(time.RFC3339Nano)}
	if _, _, err := e.store.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "iot", Spec: o.Spec, Annotations: ann}); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Second)
	e.reconcile()
	calls := e.fake.Calls()
	created, removed := written(calls, "CreateSecret"), written(calls, "RemoveSecret")
	if len(created) != 1 || !strings.HasPrefix(created[0], "iot-tls-") || len(removed) != 1 || !slices.Equal(written(calls, "UpdateService"), []string{"iot-lb"}) {
		t.Fatalf("renewal: created %v removed %v updated %v", created, removed, written(calls, "UpdateService"))
	}
	want := "# HELP mqttoperator_certificate_issued_total Server certificates issued, by reason (Missing, Expiring, Requested, ...).\n# TYPE mqttoperator_certificate_issued_total counter\n"
	if err := promtestutil.GatherAndCompare(reg, strings.NewReader(want+"mqttoperator_certificate_issued_total{reason=\"Missing\"} 1\nmqttoperator_certificate_issued_total{reason=\"Requested\"} 1\n"), "mqttoperator_certificate_issued_total"); err != nil {
		t.Fatalf("issued: %v", err)
	}
	// Done once: the next pass writes nothing.
	e.fake.ResetCalls()
	e.reconcile()
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("the request was served twice: %v", calls)
	}
}

// fakeRuntime stands for HAProxy's runtime API: the serial each task
// address serves, and the pushes it got.
type fakeRuntime struct {
	mu     sync.Mutex
	serial map[string]*big.Int
	pushes []string
	down   bool
	// notAfter is what every task reports as its certificate's expiry.
	notAfter time.Time
	// drained: the servers in drain, by task address; states: every
	// state change asked, "addr server state".
	drained map[string]map[string]bool
	states  []string
	// connections: what each task address reports holding.
	connections map[string]int64
	// afterWrite, when set, runs after each recorded write.
	afterWrite func()
	// servers: where each task address sends each broker server, and
	// whether it has it up.
	servers map[string]map[string]loadbalancer.ServerState
}

func (f *fakeRuntime) ServerStates(_ context.Context, addr string) (map[string]loadbalancer.ServerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.servers[addr]), nil
}

func (f *fakeRuntime) SetServerAddr(_ context.Context, addr, server, ip string) error {
	return f.setServer(addr, server, "addr "+ip, func(st *loadbalancer.ServerState) { st.Addr = ip })
}

func (f *fakeRuntime) SetServerHealthUp(_ context.Context, addr, server string) error {
	return f.setServer(addr, server, "health up", func(st *loadbalancer.ServerState) { st.Up = true })
}

// setServer changes one server of one task and records the change.
func (f *fakeRuntime) setServer(addr, server, what string, change func(*loadbalancer.ServerState)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.servers[addr][server]
	if !ok {
		return errors.New("no such server")
	}
	change(&st)
	f.servers[addr][server] = st
	f.states = append(f.states, addr+" "+server+" "+what)
	return nil
}

func (f *fakeRuntime) DrainedServers(_ context.Context, addr string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]bool{}
	for k, v := range f.drained[addr] {
		out[k] = v
	}
	return out, nil
}

// ShutdownSessions closes one session (fenced first, as the runtime does
// before each).
func (f *fakeRuntime) ShutdownSessions(_ context.Context, addr, server string, rate int, budget time.Duration, fence func() error) (int, error) {
	if err := fence(); err != nil {
		return 0, err
	}
	f.record(addr + " " + server + " shutdown-sessions")
	return 0, nil
}

func (f *fakeRuntime) ShutdownYoungSessions(_ context.Context, addr, server string, maxAge time.Duration, fence func() error) (int, error) {
	if err := fence(); err != nil {
		return 0, err
	}
	f.record(addr + " " + server + " shutdown-young-sessions")
	return 0, nil
}

// record appends a write to states, then runs afterWrite (outside the
// lock): a test's hook to change the world between two writes.
func (f *fakeRuntime) record(what string) {
	f.mu.Lock()
	f.states = append(f.states, what)
	hook := f.afterWrite
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (f *fakeRuntime) Connections(_ context.Context, addr string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connections[addr], nil
}

func (f *fakeRuntime) SetServerState(_ context.Context, addr, server, state string) error {
	f.mu.Lock()
	if f.drained == nil {
		f.drained = map[string]map[string]bool{}
	}
	if f.drained[addr] == nil {
		f.drained[addr] = map[string]bool{}
	}
	if state == "drain" {
		f.drained[addr][server] = true
	} else {
		delete(f.drained[addr], server)
	}
	f.mu.Unlock()
	f.record(addr + " " + server + " " + state)
	return nil
}

func (f *fakeRuntime) ServedCertificate(_ context.Context, addr string) (loadbalancer.Served, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return loadbalancer.Served{}, errors.New("dial tcp " + addr + ": connect: connection refused")
	}
	if s, ok := f.serial[addr]; ok {
		return loadbalancer.Served{Serial: s, NotAfter: f.notAfter}, nil
	}
	return loadbalancer.Served{Serial: big.NewInt(0), NotAfter: f.notAfter}, nil
}

func (f *fakeRuntime) PushCertificate(_ context.Context, addr string, pem []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("dial tcp " + addr + ": connect: connection refused")
	}
	c, err := certs.ParseCert(pem)
	if err != nil {
		return err
	}
	if !strings.Contains(string(pem), "PRIVATE KEY") {
		return errors.New("pushed without its key")
	}
	f.serial[addr] = c.SerialNumber
	f.pushes = append(f.pushes, addr)
	return nil
}

func (f *fakeRuntime) pushCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pushes)
}

// withControlNetwork makes the environment's HAProxy tasks reachable on a
// control network, each at 10.9.0.<n>.
func (e *clusterEnv) withControlNetwork() *fakeRuntime {
	e.fake.AddNetwork(network.Summary{Name: "mqtt-operator-control", Driver: "overlay", Scope: "swarm",
		IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.9.0.0/24"}}}})
	rt := &fakeRuntime{serial: map[string]*big.Int{}}
	e.rec.ControlNetwork = "mqtt-operator-control"
	e.rec.Runtime = rt
	return rt
}

// attachLB gives each running HAProxy task an address on the control
// network (as Swarm does), the n-th one 10.9.0.<base+n>.
func (e *clusterEnv) attachLB(base int) []string {
	var addrs []string
	for i, t := range e.fake.TaskList {
		if t.Spec.ContainerSpec.Labels[swarm.LabelComponent] != "loadbalancer" {
			continue
		}
		ip := fmt.Sprintf("10.9.0.%d", base+i)
		e.fake.TaskList[i].NetworksAttachments = append(t.NetworksAttachments, dswarm.NetworkAttachment{
			Network: dswarm.Network{Spec: dswarm.NetworkSpec{Annotations: dswarm.Annotations{Name: "mqtt-operator-control"}}}, Addresses: []string{ip + "/24"},
		})
		addrs = append(addrs, ip+":9999")
	}
	return addrs
}

func (e *clusterEnv) material() credentials.Material {
	var m credentials.Material
	if err := json.Unmarshal(e.store.Get(objects.KindCredentials, "iot").Spec, &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *clusterEnv) requestRenewal() {
	o := e.store.Get(api.KindMqttCluster, "iot")
	e.now = e.now.Add(time.Minute)
	ann := map[string]string{credentials.RenewAnnotation: e.now.Format(time.RFC3339Nano)}
	if _, _, err := e.store.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "iot", Spec: o.Spec, Annotations: ann}); err != nil {
		e.t.Fatal(err)
	}
	e.now = e.now.Add(time.Second)
}

// With a control network, a renewed certificate is pushed into the running
// HAProxy tasks: no Swarm write at all (no new secret, no service update,
// so no task restarts); a push that fails (or an operator restart before
// it) is retried until every task serves it; a task that starts later from
// the old secret gets the current certificate pushed; the secret moves to
// the current certificate only when the service changes anyway.
func TestClusterRenewalIsPushedIntoHAProxyWithNoRestart(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	e.apply("spec: {replicas: 1, loadBalancer: {replicas: 2}}\n")
	e.reconcile()
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "loadbalancer"})
	lb := svcs[0].Spec
	if nets := lb.TaskTemplate.Networks; len(nets) != 2 || nets[1].Target != "mqtt-operator-control" {
		t.Fatalf("HAProxy networks: %+v", nets)
	}
	e.runAll()
	addrs := e.attachLB(10)
	// The tasks started with the current certificate.
	for _, a := range addrs {
		c, _ := certs.ParseCert(e.material().Server.CertPEM)
		rt.serial[a] = c.SerialNumber
	}
	e.now = e.now.Add(time.Second)
	e.reconcile()
	c := e.cluster()
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) || c.Status.Certificate == nil || c.Status.Certificate.Serving != "2/2" || rt.pushCount() != 0 {
		t.Fatalf("before renewal: conditions %+v certificate %+v pushes %d", c.Status.Conditions, c.Status.Certificate, rt.pushCount())
	}
	old := e.material()

	// Renewal: pushed into both tasks, nothing written to Swarm.
	e.fake.ResetCalls()
	e.requestRenewal()
	e.reconcile()
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("a pushed renewal wrote to Swarm: %v", calls)
	}
	cur, _ := certs.ParseCert(e.material().Server.CertPEM)
	for _, a := range addrs {
		if rt.serial[a].Cmp(cur.SerialNumber) != 0 {
			t.Fatalf("%s serves %v, want the new serial %v", a, rt.serial[a], cur.SerialNumber)
		}
	}
	c = e.cluster()
	if cs := c.Status.Certificate; cs.Serial != cur.SerialNumber.Text(16) || cs.Reason != "Requested" || cs.Serving != "2/2" || cs.RenewAt == nil {
		t.Fatalf("certificate status: %+v", cs)
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		t.Fatalf("not Ready after the push: %+v", c.Status.Conditions)
	}

	// The runtime API unreachable during a renewal: not Ready, retried
	// soon; an operator restarted with a fresh reconciler finishes it.
	rt.down = true
	e.requestRenewal()
	res := e.reconcile()
	c = e.cluster()
	if meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) || c.Status.Certificate.Serving != "0/2" || res.RequeueAfter > time.Second {
		t.Fatalf("push failed: conditions %+v certificate %+v requeue %v", c.Status.Conditions, c.Status.Certificate, res.RequeueAfter)
	}
	if msg := meta.FindStatusCondition(c.Status.Conditions, api.ConditionReady).Message; !strings.Contains(msg, "current certificate served by 0/2") {
		t.Fatalf("Ready message: %s", msg)
	}
	// Tasks that just started and do not answer yet: come back soon.
	for i := range e.fake.TaskList {
		e.fake.TaskList[i].Status.Timestamp = e.now.Add(-time.Second)
	}
	if res := e.reconcile(); res.RequeueAfter > 200*time.Millisecond {
		t.Fatalf("young tasks not serving: requeue %v", res.RequeueAfter)
	}
	for i := range e.fake.TaskList {
		e.fake.TaskList[i].Status.Timestamp = e.now.Add(-time.Minute)
	}
	rt.down = false
	restarted := &Clusters{Objects: e.objects, Reconciler: &cluster.Reconciler{Leadership: e.store, Credentials: e.objects, Swarm: e.fake, OperatorID: "op", Log: e.rec.Log, Now: e.rec.Now, ControlNetwork: e.rec.ControlNetwork, Runtime: rt}}
	e.fake.ResetCalls()
	if _, err := restarted.Reconcile(context.Background(), "iot"); err != nil {
		t.Fatal(err)
	}
	cur, _ = certs.ParseCert(e.material().Server.CertPEM)
	if rt.serial[addrs[0]].Cmp(cur.SerialNumber) != 0 || rt.serial[addrs[1]].Cmp(cur.SerialNumber) != 0 || len(e.fake.Calls()) != 0 {
		t.Fatalf("after the restart: served %v %v, want %v; Swarm writes %v", rt.serial[addrs[0]], rt.serial[addrs[1]], cur.SerialNumber, e.fake.Calls())
	}

	// A HAProxy task restarts from the (old) secret: it gets the push.
	e.runAll()
	addrs = e.attachLB(20)
	first, _ := certs.ParseCert(old.Server.CertPEM)
	rt.serial[addrs[0]], rt.serial[addrs[1]] = first.SerialNumber, first.SerialNumber
	before := rt.pushCount()
	e.reconcile()
	if rt.pushCount() != before+2 || rt.serial[addrs[0]].Cmp(cur.SerialNumber) != 0 {
		t.Fatalf("restarted tasks not pushed: %d pushes, serving %v", rt.pushCount()-before, rt.serial[addrs[0]])
	}

	// Everything served, nothing changed: no Swarm write, no push.
	e.fake.ResetCalls()
	before = rt.pushCount()
	e.reconcile()
	if len(e.fake.Calls()) != 0 || rt.pushCount() != before {
		t.Fatalf("quiet pass: writes %v, pushes %d", e.fake.Calls(), rt.pushCount()-before)
	}

	// The service changes for another reason: it then moves to the current
	// certificate's secret, and the old one is pruned.
	e.fake.ResetCalls()
	e.apply("spec: {replicas: 1, loadBalancer: {replicas: 2, balance: leastconn}}\n")
	e.reconcile()
	calls := e.fake.Calls()
	if created := written(calls, "CreateSecret"); len(created) != 1 || !strings.HasPrefix(created[0], "iot-tls-") || !slices.Equal(written(calls, "UpdateService"), []string{"iot-lb"}) {
		t.Fatalf("service change: created %v updated %v", created, written(calls, "UpdateService"))
	}
	if removed := written(calls, "RemoveSecret"); len(removed) != 1 || !strings.HasPrefix(removed[0], "iot-tls-") {
		t.Fatalf("old certificate secret not pruned: %v", removed)
	}
}

func TestClusterControlNetworkMissingIsAnError(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.rec.ControlNetwork = "nope"
	e.rec.Runtime = &fakeRuntime{serial: map[string]*big.Int{}}
	e.apply("spec: {replicas: 1}\n")
	if _, err := e.rec.Reconcile(context.Background(), "iot"); err == nil || !strings.Contains(err.Error(), "control network nope not found") {
		t.Fatalf("err = %v", err)
	}
	if got := written(e.fake.Calls(), "CreateService"); len(got) != 0 {
		t.Fatalf("services created without the control network: %v", got)
	}
}

// spec.tls.certificateSecret and clientCASecret: HAProxy mounts the user's
// secrets as they are (the operator issues and pushes nothing), the status
// reports what HAProxy serves, and a missing secret is a condition.
func TestClusterUserCertificateAndClientAuth(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	rt.notAfter = time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	spec := "spec: {replicas: 1, loadBalancer: {replicas: 1}, tls: {certificateSecret: my-cert, clientAuth: required, clientCASecret: fleet-ca}}\n"
	e.apply(spec)
	if _, err := e.rec.Reconcile(context.Background(), "iot"); err != nil {
		t.Fatal(err)
	}
	d := meta.FindStatusCondition(e.cluster().Status.Conditions, api.ConditionDegraded)
	if d == nil || d.Reason != "MissingSecret" || !strings.Contains(d.Message, `"my-cert" named by spec.tls.certificateSecret`) {
		t.Fatalf("missing certificate secret: %+v", d)
	}
	if got := written(e.fake.Calls(), "CreateService"); slices.Contains(got, "iot-lb") {
		t.Fatalf("HAProxy created without its certificate: %v", got)
	}
	for _, n := range []string{"my-cert", "fleet-ca"} {
		if _, err := e.fake.CreateSecret(context.Background(), dswarm.SecretSpec{Annotations: dswarm.Annotations{Name: n}, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	e.reconcile()
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "loadbalancer"})
	var mounted []string
	for _, ref := range svcs[0].Spec.TaskTemplate.ContainerSpec.Secrets {
		mounted = append(mounted, ref.SecretName+"->"+ref.File.Name)
	}
	if !slices.Equal(mounted, []string{"my-cert->mqtts.pem", "fleet-ca->mqtts-client-ca.pem"}) {
		t.Fatalf("HAProxy secrets: %v", mounted)
	}
	if tls := written(e.fake.Calls(), "CreateSecret"); slices.ContainsFunc(tls, func(n string) bool { return strings.HasPrefix(n, "iot-tls-") }) {
		t.Fatalf("an operator certificate secret was made: %v", tls)
	}
	e.runAll()
	rt.serial[e.attachLB(30)[0]] = big.NewInt(0xabc)
	e.now = e.now.Add(time.Second)
	e.reconcile()
	c := e.cluster()
	cs := c.Status.Certificate
	if cs == nil || cs.Serial != "abc" || cs.NotAfter == nil || !cs.NotAfter.Time.Equal(rt.notAfter) || cs.Serving != "1/1" || rt.pushCount() != 0 {
		t.Fatalf("user certificate status: %+v, pushes %d", cs, rt.pushCount())
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		t.Fatalf("not Ready: %+v", c.Status.Conditions)
	}
}

// A CA rotation shows in the status, and at its switch the new server
// certificate is pushed: HAProxy is not restarted for it.
func TestClusterCARotationIsPushed(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	spec := "spec: {replicas: 1, loadBalancer: {replicas: 1}, tls: {caOverlap: 1h}}\n"
	e.apply(spec)
	e.reconcile()
	e.runAll()
	addrs := e.attachLB(40)
	first, _ := certs.ParseCert(e.material().Server.CertPEM)
	rt.serial[addrs[0]] = first.SerialNumber
	e.reconcile()
	o := e.store.Get(api.KindMqttCluster, "iot")
	e.now = e.now.Add(time.Minute)
	if _, _, err := e.store.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "iot", Spec: o.Spec,
		Annotations: map[string]string{credentials.RotateCAAnnotation: e.now.Format(time.RFC3339Nano)}}); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Second)
	res := e.reconcile()
	r := e.cluster().Status.CARotation
	if r == nil || r.Reason != "Requested" || r.SwitchAt == nil || !r.SwitchAt.Time.Equal(e.now.Truncate(time.Second).Add(time.Hour)) || rt.pushCount() != 0 {
		t.Fatalf("rotation status: %+v, pushes %d", r, rt.pushCount())
	}
	if res.RequeueAfter > time.Hour || res.RequeueAfter < time.Hour-time.Minute {
		t.Fatalf("requeue %v, want at the switch", res.RequeueAfter)
	}
	e.fake.ResetCalls()
	e.now = e.now.Add(time.Hour)
	e.reconcile()
	c := e.cluster()
	if c.Status.CARotation != nil || c.Status.Certificate.Reason != "CARotated" || rt.pushCount() != 1 || len(e.fake.Calls()) != 0 {
		t.Fatalf("after the switch: rotation %+v certificate %+v pushes %d writes %v", c.Status.CARotation, c.Status.Certificate, rt.pushCount(), e.fake.Calls())
	}
}

// With an encryption key, the stored credentials are sealed; credentials
// stored in clear before the key was set are sealed on the next pass,
// with no Swarm write.
func TestClusterCredentialsSealedAtRest(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.running("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	plain := e.store.Get(objects.KindCredentials, "iot").Spec
	if credentials.IsSealed(plain) {
		t.Fatal("sealed without a key")
	}
	sealer, err := credentials.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	e.objects.Sealer = sealer
	e.fake.ResetCalls()
	// The one-time migration (on becoming leader) seals the plain record.
	if err := e.rec.MigrateSealing(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	stored := e.store.Get(objects.KindCredentials, "iot").Spec
	if !credentials.Current(stored) || len(e.fake.Calls()) != 0 {
		t.Fatalf("sealed %v, Swarm writes %v", credentials.IsSealed(stored), e.fake.Calls())
	}
	m, err := sealer.Decode("iot", stored)
	if err != nil || m.Password == "" || strings.Contains(string(stored), m.Password) {
		t.Fatalf("decode: %v", err)
	}
	if c := e.cluster(); c.Status.CAFingerprint == "" || c.Status.Certificate == nil {
		t.Fatalf("status from sealed credentials: %+v", c.Status)
	}
	// Nothing changed: nothing written again.
	idx := e.store.Get(objects.KindCredentials, "iot").ModifyIndex
	e.reconcile()
	if e.store.Get(objects.KindCredentials, "iot").ModifyIndex != idx {
		t.Fatal("sealed credentials rewritten with no change")
	}
	// After the migration, a plain record (as the attacker's packet
	// carried) is refused: not used, not sealed, the cluster Degraded, and
	// a second migration run does not launder it.
	if _, _, err := e.store.Apply(store.ApplyRequest{Kind: objects.KindCredentials, Name: "iot", Spec: plain}); err != nil {
		t.Fatal(err)
	}
	if err := e.rec.MigrateSealing(context.Background()); err != nil {
		t.Fatal(err)
	}
	if credentials.IsSealed(e.store.Get(objects.KindCredentials, "iot").Spec) {
		t.Fatal("a plain record written after the migration was sealed")
	}
	e.fake.ResetCalls()
	if _, err := e.rec.Reconcile(context.Background(), "iot"); !errors.Is(err, credentials.ErrUnsealed) {
		t.Fatalf("reconcile with a plain record: %v", err)
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("a plain record reached Swarm: %v", calls)
	}
	if d := meta.FindStatusCondition(e.cluster().Status.Conditions, api.ConditionDegraded); d == nil || d.Status != "True" {
		t.Fatalf("not Degraded: %+v", d)
	}
}

// spec.tls.issuerSecret: a signer job (the operator's image, the issuer
// secret mounted) signs the operator's request; its log's certificate is
// taken (checked against the key and the issuer), the job removed; the CA
// bundle is the issuer's certificate.
func TestClusterIssuerSignsThroughAJob(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.rec.SignerImage = "swarm-mqtt/operator:test"
	issuerCA, err := certs.IssueCA("corp", certs.ECDSAP256, 24*time.Hour, e.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.fake.CreateSecret(context.Background(), dswarm.SecretSpec{Annotations: dswarm.Annotations{Name: "corp-ca"}, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	e.apply("spec: {replicas: 1, loadBalancer: {replicas: 1}, tls: {issuerSecret: corp-ca}}\n")
	res := e.reconcile()
	jobs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: issuer.ComponentSigner})
	if len(jobs) != 1 || jobs[0].Spec.Mode.Replicated == nil || *jobs[0].Spec.Mode.Replicated.Replicas != 1 || jobs[0].Spec.TaskTemplate.RestartPolicy.Condition != dswarm.RestartPolicyConditionNone || jobs[0].Spec.TaskTemplate.ContainerSpec.Secrets[0].SecretName != "corp-ca" || res.RequeueAfter > time.Second {
		t.Fatalf("signer job: %+v, requeue %v", jobs, res.RequeueAfter)
	}
	if d := meta.FindStatusCondition(e.cluster().Status.Conditions, api.ConditionDegraded); d == nil || d.Reason != "Signing" || d.Status != "False" {
		t.Fatalf("while signing: %+v", d)
	}
	// The job runs: what `mqtt-operator sign` prints, in its log.
	m := e.material()
	csr := m.Issuer.PendingCSR
	out, err := certs.SignCSR(append(append([]byte{}, issuerCA.CertPEM...), issuerCA.KeyPEM...), csr, 24*time.Hour, e.now)
	if err != nil {
		t.Fatal(err)
	}
	var lines []swarm.LogLine
	for _, l := range strings.Split(credentials.SignedBegin+"\n"+string(out)+credentials.SignedEnd, "\n") {
		lines = append(lines, swarm.LogLine{Time: e.now, Text: l})
	}
	e.fake.Logs = map[string][]swarm.LogLine{jobs[0].Spec.Name: lines}
	e.fake.TaskList = []dswarm.Task{{ID: "job-t", ServiceID: jobs[0].ID, Annotations: dswarm.Annotations{Labels: jobs[0].Spec.Labels},
		Status: dswarm.TaskStatus{State: dswarm.TaskStateComplete}, Spec: jobs[0].Spec.TaskTemplate}}
	e.reconcile()
	m = e.material()
	leaf, err := certs.ParseCert(m.Server.CertPEM)
	if err != nil || m.Issuer == nil || m.Issuer.PendingCSR != nil {
		t.Fatalf("after the job: %v %+v", err, m.Issuer)
	}
	ca, _ := certs.ParseCert(issuerCA.CertPEM)
	if err := leaf.CheckSignatureFrom(ca); err != nil || m.Reason != "Missing" {
		t.Fatalf("signed by the issuer: %v, reason %s", err, m.Reason)
	}
	if jobs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: issuer.ComponentSigner}); len(jobs) != 0 {
		t.Fatalf("job left: %v", jobs)
	}
	if string(credentials.CABundle(m)) != string(issuerCA.CertPEM) {
		t.Fatal("the CA bundle is not the issuer's certificate")
	}
	if got := e.cluster().Status.CAFingerprint; got != certs.Fingerprint(ca) {
		t.Fatalf("status.caFingerprint %s, want the issuer's %s", got, certs.Fingerprint(ca))
	}
	// Nothing due: no new job.
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "CreateService"); len(got) != 0 {
		t.Fatalf("a new job with nothing due: %v", got)
	}
	// A log whose certificate is for another key is refused.
	other, _ := certs.IssueServer(issuerCA, certs.ServerRequest{CommonName: "x", Duration: time.Hour}, e.now)
	if _, _, err := issuer.SignedOutput([]swarm.LogLine{{Text: credentials.SignedBegin}, {Text: string(other.CertPEM) + string(issuerCA.CertPEM)}, {Text: credentials.SignedEnd}}, m.Server.KeyPEM); err == nil {
		t.Fatal("a certificate for another key was taken")
	}
}

// TestClusterStoredObjectsNeverTakeTheOperatorDown: an object that reached
// the store without admission (as one injected through an open raft port
// did) is checked again before it is reconciled: one that does not
// validate, or does not decode, is Degraded (InvalidSpec) and nothing is
// written to Swarm; a panic while reconciling is recovered, Degraded
// (InternalError), and the other clusters are reconciled as usual.
func TestClusterStoredObjectsNeverTakeTheOperatorDown(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"invalid image and replicas": `{"image": "attacker/EVIL:latest", "replicas": -4}`,
		"does not decode":            `{"replicas": "many"}`,
		"no defaults at all":         `{"loadBalancer": {"ports": {"mqtt": 99999}}}`,
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newClusterEnv(t)
			if _, _, err := e.store.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "iot", Spec: []byte(spec)}); err != nil {
				t.Fatal(err)
			}
			res, err := e.rec.Reconcile(context.Background(), "iot")
			if err != nil || res.RequeueAfter != 0 {
				t.Fatalf("reconcile of an invalid stored spec: %v %v", res, err)
			}
			if calls := e.fake.Calls(); len(calls) != 0 {
				t.Fatalf("an invalid stored spec reached Swarm: %v", calls)
			}
			var st api.MqttClusterStatus
			_ = json.Unmarshal(e.store.Get(api.KindMqttCluster, "iot").Status, &st)
			d := meta.FindStatusCondition(st.Conditions, api.ConditionDegraded)
			if d == nil || d.Status != "True" || d.Reason != "InvalidSpec" || meta.IsStatusConditionTrue(st.Conditions, api.ConditionReady) {
				t.Fatalf("conditions: %+v", st.Conditions)
			}
		})
	}

	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		e := newClusterEnv(t)
		e.apply("spec: {}\n")
		e.withControlNetwork()
		e.rec.Runtime = panicRuntime{}
		e.reconcile()
		e.runAll()
		e.attachLB(10)
		_, err := e.rec.Reconcile(context.Background(), "iot")
		if !errors.Is(err, ErrPanicked) {
			t.Fatalf("reconcile with a panicking dependency: %v", err)
		}
		c := e.cluster()
		if d := meta.FindStatusCondition(c.Status.Conditions, api.ConditionDegraded); d == nil || d.Reason != "InternalError" || strings.Contains(d.Message, "runtime") {
			t.Fatalf("conditions: %+v", c.Status.Conditions)
		}
	})
}

// panicRuntime panics on every call, as a nil dereference in a
// reconciler would.
type panicRuntime struct{ cluster.CertRuntime }

func (panicRuntime) ServedCertificate(context.Context, string) (loadbalancer.Served, error) {
	var m map[string]*loadbalancer.Served
	return *m["x"], nil
}

// TestClusterHAProxyRuntimeAPIBehindMutualTLS: with the operator's
// identity and a control network, HAProxy's runtime API listener gets an
// admin certificate of its own (from the control-plane CA, kept in the
// sealed material) and the control-plane CA to check the operator's
// client certificate; the configuration says so; a second pass writes
// nothing; the admin key never reaches the status.
func TestClusterHAProxyRuntimeAPIBehindMutualTLS(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	caPEM, _ := tlsutil.NewCA("control", e.now.AddDate(0, -1, 0))
	ca, _ := tlsutil.ParseCA(caPEM)
	node, err := tlsutil.NewNode(ca, tlsutil.Identity{ID: "op"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.rec.Identity = node
	e.withControlNetwork()
	e.running("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	m := e.material()
	if m.LBAdmin == nil || !ca.ComponentValid(tlsutil.Admin, "iot", nil, m.LBAdmin.CertPEM, e.now, 0) {
		t.Fatal("no valid admin certificate in the material")
	}
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "loadbalancer"})
	files := map[string]bool{}
	for _, ref := range svcs[0].Spec.TaskTemplate.ContainerSpec.Secrets {
		files[ref.File.Name] = true
	}
	if !files[loadbalancer.AdminCertFile] || !files[loadbalancer.ControlCAFile] {
		t.Fatalf("HAProxy's secrets: %v", files)
	}
	confs, _ := e.fake.Configs(context.Background(), nil)
	found := false
	for _, cf := range confs {
		found = found || strings.Contains(string(cf.Spec.Data), "ca-file "+loadbalancer.ControlCAPath+" verify required")
	}
	if !found {
		t.Fatal("the HAProxy configuration has no mutual TLS on the runtime API")
	}
	e.fake.ResetCalls()
	e.reconcile()
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("a second pass wrote: %v", calls)
	}
	if b, _ := json.Marshal(e.cluster().Status); strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatal("a key in the status")
	}
}

// A broker's log is read from its current task's start, not from the
// service's beginning (a read over a service's whole history can hang in
// Swarm), and the hub's log still shows the bridges.
func TestClusterReadsBrokerLogsFromTheCurrentTask(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {tls: {dnsNames: [mqtt.example.com]}, loadBalancer: {replicas: 1}}\n")
	e.reconcile()
	e.runAll()
	created := e.now.Add(-55 * time.Second)
	for i := range e.fake.TaskList {
		e.fake.TaskList[i].Meta.CreatedAt = created
	}
	e.reconcile()
	if got := e.fake.LogsSince["iot-broker-0"]; !got.Equal(created.Add(-time.Second)) {
		t.Fatalf("broker 0's log read since %v, want its task's creation %v less a second", got, created)
	}
	c := e.cluster()
	if c.Status.Hub != "iot-broker-0" || c.Status.Brokers[1].Bridge == nil || !c.Status.Brokers[1].Bridge.Connected {
		t.Fatalf("the bridges were not read: hub %q, broker 1 %+v", c.Status.Hub, c.Status.Brokers[1].Bridge)
	}
}

// After node churn Swarm may read a service's logs from only some nodes
// ("incomplete log stream": a node that ran an earlier task is not
// available). The lines of the nodes that answered still count: the
// cluster is Ready with its bridges, not stuck "not bridged" for good (a
// soak found it stuck so after a node restart).
func TestClusterUsesAnIncompleteLogStream(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {tls: {dnsNames: [mqtt.example.com]}, loadBalancer: {replicas: 1}}\n")
	e.reconcile()
	e.runAll()
	e.fake.LogsErr = map[string]error{"iot-broker-0": fmt.Errorf("logs of service iot-broker-0: %w: node n3 is not available", swarm.ErrIncompleteLogs)}
	e.reconcile()
	e.bridgedAndReady("the bridges in an incomplete stream were not read", 1)
}

// bridgedAndReady: broker i's bridge is up under hub broker 0, and the
// cluster is Ready.
func (e *clusterEnv) bridgedAndReady(what string, i int) {
	e.t.Helper()
	c := e.cluster()
	if b := c.Status.Brokers[i].Bridge; c.Status.Hub != "iot-broker-0" || b == nil || !b.Connected {
		e.t.Fatalf("%s: hub %q, broker %d %+v", what, c.Status.Hub, i, b)
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		e.t.Fatalf("%s: not Ready: %+v", what, meta.FindStatusCondition(c.Status.Conditions, api.ConditionReady))
	}
}

// A bridge's "connected" line that Swarm could not stream when the hub's
// log was read (its node cut off) is older than the tracker's cursor once
// it can be read: the tracker, rebuilt from the current tasks' logs while
// a broker shows no bridge (at most every 30 s), finds it, and the cluster
// is Ready again instead of "not bridged to the hub yet" for good.
func TestClusterRereadsBrokerLogsWhileABridgeLooksDown(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {tls: {dnsNames: [mqtt.example.com]}, loadBalancer: {replicas: 1}}\n")
	e.reconcile()
	e.runAll()
	hub := e.fake.Logs["iot-broker-0"]
	if len(hub) != 2 {
		t.Fatalf("hub log: %v", hub)
	}
	// Broker 2's line is older than broker 1's, and missing from the first
	// read.
	missed := hub[1]
	missed.Time = hub[0].Time.Add(-2 * time.Second)
	e.fake.Logs["iot-broker-0"] = hub[:1]
	e.reconcile()
	if c := e.cluster(); c.Status.Brokers[2].Bridge != nil && c.Status.Brokers[2].Bridge.Connected {
		t.Fatalf("broker 2 bridged without its line: %+v", c.Status.Brokers[2].Bridge)
	}
	e.fake.Logs["iot-broker-0"] = []swarm.LogLine{missed, hub[0]}
	e.reconcile()
	if c := e.cluster(); c.Status.Brokers[2].Bridge != nil && c.Status.Brokers[2].Bridge.Connected {
		t.Fatal("a line older than the cursor was read without a relist: the test proves nothing")
	}
	e.now = e.now.Add(31 * time.Second)
	e.reconcile()
	e.bridgedAndReady("broker 2's bridge not found by the relist", 2)
}
