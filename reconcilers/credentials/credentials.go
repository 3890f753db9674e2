package credentials

import (
	"fmt"
	"slices"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
)

// Kind is the store kind holding each cluster's material, under the
// cluster's name. It is internal: the API serves only the public parts.
const Kind = "MqttClusterCredentials"

// DefaultUser is the MQTT user the operator generates.
const DefaultUser = "mqtt"

// CALifetime is how long a generated CA is valid. CA rotation is step 4.
const CALifetime = 10 * 365 * 24 * time.Hour

// Material is a cluster's generated secrets.
type Material struct {
	CA     certs.Pair `json:"ca"`
	Server certs.Pair `json:"server"`
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
}

// ServiceNames are the names the server certificate always carries: the
// load balancer's Swarm service names, reachable from the cluster network.
func ServiceNames(cluster string) []string {
	return []string{cluster + "-lb", "tasks." + cluster + "-lb"}
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
		CommonName: c.Name + "-lb", DNSNames: names, IPAddresses: slices.Clone(c.Spec.TLS.IPAddresses),
		KeyType: certs.ECDSAP256, Duration: d,
	}, rb, nil
}

// RenewAnnotation on a cluster asks for a new server certificate: its value
// is the RFC 3339 time of the request; a certificate issued before it is
// reissued (mqttctl certificate renew sets it).
const RenewAnnotation = "mqtt.swarm/renew-certificate-requested-at"

// RenewRequested is the time of the last renewal request on c (zero when
// none, or when the annotation does not parse).
func RenewRequested(c *api.MqttCluster) time.Time {
	t, err := time.Parse(time.RFC3339Nano, c.Annotations[RenewAnnotation])
	if err != nil {
		return time.Time{}
	}
	return t
}

// Next returns the material a defaulted, valid cluster needs at now, and
// the reason the server certificate was (re)issued ("" when the current
// one stands). cur may be nil. When nothing changes, Next returns cur's
// value and changed is false.
func Next(cur *Material, c *api.MqttCluster, now time.Time) (next Material, reason certs.Reason, changed bool, err error) {
	if cur != nil {
		next = *cur
	}
	if len(next.CA.CertPEM) == 0 || len(next.CA.KeyPEM) == 0 {
		next.CA, err = certs.IssueCA(c.Name, certs.ECDSAP256, CALifetime, now)
		if err != nil {
			return Material{}, "", false, err
		}
		changed = true
	}
	req, renewBefore, err := Request(c)
	if err != nil {
		return Material{}, "", false, err
	}
	reason = certs.NeedsReissue(certs.Input{Current: next.Server.CertPEM, CA: next.CA.CertPEM, Want: req, RenewBefore: renewBefore, Now: now})
	if reason == "" && len(next.Server.CertPEM) > 0 {
		if at := RenewRequested(c); !at.IsZero() && at.After(next.IssuedAt) {
			reason = certs.ReasonRequested
		}
	}
	if reason != "" {
		next.Server, err = certs.IssueServer(next.CA, req, now)
		if err != nil {
			return Material{}, "", false, err
		}
		next.Reason, next.IssuedAt = reason, now.UTC()
		changed = true
	}
	if next.Username == "" || next.Password == "" || len(next.PasswordFile) == 0 {
		next.Username, next.Password = DefaultUser, broker.NewPassword()
		line, err := broker.PasswordLine(next.Username, next.Password)
		if err != nil {
			return Material{}, "", false, err
		}
		next.PasswordFile = []byte(line + "\n")
		changed = true
	}
	if next.BridgePassword == "" || len(next.InternalPasswordFile) == 0 {
		next.BridgePassword = broker.NewPassword()
		line, err := broker.PasswordLine(broker.BridgeUser, next.BridgePassword)
		if err != nil {
			return Material{}, "", false, err
		}
		next.InternalPasswordFile = []byte(line + "\n")
		changed = true
	}
	return next, reason, changed, nil
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
	return append(out, m.Server.KeyPEM...)
}
