//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// promQuery runs an instant query; it returns the number of series, or
// the query's error.
func promQuery(base, q string) (int, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %q: %s", q, r.Error)
	}
	return len(r.Data.Result), nil
}

// TestMonitoringStack (make up MONITORING=1, run by hack/e2e.sh): the alert
// rules pass their promtool tests, Prometheus finds and scrapes every
// target (operator, HAProxy, broker exporter, node-exporter, container
// exporter), every broker and load balancer has per-container figures, and every
// query of the Grafana dashboard runs and returns data.
func TestMonitoringStack(t *testing.T) {
	base := os.Getenv("PROMETHEUS_URL")
	if base == "" {
		t.Fatal("PROMETHEUS_URL is not set: hack/e2e.sh deploys the monitoring stack (MONITORING=1)")
	}
	// Behind basic auth, with no lifecycle endpoint.
	u, err := url.Parse(base)
	if err != nil || u.User == nil {
		t.Fatalf("PROMETHEUS_URL carries no credentials: %v", err)
	}
	anon := *u
	anon.User = nil
	for _, path := range []string{"/-/ready", "/api/v1/targets", "/metrics"} {
		resp, err := http.Get(anon.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with no credentials: %d", path, resp.StatusCode)
		}
	}
	wrong := anon
	wrong.User = url.UserPassword("prometheus", "wrong")
	if resp, err := http.Get(wrong.String() + "/-/ready"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a wrong password: %d", resp.StatusCode)
		}
	}
	for _, path := range []string{"/-/quit", "/-/reload"} {
		resp, err := http.Post(base+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Errorf("POST %s: %d: the lifecycle endpoint is on", path, resp.StatusCode)
		}
	}
	dir, _ := filepath.Abs("../../charts/monitoring")
	for _, args := range [][]string{
		{"check", "rules", "rules.yml", "alerts.yml"},
		{"test", "rules", "rules_test.yml", "alerts_test.yml"},
	} {
		out, err := exec.Command("docker", append([]string{"run", "--rm", "-v", dir + ":/m:ro", "-w", "/m", "--entrypoint", "promtool", "swarm-mqtt/prometheus:local"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
	// Every target up, at least one per job.
	want := []string{"containers", "haproxy", "mosquitto", "mqtt-operator", "node", "prometheus"}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := http.Get(base + "/api/v1/targets?state=active")
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string
					Health    string
					LastError string
					ScrapeURL string
				}
			}
		}
		var why []string
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			jobs := map[string]bool{}
			for _, tg := range r.Data.ActiveTargets {
				jobs[tg.Labels["job"]] = true
				if tg.Health != "up" {
					why = append(why, fmt.Sprintf("%s %s: %s %s", tg.Labels["job"], tg.ScrapeURL, tg.Health, tg.LastError))
				}
			}
			for _, j := range want {
				if !jobs[j] {
					why = append(why, "no target for job "+j)
				}
			}
		} else {
			why = append(why, err.Error())
		}
		if len(why) == 0 {
			t.Logf("%d targets, all up", len(r.Data.ActiveTargets))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not all up: %s", strings.Join(why, "; "))
		}
		time.Sleep(time.Second)
	}
	// Per-container figures (the container exporter): every quickstart
	// broker and its load balancer, and the operator itself, have a
	// working set and used CPU.
	for q, n := range map[string]int{
		`container_memory_working_set_bytes{cluster="quickstart",component="broker"} > 0`:       3,
		`container_memory_working_set_bytes{cluster="quickstart",component="loadbalancer"} > 0`: 1,
		`container_cpu_usage_seconds_total{cluster="quickstart",component="broker"} > 0`:        3,
		`container_network_receive_bytes_total{cluster="quickstart",component="broker"} > 0`:    3,
		`container_memory_working_set_bytes{service="mqtt-operator_operator"} > 0`:              1,
	} {
		eventually(t, fmt.Sprintf("%d series of %s", n, q), time.Minute, func() error {
			got, err := promQuery(base, q)
			if err != nil {
				t.Fatal(err)
			}
			if got != n {
				return fmt.Errorf("%d series, want %d", got, n)
			}
			return nil
		})
	}
	// Traffic for the message panels.
	e := quickstart(t)
	for i := 0; i < 5; i++ {
		if err := publishOnce(e, fmt.Sprintf("monitoring-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every panel's queries run; each returns series (rates need two
	// scrapes). The sync panel needs spec.sync on a Swarm of two nodes or
	// more: on this one-node Swarm its query must run, and may be empty.
	panels := testutil.DashboardPanels(t, "../..")
	if len(panels) < 8 {
		t.Fatalf("dashboard: %d panels", len(panels))
	}
	vars := strings.NewReplacer("$cluster", ".*", "$__rate_interval", "1m")
	titles := []string{}
	for _, p := range panels {
		titles = append(titles, p.Title)
		for _, tg := range p.Targets {
			q := vars.Replace(tg.Expr)
			deadline := time.Now().Add(2 * time.Minute)
			for {
				n, err := promQuery(base, q)
				if err != nil {
					t.Fatalf("panel %q: %v", p.Title, err)
				}
				if n > 0 || p.Requires == "sync" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("panel %q: %s returned no series", p.Title, q)
				}
				time.Sleep(2 * time.Second)
			}
		}
	}
	for _, must := range []string{"Connections", "Messages/s", "Certificate expiry", "Raft leader", "Broker data sync age"} {
		if !slices.Contains(titles, must) {
			t.Errorf("the dashboard has no %q panel", must)
		}
	}
	// The spin alarm: the leader loop does not spin. The store's watch says
	// what changed, so a pass's own writes (status, events, credentials)
	// wake nothing; before it did, a pass writing something new every time
	// looped (28 passes a second once). A quiet cluster is reconciled on
	// events, its polls and the resync: far under 5 passes a second.
	r := `sum(rate(mqttoperator_reconcile_total[1m]))`
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(r))
	if err != nil {
		t.Fatal(err)
	}
	var rate struct {
		Data struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&rate)
	resp.Body.Close()
	if err != nil || len(rate.Data.Result) != 1 {
		t.Fatalf("%s: no result (%v)", r, err)
	}
	// A value that does not parse fails: it must never read as 0/s.
	raw, ok := rate.Data.Result[0].Value[1].(string)
	perSecond, perr := strconv.ParseFloat(raw, 64)
	if !ok || perr != nil || math.IsNaN(perSecond) {
		t.Fatalf("%s: value %v does not parse as a rate (%v)", r, rate.Data.Result[0].Value[1], perr)
	}
	t.Logf("reconcile passes over the last minute: %.2f/s", perSecond)
	if perSecond > 5 {
		t.Fatalf("the leader loop runs %.1f passes a second: something it writes wakes it again", perSecond)
	}
	// The rules are loaded and evaluate.
	resp, err = http.Get(base + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct{ Name, Health, LastError string }
			}
		}
	}
	_ = json.NewDecoder(resp.Body).Decode(&rules)
	count := 0
	for _, g := range rules.Data.Groups {
		for _, r := range g.Rules {
			count++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
	}
	if count < 7 {
		t.Fatalf("%d alert rules loaded, want 7", count)
	}
}

// promValue runs an instant query at time at (zero: now) and returns the
// first series' value; a value that does not parse is an error, never 0.
func promValue(base, q string, at time.Time) (float64, int, error) {
	u := base + "/api/v1/query?query=" + url.QueryEscape(q)
	if !at.IsZero() {
		u += "&time=" + strconv.FormatInt(at.Unix(), 10)
	}
	resp, err := http.Get(u)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Error string
		Data          struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, 0, err
	}
	if r.Status != "success" {
		return 0, 0, fmt.Errorf("query %q: %s", q, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, 0, nil
	}
	raw, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil || math.IsNaN(v) {
		return 0, len(r.Data.Result), fmt.Errorf("query %q: value %v does not parse", q, r.Data.Result[0].Value[1])
	}
	return v, len(r.Data.Result), nil
}

// TestMetricsOutliveThePrometheusVolume: every sample also goes to InfluxDB
// (remote_write, HTTPS with the control-plane CA, a password); with
// Prometheus stopped, its volume removed and Prometheus started again, a
// query of a time before the restart — which the new, empty local storage
// cannot hold — is answered from InfluxDB (remote_read).
func TestMetricsOutliveThePrometheusVolume(t *testing.T) {
	base := os.Getenv("PROMETHEUS_URL")
	if base == "" {
		t.Fatal("PROMETHEUS_URL is not set: hack/e2e.sh deploys the monitoring stack (MONITORING=1)")
	}
	const svc = "mqtt-monitoring_prometheus"
	// A moment whose samples exist, and every sample up to it sent.
	var mark time.Time
	eventually(t, "remote write sending the samples of a moment with the operator up", 2*time.Minute, func() error {
		n, c, err := promValue(base, `count(up{job="mqtt-operator"} == 1)`, time.Time{})
		sent, _, err2 := promValue(base, `min(prometheus_remote_storage_queue_highest_sent_timestamp_seconds)`, time.Time{})
		failed, _, err3 := promValue(base, `sum(prometheus_remote_storage_samples_failed_total)`, time.Time{})
		if err = errors.Join(err, err2, err3); err != nil {
			t.Fatal(err)
		}
		if failed > 0 {
			t.Fatalf("%v samples failed to reach InfluxDB", failed)
		}
		if c > 0 && n > 0 && mark.IsZero() {
			// Just after a sample said up: 15 s earlier (as this test
			// had it) can fall in a restart of the operator by an earlier
			// test, and read 0.
			mark = time.Now()
		}
		if mark.IsZero() || sent < float64(mark.Unix()+30) {
			return fmt.Errorf("highest sent %.0f, mark %v", sent, mark)
		}
		return nil
	})
	// The operator's own target was up at the mark. (Compared as a value,
	// not a series count: InfluxDB may return a target's samples as more
	// series than Prometheus merged them into.)
	before, _, err := promValue(base, `max(up{job="mqtt-operator"})`, mark)
	if err != nil || before != 1 {
		t.Fatalf("the operator target not up at %s before the restart (%v, %v)", mark, before, err)
	}

	docker(t, "service", "scale", "--detach", svc+"=0")
	eventually(t, "Prometheus stopped", time.Minute, func() error {
		if docker(t, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+svc) != "" {
			exec.Command("docker", "container", "prune", "-f", "--filter", "label=com.docker.swarm.service.name="+svc).Run()
			return errStr("its container is still there")
		}
		return nil
	})
	docker(t, "volume", "rm", svc)
	docker(t, "service", "scale", "--detach", svc+"=1")
	eventually(t, "Prometheus ready again", 2*time.Minute, func() error {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errStr(resp.Status)
		}
		return nil
	})
	// The local storage starts after the restart: nothing of the mark.
	// (Asked of the TSDB itself: a query would merge in what remote_read
	// returns.)
	eventually(t, "the new local storage's first samples", time.Minute, func() error {
		resp, err := http.Get(base + "/api/v1/status/tsdb")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				HeadStats struct {
					NumSeries int   `json:"numSeries"`
					MinTime   int64 `json:"minTime"`
				} `json:"headStats"`
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		h := r.Data.HeadStats
		if h.NumSeries == 0 {
			return errStr("no local series yet")
		}
		if h.MinTime <= mark.UnixMilli() {
			t.Fatalf("the new local storage holds samples from %d ms, before the mark %d ms: the volume was not removed", h.MinTime, mark.UnixMilli())
		}
		return nil
	})
	var after float64
	eventually(t, "the samples before the restart, from InfluxDB", time.Minute, func() error {
		v, n, err := promValue(base, `max(up{job="mqtt-operator"})`, mark)
		if err != nil {
			return err
		}
		if n == 0 {
			return errStr("no series at the mark")
		}
		after = v
		return nil
	})
	if after != before {
		t.Fatalf("the operator target at the mark: up %v before the restart, %v read back", before, after)
	}
	t.Logf("the samples of %s read back from InfluxDB after Prometheus's volume was removed (the operator target up: %v)", mark.Format(time.RFC3339), after)
}

// TestInfluxDBTakesItsPasswordFromTheSecret: the InfluxDB image on one
// volume, started with one password and then with another (a fresh
// install's .local on a machine whose volume an earlier install made, or a
// rotated secret): the second start serves, its password opens it and the
// first one no longer does, and the database is there. (It used to keep the
// first password and crash-loop on 401, while Prometheus counted every
// sample it sent meanwhile as failed.)
func TestInfluxDBTakesItsPasswordFromTheSecret(t *testing.T) {
	dir := t.TempDir()
	tlsFile := filepath.Join(dir, "tls.pem")
	if err := os.WriteFile(tlsFile, selfSignedPEM(t, "influxdb"), 0o644); err != nil {
		t.Fatal(err)
	}
	vol := "swarm-mqtt-e2e-influxdb"
	_ = exec.Command("docker", "volume", "rm", "-f", vol).Run()
	t.Cleanup(func() { _ = exec.Command("docker", "volume", "rm", "-f", vol).Run() })

	// start runs the image with password pw on the volume and waits until
	// it says it serves; it returns the container's name.
	start := func(i int, pw string) string {
		t.Helper()
		pwFile := filepath.Join(dir, fmt.Sprintf("pw%d", i))
		if err := os.WriteFile(pwFile, []byte(pw), 0o644); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("swarm-mqtt-e2e-influxdb-%d", i)
		_ = exec.Command("docker", "rm", "-f", name).Run()
		t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
		docker(t, "run", "-d", "--name", name, "--label", "swarm-mqtt.e2e=true", "-v", vol+":/var/lib/influxdb",
			"-v", pwFile+":/run/secrets/influxdb-password:ro", "-v", tlsFile+":/run/secrets/influxdb-tls:ro",
			"swarm-mqtt/influxdb:local")
		eventually(t, "influxdb serving with password "+strconv.Itoa(i), time.Minute, func() error {
			out, _ := exec.Command("docker", "logs", name).CombinedOutput()
			if strings.Contains(string(out), "influxdb: serving") {
				return nil
			}
			if state := docker(t, "inspect", "-f", "{{.State.Status}}", name); state != "running" {
				t.Fatalf("influxdb %s:\n%s", state, out)
			}
			return errStr("not serving yet")
		})
		return name
	}
	// query runs an authenticated query inside the container and returns
	// the HTTP status and body.
	query := func(name, pw, q string) string {
		t.Helper()
		cmd := exec.Command("docker", "exec", "-i", name, "curl", "-sk", "-K", "-", "-w", " %{http_code}",
			"https://127.0.0.1:8086/query", "--data-urlencode", "q="+q)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("user = \"prometheus:%s\"\n", pw))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("query: %v: %s", err, out)
		}
		return string(out)
	}

	first := start(1, "first-'password")
	if out := query(first, "first-'password", "SHOW DATABASES"); !strings.HasSuffix(out, " 200") || !strings.Contains(out, `"prometheus"`) {
		t.Fatalf("first start: %s", out)
	}
	docker(t, "rm", "-f", first)

	second := start(2, "second-password")
	if out := query(second, "second-password", "SHOW DATABASES"); !strings.HasSuffix(out, " 200") || !strings.Contains(out, `"prometheus"`) {
		t.Fatalf("second start, new password: %s", out)
	}
	if out := query(second, "first-'password", "SHOW DATABASES"); !strings.HasSuffix(out, " 401") {
		t.Fatalf("second start, old password: %s (want 401)", out)
	}
}

// selfSignedPEM returns a self-signed certificate for name and its key, in
// one PEM file (as InfluxDB reads its https-certificate and -private-key).
func selfSignedPEM(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
}
