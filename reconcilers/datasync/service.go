package datasync

import (
	"context"
	"errors"
	"os"
	"slices"
	"time"

	"github.com/docker/docker/api/types/mount"
	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Client is what the agent service's reconciler calls.
type Client interface {
	Services(ctx context.Context, labels map[string]string) ([]dswarm.Service, error)
	CreateService(ctx context.Context, spec dswarm.ServiceSpec) (string, error)
	UpdateService(ctx context.Context, id string, version dswarm.Version, spec dswarm.ServiceSpec) error
	RemoveService(ctx context.Context, id string) error
}

// Reconciler keeps a cluster's sync agent service: global, on the nodes
// the cluster's brokers may run on (its placement constraints), on the
// control network; none when spec.sync is off.
type Reconciler struct {
	Swarm      Client
	OperatorID string
	// Image is the sync image (lsyncd, rsync and the operator binary).
	Image string
	// ControlNetwork is the operator's network the agents are reached on.
	ControlNetwork string
}

// ServiceName is a cluster's sync agent service.
func ServiceName(cluster string) string { return cluster + "-sync" }

// Enabled reports whether a defaulted cluster asks for sync.
func Enabled(c *api.MqttCluster) bool {
	return c.Spec.Sync.Enabled != nil && *c.Spec.Sync.Enabled && *c.Spec.Broker.Persistence.Enabled
}

// ErrNoControlNetwork: sync needs the operator's control network.
var ErrNoControlNetwork = errors.New("spec.sync needs the operator's control network (--control-network) and sync image (--sync-image)")

// Reconcile creates, updates or removes the agent service. secret is the
// cluster's rsync password secret (nil when sync is off).
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster, secret *dswarm.Secret) (swarm.Outcome, error) {
	var out swarm.Outcome
	live, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, ComponentAgent))
	if err != nil {
		return out, err
	}
	if !Enabled(c) {
		for _, s := range live {
			if err := r.Swarm.RemoveService(ctx, s.ID); err != nil {
				return out, err
			}
			out.Removed = append(out.Removed, s.Spec.Name)
		}
		return out, nil
	}
	if r.Image == "" || r.ControlNetwork == "" {
		return out, ErrNoControlNetwork
	}
	want, err := r.ServiceSpec(c, secret)
	if err != nil {
		return out, err
	}
	switch {
	case len(live) == 0:
		if _, err := r.Swarm.CreateService(ctx, want); err != nil {
			return out, err
		}
		out.Created = append(out.Created, want.Name)
	case !swarm.UpToDate(live[0], want):
		if err := r.Swarm.UpdateService(ctx, live[0].ID, live[0].Version, want); err != nil {
			return out, err
		}
		out.Updated = append(out.Updated, want.Name)
	}
	return out, nil
}

// ServiceSpec is the agent service a cluster needs.
func (r *Reconciler) ServiceSpec(c *api.MqttCluster, secret *dswarm.Secret) (dswarm.ServiceSpec, error) {
	labels := swarm.OwnedComponent(r.OperatorID, c.Name, ComponentAgent)
	grace := 10 * time.Second
	delay := time.Second
	spec := dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: ServiceName(c.Name), Labels: labels},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: &dswarm.ContainerSpec{
				Image:   r.Image,
				Command: []string{"/usr/local/bin/mqtt-operator", "sync-agent", "--cluster", c.Name, "--operator-id", r.OperatorID},
				Env:     []string{"NODE_ID={{.Node.ID}}"},
				Labels:  swarm.OwnedComponent(r.OperatorID, c.Name, ComponentAgent),
				Mounts: []mount.Mount{
					{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"},
					{Type: mount.TypeBind, Source: VolumesDir, Target: VolumesDir},
				},
				Secrets: []*dswarm.SecretReference{{
					SecretID: secret.ID, SecretName: secret.Spec.Name,
					File: &dswarm.SecretReferenceFileTarget{Name: "sync-password", UID: "0", GID: "0", Mode: os.FileMode(0o400)},
				}},
				StopGracePeriod: &grace,
			},
			RestartPolicy: &dswarm.RestartPolicy{Condition: dswarm.RestartPolicyConditionAny, Delay: &delay},
			Placement:     &dswarm.Placement{Constraints: slices.Clone(c.Spec.Placement.Constraints)},
			Networks:      []dswarm.NetworkAttachmentConfig{{Target: r.ControlNetwork}},
		},
		Mode:         dswarm.ServiceMode{Global: &dswarm.GlobalService{}},
		EndpointSpec: &dswarm.EndpointSpec{Mode: dswarm.ResolutionModeDNSRR},
	}
	if err := swarm.StampSpecHash(&spec); err != nil {
		return dswarm.ServiceSpec{}, err
	}
	return spec, nil
}
