package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Components of load-balancer objects.
const (
	ComponentSvc  = "loadbalancer"
	ComponentConf = "loadbalancer-config"
)

// Client is what the load-balancer reconciler calls.
type Client interface {
	Services(ctx context.Context, labels map[string]string) ([]dswarm.Service, error)
	Configs(ctx context.Context, labels map[string]string) ([]dswarm.Config, error)
	CreateService(ctx context.Context, spec dswarm.ServiceSpec) (string, error)
	UpdateService(ctx context.Context, id string, version dswarm.Version, spec dswarm.ServiceSpec) error
	RemoveService(ctx context.Context, id string) error
	CreateConfig(ctx context.Context, spec dswarm.ConfigSpec) (string, error)
	RemoveConfig(ctx context.Context, id string) error
}

// Reconciler keeps the HAProxy service of each cluster.
type Reconciler struct {
	Swarm      Client
	OperatorID string
	// Network is the overlay network the brokers are on.
	Network func(cluster string) string
	// Control, when set, is the operator's control network: HAProxy tasks
	// join it and serve their runtime API to its subnets only, so that the
	// operator pushes renewed certificates into them with no restart.
	Control *ControlNetwork
}

// ControlNetwork is the operator's own overlay network.
type ControlNetwork struct {
	Name    string
	Subnets []string
}

// TLS is the certificate secret the HAProxy service references: what a
// task reads when it starts.
type TLS struct {
	// Keep, when set, is the secret the live service references now. It is
	// kept as long as nothing else in the service changes: the operator
	// pushes the current certificate into the running tasks (and into any
	// task that starts) through the runtime API, and changing a secret
	// reference would restart every task and drop its clients.
	Keep *dswarm.Secret
	// Current returns the secret holding the current certificate, creating
	// it when needed; used when there is nothing to keep, or when the
	// service changes anyway.
	Current func() (*dswarm.Secret, error)
	// ClientCA is the secret with the CAs of client certificates (mutual
	// TLS), nil when spec.tls.clientAuth is none.
	ClientCA *dswarm.Secret
	// Admin and ControlCA, with a control network, put the runtime API
	// behind mutual TLS: the listener's certificate and key, and the
	// control-plane CA certificate. Nil: the runtime API is guarded by
	// the source subnet only.
	Admin, ControlCA *dswarm.Secret
	// BackendTLS: the brokers speak TLS (their certificate from the
	// control-plane CA, ControlCA mounted to verify it).
	BackendTLS bool
}

// Outcome lists what a pass changed, by object name.
type Outcome = swarm.Outcome

func (r *Reconciler) labels(cluster, component string) map[string]string {
	return swarm.OwnedComponent(r.OperatorID, cluster, component)
}

// Reconcile brings the cluster's HAProxy service to its spec, with the
// MQTTS certificate secret tls chooses (unused when MQTTS is off). An
// unchanged spec against an unchanged Swarm makes no write.
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster, tls TLS) (Outcome, error) {
	var out Outcome
	var opts Options
	if r.Control != nil {
		opts.AdminSubnets = r.Control.Subnets
		opts.AdminTLS = tls.Admin != nil && tls.ControlCA != nil
	}
	opts.BackendTLS = tls.BackendTLS && tls.ControlCA != nil
	conf, err := Render(c, opts)
	if err != nil {
		return out, err
	}
	configs, err := r.Swarm.Configs(ctx, r.labels(c.Name, ComponentConf))
	if err != nil {
		return out, err
	}
	confName, confID, err := r.ensureConfig(ctx, c, conf, configs, &out)
	if err != nil {
		return out, err
	}
	services, err := r.Swarm.Services(ctx, r.labels(c.Name, ComponentSvc))
	if err != nil {
		return out, err
	}
	var cur *dswarm.Service
	for i := range services {
		if services[i].Spec.Name == api.LoadBalancerService(c.Name) {
			cur = &services[i]
		}
	}
	want, err := r.wantSpec(c, confID, confName, cur, tls)
	if err != nil {
		return out, err
	}
	switch {
	case cur == nil:
		if _, err := r.Swarm.CreateService(ctx, want); err != nil {
			return out, err
		}
		out.Created = append(out.Created, want.Name)
	case !swarm.UpToDate(*cur, want):
		if err := r.Swarm.UpdateService(ctx, cur.ID, cur.Version, want); err != nil {
			return out, err
		}
		out.Updated = append(out.Updated, want.Name)
	}
	// Configs the service no longer uses.
	var errs []error
	for _, cf := range configs {
		if cf.Spec.Name == confName {
			continue
		}
		if err := r.Swarm.RemoveConfig(ctx, cf.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		out.Removed = append(out.Removed, cf.Spec.Name)
	}
	return out, errors.Join(errs...)
}

func (r *Reconciler) serviceSpec(c *api.MqttCluster, confID, confName string, cert *dswarm.Secret, in TLS) (dswarm.ServiceSpec, error) {
	clientCA := in.ClientCA
	s := c.Spec.LoadBalancer
	name := api.LoadBalancerService(c.Name)
	replicas := uint64(*s.Replicas)
	stop := 10 * time.Second
	restartDelay := time.Second
	cs := &dswarm.ContainerSpec{
		Image:    s.Image,
		Hostname: name,
		Labels:   r.labels(c.Name, ComponentSvc),
		Configs: []*dswarm.ConfigReference{{
			ConfigID: confID, ConfigName: confName,
			File: &dswarm.ConfigReferenceFileTarget{Name: ConfigPath, UID: "0", GID: "0", Mode: 0o444},
		}},
		StopGracePeriod: &stop,
	}
	if cert != nil && *s.Ports.MQTTS != 0 {
		cs.Secrets = []*dswarm.SecretReference{{
			SecretID: cert.ID, SecretName: cert.Spec.Name,
			File: &dswarm.SecretReferenceFileTarget{Name: CertFile, UID: "0", GID: "0", Mode: 0o400},
		}}
		if clientCA != nil {
			cs.Secrets = append(cs.Secrets, &dswarm.SecretReference{
				SecretID: clientCA.ID, SecretName: clientCA.Spec.Name,
				File: &dswarm.SecretReferenceFileTarget{Name: ClientCAFile, UID: "0", GID: "0", Mode: 0o444},
			})
		}
	}
	adminTLS := r.Control != nil && in.Admin != nil && in.ControlCA != nil
	if adminTLS {
		cs.Secrets = append(cs.Secrets,
			&dswarm.SecretReference{SecretID: in.Admin.ID, SecretName: in.Admin.Spec.Name,
				File: &dswarm.SecretReferenceFileTarget{Name: AdminCertFile, UID: "0", GID: "0", Mode: 0o400}})
	}
	if adminTLS || (in.BackendTLS && in.ControlCA != nil) {
		cs.Secrets = append(cs.Secrets,
			&dswarm.SecretReference{SecretID: in.ControlCA.ID, SecretName: in.ControlCA.Spec.Name,
				File: &dswarm.SecretReferenceFileTarget{Name: ControlCAFile, UID: "0", GID: "0", Mode: 0o444}})
	}
	var ports []dswarm.PortConfig
	for _, p := range []int32{*s.Ports.MQTT, *s.Ports.MQTTS} {
		if p != 0 {
			// Host mode: the ingress mesh needs IPVS, and host mode keeps
			// the client's address.
			ports = append(ports, dswarm.PortConfig{Protocol: dswarm.PortConfigProtocolTCP, TargetPort: uint32(p), PublishedPort: uint32(p), PublishMode: dswarm.PortConfigPublishModeHost})
		}
	}
	spec := dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: name, Labels: r.labels(c.Name, ComponentSvc)},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: cs,
			RestartPolicy: &dswarm.RestartPolicy{Condition: dswarm.RestartPolicyConditionAny, Delay: &restartDelay},
			// Host-mode ports: one task per node.
			Placement: &dswarm.Placement{MaxReplicas: 1},
		},
		Mode: dswarm.ServiceMode{Replicated: &dswarm.ReplicatedService{Replicas: &replicas}},
		// One task at a time, stopped before its replacement starts (they
		// share the node's ports): the other replicas keep serving.
		UpdateConfig: &dswarm.UpdateConfig{Parallelism: 1, Order: dswarm.UpdateOrderStopFirst, FailureAction: dswarm.UpdateFailureActionPause},
		EndpointSpec: &dswarm.EndpointSpec{Mode: dswarm.ResolutionModeDNSRR, Ports: ports},
	}
	if r.Network != nil {
		spec.TaskTemplate.Networks = []dswarm.NetworkAttachmentConfig{{Target: r.Network(c.Name), Aliases: []string{name}}}
	}
	if r.Control != nil {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, dswarm.NetworkAttachmentConfig{Target: r.Control.Name})
	}
	if err := swarm.StampSpecHash(&spec); err != nil {
		return dswarm.ServiceSpec{}, err
	}
	return spec, nil
}

// ensureConfig returns the name and id of the config holding conf,
// creating it when missing.
func (r *Reconciler) ensureConfig(ctx context.Context, c *api.MqttCluster, conf []byte, configs []dswarm.Config, out *Outcome) (string, string, error) {
	confName := api.Versioned(api.LoadBalancerService(c.Name), swarm.ContentHash(conf))
	for _, cf := range configs {
		if cf.Spec.Name == confName {
			return confName, cf.ID, nil
		}
	}
	id, err := r.Swarm.CreateConfig(ctx, dswarm.ConfigSpec{Annotations: dswarm.Annotations{Name: confName, Labels: r.labels(c.Name, ComponentConf)}, Data: conf})
	if err != nil {
		return "", "", fmt.Errorf("load balancer of %s: %w", c.Name, err)
	}
	out.Created = append(out.Created, confName)
	return confName, id, nil
}

// wantSpec is the service the load balancer should be. The certificate a
// task starts with can stay old (tls.Keep: the operator pushes the
// current one), unless the service changes anyway.
func (r *Reconciler) wantSpec(c *api.MqttCluster, confID, confName string, cur *dswarm.Service, tls TLS) (dswarm.ServiceSpec, error) {
	mqtts := *c.Spec.LoadBalancer.Ports.MQTTS != 0
	if mqtts && tls.Keep != nil && cur != nil {
		want, err := r.serviceSpec(c, confID, confName, tls.Keep, tls)
		if err != nil || swarm.UpToDate(*cur, want) {
			return want, err
		}
	}
	var cert *dswarm.Secret
	if mqtts {
		if tls.Current == nil {
			return dswarm.ServiceSpec{}, fmt.Errorf("load balancer of %s: no MQTTS certificate secret", c.Name)
		}
		var err error
		if cert, err = tls.Current(); err != nil {
			return dswarm.ServiceSpec{}, err
		}
	}
	return r.serviceSpec(c, confID, confName, cert, tls)
}
