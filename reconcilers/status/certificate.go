package status

import (
	"fmt"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// caFingerprint is the fingerprint of the CA clients verify against (the
// user's issuer, or ours); prev when it does not parse.
func caFingerprint(m credentials.Material, prev string) string {
	if ca, err := certs.ParseCert(credentials.CABundle(m)); err == nil {
		return certs.Fingerprint(ca)
	}
	return prev
}

// certificate describes the current server certificate (never its key).
func certificate(m credentials.Material, c *api.MqttCluster, push Serving) *api.CertificateStatus {
	if c.Spec.TLS.CertificateSecret != "" {
		// The user's certificate, as HAProxy serves it.
		if push.User == nil {
			return nil
		}
		return &api.CertificateStatus{
			Serial: push.User.Serial, NotAfter: metaTime(push.User.NotAfter),
			Serving: fmt.Sprintf("%d/%d", push.Serving, push.Running),
		}
	}
	cert, err := certs.ParseCert(m.Server.CertPEM)
	if err != nil {
		return nil
	}
	t := metaTime
	cs := &api.CertificateStatus{
		Serial: cert.SerialNumber.Text(16), NotBefore: t(cert.NotBefore), NotAfter: t(cert.NotAfter),
		Reason: string(m.Reason), IssuedAt: t(m.IssuedAt),
	}
	if at, err := credentials.RenewAt(m, c); err == nil {
		cs.RenewAt = t(at)
	}
	if push.Enabled {
		cs.Serving = fmt.Sprintf("%d/%d", push.Serving, push.Running)
	}
	return cs
}

// caRotation describes a CA rotation in progress (nil when none).
func caRotation(m credentials.Material, c *api.MqttCluster) *api.CARotationStatus {
	if m.NextCA == nil || c.Spec.TLS.CertificateSecret != "" {
		return nil
	}
	next, err := certs.ParseCert(m.NextCA.CertPEM)
	if err != nil {
		return nil
	}
	return &api.CARotationStatus{
		NextFingerprint: certs.Fingerprint(next), Reason: string(m.CAReason),
		Since: metaTime(m.NextCASince), SwitchAt: metaTime(credentials.CASwitchAt(m, c)),
	}
}
