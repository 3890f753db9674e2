package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

var scrape = &http.Client{Timeout: 300 * time.Millisecond, Transport: APITransport()}

// CAFile is the control-plane CA certificate the tests verify the
// operators' APIs with: MQTTCTL_CA_FILE, or the one make up writes.
func CAFile() string {
	if f := os.Getenv("MQTTCTL_CA_FILE"); f != "" {
		return f
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", ".local", "control-ca.crt")
}

// APITransport reaches the operators' APIs over HTTPS, verifying them with
// CAFile (plain HTTP URLs work too, for in-process servers).
func APITransport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(CAFile()); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr
}

// Scrape reads an operator's /metrics whole.
func Scrape(apiURL string) (string, error) {
	resp, err := scrape.Get(apiURL + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Metric reads one sample of an operator's /metrics (series as written in
// the exposition, e.g. `mqttoperator_reconcile_total{result="success"}`);
// -1 when the operator does not answer in 300 ms or has no such series.
func Metric(apiURL, series string) int {
	resp, err := scrape.Get(apiURL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// UserView keeps what a user stored and the server's identity fields: the
// operator writes status (and so resourceVersion) as it reconciles.
func UserView(l *api.MqttClusterList) []api.MqttCluster {
	var out []api.MqttCluster
	for _, o := range l.Items {
		o.Status = api.MqttClusterStatus{}
		o.ResourceVersion = ""
		out = append(out, o)
	}
	return out
}
