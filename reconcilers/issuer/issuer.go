package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// ComponentSigner labels a cluster's signer jobs.
const ComponentSigner = "signer"

// ErrSigning: the server certificate waits for the issuer's signer job.
var ErrSigning = errors.New("waiting for the issuer's signer job to sign the server certificate")

// Reconciler runs the signer jobs of clusters with spec.tls.issuerSecret.
type Reconciler struct {
	Swarm      swarm.Client
	OperatorID string
	// Image is the operator's own image (it has `mqtt-operator sign`).
	Image string
	// Fence runs before every Swarm write and every Save.
	Fence func() error
	// Save stores a cluster's material (sealed) before it is used.
	Save func(c *api.MqttCluster, m credentials.Material) error
	// Issued counts a certificate issued, by reason (nil: not counted).
	Issued func(reason string)
	Now    func() time.Time
	Log    *slog.Logger
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

func (r *Reconciler) fence() error {
	if r.Fence != nil {
		return r.Fence()
	}
	return nil
}

// Reconcile, with spec.tls.issuerSecret, gets the server certificate signed
// by the user's issuer without the operator ever reading its key: the
// operator keeps a key and a certificate request in the store, runs a
// one-shot Swarm job (its own image, `mqtt-operator sign`) with the
// issuer secret mounted and the request as an argument, and reads the
// signed certificate (public) from the job's log. Level-triggered: the
// pending request and the job are found again after a restart.
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster, m credentials.Material) (credentials.Material, error) {
	if c.Spec.TLS.IssuerSecret == "" || *c.Spec.LoadBalancer.Ports.MQTTS == 0 {
		return r.dropIssuer(ctx, c, m)
	}
	jobs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, ComponentSigner))
	if err != nil {
		return m, err
	}
	if r.Image == "" {
		return m, errors.New("spec.tls.issuerSecret needs the operator's --operator-image (the operator stack sets it)")
	}
	sec, err := swarm.SecretByName(ctx, r.Swarm, c.Spec.TLS.IssuerSecret, "spec.tls.issuerSecret", c.Name)
	if err != nil {
		return m, err
	}
	req, renewBefore, err := credentials.Request(c)
	if err != nil {
		return m, err
	}
	reason := r.issuerReason(c, m, sec, req, renewBefore)
	if reason == "" {
		return m, r.removeJobs(ctx, jobs, "")
	}
	st, m, err := r.pendingRequest(c, m, sec, req, reason)
	if err != nil {
		return m, err
	}
	name := api.SignerJob(c.Name, swarm.ContentHash(st.PendingCSR))
	var job *dswarm.Service
	for i := range jobs {
		if jobs[i].Spec.Name == name {
			job = &jobs[i]
		}
	}
	if err := r.removeJobs(ctx, jobs, name); err != nil {
		return m, err
	}
	if job == nil {
		if err := r.fence(); err != nil {
			return m, err
		}
		if _, err := r.Swarm.CreateService(ctx, r.signerJob(c, name, sec, st.PendingCSR, req.Duration)); err != nil {
			return m, fmt.Errorf("signer job of %s: %w", c.Name, err)
		}
		r.log().Info("created", "component", ComponentSigner, "object", name, "reason", string(st.PendingReason))
		return m, ErrSigning
	}
	return r.collectSigned(ctx, c, m, st, sec, job)
}

// dropIssuer: with no issuer (or no MQTTS) any signer job goes, and so
// does the issuer's state.
func (r *Reconciler) dropIssuer(ctx context.Context, c *api.MqttCluster, m credentials.Material) (credentials.Material, error) {
	if m.Issuer == nil {
		return m, nil // no issuer, ever: no job to look for
	}
	jobs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, ComponentSigner))
	if err != nil {
		return m, err
	}
	if err := r.removeJobs(ctx, jobs, ""); err != nil {
		return m, err
	}
	m.Issuer = nil
	return m, r.storeMaterial(c, m)
}

// issuerReason is why the server certificate must be signed again by the
// issuer ("" when it need not).
func (r *Reconciler) issuerReason(c *api.MqttCluster, m credentials.Material, sec *dswarm.Secret, req certs.ServerRequest, renewBefore time.Duration) certs.Reason {
	switch {
	case len(m.Server.CertPEM) == 0 || m.Issuer == nil || len(m.Issuer.CertPEM) == 0:
		return certs.ReasonMissing
	case m.Issuer.SecretID != sec.ID:
		return certs.ReasonIssuerChanged
	}
	reason := certs.NeedsReissue(certs.Input{Current: m.Server.CertPEM, CA: m.Issuer.CertPEM, Want: req, RenewBefore: renewBefore, Now: r.now()})
	if at := credentials.RenewRequested(c); reason == "" && !at.IsZero() && at.After(m.IssuedAt) {
		reason = certs.ReasonRequested
	}
	return reason
}

// pendingRequest is the request for this issuer and these names, made
// (key and CSR, stored) when there is none, kept until signed.
func (r *Reconciler) pendingRequest(c *api.MqttCluster, m credentials.Material, sec *dswarm.Secret, req certs.ServerRequest, reason certs.Reason) (credentials.IssuerState, credentials.Material, error) {
	st := credentials.IssuerState{}
	if m.Issuer != nil {
		st = *m.Issuer
	}
	want := sec.ID + ":" + swarm.ContentHash([]byte(fmt.Sprintf("%v|%v|%s|%s|%s", req.DNSNames, req.IPAddresses, req.CommonName, req.KeyType, req.Duration)))
	if st.PendingFor == want && len(st.PendingCSR) > 0 {
		return st, m, nil
	}
	csr, key, err := certs.NewCSR(req)
	if err != nil {
		return st, m, err
	}
	st.PendingCSR, st.PendingKeyPEM, st.PendingFor, st.PendingReason = csr, key, want, reason
	m.Issuer = &st
	return st, m, r.storeMaterial(c, m)
}

// collectSigned reads the signer job's outcome: the signed certificate
// (stored, the job removed), a failure (the job removed: the next pass
// makes a new one), or ErrSigning while it runs.
func (r *Reconciler) collectSigned(ctx context.Context, c *api.MqttCluster, m credentials.Material, st credentials.IssuerState, sec *dswarm.Secret, job *dswarm.Service) (credentials.Material, error) {
	name := job.Spec.Name
	tasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, ComponentSigner))
	if err != nil {
		return m, err
	}
	for _, t := range tasks {
		if t.ServiceID != job.ID {
			continue
		}
		switch t.Status.State {
		case dswarm.TaskStateComplete:
			lines, err := r.Swarm.ServiceLogs(ctx, name, time.Time{})
			if err != nil {
				return m, err
			}
			leafPEM, issuerPEM, err := SignedOutput(lines, st.PendingKeyPEM)
			if err != nil {
				_ = r.removeJobs(ctx, []dswarm.Service{*job}, "")
				return m, fmt.Errorf("signer job %s: %w", name, err)
			}
			m.Server = certs.Pair{CertPEM: leafPEM, KeyPEM: st.PendingKeyPEM}
			m.Reason, m.IssuedAt = st.PendingReason, r.now().UTC()
			m.Issuer = &credentials.IssuerState{SecretID: sec.ID, CertPEM: issuerPEM}
			if err := r.storeMaterial(c, m); err != nil {
				return m, err
			}
			if r.Issued != nil {
				r.Issued(string(m.Reason))
			}
			leaf, _ := certs.ParseCert(leafPEM)
			r.log().Info("issued server certificate", "cluster", c.Name, "reason", string(m.Reason), "issuer", c.Spec.TLS.IssuerSecret, "serial", leaf.SerialNumber.Text(16), "notAfter", leaf.NotAfter)
			return m, r.removeJobs(ctx, []dswarm.Service{*job}, "")
		case dswarm.TaskStateFailed, dswarm.TaskStateRejected:
			// Its log holds the reason (never a key).
			msg := t.Status.Err
			if err := r.removeJobs(ctx, []dswarm.Service{*job}, ""); err != nil {
				return m, err
			}
			return m, fmt.Errorf("signer job %s failed: %s (see docker service logs %s)", name, msg, name)
		}
	}
	return m, ErrSigning
}

func (r *Reconciler) signerJob(c *api.MqttCluster, name string, sec *dswarm.Secret, csr []byte, d time.Duration) dswarm.ServiceSpec {
	one := uint64(1)
	labels := swarm.OwnedComponent(r.OperatorID, c.Name, ComponentSigner)
	return dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: &dswarm.ContainerSpec{
				Image: r.Image, Labels: labels,
				Command: []string{"/mqtt-operator", "sign", "--issuer", "/run/secrets/issuer.pem",
					"--csr", base64.StdEncoding.EncodeToString(csr), "--duration", d.String()},
				Secrets: []*dswarm.SecretReference{{SecretID: sec.ID, SecretName: sec.Spec.Name,
					File: &dswarm.SecretReferenceFileTarget{Name: "issuer.pem", UID: "0", GID: "0", Mode: 0o400}}},
			},
			RestartPolicy: &dswarm.RestartPolicy{Condition: dswarm.RestartPolicyConditionNone},
		},
		// A replicated service of one task that is never restarted, not a
		// replicated job: Swarm leaves the containers of a removed job
		// behind (moby/moby#44312), and removes a service's.
		Mode: dswarm.ServiceMode{Replicated: &dswarm.ReplicatedService{Replicas: &one}},
	}
}

// removeJobs removes signer jobs but keep.
func (r *Reconciler) removeJobs(ctx context.Context, jobs []dswarm.Service, keep string) error {
	for _, j := range jobs {
		if j.Spec.Name == keep {
			continue
		}
		if err := r.fence(); err != nil {
			return err
		}
		if err := r.Swarm.RemoveService(ctx, j.ID); err != nil {
			return err
		}
		r.log().Info("removed", "component", ComponentSigner, "object", j.Spec.Name)
	}
	return nil
}

// SignedOutput reads the signer's log: the certificate and the issuer's,
// between the markers; the certificate must be for the pending key and
// signed by that issuer.
func SignedOutput(lines []swarm.LogLine, keyPEM []byte) (leafPEM, issuerPEM []byte, err error) {
	var buf bytes.Buffer
	in := false
	for _, l := range lines {
		switch strings.TrimSpace(l.Text) {
		case credentials.SignedBegin:
			in = true
			buf.Reset()
			continue
		case credentials.SignedEnd:
			in = false
		}
		if in {
			buf.WriteString(strings.TrimSpace(l.Text) + "\n")
		}
	}
	var blocks [][]byte
	for rest := buf.Bytes(); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			blocks = append(blocks, pem.EncodeToMemory(b))
		}
	}
	if len(blocks) < 2 {
		return nil, nil, errors.New("no signed certificate in its log")
	}
	leaf, err := certs.ParseCert(blocks[0])
	if err != nil {
		return nil, nil, err
	}
	iss, err := certs.ParseCert(blocks[1])
	if err != nil {
		return nil, nil, err
	}
	if err := leaf.CheckSignatureFrom(iss); err != nil {
		return nil, nil, fmt.Errorf("the certificate is not signed by the issuer it names: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("the pending key is unreadable")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, errors.New("the pending key is unreadable")
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("the pending key is unreadable")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, nil, errors.New("the certificate is not for the requested key")
	}
	return blocks[0], blocks[1], nil
}

// storeMaterial writes a cluster's material (sealed when a key is set).
func (r *Reconciler) storeMaterial(c *api.MqttCluster, m credentials.Material) error {
	if err := r.fence(); err != nil {
		return err
	}
	return r.Save(c, m)
}
