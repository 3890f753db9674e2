package credentials

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
)

func TestNextIssuesOnceThenKeeps(t *testing.T) {
	t.Parallel()
	c := testutil.Cluster(t, "spec: {tls: {dnsNames: [mqtt.example.com], ipAddresses: [127.0.0.1], duration: 48h}}\n")
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	m, reason, changed, err := Next(nil, c, now)
	if err != nil || !changed || reason != certs.ReasonMissing {
		t.Fatalf("first: %v %v %v", reason, changed, err)
	}
	if m.Username != DefaultUser || len(m.Password) < 20 || len(m.PasswordFile) == 0 {
		t.Fatalf("user: %q %d", m.Username, len(m.Password))
	}
	cert, err := certs.ParseCert(m.Server.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cert.DNSNames, "mqtt.example.com") || !slices.Contains(cert.DNSNames, "iot-lb") || !slices.Contains(cert.DNSNames, "tasks.iot-lb") {
		t.Fatalf("names: %v", cert.DNSNames)
	}
	// HAProxy's PEM is a usable certificate and key pair that verifies
	// against the CA for the requested name.
	pair, err := tls.X509KeyPair(HAProxyPEM(m), HAProxyPEM(m))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m.CA.CertPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "mqtt.example.com", CurrentTime: now}); err != nil {
		t.Fatal(err)
	}

	// Same spec, an hour later: nothing changes.
	again, reason, changed, err := Next(&m, c, now.Add(time.Hour))
	if err != nil || changed || reason != "" || string(again.Server.CertPEM) != string(m.Server.CertPEM) {
		t.Fatalf("second: %v %v %v", reason, changed, err)
	}
	// Past the renewal time (a third of 48h left): renewed, CA and user kept.
	at, err := RenewAt(m, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := cert.NotAfter.Add(-16 * time.Hour); !at.Equal(want) {
		t.Fatalf("renew at %v, want %v", at, want)
	}
	renewed, reason, changed, err := Next(&m, c, at)
	if err != nil || !changed || reason != certs.ReasonExpiring {
		t.Fatalf("renewal: %v %v %v", reason, changed, err)
	}
	if string(renewed.CA.CertPEM) != string(m.CA.CertPEM) || renewed.Password != m.Password || string(renewed.Server.CertPEM) == string(m.Server.CertPEM) {
		t.Fatal("renewal changed the CA or the user, or kept the certificate")
	}
}

func TestRenewRequestedReissuesOnce(t *testing.T) {
	t.Parallel()
	c := testutil.Cluster(t, "")
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	m, _, _, err := Next(nil, c, now)
	if err != nil {
		t.Fatal(err)
	}
	// A request older than the certificate changes nothing.
	c.Annotations = map[string]string{RenewAnnotation: now.Add(-time.Minute).Format(time.RFC3339Nano)}
	if _, reason, changed, _ := Next(&m, c, now.Add(time.Hour)); changed || reason != "" {
		t.Fatalf("old request: %v %v", reason, changed)
	}
	// A newer one reissues the server certificate (not the CA), once.
	c.Annotations[RenewAnnotation] = now.Add(30 * time.Minute).Format(time.RFC3339Nano)
	m2, reason, changed, err := Next(&m, c, now.Add(time.Hour))
	if err != nil || !changed || reason != certs.ReasonRequested {
		t.Fatalf("request: %v %v %v", reason, changed, err)
	}
	if string(m2.CA.CertPEM) != string(m.CA.CertPEM) || string(m2.Server.CertPEM) == string(m.Server.CertPEM) {
		t.Fatal("renewal must keep the CA and change the server certificate")
	}
	if _, reason, changed, _ := Next(&m2, c, now.Add(2*time.Hour)); changed || reason != "" {
		t.Fatalf("the same request reissued again: %v", reason)
	}
	// A malformed annotation is ignored.
	c.Annotations[RenewAnnotation] = "soon"
	if _, reason, _, _ := Next(&m2, c, now.Add(3*time.Hour)); reason != "" {
		t.Fatalf("malformed request: %v", reason)
	}
}
