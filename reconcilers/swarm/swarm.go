package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Labels the operator puts on everything it creates.
const (
	// LabelOwner marks an object as the operator's: its value is the
	// operator id (one Swarm may host more than one operator).
	LabelOwner = "mqtt.swarm/operator"
	// LabelCluster is the MqttCluster the object belongs to.
	LabelCluster = "mqtt.swarm/cluster"
	// LabelComponent: broker, loadbalancer, sync, ca, cert, config.
	LabelComponent = "mqtt.swarm/component"
)

// Owned returns the label set selecting one cluster's objects of an operator.
func Owned(operatorID, cluster string) map[string]string {
	return map[string]string{LabelOwner: operatorID, LabelCluster: cluster}
}

// OwnedComponent is Owned plus the component label.
func OwnedComponent(operatorID, cluster, component string) map[string]string {
	l := Owned(operatorID, cluster)
	l[LabelComponent] = component
	return l
}

// ErrMissingSecret: a Docker secret the spec names does not exist.
// Retrying cannot fix it until the user creates it; it becomes a condition.
var ErrMissingSecret = errors.New("secret not found")

// SecretByName finds a Docker secret by its name; a missing one is
// ErrMissingSecret, with field saying which spec field names it.
func SecretByName(ctx context.Context, r interface {
	Secrets(ctx context.Context, labels map[string]string) ([]swarm.Secret, error)
}, name, field, cluster string) (*swarm.Secret, error) {
	secrets, err := r.Secrets(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, s := range secrets {
		if s.Spec.Name == name {
			return &s, nil
		}
	}
	return nil, fmt.Errorf("%w: Docker secret %q named by %s of %s does not exist", ErrMissingSecret, name, field, cluster)
}

// Outcome lists what a reconciler's pass changed, by object name.
type Outcome struct {
	Created, Updated, Removed []string
}

// Changed reports whether the pass wrote anything.
func (o Outcome) Changed() bool { return len(o.Created)+len(o.Updated)+len(o.Removed) > 0 }

// Reader reads live Swarm state. Every list is filtered by labels.
type Reader interface {
	Services(ctx context.Context, labels map[string]string) ([]swarm.Service, error)
	Tasks(ctx context.Context, labels map[string]string) ([]swarm.Task, error)
	Nodes(ctx context.Context) ([]swarm.Node, error)
	// LocalNodeID is the Swarm node id of the daemon this client talks to.
	LocalNodeID(ctx context.Context) (string, error)
	Secrets(ctx context.Context, labels map[string]string) ([]swarm.Secret, error)
	Configs(ctx context.Context, labels map[string]string) ([]swarm.Config, error)
	Networks(ctx context.Context, labels map[string]string) ([]network.Summary, error)
	// ServiceLogs returns a service's log lines (every task, every node)
	// logged after since, oldest first. When some node could not be read,
	// it returns the lines of the others with an error wrapping
	// ErrIncompleteLogs.
	ServiceLogs(ctx context.Context, service string, since time.Time) ([]LogLine, error)
}

// ErrIncompleteLogs: a log read reached only some of the nodes that ran
// the service's tasks (Swarm's "incomplete log stream" after a node was
// restarted or lost); the lines returned are those of the others.
var ErrIncompleteLogs = errors.New("incomplete log stream")

// LogLine is one line a task logged, with Docker's timestamp.
type LogLine struct {
	Time time.Time
	Text string
}

// Writer changes Swarm state. Updates carry the object's current Version.
type Writer interface {
	CreateService(ctx context.Context, spec swarm.ServiceSpec) (string, error)
	UpdateService(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec) error
	RemoveService(ctx context.Context, id string) error
	CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error)
	RemoveSecret(ctx context.Context, id string) error
	CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error)
	RemoveConfig(ctx context.Context, id string) error
	// CreateNetwork makes an attachable overlay network.
	CreateNetwork(ctx context.Context, name string, labels map[string]string) (string, error)
	RemoveNetwork(ctx context.Context, id string) error
}

// Watcher streams Docker events (service, task, node, secret, config).
type Watcher interface {
	Events(ctx context.Context) (<-chan events.Message, <-chan error)
}

// Client is all of it, as the daemon wires it.
type Client interface {
	Reader
	Writer
	Watcher
}

// LabelSpecHash holds the hash of the service spec the operator asked for.
// Swarm fills its own defaults into a stored spec, so the stored spec never
// equals the requested one: "unchanged" is decided on this hash.
const LabelSpecHash = "mqtt.swarm/spec-hash"

// ContentHash is a short hash of b, for versioned object names and labels.
func ContentHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])[:10]
}

// StampSpecHash sets LabelSpecHash, on the service and on its containers,
// to the hash of spec without it. The container label tells which tasks
// run the current spec (during a rolling update, old tasks still run).
func StampSpecHash(spec *swarm.ServiceSpec) error {
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	cs := spec.TaskTemplate.ContainerSpec
	if cs != nil && cs.Labels == nil {
		cs.Labels = map[string]string{}
	}
	delete(spec.Labels, LabelSpecHash)
	if cs != nil {
		delete(cs.Labels, LabelSpecHash)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("hash service spec %s: %w", spec.Name, err)
	}
	h := ContentHash(b)
	spec.Labels[LabelSpecHash] = h
	if cs != nil {
		cs.Labels[LabelSpecHash] = h
	}
	return nil
}

// RunsCurrentSpec reports whether a task was made from its service's
// current spec.
func RunsCurrentSpec(t swarm.Task, s swarm.Service) bool {
	if t.Spec.ContainerSpec == nil {
		return false
	}
	return t.Spec.ContainerSpec.Labels[LabelSpecHash] == s.Spec.Labels[LabelSpecHash]
}

// UpToDate reports whether a live service was made from want (stamped):
// on the service and on its containers (a service stamped before the
// container label existed is updated once, so its tasks carry it).
func UpToDate(live swarm.Service, want swarm.ServiceSpec) bool {
	h := want.Labels[LabelSpecHash]
	cs := live.Spec.TaskTemplate.ContainerSpec
	return live.Spec.Labels[LabelSpecHash] == h && cs != nil && cs.Labels[LabelSpecHash] == h
}

// TaskAddress is a task's IP address on the named network ("" if none).
func TaskAddress(t swarm.Task, netName string) string {
	for _, a := range t.NetworksAttachments {
		if a.Network.Spec.Name != netName {
			continue
		}
		for _, addr := range a.Addresses {
			if ip, _, err := net.ParseCIDR(addr); err == nil {
				return ip.String()
			}
		}
	}
	return ""
}

// ServiceWriter is what EnsureService calls.
type ServiceWriter interface {
	Services(ctx context.Context, labels map[string]string) ([]swarm.Service, error)
	CreateService(ctx context.Context, spec swarm.ServiceSpec) (string, error)
	UpdateService(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec) error
	RemoveService(ctx context.Context, id string) error
}

// EnsureService keeps the one service with the labels equal to want (a
// stamped spec): created when missing, updated when its spec hash differs,
// untouched otherwise; want nil removes it.
func EnsureService(ctx context.Context, cl ServiceWriter, labels map[string]string, want *swarm.ServiceSpec) (Outcome, error) {
	var out Outcome
	live, err := cl.Services(ctx, labels)
	if err != nil {
		return out, err
	}
	if want == nil {
		for _, s := range live {
			if err := cl.RemoveService(ctx, s.ID); err != nil {
				return out, err
			}
			out.Removed = append(out.Removed, s.Spec.Name)
		}
		return out, nil
	}
	switch {
	case len(live) == 0:
		if _, err := cl.CreateService(ctx, *want); err != nil {
			return out, err
		}
		out.Created = append(out.Created, want.Name)
	case !UpToDate(live[0], *want):
		if err := cl.UpdateService(ctx, live[0].ID, live[0].Version, *want); err != nil {
			return out, err
		}
		out.Updated = append(out.Updated, want.Name)
	}
	return out, nil
}
