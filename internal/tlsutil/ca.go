package tlsutil

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"
)

// CA is the control-plane CA: every certificate it holds is trusted (a
// bundle holds the old and the new CA during a rotation), and the one
// whose key it holds signs.
type CA struct {
	Pool   *x509.CertPool
	all    []*x509.Certificate
	signer *x509.Certificate
	key    crypto.Signer
}

// NewCA makes a new control-plane CA (ECDSA P-256, valid ten years) and
// returns its certificate and key as one PEM bundle (the Docker secret's
// content).
func NewCA(name string, now time.Time) ([]byte, error) {
	key, serial, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"swarm-mqtt-operator"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), nil
}

// newKey makes a P-256 key and a random 127-bit serial number.
func newKey() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	return key, serial, nil
}

// LoadCA reads a CA bundle file: one or more CA certificates (all
// trusted) and the private key of one of them (which signs).
func LoadCA(file string) (*CA, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("control-plane CA: %w", err)
	}
	ca, err := ParseCA(b)
	if err != nil {
		return nil, fmt.Errorf("control-plane CA %s: %w", file, err)
	}
	return ca, nil
}

// ParseCA parses a CA bundle (see LoadCA). Errors never quote the key.
func ParseCA(b []byte) (*CA, error) {
	ca := &CA{Pool: x509.NewCertPool()}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("a certificate does not parse: %w", err)
			}
			if !c.IsCA {
				return nil, fmt.Errorf("certificate %q is not a CA", c.Subject.CommonName)
			}
			certs = append(certs, c)
			ca.all = append(ca.all, c)
			ca.Pool.AddCert(c)
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			k, err := parseKey(blk)
			if err != nil {
				return nil, errors.New("the private key does not parse")
			}
			ca.key = k
		}
	}
	if len(certs) == 0 {
		return nil, errors.New("no CA certificate")
	}
	if ca.key == nil {
		return nil, errors.New("no private key")
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(ca.key.Public()) {
			ca.signer = c
		}
	}
	if ca.signer == nil {
		return nil, errors.New("the private key matches none of the CA certificates")
	}
	return ca, nil
}

func parseKey(blk *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return s, nil
}

// CertPEM is the CA bundle's certificates (public) as PEM: what mqttctl
// and Prometheus verify the operators with.
func (ca *CA) CertPEM() []byte {
	var out []byte
	for _, c := range ca.all {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// Identity is what an operator's certificate names.
type Identity struct {
	// ID is the raft server id (URI SAN and common name).
	ID string
	// IPs and DNSNames are the addresses the operator is reached at (its
	// API and raft address); loopback and OperatorDNSName are always in.
	IPs      []net.IP
	DNSNames []string
}

// Issue signs a new operator certificate with a new key, valid for
// lifetime from now.
func (ca *CA) Issue(id Identity, lifetime time.Duration, now time.Time) (*tls.Certificate, error) {
	if id.ID == "" {
		return nil, errors.New("issue operator certificate: no id")
	}
	key, serial, err := newKey()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(OperatorURI(id.ID))
	if err != nil {
		return nil, err
	}
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, id.IPs...)
	dns := append([]string{"localhost", OperatorDNSName}, id.DNSNames...)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: id.ID, Organization: []string{"swarm-mqtt-operator"}, OrganizationalUnit: []string{OperatorOU}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(lifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u}, IPAddresses: ips, DNSNames: dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.signer, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue operator certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.signer.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// OperatorOU is the organizational unit of every operator certificate:
// HAProxy's admin listener checks it (it cannot read URI SANs).
const OperatorOU = "operator"

// Kind is a kind of component certificate the operator issues a
// cluster's components from the control-plane CA: its URI SAN is Prefix
// followed by the cluster's name, its organizational unit OU.
type Kind struct {
	Prefix, OU string
	Usages     []x509.ExtKeyUsage
}

// The component kinds. Admin (HAProxy's runtime API listener) is server
// authentication only: it cannot act as a client anywhere. Sync (a
// cluster's agents, their API and rsync tunnel) is both: agents of one
// cluster accept only each other. Broker (the brokers' listeners, for the
// names they are reached at) is server authentication.
var (
	Admin  = Kind{"spiffe://swarm-mqtt-operator/haproxy-admin/", "haproxy-admin", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	Sync   = Kind{"spiffe://swarm-mqtt-operator/sync-agent/", "sync-agent", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	Broker = Kind{"spiffe://swarm-mqtt-operator/broker/", "broker", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	// Monitoring: a server of the monitoring stack (InfluxDB, which
	// Prometheus writes to): server authentication, named by its service.
	Monitoring = Kind{"spiffe://swarm-mqtt-operator/monitoring/", "monitoring", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
)

// URI is the URI SAN of kind k's certificate for cluster.
func (k Kind) URI(cluster string) string { return k.Prefix + url.PathEscape(cluster) }

// IssueComponent signs a certificate of kind k for cluster with a new key,
// valid for dnsNames (may be none) and lifetime (at most the CA's), and
// returns the chain and the key as PEM (HAProxy and Mosquitto read both
// from one file).
func (ca *CA) IssueComponent(k Kind, cluster string, dnsNames []string, lifetime time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, serial, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(k.URI(cluster))
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.signer.NotAfter) {
		notAfter = ca.signer.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cluster + " " + k.OU, Organization: []string{"swarm-mqtt-operator"}, OrganizationalUnit: []string{k.OU}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: k.Usages,
		URIs:        []*url.URL{u}, DNSNames: dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.signer, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s certificate of %s: %w", k.OU, cluster, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.signer.Raw})...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// ComponentValid reports whether certPEM is kind k's certificate for
// cluster, for exactly dnsNames, that the CA's trusted certificates
// verify at now with more than renewBefore left.
func (ca *CA) ComponentValid(k Kind, cluster string, dnsNames []string, certPEM []byte, now time.Time, renewBefore time.Duration) bool {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return false
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || now.Add(renewBefore).After(c.NotAfter) || !slices.Equal(c.DNSNames, dnsNames) {
		return false
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool, CurrentTime: now, KeyUsages: k.Usages}); err != nil {
		return false
	}
	return len(c.URIs) == 1 && c.URIs[0].String() == k.URI(cluster)
}

// ComponentClientConfig is for the operator dialing a cluster's component
// of kind k at a task address (HAProxy's runtime API, a sync agent): it
// presents the operator's certificate and accepts only k's certificate
// for that cluster from the control-plane CA (the address is not in it:
// the identity is checked instead).
func (n *Node) ComponentClientConfig(k Kind, cluster string) *tls.Config {
	cfg := Base()
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.Certificate(), nil }
	cfg.InsecureSkipVerify = true // replaced by VerifyConnection below
	cfg.VerifyConnection = verifyIdentity(n.ca.Pool, k.URI(cluster), x509.ExtKeyUsageServerAuth)
	return cfg
}

// verifyIdentity checks a peer's chain against pool (not its address:
// tasks are reached at addresses no certificate names) and that its
// certificate carries the one URI SAN want.
func verifyIdentity(pool *x509.CertPool, want string, usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the peer presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return fmt.Errorf("tls: peer certificate: %w", err)
		}
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
			return fmt.Errorf("tls: the peer is not %s", want)
		}
		return nil
	}
}

// Peer is a component's TLS identity read from files (a sync agent: its
// certificate and key, and the control-plane CA certificate; it holds no
// CA key).
type Peer struct {
	cert tls.Certificate
	pool *x509.CertPool
	uri  string
}

// LoadPeer reads a component's certificate and key (one PEM file) and the
// control-plane CA certificate.
func LoadPeer(certKeyFile, caFile string) (*Peer, error) {
	b, err := os.ReadFile(certKeyFile)
	if err != nil {
		return nil, fmt.Errorf("component certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, errors.New("component certificate: the certificate and key do not load")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || len(leaf.URIs) != 1 {
		return nil, errors.New("component certificate: no identity (URI SAN)")
	}
	cab, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("control-plane CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cab) {
		return nil, errors.New("control-plane CA: no certificate")
	}
	cert.Leaf = leaf
	return &Peer{cert: cert, pool: pool, uri: leaf.URIs[0].String()}, nil
}

// ServerConfig serves with the component's certificate. mutual: require
// a client certificate of the same identity (a peer of the same cluster);
// otherwise clients are not asked for one (the API checks a token).
func (p *Peer) ServerConfig(mutual bool) *tls.Config {
	cfg := Base()
	cfg.Certificates = []tls.Certificate{p.cert}
	if mutual {
		cfg.ClientAuth = tls.RequireAnyClientCert // verified below, by identity
		cfg.VerifyConnection = verifyIdentity(p.pool, p.uri, x509.ExtKeyUsageClientAuth)
	}
	return cfg
}

// ClientConfig dials a peer of the same identity, presenting this one.
func (p *Peer) ClientConfig() *tls.Config {
	cfg := Base()
	cfg.Certificates = []tls.Certificate{p.cert}
	cfg.InsecureSkipVerify = true // replaced by VerifyConnection
	cfg.VerifyConnection = verifyIdentity(p.pool, p.uri, x509.ExtKeyUsageServerAuth)
	return cfg
}

// CA is the control-plane CA the node's certificate comes from.
func (n *Node) CA() *CA { return n.ca }

// Node is an operator's own certificate, issued at start and renewed in
// memory at two thirds of its life (Run): no restart, no file.
type Node struct {
	ca       *CA
	id       Identity
	lifetime time.Duration
	mu       sync.RWMutex
	cert     *tls.Certificate
}

// DefaultNodeLifetime is how long an operator certificate is valid.
const DefaultNodeLifetime = 7 * 24 * time.Hour

// NewNode issues the operator's first certificate.
func NewNode(ca *CA, id Identity, lifetime time.Duration) (*Node, error) {
	if lifetime <= 0 {
		lifetime = DefaultNodeLifetime
	}
	n := &Node{ca: ca, id: id, lifetime: lifetime}
	if err := n.renew(time.Now()); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *Node) renew(now time.Time) error {
	c, err := n.ca.Issue(n.id, n.lifetime, now)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.cert = c
	n.mu.Unlock()
	return nil
}

// Certificate is the current certificate.
func (n *Node) Certificate() *tls.Certificate {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.cert
}

// ID is the raft id the certificate names.
func (n *Node) ID() string { return n.id.ID }

// RenewAt is when the current certificate is renewed: a third of its
// lifetime before it ends (NotBefore is backdated for clock skew, so it
// does not count).
func (n *Node) RenewAt() time.Time {
	return n.Certificate().Leaf.NotAfter.Add(-n.lifetime / 3)
}

// Run renews the certificate at two thirds of its life until ctx ends
// (retrying a failed renewal every minute).
func (n *Node) Run(ctx context.Context) {
	for {
		wait := time.Until(n.RenewAt())
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		if err := n.renew(time.Now()); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}
}

// ServerConfig is for a listener that serves with the operator's
// certificate. clientAuth: tls.RequireAndVerifyClientCert for raft (and
// only operators pass), tls.VerifyClientCertIfGiven for the API.
func (n *Node) ServerConfig(clientAuth tls.ClientAuthType) *tls.Config {
	cfg := Base()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.Certificate(), nil }
	cfg.ClientCAs = n.ca.Pool
	cfg.ClientAuth = clientAuth
	if clientAuth == tls.RequireAndVerifyClientCert {
		cfg.VerifyConnection = RequireOperator("")
	}
	return cfg
}

// ClientConfig is for dialing another operator: the peer must present an
// operator certificate from the CA, valid for the address dialed, and
// naming raft id want when want is not empty.
func (n *Node) ClientConfig(want string) *tls.Config {
	cfg := Base()
	cfg.RootCAs = n.ca.Pool
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return n.Certificate(), nil }
	cfg.VerifyConnection = RequireOperator(want)
	return cfg
}
