package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestRenewalTime(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	cases := map[string]struct {
		nb, na      time.Time
		renewBefore time.Duration
		want        time.Time
	}{
		"90d renew 30d":          {t0, t0.Add(90 * day), 30 * day, t0.Add(60 * day)},
		"default third":          {t0, t0.Add(90 * day), 0, t0.Add(60 * day)},
		"renewBefore too long":   {t0, t0.Add(9 * time.Hour), 10 * time.Hour, t0.Add(6 * time.Hour)},
		"renewBefore = lifetime": {t0, t0.Add(3 * time.Hour), 3 * time.Hour, t0.Add(2 * time.Hour)},
		"short":                  {t0, t0.Add(2 * time.Minute), 30 * time.Second, t0.Add(90 * time.Second)},
		"backdated notBefore":    {t0.Add(-5 * time.Minute), t0.Add(55 * time.Minute), 0, t0.Add(35 * time.Minute)},
	}
	for name, c := range cases {
		if got := RenewalTime(c.nb, c.na, c.renewBefore); !got.Equal(c.want) {
			t.Errorf("%s: %s, want %s", name, got, c.want)
		}
	}
}

func issue(t *testing.T, ca Pair, req ServerRequest, now time.Time) Pair {
	t.Helper()
	p, err := IssueServer(ca, req, now)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReissueReasons(t *testing.T) {
	t.Parallel()
	ca, err := IssueCA("iot", ECDSAP256, 10*365*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := IssueCA("iot", ECDSAP256, 10*365*24*time.Hour, t0)
	want := ServerRequest{CommonName: "iot", DNSNames: []string{"mqtt.example.com", "iot-lb"}, IPAddresses: []string{"127.0.0.1"}, Duration: 90 * 24 * time.Hour}
	cur := issue(t, ca, want, t0)
	rsaReq := want
	rsaReq.KeyType = RSA2048
	cases := map[string]struct {
		in   Input
		want Reason
	}{
		"fresh":            {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: want, Now: t0.Add(time.Hour)}, ""},
		"missing":          {Input{CA: ca.CertPEM, Want: want, Now: t0}, ReasonMissing},
		"garbage":          {Input{Current: []byte("nope"), CA: ca.CertPEM, Want: want, Now: t0}, ReasonUnparsable},
		"expiring":         {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: want, RenewBefore: 30 * 24 * time.Hour, Now: t0.Add(61 * 24 * time.Hour)}, ReasonExpiring},
		"not yet expiring": {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: want, RenewBefore: 30 * 24 * time.Hour, Now: t0.Add(59 * 24 * time.Hour)}, ""},
		"expired":          {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: want, Now: t0.Add(100 * 24 * time.Hour)}, ReasonExpiring},
		"dns changed":      {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: ServerRequest{DNSNames: []string{"mqtt.example.org", "iot-lb"}, IPAddresses: want.IPAddresses}, Now: t0}, ReasonDNSNamesChanged},
		"dns reordered":    {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: ServerRequest{DNSNames: []string{"iot-lb", "mqtt.example.com"}, IPAddresses: want.IPAddresses}, Now: t0}, ""},
		"ip changed":       {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: ServerRequest{DNSNames: want.DNSNames}, Now: t0}, ReasonIPsChanged},
		"key type changed": {Input{Current: cur.CertPEM, CA: ca.CertPEM, Want: rsaReq, Now: t0}, ReasonKeyTypeChanged},
		"CA rotated":       {Input{Current: cur.CertPEM, CA: otherCA.CertPEM, Want: want, Now: t0}, ReasonCARotated},
	}
	for name, c := range cases {
		if got := NeedsReissue(c.in); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
	// A different issuer name is reported as such.
	other, _ := IssueCA("elsewhere", ECDSAP256, 24*time.Hour, t0)
	if got := NeedsReissue(Input{Current: cur.CertPEM, CA: other.CertPEM, Want: want, Now: t0}); got != ReasonIssuerChanged {
		t.Errorf("issuer changed: %q", got)
	}
}

// TestIssuedCertificateServesRealTLS: a TLS client that trusts only the CA
// connects with the right host name, and fails with a wrong one.
func TestIssuedCertificateServesRealTLS(t *testing.T) {
	t.Parallel()
	for _, kt := range []KeyType{ECDSAP256, RSA2048} {
		ca, err := IssueCA("iot", kt, 24*time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		srv := issue(t, ca, ServerRequest{CommonName: "iot", DNSNames: []string{"localhost"}, IPAddresses: []string{"127.0.0.1"}, KeyType: kt, Duration: time.Hour}, time.Now())
		cert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.CertPEM)
		for host, ok := range map[string]bool{"localhost": true, "127.0.0.1": true, "mqtt.example.com": false} {
			d := &net.Dialer{Timeout: 2 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12})
			if (err == nil) != ok {
				t.Errorf("%s %s: err=%v, want ok=%v", kt, host, err, ok)
			}
			if err == nil {
				if got := KeyTypeOf(c.ConnectionState().PeerCertificates[0]); got != kt {
					t.Errorf("key type %s, want %s", got, kt)
				}
				c.Close()
			}
		}
		l.Close()
	}
}

func TestErrorsNeverCarryKeys(t *testing.T) {
	t.Parallel()
	ca, _ := IssueCA("iot", ECDSAP256, time.Hour, t0)
	broken := Pair{CertPEM: ca.CertPEM, KeyPEM: []byte(strings.Replace(string(ca.KeyPEM), "A", "!", 3))}
	_, err := IssueServer(broken, ServerRequest{CommonName: "x", Duration: time.Hour}, t0)
	if err == nil {
		t.Fatal("a broken CA key was accepted")
	}
	body := strings.Split(string(ca.KeyPEM), "\n")[1]
	if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), body[:16]) {
		t.Fatalf("error carries key material: %v", err)
	}
	if _, err := IssueCA("iot", "dsa-1024", time.Hour, t0); err == nil {
		t.Fatal("unknown key type accepted")
	}
}

func TestServerCertNeverOutlivesCA(t *testing.T) {
	t.Parallel()
	ca, _ := IssueCA("iot", ECDSAP256, time.Hour, t0)
	srv := issue(t, ca, ServerRequest{CommonName: "x", Duration: 90 * 24 * time.Hour}, t0)
	c, _ := ParseCert(srv.CertPEM)
	cac, _ := ParseCert(ca.CertPEM)
	if c.NotAfter.After(cac.NotAfter) {
		t.Fatalf("server cert ends %s after its CA %s", c.NotAfter, cac.NotAfter)
	}
	if fp := Fingerprint(cac); len(fp) != 95 || strings.Count(fp, ":") != 31 {
		t.Fatalf("fingerprint %q", fp)
	}
}
