//go:build e2e

package loadbalancer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
)

// TestRealHAProxyAcceptsRenderedConfig checks every rendered variant with
// the real HAProxy of the load-balancer image (haproxy -c).
func TestRealHAProxyAcceptsRenderedConfig(t *testing.T) {
	ca, err := certs.IssueCA("iot", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := certs.IssueServer(ca, certs.ServerRequest{CommonName: "iot", DNSNames: []string{"localhost"}, Duration: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		y string
		o Options
	}{
		"default":       {y: ""},
		"tls-only-lc":   {y: "spec: {replicas: 2, loadBalancer: {balance: leastconn, ports: {mqtt: 0}}}\n"},
		"plain-only-rr": {y: "spec: {replicas: 5, loadBalancer: {balance: roundrobin, ports: {mqtts: 0}}}\n"},
		"admin":         {y: "", o: Options{AdminSubnets: []string{"10.0.9.0/24"}}},
		"admin-tls":     {y: "", o: Options{AdminSubnets: []string{"10.0.9.0/24"}, AdminTLS: true}},
		"backend-tls":   {y: "", o: Options{AdminSubnets: []string{"10.0.9.0/24"}, AdminTLS: true, BackendTLS: true}},
		"client-auth":   {y: "spec: {tls: {clientAuth: optional, clientCASecret: fleet-ca}}\n"},
		"client-rate":   {y: "spec: {loadBalancer: {limits: {connectionRatePerClient: 10}}}\n"},
		"session-rate":  {y: "spec: {loadBalancer: {limits: {connectionRate: 500}}}\n"},
	} {
		dir := t.TempDir()
		cfg, err := Render(cluster(t, tc.y), tc.o)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "haproxy.cfg"), cfg, 0o644)
		os.WriteFile(filepath.Join(dir, "mqtts.pem"), append(srv.CertPEM, srv.KeyPEM...), 0o644)
		os.WriteFile(filepath.Join(dir, ClientCAFile), ca.CertPEM, 0o644)
		os.WriteFile(filepath.Join(dir, AdminCertFile), append(srv.CertPEM, srv.KeyPEM...), 0o644)
		os.WriteFile(filepath.Join(dir, ControlCAFile), ca.CertPEM, 0o644)
		out, err := exec.Command("docker", "run", "--rm", "-v", dir+":/x:ro", "swarm-mqtt/haproxy:local", "sh", "-c",
			"mkdir -p /run/secrets /run/haproxy && cp /x/mqtts.pem /x/"+ClientCAFile+" /x/"+AdminCertFile+" /x/"+ControlCAFile+" /run/secrets/ && haproxy -c -f /x/haproxy.cfg").CombinedOutput()
		if err != nil {
			t.Errorf("%s: haproxy -c rejects the config: %v\n%s", name, err, out)
		}
	}
}

// TestRealHAProxyTakesAPushedCertificate runs the load-balancer image with
// a rendered configuration: the runtime API answers on AdminPort to the
// allowed subnet only, and a pushed certificate is what the next TLS
// handshake gets, while a TLS connection opened before stays up.
func TestRealHAProxyTakesAPushedCertificate(t *testing.T) {
	ca, err := certs.IssueCA("iot", certs.ECDSAP256, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	issue := func() certs.Pair {
		p, err := certs.IssueServer(ca, certs.ServerRequest{CommonName: "iot", DNSNames: []string{"localhost"}, Duration: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first, second := issue(), issue()
	run := func(subnet string) (ip string) {
		dir := t.TempDir()
		cfg, err := Render(cluster(t, "spec: {loadBalancer: {ports: {mqtt: 0}}}\n"), Options{AdminSubnets: []string{subnet}})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "haproxy.cfg"), cfg, 0o644)
		os.WriteFile(filepath.Join(dir, "mqtts.pem"), append(first.CertPEM, first.KeyPEM...), 0o644)
		return startHAProxy(t, dir, "mkdir -p /run/secrets && cp /x/mqtts.pem /run/secrets/")
	}
	serialOf := func(p certs.Pair) *big.Int { c, _ := certs.ParseCert(p.CertPEM); return c.SerialNumber }
	handshake := func(ip string) (*tls.Conn, error) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.CertPEM)
		return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", net.JoinHostPort(ip, "8883"), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	}
	rt := Runtime{}
	ctx := context.Background()

	// The host reaches the container from the Docker bridge (172.16.0.0/12).
	ip := run("172.16.0.0/12")
	var served Served
	deadline := time.Now().Add(10 * time.Second)
	for served, err = rt.ServedCertificate(ctx, AdminAddr(ip)); err != nil && time.Now().Before(deadline); served, err = rt.ServedCertificate(ctx, AdminAddr(ip)) {
		time.Sleep(100 * time.Millisecond)
	}
	firstCert, _ := certs.ParseCert(first.CertPEM)
	if err != nil || served.Serial.Cmp(serialOf(first)) != 0 || !served.NotAfter.Equal(firstCert.NotAfter.UTC()) {
		t.Fatalf("served %+v (%v), want serial %v notAfter %v", served, err, serialOf(first), firstCert.NotAfter)
	}
	before, err := handshake(ip)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if err := rt.PushCertificate(ctx, AdminAddr(ip), append(second.CertPEM, second.KeyPEM...)); err != nil {
		t.Fatal(err)
	}
	if served, err = rt.ServedCertificate(ctx, AdminAddr(ip)); err != nil || served.Serial.Cmp(serialOf(second)) != 0 {
		t.Fatalf("after push: serial %v (%v), want %v", served.Serial, err, serialOf(second))
	}
	after, err := handshake(ip)
	if err != nil {
		t.Fatal(err)
	}
	after.Close()
	if got := after.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serialOf(second)) != 0 {
		t.Fatalf("a new handshake got serial %v, want %v", got, serialOf(second))
	}
	// The connection opened before the push is still open: HAProxy waits
	// for MQTT bytes (inspect-delay) and has not closed it.
	before.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := before.Read(make([]byte, 1)); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection from before the push: %v", err)
	}

	// Another subnet allowed: the host is refused before any answer.
	ip = run("10.255.255.0/24")
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := handshake(ip); err == nil {
			c.Close()
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s, err := rt.ServedCertificate(ctx, AdminAddr(ip)); err == nil {
		t.Fatalf("the runtime API answered outside its subnet: serial %v", s.Serial)
	}
}

// TestRealHAProxyRuntimeAPIOverMutualTLS: with AdminTLS the runtime API
// answers the operator (its certificate from the control-plane CA) and
// pushes work through it; plain TCP, TLS without a certificate, a
// certificate from another CA, and the admin certificate itself (server
// authentication only) used as a client are all refused; and the operator
// refuses a listener whose certificate is not the cluster's.
func TestRealHAProxyRuntimeAPIOverMutualTLS(t *testing.T) {
	caPEM, err := tlsutil.NewCA("control", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	control, _ := tlsutil.ParseCA(caPEM)
	operator, err := tlsutil.NewNode(control, tlsutil.Identity{ID: "op-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	adminCert, adminKey, err := control.IssueComponent(tlsutil.Admin, "iot", nil, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := certs.IssueCA("iot", certs.ECDSAP256, time.Hour, time.Now())
	mqtts, _ := certs.IssueServer(ca, certs.ServerRequest{CommonName: "iot", DNSNames: []string{"localhost"}, Duration: time.Hour}, time.Now())
	next, _ := certs.IssueServer(ca, certs.ServerRequest{CommonName: "iot", DNSNames: []string{"localhost"}, Duration: time.Hour}, time.Now())
	dir := t.TempDir()
	cfg, err := Render(cluster(t, "spec: {loadBalancer: {ports: {mqtt: 0}}}\n"), Options{AdminSubnets: []string{"172.16.0.0/12"}, AdminTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "haproxy.cfg"), cfg, 0o644)
	os.WriteFile(filepath.Join(dir, "mqtts.pem"), append(mqtts.CertPEM, mqtts.KeyPEM...), 0o644)
	os.WriteFile(filepath.Join(dir, AdminCertFile), append(adminCert, adminKey...), 0o644)
	os.WriteFile(filepath.Join(dir, ControlCAFile), control.CertPEM(), 0o644)
	ip := startHAProxy(t, dir, "mkdir -p /run/secrets && cp /x/mqtts.pem /x/"+AdminCertFile+" /x/"+ControlCAFile+" /run/secrets/")
	ctx := context.Background()
	rt := Runtime{TLS: operator.ComponentClientConfig(tlsutil.Admin, "iot")}
	var served Served
	deadline := time.Now().Add(10 * time.Second)
	for served, err = rt.ServedCertificate(ctx, AdminAddr(ip)); err != nil && time.Now().Before(deadline); served, err = rt.ServedCertificate(ctx, AdminAddr(ip)) {
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || served.Serial == nil {
		t.Fatalf("the operator over mutual TLS: %v", err)
	}
	if err := rt.PushCertificate(ctx, AdminAddr(ip), append(next.CertPEM, next.KeyPEM...)); err != nil {
		t.Fatalf("push over mutual TLS: %v", err)
	}
	nextCert, _ := certs.ParseCert(next.CertPEM)
	if served, err = rt.ServedCertificate(ctx, AdminAddr(ip)); err != nil || served.Serial.Cmp(nextCert.SerialNumber) != 0 {
		t.Fatalf("after the push: %v %v", served.Serial, err)
	}
	if err := rt.SetServerState(ctx, AdminAddr(ip), ServerName(1), "drain"); err != nil {
		t.Fatalf("drain over mutual TLS: %v", err)
	}

	// Refused: each attempt asks for the served certificate.
	otherPEM, _ := tlsutil.NewCA("other", time.Now())
	other, _ := tlsutil.ParseCA(otherPEM)
	impostor, _ := tlsutil.NewNode(other, tlsutil.Identity{ID: "op-1"}, time.Hour)
	adminPair, _ := tls.X509KeyPair(adminCert, adminKey)
	asAdmin := tlsutil.Base()
	asAdmin.InsecureSkipVerify = true
	asAdmin.Certificates = []tls.Certificate{adminPair}
	noCert := tlsutil.Base()
	noCert.InsecureSkipVerify = true
	for name, r := range map[string]Runtime{
		"plain TCP":                             {},
		"TLS without a client certificate":      {TLS: noCert},
		"an operator certificate of another CA": {TLS: impostor.ComponentClientConfig(tlsutil.Admin, "iot")},
		"the admin certificate as a client":     {TLS: asAdmin},
	} {
		if s, err := r.ServedCertificate(ctx, AdminAddr(ip)); err == nil {
			t.Errorf("%s: the runtime API answered (serial %v)", name, s.Serial)
		}
	}
	// The operator checks whom it talks to: another cluster's name is
	// refused before any command is sent.
	if _, err := (Runtime{TLS: operator.ComponentClientConfig(tlsutil.Admin, "other")}).ServedCertificate(ctx, AdminAddr(ip)); err == nil {
		t.Error("the operator accepted another cluster's admin certificate")
	}
}

// TestRealHAProxyDrainsAServer: the runtime API calls of a rolling update
// against a real HAProxy: drain a broker server, read it back as drained,
// close its sessions (none here), make it ready again.
func TestRealHAProxyDrainsAServer(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Render(cluster(t, "spec: {loadBalancer: {ports: {mqtts: 0}}}\n"), Options{AdminSubnets: []string{"172.16.0.0/12"}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "haproxy.cfg"), cfg, 0o644)
	addr := AdminAddr(startHAProxy(t, dir, "true"))
	rt := Runtime{}
	ctx := context.Background()
	var drained map[string]bool
	deadline := time.Now().Add(10 * time.Second)
	for drained, err = rt.DrainedServers(ctx, addr); err != nil && time.Now().Before(deadline); drained, err = rt.DrainedServers(ctx, addr) {
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(drained) != 0 {
		t.Fatalf("before: %v %v", drained, err)
	}
	if err := rt.SetServerState(ctx, addr, ServerName(1), "drain"); err != nil {
		t.Fatal(err)
	}
	if drained, err = rt.DrainedServers(ctx, addr); err != nil || !drained[ServerName(1)] || len(drained) != 1 {
		t.Fatalf("after drain: %v %v", drained, err)
	}
	if n, err := rt.Connections(ctx, addr); err != nil || n != 0 {
		t.Fatalf("connections: %d %v", n, err)
	}
	if n, err := rt.ShutdownSessions(ctx, addr, ServerName(1), 100, time.Second, func() error { return nil }); err != nil || n != 0 {
		t.Fatalf("shutdown sessions: %d %v", n, err)
	}
	if err := rt.SetServerState(ctx, addr, ServerName(1), "ready"); err != nil {
		t.Fatal(err)
	}
	if drained, err = rt.DrainedServers(ctx, addr); err != nil || len(drained) != 0 {
		t.Fatalf("after ready: %v %v", drained, err)
	}
	if err := rt.SetServerState(ctx, addr, "no-such-server", "drain"); err == nil {
		t.Fatal("an unknown server was accepted")
	}
}

// startHAProxy runs the real HAProxy image on dir's haproxy.cfg (after
// setup, a shell command) and returns its address on the Docker bridge.
func startHAProxy(t *testing.T, dir, setup string) string {
	t.Helper()
	out, err := exec.Command("docker", "run", "-d", "--rm", "-v", dir+":/x:ro", "swarm-mqtt/haproxy:local", "sh", "-c",
		setup+" && mkdir -p /run/haproxy /usr/local/etc/haproxy && cp /x/haproxy.cfg "+ConfigPath+" && exec haproxy -W -db -f "+ConfigPath).Output()
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	out, err = exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
