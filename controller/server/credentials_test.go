package server_test

import (
	"encoding/json"
	"fmt"

	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// createCluster applies a minimal cluster through the API.
func createCluster(t *testing.T, in *servertest.Instance, name string) {
	t.Helper()
	body := []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: " + name + "}\n")
	if code, b := do(t, in.URL, call{method: http.MethodPost, path: server.BasePath, token: tok, body: body}); code != http.StatusCreated {
		t.Fatalf("create %s: %d %s", name, code, b)
	}
}

// storeCredentials stores what the operator would issue for a defaulted
// cluster, as its first reconcile does.
func storeCredentials(t *testing.T, in *servertest.Instance, name string) credentials.Material {
	t.Helper()
	c := &api.MqttCluster{}
	c.Name = name
	api.Default(c, api.BuiltinDefaults())
	m, _, _, err := credentials.Next(nil, c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(m)
	if _, _, err := in.Store.Apply(store.ApplyRequest{Kind: objects.KindCredentials, Name: name, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCAAndCredentialsRoutes(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, "")
	base := server.BasePath + "/iot"
	createCluster(t, in, "iot")
	// Before the operator issued anything: 404 with a reason.
	code, b := do(t, in.URL, call{method: http.MethodGet, path: base + "/ca", token: tok})
	if code != http.StatusNotFound || !strings.Contains(status(t, b).Message, "not issued yet") {
		t.Fatalf("ca before issue: %d %s", code, b)
	}
	m := storeCredentials(t, in, "iot")
	// Token required.
	if code, _ := do(t, in.URL, call{method: http.MethodGet, path: base + "/credentials"}); code != http.StatusUnauthorized {
		t.Fatalf("credentials without a token: %d", code)
	}
	code, b = do(t, in.URL, call{method: http.MethodGet, path: base + "/ca", token: tok})
	var ca server.CA
	if code != http.StatusOK || json.Unmarshal(b, &ca) != nil || ca.Certificate != string(m.CA.CertPEM) || ca.Fingerprint == "" {
		t.Fatalf("ca: %d %s", code, b)
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatal("the CA route served a private key")
	}
	code, b = do(t, in.URL, call{method: http.MethodGet, path: base + "/credentials", token: tok})
	var cr server.Credentials
	if code != http.StatusOK || json.Unmarshal(b, &cr) != nil || cr.Username != m.Username || cr.Password != m.Password {
		t.Fatalf("credentials: %d %s", code, b)
	}
	// The internal kind is never listed as a cluster.
	code, b = do(t, in.URL, call{method: http.MethodGet, path: server.BasePath, token: tok})
	var list api.MqttClusterList
	if code != http.StatusOK || json.Unmarshal(b, &list) != nil || len(list.Items) != 1 || strings.Contains(string(b), "PRIVATE") {
		t.Fatalf("list: %s", b)
	}
}

func TestStoreCollectorReportsBridgesAndBrokers(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, "")
	createCluster(t, in, "iot")
	st := api.MqttClusterStatus{Brokers: []api.BrokerStatus{
		{Name: "iot-broker-0", State: "running"},
		{Name: "iot-broker-1", State: "running", Bridge: &api.BridgeStatus{Parent: "iot-broker-0", Connected: true}},
		{Name: "iot-broker-2", State: "pending", Bridge: &api.BridgeStatus{Parent: "iot-broker-0"}},
	}}
	b, _ := json.Marshal(st)
	if _, _, err := in.Store.UpdateStatus(store.StatusRequest{Kind: api.KindMqttCluster, Name: "iot", Status: b}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := server.New(server.Config{Store: in.Store, Token: "t", Registry: reg}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP mqttoperator_bridge_connected 1 if the broker's bridge toward the hub is up, by the broker's parent.
# TYPE mqttoperator_bridge_connected gauge
mqttoperator_bridge_connected{broker="iot-broker-1",cluster="iot",parent="iot-broker-0"} 1
mqttoperator_bridge_connected{broker="iot-broker-2",cluster="iot",parent="iot-broker-0"} 0
# HELP mqttoperator_brokers Brokers by cluster: desired (spec) and running (status).
# TYPE mqttoperator_brokers gauge
mqttoperator_brokers{cluster="iot",state="desired"} 3
mqttoperator_brokers{cluster="iot",state="running"} 2
`
	if err := promtestutil.GatherAndCompare(reg, strings.NewReader(want), "mqttoperator_bridge_connected", "mqttoperator_brokers"); err != nil {
		t.Fatal(err)
	}
}

func TestRenewCertificateRouteAndExpiryMetrics(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, "")
	path := server.BasePath + "/iot/certificate/renew"
	if code, _ := do(t, in.URL, call{method: http.MethodPost, path: path, token: tok}); code != http.StatusNotFound {
		t.Fatalf("renew of a missing cluster: %d", code)
	}
	createCluster(t, in, "iot")
	if code, _ := do(t, in.URL, call{method: http.MethodPost, path: path}); code != http.StatusUnauthorized {
		t.Fatalf("renew without a token: %d", code)
	}
	before := in.Store.Get(api.KindMqttCluster, "iot")
	code, b := do(t, in.URL, call{method: http.MethodPost, path: path, token: tok})
	var rr server.RenewResponse
	if code != http.StatusOK || json.Unmarshal(b, &rr) != nil || rr.Name != "iot" {
		t.Fatalf("renew: %d %s", code, b)
	}
	after := in.Store.Get(api.KindMqttCluster, "iot")
	if after.Annotations[credentials.RenewAnnotation] != rr.RequestedAt || after.Generation != before.Generation || string(after.Spec) != string(before.Spec) {
		t.Fatalf("renew must only annotate: %+v", after)
	}
	// Applying the same file again is "unchanged" and keeps the request.
	body := []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: iot}\n")
	if code, b := do(t, in.URL, call{method: http.MethodPost, path: server.BasePath, token: tok, body: body}); code != http.StatusOK || !strings.Contains(string(b), `"unchanged"`) {
		t.Fatalf("re-apply: %d %s", code, b)
	}
	if again := in.Store.Get(api.KindMqttCluster, "iot"); again.ModifyIndex != after.ModifyIndex || again.Annotations[credentials.RenewAnnotation] != rr.RequestedAt {
		t.Fatalf("re-apply after a renew request: index %d -> %d, annotations %v", after.ModifyIndex, again.ModifyIndex, again.Annotations)
	}

	// Expiry of the CAs (the store; the next one during a CA rotation) and
	// of the server certificate (the status, which covers a certificate
	// the user supplies).
	m := storeCredentials(t, in, "iot")
	next, err := certs.IssueCA("iot", certs.ECDSAP256, 20*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.NextCA, m.NextCASince = &next, time.Now()
	spec, _ := json.Marshal(m)
	if _, _, err := in.Store.Apply(store.ApplyRequest{Kind: objects.KindCredentials, Name: "iot", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	notAfter := metav1.NewTime(time.Unix(1803557573, 0))
	st, _ := json.Marshal(api.MqttClusterStatus{Certificate: &api.CertificateStatus{Serial: "1", NotAfter: &notAfter}})
	if _, _, err := in.Store.UpdateStatus(store.StatusRequest{Kind: api.KindMqttCluster, Name: "iot", Status: st}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := server.New(server.Config{Store: in.Store, Token: "t", Registry: reg}); err != nil {
		t.Fatal(err)
	}
	caCert, _ := certs.ParseCert(m.CA.CertPEM)
	nextCert, _ := certs.ParseCert(next.CertPEM)
	want := fmt.Sprintf(`
# HELP mqttoperator_certificate_expiration_timestamp_seconds When a cluster's certificate expires (kind: server, ca, next-ca during a CA rotation), Unix seconds.
# TYPE mqttoperator_certificate_expiration_timestamp_seconds gauge
mqttoperator_certificate_expiration_timestamp_seconds{cluster="iot",kind="ca"} %d
mqttoperator_certificate_expiration_timestamp_seconds{cluster="iot",kind="next-ca"} %d
mqttoperator_certificate_expiration_timestamp_seconds{cluster="iot",kind="server"} 1803557573
`, caCert.NotAfter.Unix(), nextCert.NotAfter.Unix())
	if err := promtestutil.GatherAndCompare(reg, strings.NewReader(want), "mqttoperator_certificate_expiration_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestStoreCollectorReportsSyncConditionsAndLeader(t *testing.T) {
	t.Parallel()
	in := servertest.Start(t, "")
	createCluster(t, in, "iot")
	at := metav1.NewTime(time.Unix(1_700_000_000, 0))
	st := api.MqttClusterStatus{Conditions: []metav1.Condition{
		{Type: api.ConditionReady, Status: "True", Reason: "AllRunning"},
		{Type: api.ConditionSyncHealthy, Status: "False", Reason: "NotSynced"},
		{Type: api.ConditionProgressing, Status: "Unknown", Reason: "Starting"},
	}, Sync: &api.SyncStatus{Brokers: []api.BrokerSyncStatus{{
		Name: "iot-broker-0", Source: "n1",
		Targets: []api.SyncTargetStatus{
			{Node: "n2", LastSync: &at},                                         // current
			{Node: "n3", LastSync: &at, Pending: true, Error: "rsync: refused"}, // behind, failing
			{Node: "n4", Pending: true},                                         // never synced
		},
	}}}}
	b, _ := json.Marshal(st)
	if _, _, err := in.Store.UpdateStatus(store.StatusRequest{Kind: api.KindMqttCluster, Name: "iot", Status: b}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := server.New(server.Config{Store: in.Store, Token: "t", Registry: reg}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP mqttoperator_sync_failing 1 if the last sync of a broker's data to a target failed (spec.sync).
# TYPE mqttoperator_sync_failing gauge
mqttoperator_sync_failing{broker="iot-broker-0",cluster="iot",target="n2"} 0
mqttoperator_sync_failing{broker="iot-broker-0",cluster="iot",target="n3"} 1
mqttoperator_sync_failing{broker="iot-broker-0",cluster="iot",target="n4"} 0
# HELP mqttoperator_sync_last_success_timestamp_seconds When the last successful sync of a broker's data to a target began, Unix seconds (spec.sync).
# TYPE mqttoperator_sync_last_success_timestamp_seconds gauge
mqttoperator_sync_last_success_timestamp_seconds{broker="iot-broker-0",cluster="iot",target="n2"} 1.7e+09
mqttoperator_sync_last_success_timestamp_seconds{broker="iot-broker-0",cluster="iot",target="n3"} 1.7e+09
`
	want += `
# HELP mqttoperator_cluster_condition 1 if a cluster's condition (Ready, Progressing, Degraded, SyncHealthy) is True, 0 if False.
# TYPE mqttoperator_cluster_condition gauge
mqttoperator_cluster_condition{cluster="iot",reason="AllRunning",type="Ready"} 1
mqttoperator_cluster_condition{cluster="iot",reason="NotSynced",type="SyncHealthy"} 0
# HELP mqttoperator_raft_known_leader 1 if this operator knows a raft leader (itself or another).
# TYPE mqttoperator_raft_known_leader gauge
mqttoperator_raft_known_leader 1
`
	if err := promtestutil.GatherAndCompare(reg, strings.NewReader(want), "mqttoperator_sync_failing", "mqttoperator_sync_last_success_timestamp_seconds", "mqttoperator_cluster_condition", "mqttoperator_raft_known_leader"); err != nil {
		t.Fatal(err)
	}
	// Age: 0 for the current copy; now - lastSync for the one behind.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ages := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mqttoperator_sync_age_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" {
					ages[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	behind := time.Since(at.Time).Seconds()
	if len(ages) != 2 || ages["n2"] != 0 || ages["n3"] < behind-5 || ages["n3"] > behind+5 {
		t.Fatalf("sync ages: %v, want n2 0 and n3 about %.0f", ages, behind)
	}
}
