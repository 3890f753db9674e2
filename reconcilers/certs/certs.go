package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// KeyType is the private key algorithm.
type KeyType string

// Key types.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
)

// Pair is a certificate and its private key, both PEM.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// clockSkew backdates NotBefore so that clients with a slow clock accept a
// fresh certificate.
const clockSkew = 5 * time.Minute

func newKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("unsupported key type %q", t)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func encode(der []byte, key crypto.Signer) (Pair, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, errors.New("marshal private key failed")
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// IssueCA makes a self-signed CA for a cluster.
func IssueCA(cluster string, kt KeyType, lifetime time.Duration, now time.Time) (Pair, error) {
	key, err := newKey(kt)
	if err != nil {
		return Pair{}, err
	}
	sn, err := serial()
	if err != nil {
		return Pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cluster + " MQTT cluster CA", Organization: []string{"swarm-mqtt-operator"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return Pair{}, fmt.Errorf("create CA certificate for %s: %w", cluster, err)
	}
	return encode(der, key)
}

// ServerRequest is what a server certificate must hold.
type ServerRequest struct {
	CommonName  string
	DNSNames    []string
	IPAddresses []string
	KeyType     KeyType
	Duration    time.Duration
}

// IssueServer signs a server certificate with the CA.
func IssueServer(ca Pair, req ServerRequest, now time.Time) (Pair, error) {
	caCert, caKey, err := parsePair(ca)
	if err != nil {
		return Pair{}, fmt.Errorf("CA: %w", err)
	}
	key, err := newKey(req.KeyType)
	if err != nil {
		return Pair{}, err
	}
	sn, err := serial()
	if err != nil {
		return Pair{}, err
	}
	var ips []net.IP
	for _, s := range req.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return Pair{}, fmt.Errorf("%q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	notAfter := now.Add(req.Duration)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: req.CommonName},
		DNSNames:     slices.Clone(req.DNSNames),
		IPAddresses:  ips,
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return Pair{}, fmt.Errorf("sign server certificate %s: %w", req.CommonName, err)
	}
	return encode(der, key)
}

// ParseCert reads the first certificate of a PEM bundle.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parsePair never puts key bytes in its errors.
func parsePair(p Pair) (*x509.Certificate, crypto.Signer, error) {
	cert, err := ParseCert(p.CertPEM)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(p.KeyPEM)
	if block == nil {
		return nil, nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, errors.New("private key does not parse")
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("private key cannot sign")
	}
	return cert, signer, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, as colon-separated hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// KeyTypeOf names a certificate's key algorithm.
func KeyTypeOf(c *x509.Certificate) KeyType {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ECDSAP256
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048
		case 3072:
			return RSA3072
		}
	}
	return "unknown"
}

// RenewalTime is when a certificate valid from notBefore to notAfter is
// renewed: renewBefore ahead of expiry, or with a third of its lifetime left
// when renewBefore is 0 or not shorter than the lifetime.
func RenewalTime(notBefore, notAfter time.Time, renewBefore time.Duration) time.Time {
	lifetime := notAfter.Sub(notBefore)
	if renewBefore <= 0 || renewBefore >= lifetime {
		renewBefore = lifetime / 3
	}
	return notAfter.Add(-renewBefore)
}

// Reason says why a certificate is (re)issued. Empty: it is not.
type Reason string

// Reasons, in the order they are checked.
const (
	ReasonMissing         Reason = "Missing"
	ReasonUnparsable      Reason = "Unparsable"
	ReasonCARotated       Reason = "CARotated"
	ReasonIssuerChanged   Reason = "IssuerChanged"
	ReasonExpiring        Reason = "Expiring"
	ReasonDNSNamesChanged Reason = "DNSNamesChanged"
	ReasonIPsChanged      Reason = "IPAddressesChanged"
	ReasonKeyTypeChanged  Reason = "KeyTypeChanged"
	// ReasonRequested: a user asked for a renewal (mqttctl certificate
	// renew). Checked before the chain, by the caller that knows when.
	ReasonRequested Reason = "Requested"
)

// Input is what the reissue decision looks at.
type Input struct {
	// Current is the served certificate (PEM), nil when there is none.
	Current []byte
	// CA is the CA certificate that should have signed it (PEM).
	CA          []byte
	Want        ServerRequest
	RenewBefore time.Duration
	Now         time.Time
}

// policy is one check: a reason to reissue, or "".
type policy func(in Input, cur, ca *x509.Certificate) Reason

// policies run in order; the first reason wins.
var policies = []policy{
	func(_ Input, cur, _ *x509.Certificate) Reason {
		if cur == nil {
			return ReasonMissing
		}
		return ""
	},
	func(in Input, cur, ca *x509.Certificate) Reason {
		if ca != nil && !bytes.Equal(cur.RawIssuer, ca.RawSubject) {
			return ReasonIssuerChanged
		}
		if ca != nil && cur.CheckSignatureFrom(ca) != nil {
			return ReasonCARotated
		}
		return ""
	},
	func(in Input, cur, _ *x509.Certificate) Reason {
		if !in.Now.Before(RenewalTime(cur.NotBefore, cur.NotAfter, in.RenewBefore)) {
			return ReasonExpiring
		}
		return ""
	},
	func(in Input, cur, _ *x509.Certificate) Reason {
		if !sameSet(cur.DNSNames, in.Want.DNSNames) {
			return ReasonDNSNamesChanged
		}
		var ips []string
		for _, ip := range cur.IPAddresses {
			ips = append(ips, ip.String())
		}
		var want []string
		for _, s := range in.Want.IPAddresses {
			if ip := net.ParseIP(s); ip != nil {
				want = append(want, ip.String())
			}
		}
		if !sameSet(ips, want) {
			return ReasonIPsChanged
		}
		return ""
	},
	func(in Input, cur, _ *x509.Certificate) Reason {
		want := in.Want.KeyType
		if want == "" {
			want = ECDSAP256
		}
		if KeyTypeOf(cur) != want {
			return ReasonKeyTypeChanged
		}
		return ""
	},
}

// NeedsReissue runs the policy chain and returns the first reason, or "".
func NeedsReissue(in Input) Reason {
	var cur, ca *x509.Certificate
	if len(in.Current) > 0 {
		c, err := ParseCert(in.Current)
		if err != nil {
			return ReasonUnparsable
		}
		cur = c
	}
	if len(in.CA) > 0 {
		if c, err := ParseCert(in.CA); err == nil {
			ca = c
		}
	}
	for _, p := range policies {
		if r := p(in, cur, ca); r != "" {
			return r
		}
	}
	return ""
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// NewCSR makes a key and a certificate request for req: what the operator
// sends to a signer that holds an issuer's key (the key stays here).
func NewCSR(req ServerRequest) (csrDER, keyPEM []byte, err error) {
	key, err := newKey(req.KeyType)
	if err != nil {
		return nil, nil, err
	}
	var ips []net.IP
	for _, s := range req.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, nil, fmt.Errorf("%q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: req.CommonName}, DNSNames: slices.Clone(req.DNSNames), IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate request %s: %w", req.CommonName, err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, errors.New("marshal private key failed")
	}
	return csrDER, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// SignCSR issues a server certificate for a request with an issuer's
// certificate and key (PEM, in any order in one bundle): the names and key
// of the request, valid from now (less the clock skew) for duration, at
// most until the issuer expires.
func SignCSR(issuerBundle, csrDER []byte, duration time.Duration, now time.Time) ([]byte, error) {
	var p Pair
	for rest := issuerBundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE" && len(p.CertPEM) == 0:
			p.CertPEM = pem.EncodeToMemory(b)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			if b.Type != "PRIVATE KEY" { // PKCS#1 or SEC 1: re-encode as PKCS#8
				var k any
				var err error
				if b.Type == "RSA PRIVATE KEY" {
					k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
				} else {
					k, err = x509.ParseECPrivateKey(b.Bytes)
				}
				if err != nil {
					return nil, errors.New("the issuer's private key does not parse")
				}
				der, err := x509.MarshalPKCS8PrivateKey(k)
				if err != nil {
					return nil, errors.New("the issuer's private key does not parse")
				}
				b = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
			}
			p.KeyPEM = pem.EncodeToMemory(b)
		}
	}
	ca, key, err := parsePair(p)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if !ca.IsCA {
		return nil, errors.New("issuer: the certificate is not a CA")
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(duration)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: csr.Subject, DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses,
		NotBefore: now.Add(-clockSkew), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, csr.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, p.CertPEM...), nil
}
