// Package network keeps each cluster's overlay network: attachable, owned
// by the operator, named <cluster>-net. Brokers and the load balancer meet
// on it through Docker's DNS (tasks.SERVICE), which works with or without
// IPVS.
package network

import (
	"context"
	"fmt"

	dnetwork "github.com/docker/docker/api/types/network"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Client is what the network reconciler calls.
type Client interface {
	Networks(ctx context.Context, labels map[string]string) ([]dnetwork.Summary, error)
	CreateNetwork(ctx context.Context, name string, labels map[string]string) (string, error)
	RemoveNetwork(ctx context.Context, id string) error
}

// Reconciler keeps the networks.
type Reconciler struct {
	Swarm      Client
	OperatorID string
}

func (r *Reconciler) labels(cluster string) map[string]string {
	return swarm.OwnedComponent(r.OperatorID, cluster, "network")
}

// Reconcile makes sure the cluster's network exists; it reports whether it
// created it. An existing network writes nothing.
func (r *Reconciler) Reconcile(ctx context.Context, cluster string) (bool, error) {
	nets, err := r.Swarm.Networks(ctx, r.labels(cluster))
	if err != nil {
		return false, err
	}
	for _, n := range nets {
		if n.Name == api.NetworkName(cluster) {
			return false, nil
		}
	}
	if _, err := r.Swarm.CreateNetwork(ctx, api.NetworkName(cluster), r.labels(cluster)); err != nil {
		return false, fmt.Errorf("network of %s: %w", cluster, err)
	}
	return true, nil
}

// Delete removes the cluster's network (after its services are gone).
func (r *Reconciler) Delete(ctx context.Context, cluster string) error {
	nets, err := r.Swarm.Networks(ctx, r.labels(cluster))
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := r.Swarm.RemoveNetwork(ctx, n.ID); err != nil {
			return err
		}
	}
	return nil
}
