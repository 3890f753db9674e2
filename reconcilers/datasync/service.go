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
type Client = swarm.ServiceWriter

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
	// NoFence: the agents never stop their node's brokers when cut off
	// (--fence-after=0).
	NoFence bool
}

// Enabled reports whether a defaulted cluster asks for sync.
func Enabled(c *api.MqttCluster) bool {
	return c.Spec.Sync.Enabled != nil && *c.Spec.Sync.Enabled && *c.Spec.Broker.Persistence.Enabled
}

// ErrNoControlNetwork: sync needs the operator's control network.
var ErrNoControlNetwork = errors.New("spec.sync needs the operator's control network (--control-network) and sync image (--sync-image)")

// Secrets are what the agents mount: the rsync password (also their API
// token), and, with the control-plane CA, their certificate and key and
// the CA certificate (TLS between agents and with the operator).
type Secrets struct {
	Password, TLS, ControlCA *dswarm.Secret
}

// Reconcile creates, updates or removes the agent service (secrets unused
// when sync is off).
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster, secret Secrets) (swarm.Outcome, error) {
	labels := swarm.OwnedComponent(r.OperatorID, c.Name, ComponentAgent)
	if !Enabled(c) {
		return swarm.EnsureService(ctx, r.Swarm, labels, nil)
	}
	if r.Image == "" || r.ControlNetwork == "" {
		return swarm.Outcome{}, ErrNoControlNetwork
	}
	want, err := r.ServiceSpec(c, secret)
	if err != nil {
		return swarm.Outcome{}, err
	}
	return swarm.EnsureService(ctx, r.Swarm, labels, &want)
}

// ServiceSpec is the agent service a cluster needs.
func (r *Reconciler) ServiceSpec(c *api.MqttCluster, in Secrets) (dswarm.ServiceSpec, error) {
	secret := in.Password
	labels := swarm.OwnedComponent(r.OperatorID, c.Name, ComponentAgent)
	// Past the agent's handoff (syncagent.HandoffStopWait + Linger).
	grace := 15 * time.Second
	delay := time.Second
	spec := dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: api.SyncService(c.Name), Labels: labels},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: &dswarm.ContainerSpec{
				Image:   r.Image,
				Command: r.command(c),
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
	if in.TLS != nil && in.ControlCA != nil {
		cs := spec.TaskTemplate.ContainerSpec
		cs.Command = append(cs.Command, "--tls-file", TLSFile, "--ca-file", CAFile)
		cs.Secrets = append(cs.Secrets,
			&dswarm.SecretReference{SecretID: in.TLS.ID, SecretName: in.TLS.Spec.Name,
				File: &dswarm.SecretReferenceFileTarget{Name: "sync-tls.pem", UID: "0", GID: "0", Mode: os.FileMode(0o400)}},
			&dswarm.SecretReference{SecretID: in.ControlCA.ID, SecretName: in.ControlCA.Spec.Name,
				File: &dswarm.SecretReferenceFileTarget{Name: "control-ca.crt", UID: "0", GID: "0", Mode: os.FileMode(0o444)}})
	}
	if err := swarm.StampSpecHash(&spec); err != nil {
		return dswarm.ServiceSpec{}, err
	}
	return spec, nil
}

// command is the agent's command line.
func (r *Reconciler) command(c *api.MqttCluster) []string {
	cmd := []string{"/usr/local/bin/mqtt-operator", "sync-agent", "--cluster", c.Name, "--operator-id", r.OperatorID}
	if r.NoFence {
		cmd = append(cmd, "--fence-after=0")
	}
	return cmd
}
