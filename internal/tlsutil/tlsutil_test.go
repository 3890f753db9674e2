package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newTestCA(t *testing.T, name string) (*CA, []byte) {
	t.Helper()
	b, err := NewCA(name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(b)
	if err != nil {
		t.Fatal(err)
	}
	return ca, b
}

// handshake runs one TLS handshake between server and client configs on
// loopback (bounded by a deadline) and returns the first error.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked once the
			// server reads; one byte from the client completes it.
			_, err = tc.Read(make([]byte, 1))
		}
		errc <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, client)
	cerr := tc.Handshake()
	if cerr == nil {
		_, cerr = tc.Write([]byte{1})
	}
	serr := <-errc
	if cerr != nil {
		return cerr
	}
	return serr
}

// TestCARotationOverlap: a bundle holds the CA that signs (its key) and
// other CA certificates that are trusted. During a rotation operators
// whose certificates come from either CA talk to each other (each trusts
// both); an operator that trusts only the new CA refuses one from the
// old.
func TestCARotationOverlap(t *testing.T) {
	t.Parallel()
	_, oldBundle := newTestCA(t, "old")
	newCA, newBundle := newTestCA(t, "new")
	certOnly := func(bundle []byte) []byte {
		blk, _ := pem.Decode(bundle)
		return pem.EncodeToMemory(blk)
	}
	// Phase 1: the old CA signs, the new one is trusted. Phase 2: the
	// new one signs, the old one is trusted.
	phase1, err := ParseCA(append(append([]byte{}, oldBundle...), certOnly(newBundle)...))
	if err != nil {
		t.Fatal(err)
	}
	phase2, err := ParseCA(append(append([]byte{}, newBundle...), certOnly(oldBundle)...))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewNode(phase1, Identity{ID: "a"}, time.Hour)
	b, _ := NewNode(phase2, Identity{ID: "b"}, time.Hour)
	if err := handshake(t, a.ServerConfig(tls.RequireAndVerifyClientCert), withName(b.ClientConfig("a"), "127.0.0.1")); err != nil {
		t.Fatalf("phase 2 dialing phase 1: %v", err)
	}
	if err := handshake(t, b.ServerConfig(tls.RequireAndVerifyClientCert), withName(a.ClientConfig("b"), "127.0.0.1")); err != nil {
		t.Fatalf("phase 1 dialing phase 2: %v", err)
	}
	if len(phase2.CertPEM()) == len(newCA.CertPEM()) {
		t.Fatal("the bundle's public part does not hold both CAs")
	}
	// Phase 3: the new CA alone: an old certificate is refused.
	c, _ := NewNode(newCA, Identity{ID: "c"}, time.Hour)
	if err := handshake(t, c.ServerConfig(tls.RequireAndVerifyClientCert), withName(a.ClientConfig("c"), "127.0.0.1")); err == nil {
		t.Fatal("an operator trusting only the new CA accepted one from the old")
	}
	// The identity check: the right chain but another operator.
	if err := handshake(t, a.ServerConfig(tls.RequireAndVerifyClientCert), withName(b.ClientConfig("someone-else"), "127.0.0.1")); err == nil {
		t.Fatal("a client accepted an operator it did not expect")
	}
}

func withName(c *tls.Config, name string) *tls.Config { c.ServerName = name; return c }

// TestFileCertificateReloads: a user's API certificate is served from
// its files and read again when they change, with no restart.
func TestFileCertificateReloads(t *testing.T) {
	t.Parallel()
	ca, _ := newTestCA(t, "user")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(cn string) *x509.Certificate {
		c, k, err := ca.IssueComponent(Kind{Prefix: "spiffe://test/", OU: cn, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, cn, []string{"localhost"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(certFile, c, 0o600)
		os.WriteFile(keyFile, k, 0o600)
		blk, _ := pem.Decode(c)
		leaf, _ := x509.ParseCertificate(blk.Bytes)
		return leaf
	}
	first := write("first")
	fc, err := NewFileCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		cfg := Base()
		cfg.GetCertificate = fc.GetCertificate
		var got *x509.Certificate
		client := &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", VerifyConnection: func(cs tls.ConnectionState) error {
			got = cs.PeerCertificates[0]
			return nil
		}}
		if err := handshake(t, cfg, client); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := served(); !got.Equal(first) {
		t.Fatal("not the first certificate")
	}
	// The files are looked at once a second: a read two seconds on
	// (the clock passed to get) takes what is on disk, with no sleep.
	second := write("second")
	if _, err := fc.get(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if !served().Equal(second) {
		t.Fatal("the new certificate is not served")
	}
	// A half-written pair keeps the last good one.
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	if _, err := fc.get(time.Now().Add(4 * time.Second)); err != nil {
		t.Fatalf("a broken pair after a good one: %v", err)
	}
	if got := served(); !got.Equal(second) {
		t.Fatal("a broken pair replaced the served certificate")
	}
}

// TestNodeRenewsItsCertificateInPlace: an operator's certificate is
// renewed at two thirds of its life, in memory, and the same listener
// config serves the new one from the next handshake: no restart.
func TestNodeRenewsItsCertificateInPlace(t *testing.T) {
	t.Parallel()
	ca, _ := newTestCA(t, "control")
	n, err := NewNode(ca, Identity{ID: "op"}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := n.Certificate().Leaf
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	server := n.ServerConfig(tls.RequireAndVerifyClientCert)
	client := n.ClientConfig("op")
	client.ServerName = "127.0.0.1"
	var seen *x509.Certificate
	verify := client.VerifyConnection
	client.VerifyConnection = func(cs tls.ConnectionState) error {
		seen = cs.PeerCertificates[0]
		return verify(cs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := handshake(t, server, client); err != nil {
			t.Fatalf("handshake during renewal: %v", err)
		}
		if !seen.Equal(first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed")
		}
		time.Sleep(100 * time.Millisecond) // polling for the renewal at 2 s
	}
	if !seen.NotAfter.After(first.NotAfter) {
		t.Fatalf("renewed certificate ends %v, the first %v", seen.NotAfter, first.NotAfter)
	}
}
