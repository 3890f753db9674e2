package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Components of the secrets the operator makes.
const (
	ComponentTLS      = "tls"
	ComponentPasswd   = "passwd"
	ComponentInternal = "internal-passwd"
	// ComponentLBAdmin is HAProxy's runtime API certificate and key;
	// ComponentControlCA the control-plane CA certificate HAProxy checks
	// the operator's client certificate with.
	ComponentLBAdmin   = "lb-admin"
	ComponentControlCA = "control-ca"
	// ComponentSyncTLS is the sync agents' certificate and key.
	ComponentSyncTLS = "sync-tls"
	// ComponentBrokerTLS is the brokers' certificate and key.
	ComponentBrokerTLS = "broker-tls"
)

// ComponentBridge is the component of broker i's bridge section.
func ComponentBridge(i int) string { return fmt.Sprintf("bridge-%d", i) }

// Client is what the secrets reconciler calls.
type Client interface {
	Secrets(ctx context.Context, labels map[string]string) ([]dswarm.Secret, error)
	CreateSecret(ctx context.Context, spec dswarm.SecretSpec) (string, error)
	RemoveSecret(ctx context.Context, id string) error
}

// Reconciler creates and prunes versioned secrets.
type Reconciler struct {
	Swarm      Client
	OperatorID string
}

func (r *Reconciler) labels(cluster, component string) map[string]string {
	return swarm.OwnedComponent(r.OperatorID, cluster, component)
}

// Name is the versioned name of a content.
func Name(cluster, component string, data []byte) string {
	h := sha256.Sum256(data)
	return api.Versioned(cluster+"-"+component, hex.EncodeToString(h[:])[:10])
}

// Ensure returns the secret holding data, creating it when missing, and
// whether it created it.
func (r *Reconciler) Ensure(ctx context.Context, cluster, component string, data []byte) (*dswarm.Secret, bool, error) {
	name := Name(cluster, component, data)
	have, err := r.Swarm.Secrets(ctx, r.labels(cluster, component))
	if err != nil {
		return nil, false, err
	}
	for _, s := range have {
		if s.Spec.Name == name {
			return &s, false, nil
		}
	}
	spec := dswarm.SecretSpec{Annotations: dswarm.Annotations{Name: name, Labels: r.labels(cluster, component)}, Data: data}
	id, err := r.Swarm.CreateSecret(ctx, spec)
	if err != nil {
		return nil, false, fmt.Errorf("%s secret of %s: %w", component, cluster, err)
	}
	return &dswarm.Secret{ID: id, Spec: dswarm.SecretSpec{Annotations: spec.Annotations}}, true, nil
}

// Prune removes the cluster's operator-made secrets whose names are not
// in keep and that none of svcs (the cluster's services, as they are now)
// references.
func (r *Reconciler) Prune(ctx context.Context, cluster string, keep map[string]bool, svcs []dswarm.Service) ([]string, error) {
	have, err := r.Swarm.Secrets(ctx, swarm.Owned(r.OperatorID, cluster))
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, s := range svcs {
		if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
			for _, ref := range cs.Secrets {
				used[ref.SecretID] = true
			}
		}
	}
	var removed []string
	var errs []error
	for _, s := range have {
		if keep[s.Spec.Name] || used[s.ID] {
			continue
		}
		if err := r.Swarm.RemoveSecret(ctx, s.ID); err != nil {
			errs = append(errs, fmt.Errorf("prune secret %s: %w", s.Spec.Name, err))
			continue
		}
		removed = append(removed, s.Spec.Name)
	}
	return removed, errors.Join(errs...)
}
