package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "operator"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestDaemonServesHTTPSAndGeneratesToken runs the daemon with --tls-cert
// and no --token-file: it serves HTTPS only, and writes a private token.
func TestDaemonServesHTTPSAndGeneratesToken(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	apiAddr := testutil.FreeAddr(t)
	o := options{dataDir: filepath.Join(dir, "data"), apiAddr: apiAddr, raftAddr: testutil.FreeAddr(t),
		tlsCert: certFile, tlsKey: keyFile, brokerImage: "local/mosquitto:1", lbImage: "local/haproxy:1", logLevel: "error", insecure: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get("https://" + apiAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPS API not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp, err := http.Get("http://" + apiAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served when --tls-cert is set")
		}
	}
	info, err := os.Stat(filepath.Join(o.dataDir, "api-token"))
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() < 32 {
		t.Fatalf("generated token file: %v %v", info, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
}

func TestDaemonRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]options{
		"bad image":                              {dataDir: dir, brokerImage: "Not An Image", lbImage: "haproxy:2.8", logLevel: "info"},
		"half tls":                               {dataDir: dir, brokerImage: "a:1", lbImage: "b:1", logLevel: "info", tlsCert: "x"},
		"bad log level":                          {dataDir: dir, brokerImage: "a:1", lbImage: "b:1", logLevel: "loud", insecure: true},
		"no control-plane CA and not --insecure": {dataDir: dir, brokerImage: "a:1", lbImage: "b:1", logLevel: "info"},
		"unreadable control-plane CA":            {dataDir: dir, brokerImage: "a:1", lbImage: "b:1", logLevel: "info", controlCA: filepath.Join(dir, "nope")},
	}
	for name, o := range cases {
		if err := run(context.Background(), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestDaemonControlPlaneTLS runs the daemon with a control-plane CA: the
// API is HTTPS with the operator's own certificate (verified with the CA
// certificate alone, naming its raft id), plain HTTP on the port gets a
// clear error, old protocol versions and CBC suites are refused, and the
// raft port refuses a client with no certificate.
func TestDaemonControlPlaneTLS(t *testing.T) {
	dir := t.TempDir()
	bundle, caCert := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crt")
	if err := controlCACmd([]string{"--out", bundle, "--cert-out", caCert}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA bundle mode: %v %v", fi, err)
	}
	pemBytes, _ := os.ReadFile(caCert)
	if strings.Contains(string(pemBytes), "PRIVATE KEY") {
		t.Fatal("the public CA file holds a key")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	apiAddr, raftAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	o := options{dataDir: filepath.Join(dir, "data"), apiAddr: apiAddr, raftAddr: raftAddr, nodeID: "op-1",
		controlCA: bundle, brokerImage: "local/mosquitto:1", lbImage: "local/haproxy:1", logLevel: "error"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("daemon did not stop")
		}
	}()

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(15 * time.Second)
	var state *tls.ConnectionState
	for {
		resp, err := hc.Get("https://" + apiAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				state = resp.TLS
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPS API not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if u := state.PeerCertificates[0].URIs; len(u) != 1 || u[0].String() != "spiffe://swarm-mqtt-operator/operator/op-1" {
		t.Fatalf("API certificate URIs: %v", u)
	}
	resp, err := http.Get("http://" + apiAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Fatalf("plain HTTP to the API: %d %q", resp.StatusCode, body)
	}
	weak := map[string]*tls.Config{
		"TLS 1.1":          {RootCAs: pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10},
		"TLS 1.2 CBC-SHA1": {RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
		"TLS 1.2 RSA kx":   {RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
	}
	for name, cfg := range weak {
		if c, err := tls.Dial("tcp", apiAddr, cfg); err == nil {
			c.Close()
			t.Errorf("%s: handshake succeeded", name)
		}
	}
	// The raft port: TLS, and a client certificate is required.
	c, err := tls.Dial("tcp", raftAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err == nil {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("the raft port served a client with no certificate")
	}
}
