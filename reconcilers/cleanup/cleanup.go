// Package cleanup removes what the operator made in Swarm for a deleted
// cluster: its services first, then its configs, secrets and network.
// Broker volumes stay (their data outlives the cluster object: a cluster
// created again under the same name finds it). The store's records of
// the cluster are the caller's.
package cleanup

import (
	"context"
	"errors"
	"log/slog"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/network"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Reconciler removes a deleted cluster's Swarm objects.
type Reconciler struct {
	Swarm      swarm.Client
	OperatorID string
	// Fence runs before every service removal (those stop tasks).
	Fence func() error
	Log   *slog.Logger
}

// Delete removes cluster's objects; a failure is retried by the next pass
// (the network, say, is free only once the tasks have left it).
func (r *Reconciler) Delete(ctx context.Context, cluster string) error {
	owned := swarm.Owned(r.OperatorID, cluster)
	log := r.Log.With("cluster", cluster)
	svcs, err := r.Swarm.Services(ctx, owned)
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range svcs {
		if err := r.Fence(); err != nil {
			return err
		}
		if err := r.Swarm.RemoveService(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("removed", "object", s.Spec.Name)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	confs, err := r.Swarm.Configs(ctx, owned)
	if err != nil {
		return err
	}
	for _, cf := range confs {
		if err := r.Swarm.RemoveConfig(ctx, cf.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("removed", "object", cf.Spec.Name)
	}
	secs, err := r.Swarm.Secrets(ctx, owned)
	if err != nil {
		return err
	}
	for _, s := range secs {
		if err := r.Swarm.RemoveSecret(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("removed", "object", s.Spec.Name)
	}
	nr := &network.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID}
	if err := nr.Delete(ctx, cluster); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
