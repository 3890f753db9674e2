package credentials

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
)

// DefaultUser is the MQTT user the operator generates.
const DefaultUser = "mqtt"

// CALifetime is how long a generated CA is valid. It is rotated with a
// third of that left, or when asked (RotateCAAnnotation).
const CALifetime = 10 * 365 * 24 * time.Hour

// Material is a cluster's generated secrets.
type Material struct {
	// CA signs the server certificate.
	CA certs.Pair `json:"ca"`
	// CAIssuedAt is when the newest CA (CA, or NextCA during a rotation)
	// was made; CAReason why.
	CAIssuedAt time.Time    `json:"caIssuedAt,omitzero"`
	CAReason   certs.Reason `json:"caReason,omitempty"`
	// NextCA, during a CA rotation, is the CA that takes over at
	// NextCASince + spec.tls.caOverlap. Until then clients get both in
	// the CA bundle, and the server certificate is still signed by CA.
	NextCA      *certs.Pair `json:"nextCA,omitempty"`
	NextCASince time.Time   `json:"nextCASince,omitzero"`
	// Issuer, with spec.tls.issuerSecret: the issuer that signed the
	// server certificate, and a request waiting for its signer job.
	Issuer *IssuerState `json:"issuer,omitempty"`
	Server certs.Pair   `json:"server"`
	// Reason the server certificate was last issued.
	Reason   certs.Reason `json:"reason,omitempty"`
	IssuedAt time.Time    `json:"issuedAt,omitzero"`
	Username string       `json:"username"`
	Password string       `json:"password"`
	// PasswordFile is the Mosquitto password file (one $7$ line per user).
	// It is kept, not recomputed, because each hash has a random salt.
	PasswordFile []byte `json:"passwordFile"`
	// BridgePassword is the internal bridge user's password, and
	// InternalPasswordFile the internal listener's password file.
	BridgePassword       string `json:"bridgePassword"`
	InternalPasswordFile []byte `json:"internalPasswordFile"`
	// SyncPassword is the sync agents' rsync password and API token
	// (spec.sync).
	SyncPassword string `json:"syncPassword,omitempty"`
	// LBAdmin is the certificate and key of the HAProxy runtime API's
	// listener (from the control-plane CA, issued by the operator; absent
	// without one). Only the operator's certificate is accepted there.
	LBAdmin *certs.Pair `json:"lbAdmin,omitempty"`
	// SyncTLS is the sync agents' certificate and key (spec.sync, with the
	// control-plane CA): TLS between agents and with the operator.
	SyncTLS *certs.Pair `json:"syncTLS,omitempty"`
	// BrokerTLS is the brokers' certificate and key (with the control-plane
	// CA): their listeners speak TLS to HAProxy, the bridges, the exporter.
	BrokerTLS *certs.Pair `json:"brokerTLS,omitempty"`
	// Users are the generated passwords of the cluster's MqttUsers, by
	// user name: the password (readable with the token) and its $7$
	// hash, kept so the brokers' state does not change every pass.
	Users map[string]UserSecret `json:"users,omitempty"`
}

// UserSecret is one MqttUser's generated password.
type UserSecret struct {
	Password string    `json:"password"`
	Hash     string    `json:"hash"`
	IssuedAt time.Time `json:"issuedAt"`
}

// NewUserSecret makes a password and its hash.
func NewUserSecret(user string, now time.Time) (UserSecret, error) {
	pw := NewPassword()
	line, err := PasswordLine(user, pw)
	if err != nil {
		return UserSecret{}, err
	}
	return UserSecret{Password: pw, Hash: strings.TrimPrefix(line, user+":"), IssuedAt: now}, nil
}

// ServiceNames are the names the server certificate always carries: the
// load balancer's Swarm service names, reachable from the cluster network.
func ServiceNames(cluster string) []string {
	return []string{api.LoadBalancerService(cluster), "tasks." + api.LoadBalancerService(cluster)}
}

// IssuerState is a user issuer's part of the material.
type IssuerState struct {
	// SecretID is the Docker secret (immutable: a new id is a new issuer)
	// that signed CertPEM's leaf; CertPEM is the issuer's certificate.
	SecretID string `json:"secretID,omitempty"`
	CertPEM  []byte `json:"certPEM,omitempty"`
	// A request sent to the signer: its key (kept here) and the request.
	PendingKeyPEM []byte       `json:"pendingKeyPEM,omitempty"`
	PendingCSR    []byte       `json:"pendingCSR,omitempty"`
	PendingFor    string       `json:"pendingFor,omitempty"` // the secret id it is for
	PendingReason certs.Reason `json:"pendingReason,omitempty"`
}

// Markers around the signer's output in its log.
const (
	SignedBegin = "-----MQTT-OPERATOR SIGNED BEGIN-----"
	SignedEnd   = "-----MQTT-OPERATOR SIGNED END-----"
)

// KeyType is the key algorithm a cluster asks for.
func KeyType(c *api.MqttCluster) certs.KeyType {
	switch c.Spec.TLS.KeyAlgorithm {
	case api.KeyRSA2048:
		return certs.RSA2048
	case api.KeyRSA3072:
		return certs.RSA3072
	}
	return certs.ECDSAP256
}

// Request is the server certificate a cluster asks for.
func Request(c *api.MqttCluster) (certs.ServerRequest, time.Duration, error) {
	d, err := c.Spec.TLS.Duration.Parse()
	if err != nil {
		return certs.ServerRequest{}, 0, fmt.Errorf("spec.tls.duration of %s: %w", c.Name, err)
	}
	rb, err := c.Spec.TLS.RenewBefore.Parse()
	if err != nil {
		return certs.ServerRequest{}, 0, fmt.Errorf("spec.tls.renewBefore of %s: %w", c.Name, err)
	}
	names := slices.Clone(c.Spec.TLS.DNSNames)
	for _, n := range ServiceNames(c.Name) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return certs.ServerRequest{
		CommonName: api.LoadBalancerService(c.Name), DNSNames: names, IPAddresses: slices.Clone(c.Spec.TLS.IPAddresses),
		KeyType: KeyType(c), Duration: d,
	}, rb, nil
}

// RenewAnnotation on a cluster asks for a new server certificate: its value
// is the RFC 3339 time of the request; a certificate issued before it is
// reissued (mqttctl certificate renew sets it).
const RenewAnnotation = "mqtt.swarm/renew-certificate-requested-at"

// RotateCAAnnotation on a cluster asks for a new CA: its value is the
// RFC 3339 time of the request (mqttctl certificate rotate-ca sets it).
const RotateCAAnnotation = "mqtt.swarm/rotate-ca-requested-at"

// RequestAnnotations are written by the operator's verbs; an apply that
// does not set them keeps them.
var RequestAnnotations = []string{RenewAnnotation, RotateCAAnnotation, api.ApprovedGenerationAnnotation}

func annotationTime(c *api.MqttCluster, key string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, c.Annotations[key])
	if err != nil {
		return time.Time{}
	}
	return t
}

// RenewRequested is the time of the last renewal request on c (zero when
// none, or when the annotation does not parse).
func RenewRequested(c *api.MqttCluster) time.Time { return annotationTime(c, RenewAnnotation) }

// Next returns the material a defaulted, valid cluster needs at now, and
// the reason the server certificate was (re)issued ("" when the current
// one stands). cur may be nil. When nothing changes, Next returns cur's
// value and changed is false.
func Next(cur *Material, c *api.MqttCluster, now time.Time) (next Material, reason certs.Reason, changed bool, err error) {
	if cur != nil {
		next = *cur
	}
	if next.NextCA != nil {
		p := *next.NextCA
		next.NextCA = &p // never share with cur
	}
	if changed, err = ensureCA(&next, c, now); err != nil {
		return Material{}, "", false, err
	}
	if reason, err = serverReason(next, c, now); err != nil {
		return Material{}, "", false, err
	}
	if reason != "" {
		req, _, _ := Request(c)
		next.Server, err = certs.IssueServer(next.CA, req, now)
		if err != nil {
			return Material{}, "", false, err
		}
		next.Reason, next.IssuedAt = reason, now.UTC()
		changed = true
	}
	users, err := ensurePasswords(&next, c)
	if err != nil {
		return Material{}, "", false, err
	}
	return next, reason, changed || users, nil
}

// ensureCA issues the CA when there is none, or moves a rotation on; it
// says whether it changed m.
func ensureCA(m *Material, c *api.MqttCluster, now time.Time) (bool, error) {
	if len(m.CA.CertPEM) > 0 && len(m.CA.KeyPEM) > 0 {
		return rotateCA(m, c, now)
	}
	ca, err := certs.IssueCA(c.Name, KeyType(c), CALifetime, now)
	if err != nil {
		return false, err
	}
	m.CA = ca
	m.CAIssuedAt, m.CAReason, m.NextCA, m.NextCASince = now.UTC(), certs.ReasonMissing, nil, time.Time{}
	return true, nil
}

// serverReason is why the server certificate must be issued ("" when it
// need not, or when the user's certificate or issuer provides it).
func serverReason(m Material, c *api.MqttCluster, now time.Time) (certs.Reason, error) {
	req, renewBefore, err := Request(c)
	if err != nil || c.Spec.TLS.CertificateSecret != "" || c.Spec.TLS.IssuerSecret != "" || req.Duration <= 0 {
		// The user's certificate is served, or the user's issuer signs it
		// (through a signer job): none is issued here.
		return "", err
	}
	reason := certs.NeedsReissue(certs.Input{Current: m.Server.CertPEM, CA: m.CA.CertPEM, Want: req, RenewBefore: renewBefore, Now: now})
	if reason == "" && len(m.Server.CertPEM) > 0 {
		if at := RenewRequested(c); !at.IsZero() && at.After(m.IssuedAt) {
			reason = certs.ReasonRequested
		}
	}
	return reason, nil
}

// ensurePasswords generates the users' passwords that are missing (the
// default user, the bridge user, the sync password with spec.sync); it
// says whether it changed m.
func ensurePasswords(m *Material, c *api.MqttCluster) (bool, error) {
	changed := false
	if m.Username == "" || m.Password == "" || len(m.PasswordFile) == 0 {
		m.Username, m.Password = DefaultUser, NewPassword()
		line, err := PasswordLine(m.Username, m.Password)
		if err != nil {
			return false, err
		}
		m.PasswordFile = []byte(line + "\n")
		changed = true
	}
	if m.BridgePassword == "" || len(m.InternalPasswordFile) == 0 {
		m.BridgePassword = NewPassword()
		line, err := PasswordLine(api.BridgeUser, m.BridgePassword)
		if err != nil {
			return false, err
		}
		m.InternalPasswordFile = []byte(line + "\n")
		changed = true
	}
	if m.SyncPassword == "" && c.Spec.Sync.Enabled != nil && *c.Spec.Sync.Enabled {
		m.SyncPassword = NewPassword()
		changed = true
	}
	return changed, nil
}

// rotateCA moves a CA rotation along: a rotation in progress ends once
// its overlap is over (the next CA signs from then on); a new one starts
// when asked, or when the CA has a third of its lifetime left.
func rotateCA(m *Material, c *api.MqttCluster, now time.Time) (bool, error) {
	overlap, err := c.Spec.TLS.CAOverlap.Parse()
	if err != nil {
		return false, fmt.Errorf("spec.tls.caOverlap of %s: %w", c.Name, err)
	}
	changed := false
	if m.NextCA != nil && !now.Before(m.NextCASince.Add(overlap)) {
		m.CA, m.NextCA, m.NextCASince = *m.NextCA, nil, time.Time{}
		changed = true
	}
	var reason certs.Reason
	if at := annotationTime(c, RotateCAAnnotation); !at.IsZero() && at.After(m.CAIssuedAt) {
		reason = certs.ReasonRequested
	} else if ca, err := certs.ParseCert(m.CA.CertPEM); err != nil {
		reason = certs.ReasonUnparsable
	} else if m.NextCA == nil && !now.Before(certs.RenewalTime(ca.NotBefore, ca.NotAfter, 0)) {
		reason = certs.ReasonExpiring
	}
	if reason == "" {
		return changed, nil
	}
	ca, err := certs.IssueCA(c.Name, KeyType(c), CALifetime, now)
	if err != nil {
		return false, err
	}
	m.CAIssuedAt, m.CAReason = now.UTC(), reason
	if overlap == 0 || reason == certs.ReasonUnparsable {
		m.CA, m.NextCA, m.NextCASince = ca, nil, time.Time{}
	} else {
		m.NextCA, m.NextCASince = &ca, now.UTC()
	}
	return true, nil
}

// CASwitchAt is when a CA rotation in progress makes the next CA the
// signing one (zero when none is in progress).
func CASwitchAt(m Material, c *api.MqttCluster) time.Time {
	if m.NextCA == nil {
		return time.Time{}
	}
	overlap, err := c.Spec.TLS.CAOverlap.Parse()
	if err != nil {
		return time.Time{}
	}
	return m.NextCASince.Add(overlap)
}

// CABundle is what clients should trust: the CA, and during a rotation the
// next one too.
func CABundle(m Material) []byte {
	if m.Issuer != nil && len(m.Issuer.CertPEM) > 0 {
		return slices.Clone(m.Issuer.CertPEM)
	}
	out := slices.Clone(m.CA.CertPEM)
	if m.NextCA != nil {
		out = append(out, m.NextCA.CertPEM...)
	}
	return out
}

// NextEvent is the next time the material changes by itself: the server
// certificate's renewal, the end of a CA rotation's overlap, or the CA's
// own renewal, whichever is first.
func NextEvent(m Material, c *api.MqttCluster) (time.Time, error) {
	var at time.Time
	first := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if c.Spec.TLS.CertificateSecret == "" {
		t, err := RenewAt(m, c)
		if err != nil {
			return time.Time{}, err
		}
		first(t)
	}
	first(CASwitchAt(m, c))
	if ca, err := certs.ParseCert(m.CA.CertPEM); err == nil && m.NextCA == nil {
		first(certs.RenewalTime(ca.NotBefore, ca.NotAfter, 0))
	}
	return at, nil
}

// RenewAt is when the server certificate must be renewed.
func RenewAt(m Material, c *api.MqttCluster) (time.Time, error) {
	cert, err := certs.ParseCert(m.Server.CertPEM)
	if err != nil {
		return time.Time{}, fmt.Errorf("server certificate of %s: %w", c.Name, err)
	}
	rb, err := c.Spec.TLS.RenewBefore.Parse()
	if err != nil {
		return time.Time{}, err
	}
	return certs.RenewalTime(cert.NotBefore, cert.NotAfter, rb), nil
}

// HAProxyPEM is what HAProxy's "crt" loads: the server certificate, then
// its key.
func HAProxyPEM(m Material) []byte {
	out := slices.Clone(m.Server.CertPEM)
	if m.Issuer != nil && len(m.Issuer.CertPEM) > 0 {
		out = append(out, m.Issuer.CertPEM...) // the chain to the issuer
	}
	return append(out, m.Server.KeyPEM...)
}
