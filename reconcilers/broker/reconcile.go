package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/mount"
	dswarm "github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Labels of broker objects, besides the ownership labels.
const (
	LabelIndex    = "mqtt.swarm/broker-index"
	ComponentSvc  = "broker"
	ComponentConf = "broker-config"
	ComponentPass = "passwd"
)

// ErrMissingSecret: a secret the spec names does not exist.
var ErrMissingSecret = swarm.ErrMissingSecret

// Client is what the broker reconciler calls.
type Client interface {
	Services(ctx context.Context, labels map[string]string) ([]dswarm.Service, error)
	Configs(ctx context.Context, labels map[string]string) ([]dswarm.Config, error)
	Secrets(ctx context.Context, labels map[string]string) ([]dswarm.Secret, error)
	CreateService(ctx context.Context, spec dswarm.ServiceSpec) (string, error)
	UpdateService(ctx context.Context, id string, version dswarm.Version, spec dswarm.ServiceSpec) error
	RemoveService(ctx context.Context, id string) error
	CreateConfig(ctx context.Context, spec dswarm.ConfigSpec) (string, error)
	RemoveConfig(ctx context.Context, id string) error
}

// Reconciler keeps one Swarm service per broker (<cluster>-broker-<i>,
// one replica: a stable identity, like a StatefulSet's pods), each with
// its configuration as a versioned Docker config.
type Reconciler struct {
	Swarm      Client
	OperatorID string
	// Network is the overlay network brokers attach to (made by the
	// network step).
	Network func(cluster string) string
	// Retire, when set, is asked before a broker past the replica count
	// is removed: it returns false while the broker is being stopped and
	// its last state synced (spec.sync), and the removal waits.
	Retire func(ctx context.Context, s dswarm.Service) (bool, error)
	// MayUpdate, when set, is asked before broker i's service is updated
	// (its task replaced): false holds the update for a later pass (a
	// rolling update, an approval).
	MayUpdate func(ctx context.Context, i int, cur dswarm.Service) (bool, error)
	// Rendered, when set, is told broker i's service spec as rendered
	// (before any eviction) once the live service runs it: the node watch
	// evicts from it between passes (Evict).
	Rendered func(i int, spec dswarm.ServiceSpec)
}

// Outcome lists what a pass changed, by object name.
type Outcome = swarm.Outcome

func (r *Reconciler) labels(cluster, component string) map[string]string {
	return swarm.OwnedComponent(r.OperatorID, cluster, component)
}

// Inputs are the secrets the brokers mount, made by the secrets step.
type Inputs struct {
	// Passwd is the operator's password file for clients, used when
	// spec.auth names none (nil when anonymous access needs none).
	Passwd *dswarm.Secret
	// Internal is the password file of the internal listener (bridges).
	Internal *dswarm.Secret
	// Bridges holds broker i's bridge section, for every i >= 1.
	Bridges map[int]*dswarm.Secret
	// TLS and ControlCA, when both set, are the brokers' certificate and
	// key and the control-plane CA certificate: every listener speaks TLS
	// and the bridges verify their parent (the bridge sections must be
	// rendered with Options{TLS: true}).
	TLS, ControlCA *dswarm.Secret
	// ControlNetwork, with TLS, is the operator's network: the brokers
	// join it and the operator pushes them their users and ACL rules
	// (reconcilers/brokerauth); each broker refuses clients until it has
	// them.
	ControlNetwork string
	// Evicted are brokers to keep off a node the operator found lost
	// before Swarm did (by index: the node id). Their service excludes the
	// node and updates start-first: Swarm starts the new task at once
	// instead of waiting to hear from the old one. The rollout gate is not
	// asked (the broker is gone already).
	Evicted map[int]string
}

// Options are the rendering options Inputs call for.
func (in Inputs) Options() Options { return Options{TLS: in.TLS != nil && in.ControlCA != nil} }

// Auth: the operator pushes users and rules to the brokers.
func (in Inputs) Auth() bool { return in.Options().TLS && in.ControlNetwork != "" }

// Reconcile brings the brokers of a defaulted, valid cluster to its spec.
// An unchanged spec against an unchanged Swarm makes no write.
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster, in Inputs) (Outcome, error) {
	var out Outcome
	n := int(*c.Spec.Replicas)
	if in.Internal == nil {
		return out, fmt.Errorf("brokers of %s: the internal password file secret is not created yet", c.Name)
	}
	for i := 1; i < n; i++ {
		if in.Bridges[i] == nil {
			return out, fmt.Errorf("brokers of %s: the bridge secret of broker %d is not created yet", c.Name, i)
		}
	}
	pass, err := r.passwordSecret(ctx, c, in.Passwd)
	if err != nil {
		return out, err
	}
	services, err := r.Swarm.Services(ctx, r.labels(c.Name, ComponentSvc))
	if err != nil {
		return out, err
	}
	configs, err := r.Swarm.Configs(ctx, r.labels(c.Name, ComponentConf))
	if err != nil {
		return out, err
	}
	byIndex := map[int]dswarm.Service{}
	for _, s := range services {
		if i, err := strconv.Atoi(s.Spec.Labels[LabelIndex]); err == nil {
			byIndex[i] = s
		}
	}
	configByName := map[string]dswarm.Config{}
	for _, cf := range configs {
		configByName[cf.Spec.Name] = cf
	}
	bp := &brokerPass{r: r, c: c, in: in, pass: pass, byIndex: byIndex, configByName: configByName, keep: map[string]bool{}, out: &out}
	for i := 0; i < n; i++ {
		if err := bp.ensure(ctx, i); err != nil {
			return out, err
		}
	}
	bp.removeExtra(ctx, n)
	// Configs no longer wanted are pruned once the services moved off them.
	if len(bp.errs) == 0 {
		for _, cf := range configs {
			if bp.keep[cf.Spec.Name] {
				continue
			}
			if err := r.Swarm.RemoveConfig(ctx, cf.ID); err != nil {
				bp.errs = append(bp.errs, err)
				continue
			}
			out.Removed = append(out.Removed, cf.Spec.Name)
		}
	}
	return out, errors.Join(bp.errs...)
}

// brokerPass is one Reconcile's state: the live services by index, the
// configs by name, the configs to keep, what changed and the errors that
// do not stop the pass (a broker that fails does not hold the others).
type brokerPass struct {
	r            *Reconciler
	c            *api.MqttCluster
	in           Inputs
	pass         *dswarm.Secret
	byIndex      map[int]dswarm.Service
	configByName map[string]dswarm.Config
	keep         map[string]bool
	out          *Outcome
	errs         []error
}

// ensure makes broker i's config and service match the spec (an update
// only when MayUpdate allows it). A returned error stops the pass.
func (bp *brokerPass) ensure(ctx context.Context, i int) error {
	r, c := bp.r, bp.c
	conf, err := Render(c, i, bp.in.Options())
	if err != nil {
		return err
	}
	confName := api.Versioned(api.BrokerService(c.Name, i), swarm.ContentHash(conf))
	bp.keep[confName] = true
	confID := bp.configByName[confName].ID
	if confID == "" {
		l := r.labels(c.Name, ComponentConf)
		l[LabelIndex] = strconv.Itoa(i)
		confID, err = r.Swarm.CreateConfig(ctx, dswarm.ConfigSpec{Annotations: dswarm.Annotations{Name: confName, Labels: l}, Data: conf})
		if err != nil {
			bp.errs = append(bp.errs, err)
			return nil
		}
		bp.out.Created = append(bp.out.Created, confName)
	}
	want, err := r.serviceSpec(c, i, confID, confName, bp.pass, bp.in)
	if err != nil {
		return err
	}
	rendered := want
	evicted := bp.in.Evicted[i] != ""
	if evicted {
		want = Evict(want, bp.in.Evicted[i])
	}
	cur, exists := bp.byIndex[i]
	switch {
	case !exists:
		if _, err := r.Swarm.CreateService(ctx, want); err != nil {
			bp.errs = append(bp.errs, err)
			return nil
		}
		bp.out.Created = append(bp.out.Created, want.Name)
	case !UpToDate(cur, want):
		if r.MayUpdate != nil && !evicted && !onlyEvictionLifted(cur, want) {
			ok, err := r.MayUpdate(ctx, i, cur)
			if err != nil {
				bp.errs = append(bp.errs, err)
				return nil
			}
			if !ok {
				keepConfigs(bp.keep, cur) // until it is updated
				return nil
			}
		}
		if err := r.Swarm.UpdateService(ctx, cur.ID, cur.Version, want); err != nil {
			bp.errs = append(bp.errs, err)
			return nil
		}
		bp.out.Updated = append(bp.out.Updated, want.Name)
	}
	if r.Rendered != nil && !evicted {
		r.Rendered(i, rendered)
	}
	return nil
}

// removeExtra removes the brokers past the replica count, highest index
// first, each once Retire says it may go.
func (bp *brokerPass) removeExtra(ctx context.Context, n int) {
	var extra []int
	for i := range bp.byIndex {
		if i >= n {
			extra = append(extra, i)
		}
	}
	slices.Sort(extra)
	slices.Reverse(extra)
	for _, i := range extra {
		s := bp.byIndex[i]
		if bp.r.Retire != nil {
			done, err := bp.r.Retire(ctx, s)
			if err != nil {
				bp.errs = append(bp.errs, err)
				continue
			}
			if !done {
				keepConfigs(bp.keep, s) // still stopping, until it is removed
				continue
			}
		}
		if err := bp.r.Swarm.RemoveService(ctx, s.ID); err != nil {
			bp.errs = append(bp.errs, err)
			continue
		}
		bp.out.Removed = append(bp.out.Removed, s.Spec.Name)
	}
}

// keepConfigs keeps the configs a live service still mounts from pruning.
func keepConfigs(keep map[string]bool, s dswarm.Service) {
	if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
		for _, ref := range cs.Configs {
			keep[ref.ConfigName] = true
		}
	}
}

// passwordSecret finds the Docker secret with the password file: the one
// the spec names, or the operator's own for the cluster.
func (r *Reconciler) passwordSecret(ctx context.Context, c *api.MqttCluster, generated *dswarm.Secret) (*dswarm.Secret, error) {
	anon := *c.Spec.Auth.AllowAnonymous
	name := c.Spec.Auth.PasswordFileSecret
	switch {
	case name == "" && anon:
		return nil, nil
	case name == "" && generated == nil:
		return nil, fmt.Errorf("%w: the operator's password file for %s is not created yet", ErrMissingSecret, c.Name)
	case name == "":
		return generated, nil
	}
	return swarm.SecretByName(ctx, r.Swarm, name, "spec.auth.passwordFileSecret", c.Name)
}

func secretRef(s *dswarm.Secret, target string, mode uint32) *dswarm.SecretReference {
	return &dswarm.SecretReference{
		SecretID: s.ID, SecretName: s.Spec.Name,
		File: &dswarm.SecretReferenceFileTarget{Name: target, UID: "0", GID: "0", Mode: os.FileMode(mode)},
	}
}

func (r *Reconciler) serviceSpec(c *api.MqttCluster, i int, confID, confName string, pass *dswarm.Secret, in Inputs) (dswarm.ServiceSpec, error) {
	s := c.Spec
	name := api.BrokerService(c.Name, i)
	place, tasks := placement(c, i)
	cs := &dswarm.ContainerSpec{
		Image:    s.Broker.Image,
		Command:  []string{"/bin/sh", "-c", StartScript(datasync.Enabled(c), SharedPlugin(c, i, in.Auth()))},
		Hostname: name,
		Labels:   r.labels(c.Name, ComponentSvc),
		Configs: []*dswarm.ConfigReference{{
			ConfigID: confID, ConfigName: confName,
			File: &dswarm.ConfigReferenceFileTarget{Name: ConfigPath, UID: "0", GID: "0", Mode: 0o444},
		}},
		StopGracePeriod: durationPtr(10e9),
	}
	// Mosquitto reads password files as its own user after dropping
	// privileges; it reads the bridge section (included by the config) as
	// root, at start.
	if pass != nil {
		cs.Secrets = append(cs.Secrets, secretRef(pass, "mosquitto-passwd", 0o444))
	}
	cs.Secrets = append(cs.Secrets, secretRef(in.Internal, "mosquitto-internal-passwd", 0o444))
	if i > 0 {
		cs.Secrets = append(cs.Secrets, secretRef(in.Bridges[i], BridgeFileName, 0o400))
	}
	if in.Options().TLS {
		// Read by Mosquitto after it drops privileges (and again on a
		// reload), like the password files.
		cs.Secrets = append(cs.Secrets, secretRef(in.TLS, "mosquitto-tls.pem", 0o444), secretRef(in.ControlCA, "control-ca.crt", 0o444))
	}
	if *s.Broker.Persistence.Enabled {
		cs.Mounts = []mount.Mount{{
			Type: mount.TypeVolume, Source: api.BrokerVolume(name), Target: DataDir,
			VolumeOptions: &mount.VolumeOptions{Labels: r.labels(c.Name, "broker-data")},
		}}
	}
	if datasync.Enabled(c) {
		// The sync agent on the node prepares the newest copy of the data
		// first, then writes this task's id into the marker.
		cs.Env = []string{"MQTT_TASK_ID={{.Task.ID}}"}
	}
	res := &dswarm.ResourceRequirements{}
	if q := s.Broker.Resources.Memory; q != "" {
		v, err := resource.ParseQuantity(string(q))
		if err != nil {
			return dswarm.ServiceSpec{}, err
		}
		res.Limits = &dswarm.Limit{MemoryBytes: v.Value()}
	}
	if q := s.Broker.Resources.CPUs; q != "" {
		v, err := resource.ParseQuantity(string(q))
		if err != nil {
			return dswarm.ServiceSpec{}, err
		}
		if res.Limits == nil {
			res.Limits = &dswarm.Limit{}
		}
		res.Limits.NanoCPUs = v.ScaledValue(resource.Nano)
	}
	spec := dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: name, Labels: r.labels(c.Name, ComponentSvc)},
		TaskTemplate: dswarm.TaskSpec{
			ContainerSpec: cs,
			Resources:     res,
			RestartPolicy: &dswarm.RestartPolicy{Condition: dswarm.RestartPolicyConditionAny, Delay: durationPtr(1e9)},
			Placement:     place,
		},
		Mode:         dswarm.ServiceMode{Replicated: &dswarm.ReplicatedService{Replicas: &tasks}},
		EndpointSpec: &dswarm.EndpointSpec{Mode: dswarm.ResolutionModeDNSRR},
	}
	spec.TaskTemplate.Networks = r.networks(c.Name, name, in)
	spec.Labels[LabelIndex] = strconv.Itoa(i)
	if err := swarm.StampSpecHash(&spec); err != nil {
		return dswarm.ServiceSpec{}, err
	}
	return spec, nil
}

// placement is where broker i runs and how many tasks it has: one, on the
// nodes spec.placement admits; with scaling PerNode one on its own node
// (the operator evaluates spec.placement itself, so that a node losing a
// label parks its broker through the operator: drained first), none while
// it is parked, and with spec.sync, while its node does not admit it, one
// on any other node spec.placement admits (its data follows it there).
func placement(c *api.MqttCluster, i int) (*dswarm.Placement, uint64) {
	anywhere := slices.Clone(c.Spec.Placement.Constraints)
	if !c.Spec.Scaling.PerNode() {
		return &dswarm.Placement{Constraints: anywhere}, 1
	}
	node := api.BrokerNode(c, i)
	switch {
	case node == "":
		return &dswarm.Placement{Constraints: anywhere}, 0
	case api.Parked(c)[i]:
		return &dswarm.Placement{Constraints: []string{"node.id==" + node}}, 0
	case api.Away(c)[i]:
		return &dswarm.Placement{Constraints: append(anywhere, "node.id!="+node)}, 1
	}
	return &dswarm.Placement{Constraints: []string{"node.id==" + node}}, 1
}

// LabelEvictedFrom, on a broker service, names the lost node it is kept
// off (Inputs.Evicted).
const LabelEvictedFrom = "mqtt.swarm/evicted-from"

// Evict returns spec kept off a lost node: its placement excludes the
// node and its update is start-first (see Inputs.Evicted); spec is not
// changed. The spec hash stays that of spec (it is also on the container
// spec, and a changed container spec would make Swarm replace the task
// again when the eviction is lifted): the eviction is told by
// LabelEvictedFrom (UpToDate).
func Evict(spec dswarm.ServiceSpec, node string) dswarm.ServiceSpec {
	p := *spec.TaskTemplate.Placement
	p.Constraints = append(slices.Clone(p.Constraints), "node.id!="+node)
	spec.TaskTemplate.Placement = &p
	spec.UpdateConfig = &dswarm.UpdateConfig{Parallelism: 1, Order: dswarm.UpdateOrderStartFirst}
	spec.Labels = maps.Clone(spec.Labels)
	spec.Labels[LabelEvictedFrom] = node
	return spec
}

// UpToDate: live runs want, its eviction included.
func UpToDate(live dswarm.Service, want dswarm.ServiceSpec) bool {
	return swarm.UpToDate(live, want) && live.Spec.Labels[LabelEvictedFrom] == want.Labels[LabelEvictedFrom]
}

// onlyEvictionLifted: live differs from want only by the eviction (the
// node is back). Lifting it widens the placement, which the task's node
// still meets: Swarm restarts nothing, so the rollout gate (which drains
// a broker before its task is replaced) is not asked.
func onlyEvictionLifted(live dswarm.Service, want dswarm.ServiceSpec) bool {
	return live.Spec.Labels[LabelEvictedFrom] != "" && want.Labels[LabelEvictedFrom] == "" && swarm.UpToDate(live, want)
}

// networks: the cluster's network (the broker reached by its service
// name), and the control network when the operator pushes users and rules.
func (r *Reconciler) networks(cluster, name string, in Inputs) []dswarm.NetworkAttachmentConfig {
	var out []dswarm.NetworkAttachmentConfig
	if r.Network != nil {
		out = append(out, dswarm.NetworkAttachmentConfig{Target: r.Network(cluster), Aliases: []string{name}})
	}
	if in.Auth() {
		out = append(out, dswarm.NetworkAttachmentConfig{Target: in.ControlNetwork})
	}
	return out
}

func durationPtr(ns int64) *time.Duration { d := time.Duration(ns); return &d }
