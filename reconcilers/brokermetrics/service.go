package brokermetrics

import (
	"context"
	"os"
	"strconv"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Port is where the exporter (programs/exporter) serves /metrics.
const Port = 9234

// Components of the exporter's service and of its password secret.
const (
	Component       = "exporter"
	ComponentSecret = "exporter-password"
)

// Client is what the reconciler calls.
type Client = swarm.ServiceWriter

// Reconciler keeps a cluster's exporter: one task on the cluster network
// (to reach the brokers' internal listener) and the control network (to
// be scraped), running the operator's image.
type Reconciler struct {
	Swarm          Client
	OperatorID     string
	Image          string
	ControlNetwork string
	// Network is the cluster's network.
	Network func(cluster string) string
	// ControlCA, when set, is the control-plane CA certificate secret: the
	// brokers speak TLS and the exporter verifies them with it.
	ControlCA *dswarm.Secret
}

// Reconcile creates or updates the exporter (secret: the internal bridge
// user's password), or removes it when secret is nil.
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster, secret *dswarm.Secret) (swarm.Outcome, error) {
	labels := swarm.OwnedComponent(r.OperatorID, c.Name, Component)
	if secret == nil {
		return swarm.EnsureService(ctx, r.Swarm, labels, nil)
	}
	one := uint64(1)
	grace, delay := 5*time.Second, 2*time.Second
	spec := dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: api.ExporterService(c.Name), Labels: swarm.OwnedComponent(r.OperatorID, c.Name, Component)},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: &dswarm.ContainerSpec{
				Image:   r.Image,
				Command: []string{"/mqtt-operator", "broker-exporter", "--cluster", c.Name, "--listen", ":" + strconv.Itoa(Port)},
				Labels:  swarm.OwnedComponent(r.OperatorID, c.Name, Component),
				Secrets: []*dswarm.SecretReference{{
					SecretID: secret.ID, SecretName: secret.Spec.Name,
					File: &dswarm.SecretReferenceFileTarget{Name: "bridge-password", UID: "0", GID: "0", Mode: os.FileMode(0o400)},
				}},
				StopGracePeriod: &grace,
			},
			RestartPolicy: &dswarm.RestartPolicy{Condition: dswarm.RestartPolicyConditionAny, Delay: &delay},
			Networks: []dswarm.NetworkAttachmentConfig{
				{Target: r.Network(c.Name)},
				{Target: r.ControlNetwork},
			},
		},
		Mode:         dswarm.ServiceMode{Replicated: &dswarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &dswarm.EndpointSpec{Mode: dswarm.ResolutionModeDNSRR},
	}
	if r.ControlCA != nil {
		cs := spec.TaskTemplate.ContainerSpec
		cs.Command = append(cs.Command, "--ca-file", "/run/secrets/control-ca.crt")
		cs.Secrets = append(cs.Secrets, &dswarm.SecretReference{SecretID: r.ControlCA.ID, SecretName: r.ControlCA.Spec.Name,
			File: &dswarm.SecretReferenceFileTarget{Name: "control-ca.crt", UID: "0", GID: "0", Mode: os.FileMode(0o444)}})
	}
	if err := swarm.StampSpecHash(&spec); err != nil {
		return swarm.Outcome{}, err
	}
	return swarm.EnsureService(ctx, r.Swarm, labels, &spec)
}
