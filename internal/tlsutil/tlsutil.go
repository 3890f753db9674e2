package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Base is the one TLS configuration every listener and dialer of the
// project starts from: Mozilla "intermediate" (TLS 1.2 with ECDHE key
// exchange and AEAD ciphers only, or TLS 1.3, whose suites are all AEAD).
func Base() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384},
	}
}

// OperatorURIPrefix starts the URI SAN of every operator certificate; the
// raft server id follows.
const OperatorURIPrefix = "spiffe://swarm-mqtt-operator/operator/"

// OperatorDNSName is in every operator certificate, for clients that
// reach an operator at an address that is not in it (Prometheus scrapes
// each task at its overlay address and sets server_name to this).
const OperatorDNSName = "mqtt-operator"

// OperatorURI is the URI SAN naming the operator with raft id id.
func OperatorURI(id string) string { return OperatorURIPrefix + url.PathEscape(id) }

// OperatorID returns the raft id an operator certificate names, or an
// error when it names none.
func OperatorID(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, OperatorURIPrefix) {
			id, err := url.PathUnescape(strings.TrimPrefix(s, OperatorURIPrefix))
			if err == nil && id != "" {
				return id, nil
			}
		}
	}
	return "", fmt.Errorf("certificate %q is not an operator's", cert.Subject.CommonName)
}

// RequireOperator checks, after the chain was verified, that the peer's
// certificate is an operator's, and when want is not empty, the operator
// with that raft id.
func RequireOperator(want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the peer presented no certificate")
		}
		id, err := OperatorID(cs.PeerCertificates[0])
		if err != nil {
			return err
		}
		if want != "" && id != want {
			return fmt.Errorf("tls: the peer is operator %q, not %q", id, want)
		}
		return nil
	}
}

// FileCertificate serves a certificate and key from files (an API
// certificate the user gives), read again when either file changes, so a
// renewed certificate is served with no restart.
type FileCertificate struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             string
	checked           time.Time
}

// NewFileCertificate loads the pair once (an error if it does not load).
func NewFileCertificate(certFile, keyFile string) (*FileCertificate, error) {
	f := &FileCertificate{certFile: certFile, keyFile: keyFile}
	if _, err := f.get(time.Now()); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FileCertificate) stat() string {
	var b strings.Builder
	for _, p := range []string{f.certFile, f.keyFile} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return b.String()
}

func (f *FileCertificate) get(now time.Time) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cert != nil && now.Sub(f.checked) < time.Second {
		return f.cert, nil
	}
	f.checked = now
	stamp := f.stat()
	if f.cert != nil && stamp == f.stamp {
		return f.cert, nil
	}
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		if f.cert != nil {
			return f.cert, nil // half-written: keep serving the last good pair
		}
		return nil, fmt.Errorf("load API certificate %s: %w", f.certFile, err)
	}
	f.cert, f.stamp = &c, stamp
	return f.cert, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (f *FileCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.get(time.Now())
}
