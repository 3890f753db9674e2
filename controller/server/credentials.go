package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// CA is the answer of GET …/mqttclusters/NAME/ca: the cluster CA's
// certificate (public) that clients verify the MQTTS server against.
type CA = api.CA

// Credentials is the generated MQTT user (api.Credentials).
type Credentials = api.Credentials

// material reads a cluster's generated material, answering 404 itself
// when there is none.
func (s *Server) material(w http.ResponseWriter, r *http.Request) (*api.MqttCluster, *credentials.Material, bool) {
	c, ok := s.lookup(w, r)
	if !ok {
		return nil, nil, false
	}
	name := c.Name
	m, err := s.objects.Credentials(name)
	switch {
	case err != nil:
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, "the credentials of "+api.Resource+" \""+name+"\": "+err.Error(), &StatusDetails{Name: name, Kind: api.Resource})
		return nil, nil, false
	case m == nil:
		writeStatus(w, http.StatusNotFound, ReasonNotFound, "the credentials of "+api.Resource+" \""+name+"\" are not issued yet: the operator issues them on its first reconcile", &StatusDetails{Name: name, Kind: api.Resource})
		return nil, nil, false
	}
	return c, m, true
}

func (s *Server) getCA(w http.ResponseWriter, r *http.Request) {
	c, m, ok := s.material(w, r)
	if !ok {
		return
	}
	if c.Spec.TLS.CertificateSecret != "" {
		writeStatus(w, http.StatusNotFound, ReasonNotFound, api.Resource+" \""+c.Name+"\" serves the certificate in spec.tls.certificateSecret: its CA is the one that signed it, not the operator's", &StatusDetails{Name: c.Name, Kind: api.Resource})
		return
	}
	ca, err := certs.ParseCert(credentials.CABundle(*m)) // the signing CA comes first
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, ReasonInternal, "the stored CA certificate is unreadable", nil)
		return
	}
	// During a CA rotation the bundle holds the next CA too: clients that
	// take it keep working when the next CA starts signing.
	writeJSON(w, http.StatusOK, CA{Certificate: string(credentials.CABundle(*m)), Fingerprint: certs.Fingerprint(ca)})
}

func (s *Server) getCredentials(w http.ResponseWriter, r *http.Request) {
	c, m, ok := s.material(w, r)
	if !ok {
		return
	}
	if c.Spec.Auth.PasswordFileSecret != "" || (c.Spec.Auth.AllowAnonymous != nil && *c.Spec.Auth.AllowAnonymous) {
		writeStatus(w, http.StatusNotFound, ReasonNotFound, api.Resource+" \""+c.Name+"\" has no generated user: it uses spec.auth.passwordFileSecret or anonymous access", &StatusDetails{Name: c.Name, Kind: api.Resource})
		return
	}
	writeJSON(w, http.StatusOK, Credentials{Username: m.Username, Password: m.Password})
}

// RenewResponse is the answer of POST …/NAME/certificate/renew.
type RenewResponse = api.RenewResponse

// renewCertificate asks the operator for a new server certificate: it
// records the request time in an annotation (generation does not move:
// the spec is unchanged); the reconciler reissues any certificate issued
// before it.
func (s *Server) renewCertificate(w http.ResponseWriter, r *http.Request) {
	s.request(w, r, credentials.RenewAnnotation, "certificate renewal")
}

// rotateCA asks the operator for a new CA, the same way: the next CA is
// added to the CA bundle at once and signs from spec.tls.caOverlap on.
func (s *Server) rotateCA(w http.ResponseWriter, r *http.Request) {
	s.request(w, r, credentials.RotateCAAnnotation, "CA rotation")
}

// approve lets a held change that restarts brokers roll
// (spec.updatePolicy.approval manual): it records the current generation.
func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	o, ok := s.lookup(w, r)
	if !ok {
		return
	}
	gen := strconv.FormatInt(o.Generation, 10)
	if err := s.objects.Annotate(o, api.ApprovedGenerationAnnotation, gen); err != nil {
		s.writeStoreError(w, o.Name, err)
		return
	}
	s.log.Info("update approved", "cluster", o.Name, "generation", gen)
	writeJSON(w, http.StatusOK, map[string]any{"name": o.Name, "approvedGeneration": o.Generation})
}

func (s *Server) request(w http.ResponseWriter, r *http.Request, annotation, what string) {
	c, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if c.Spec.TLS.CertificateSecret != "" {
		writeStatus(w, http.StatusConflict, ReasonConflict, api.Resource+" \""+c.Name+"\" serves the certificate in spec.tls.certificateSecret: the operator issues none (replace the secret to renew it)", &StatusDetails{Name: c.Name, Kind: api.Resource})
		return
	}
	name := c.Name
	at := time.Now().UTC().Format(time.RFC3339Nano)
	if err := s.objects.Annotate(c, annotation, at); err != nil {
		s.writeStoreError(w, name, err)
		return
	}
	s.log.Info(what+" requested", "cluster", name)
	writeJSON(w, http.StatusOK, RenewResponse{Name: name, RequestedAt: at})
}
