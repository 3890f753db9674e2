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

func verifies(t *testing.T, serverPEM, bundle []byte, at time.Time) error {
	t.Helper()
	leaf, err := certs.ParseCert(serverPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("empty bundle")
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "iot-lb", CurrentTime: at})
	return err
}

// A CA rotation in two steps: the next CA joins the bundle at once while
// the old CA still signs; after caOverlap the next CA signs (the server
// certificate is reissued, reason CARotated). A client that kept only the
// old CA works until the switch; one that took the bundle works across it.
func TestCARotationOverlap(t *testing.T) {
	t.Parallel()
	c := testutil.Cluster(t, "spec: {tls: {caOverlap: 24h}}\n")
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	m, _, _, err := Next(nil, c, now)
	if err != nil {
		t.Fatal(err)
	}
	oldCA := m.CA.CertPEM
	// Asked for: the next CA appears; nothing served changes yet.
	c.Annotations = map[string]string{RotateCAAnnotation: now.Add(time.Minute).Format(time.RFC3339Nano)}
	t1 := now.Add(time.Hour)
	m1, reason, changed, err := Next(&m, c, t1)
	if err != nil || !changed || reason != "" || m1.NextCA == nil || m1.CAReason != certs.ReasonRequested {
		t.Fatalf("rotation start: reason %q changed %v err %v next %v", reason, changed, err, m1.NextCA != nil)
	}
	if m.NextCA != nil {
		t.Fatal("Next changed its input")
	}
	if string(m1.CA.CertPEM) != string(oldCA) || string(m1.Server.CertPEM) != string(m.Server.CertPEM) {
		t.Fatal("the signing CA or the server certificate changed at the start of the overlap")
	}
	bundle := CABundle(m1)
	if err := verifies(t, m1.Server.CertPEM, bundle, t1); err != nil {
		t.Fatalf("bundle during the overlap: %v", err)
	}
	if at := CASwitchAt(m1, c); !at.Equal(t1.Add(24 * time.Hour)) {
		t.Fatalf("switch at %v", at)
	}
	if at, _ := NextEvent(m1, c); !at.Equal(t1.Add(24 * time.Hour)) {
		t.Fatalf("next event %v, want the switch", at)
	}
	// The same request again, during the overlap: nothing.
	if _, _, changed, _ := Next(&m1, c, t1.Add(time.Hour)); changed {
		t.Fatal("the same request restarted the rotation")
	}
	// After the overlap: the next CA signs a new server certificate.
	t2 := t1.Add(24 * time.Hour)
	m2, reason, changed, err := Next(&m1, c, t2)
	if err != nil || !changed || reason != certs.ReasonCARotated || m2.NextCA != nil {
		t.Fatalf("switch: reason %q changed %v err %v", reason, changed, err)
	}
	if string(m2.CA.CertPEM) != string(m1.NextCA.CertPEM) {
		t.Fatal("the next CA did not become the CA")
	}
	if err := verifies(t, m2.Server.CertPEM, bundle, t2); err != nil {
		t.Fatalf("a client with the bundle from the overlap: %v", err)
	}
	if err := verifies(t, m2.Server.CertPEM, oldCA, t2); err == nil {
		t.Fatal("the old CA alone still verifies after the switch")
	}
	if m2.Password != m.Password {
		t.Fatal("the rotation changed the user")
	}
}

func TestCARotationWithoutOverlapAndWhenExpiring(t *testing.T) {
	t.Parallel()
	c := testutil.Cluster(t, "spec: {tls: {caOverlap: 0s}}\n")
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	m, _, _, _ := Next(nil, c, now)
	c.Annotations = map[string]string{RotateCAAnnotation: now.Add(time.Minute).Format(time.RFC3339Nano)}
	m1, reason, _, err := Next(&m, c, now.Add(time.Hour))
	if err != nil || reason != certs.ReasonCARotated || m1.NextCA != nil || string(m1.CA.CertPEM) == string(m.CA.CertPEM) {
		t.Fatalf("no overlap: reason %q, next %v, CA changed %v", reason, m1.NextCA != nil, string(m1.CA.CertPEM) != string(m.CA.CertPEM))
	}
	// With a third of its ten years left, the CA rotates by itself.
	c = testutil.Cluster(t, "")
	ca, _ := certs.ParseCert(m.CA.CertPEM)
	due := certs.RenewalTime(ca.NotBefore, ca.NotAfter, 0)
	if at, _ := NextEvent(m, c); !at.Before(due) {
		t.Fatalf("next event %v is after the CA's renewal %v", at, due)
	}
	if _, _, _, err := Next(&m, c, due.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	m2, _, changed, err := Next(&m, c, due)
	if err != nil || !changed || m2.NextCA == nil || m2.CAReason != certs.ReasonExpiring {
		t.Fatalf("expiring CA: changed %v next %v reason %q", changed, m2.NextCA != nil, m2.CAReason)
	}
}

func TestKeyAlgorithmAndUserCertificate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	c := testutil.Cluster(t, "spec: {tls: {keyAlgorithm: RSA-2048}}\n")
	m, _, _, err := Next(nil, c, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string][]byte{"ca": m.CA.CertPEM, "server": m.Server.CertPEM} {
		if cert, _ := certs.ParseCert(p); certs.KeyTypeOf(cert) != certs.RSA2048 {
			t.Errorf("%s key: %s", name, certs.KeyTypeOf(cert))
		}
	}
	// Another algorithm: the server certificate is reissued; the CA stays.
	c = testutil.Cluster(t, "spec: {tls: {keyAlgorithm: ECDSA-P256}}\n")
	m1, reason, _, err := Next(&m, c, now.Add(time.Hour))
	if err != nil || reason != certs.ReasonKeyTypeChanged || string(m1.CA.CertPEM) != string(m.CA.CertPEM) {
		t.Fatalf("algorithm change: %q %v", reason, err)
	}
	// A user-supplied certificate: none issued, none renewed.
	c = testutil.Cluster(t, "spec: {tls: {certificateSecret: my-cert}}\n")
	m2, reason, _, err := Next(nil, c, now)
	if err != nil || reason != "" || len(m2.Server.CertPEM) != 0 {
		t.Fatalf("user certificate: reason %q, issued %v, %v", reason, len(m2.Server.CertPEM) > 0, err)
	}
	if at, err := NextEvent(m2, c); err != nil || at.IsZero() {
		t.Fatalf("next event with a user certificate: %v %v", at, err)
	}
}
