package swarm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// Call is one write the Fake received.
type Call struct {
	Method string
	Name   string
}

// Fake is an in-memory Client that records every write, so a test can
// assert, for example, that reconciling an unchanged spec writes nothing.
// It behaves as Swarm does where reconcilers depend on it: label filters
// match all given labels, names are unique, an update must carry the
// current version, and secrets and configs are immutable.
type Fake struct {
	mu       sync.Mutex
	seq      int
	services map[string]swarm.Service
	secrets  map[string]swarm.Secret
	configs  map[string]swarm.Config
	networks map[string]network.Summary
	// TaskList and NodeList are returned as set by the test.
	TaskList []swarm.Task
	NodeList []swarm.Node
	// LocalNode is what LocalNodeID returns.
	LocalNode string
	// Logs holds each service's log lines, by service name; LogsSince
	// records the since of each service's last ServiceLogs.
	Logs      map[string][]LogLine
	LogsSince map[string]time.Time
	// LogsErr is returned with a service's lines (ErrIncompleteLogs: the
	// lines are what the nodes that answered logged).
	LogsErr map[string]error
	calls   []Call
	// Fail, when set, is returned by every write.
	Fail   error
	events chan events.Message
}

// NewFake returns an empty fake Swarm.
func NewFake() *Fake {
	return &Fake{services: map[string]swarm.Service{}, secrets: map[string]swarm.Secret{}, configs: map[string]swarm.Config{}, networks: map[string]network.Summary{}, events: make(chan events.Message, 64)}
}

// Calls returns the writes made so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls forgets the writes made so far.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Emit sends an event to Events' readers.
func (f *Fake) Emit(m events.Message) { f.events <- m }

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if w, ok := have[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (f *Fake) id() string { f.seq++; return fmt.Sprintf("fake%04d", f.seq) }

func (f *Fake) write(method, name string) error {
	f.calls = append(f.calls, Call{Method: method, Name: name})
	return f.Fail
}

func sortedValues[T any](m map[string]T, keep func(T) bool) []T {
	var out []T
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if keep(m[k]) {
			out = append(out, m[k])
		}
	}
	return out
}

func (f *Fake) Services(_ context.Context, labels map[string]string) ([]swarm.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedValues(f.services, func(s swarm.Service) bool { return matches(s.Spec.Labels, labels) }), nil
}

func (f *Fake) Tasks(_ context.Context, labels map[string]string) ([]swarm.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []swarm.Task
	for _, t := range f.TaskList {
		if matches(t.Spec.ContainerSpec.Labels, labels) || matches(t.Labels, labels) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (f *Fake) Nodes(context.Context) ([]swarm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.NodeList), nil
}

func (f *Fake) LocalNodeID(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.LocalNode == "" {
		return "", errors.New("not part of a Swarm")
	}
	return f.LocalNode, nil
}

func (f *Fake) Secrets(_ context.Context, labels map[string]string) ([]swarm.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedValues(f.secrets, func(s swarm.Secret) bool { return matches(s.Spec.Labels, labels) }), nil
}

func (f *Fake) Configs(_ context.Context, labels map[string]string) ([]swarm.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedValues(f.configs, func(c swarm.Config) bool { return matches(c.Spec.Labels, labels) }), nil
}

// ErrNameConflict and ErrOutOfSequence mirror Swarm's refusals.
var (
	ErrNameConflict  = errors.New("name conflicts with an existing object")
	ErrOutOfSequence = errors.New("update out of sequence")
	ErrNotFound      = errors.New("not found")
	ErrInUse         = errors.New("in use by a service")
)

// inUse reports whether a service spec references the secret or config id,
// which makes Swarm refuse to remove it. Callers hold f.mu.
func (f *Fake) inUse(id string) bool {
	for _, s := range f.services {
		cs := s.Spec.TaskTemplate.ContainerSpec
		if cs == nil {
			continue
		}
		for _, r := range cs.Secrets {
			if r.SecretID == id {
				return true
			}
		}
		for _, r := range cs.Configs {
			if r.ConfigID == id {
				return true
			}
		}
	}
	return false
}

func (f *Fake) CreateService(_ context.Context, spec swarm.ServiceSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("CreateService", spec.Name); err != nil {
		return "", err
	}
	for _, s := range f.services {
		if s.Spec.Name == spec.Name {
			return "", fmt.Errorf("create service %s: %w", spec.Name, ErrNameConflict)
		}
	}
	id := f.id()
	f.services[id] = swarm.Service{ID: id, Meta: swarm.Meta{Version: swarm.Version{Index: 1}}, Spec: spec}
	return id, nil
}

func (f *Fake) UpdateService(_ context.Context, id string, version swarm.Version, spec swarm.ServiceSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("UpdateService", spec.Name); err != nil {
		return err
	}
	s, ok := f.services[id]
	if !ok {
		return fmt.Errorf("update service %s: %w", spec.Name, ErrNotFound)
	}
	if s.Version.Index != version.Index {
		return fmt.Errorf("update service %s: %w", spec.Name, ErrOutOfSequence)
	}
	prev := s.Spec
	s.PreviousSpec = &prev
	s.Spec = spec
	s.Version.Index++
	f.services[id] = s
	return nil
}

func (f *Fake) RemoveService(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := f.services[id].Spec.Name
	if err := f.write("RemoveService", name); err != nil {
		return err
	}
	if _, ok := f.services[id]; !ok {
		return fmt.Errorf("remove service %s: %w", id, ErrNotFound)
	}
	delete(f.services, id)
	return nil
}

func (f *Fake) CreateSecret(_ context.Context, spec swarm.SecretSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("CreateSecret", spec.Name); err != nil {
		return "", err
	}
	for _, s := range f.secrets {
		if s.Spec.Name == spec.Name {
			return "", fmt.Errorf("create secret %s: %w", spec.Name, ErrNameConflict)
		}
	}
	id := f.id()
	spec.Data = nil // Swarm never returns secret data
	f.secrets[id] = swarm.Secret{ID: id, Meta: swarm.Meta{Version: swarm.Version{Index: 1}}, Spec: spec}
	return id, nil
}

func (f *Fake) RemoveSecret(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("RemoveSecret", f.secrets[id].Spec.Name); err != nil {
		return err
	}
	if _, ok := f.secrets[id]; !ok {
		return fmt.Errorf("remove secret %s: %w", id, ErrNotFound)
	}
	if f.inUse(id) {
		return fmt.Errorf("remove secret %s: %w", id, ErrInUse)
	}
	delete(f.secrets, id)
	return nil
}

func (f *Fake) CreateConfig(_ context.Context, spec swarm.ConfigSpec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("CreateConfig", spec.Name); err != nil {
		return "", err
	}
	for _, c := range f.configs {
		if c.Spec.Name == spec.Name {
			return "", fmt.Errorf("create config %s: %w", spec.Name, ErrNameConflict)
		}
	}
	id := f.id()
	f.configs[id] = swarm.Config{ID: id, Meta: swarm.Meta{Version: swarm.Version{Index: 1}}, Spec: spec}
	return id, nil
}

func (f *Fake) RemoveConfig(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("RemoveConfig", f.configs[id].Spec.Name); err != nil {
		return err
	}
	if _, ok := f.configs[id]; !ok {
		return fmt.Errorf("remove config %s: %w", id, ErrNotFound)
	}
	if f.inUse(id) {
		return fmt.Errorf("remove config %s: %w", id, ErrInUse)
	}
	delete(f.configs, id)
	return nil
}

func (f *Fake) Networks(_ context.Context, labels map[string]string) ([]network.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedValues(f.networks, func(n network.Summary) bool { return matches(n.Labels, labels) }), nil
}

// AddNetwork adds a network made by someone else (the operator stack's
// control network), as it is.
func (f *Fake) AddNetwork(n network.Summary) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n.ID == "" {
		n.ID = f.id()
	}
	f.networks[n.ID] = n
}

func (f *Fake) CreateNetwork(_ context.Context, name string, labels map[string]string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("CreateNetwork", name); err != nil {
		return "", err
	}
	for _, n := range f.networks {
		if n.Name == name {
			return "", fmt.Errorf("create network %s: %w", name, ErrNameConflict)
		}
	}
	id := f.id()
	f.networks[id] = network.Summary{ID: id, Name: name, Driver: "overlay", Scope: "swarm", Attachable: true, Labels: maps.Clone(labels)}
	return id, nil
}

func (f *Fake) RemoveNetwork(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.write("RemoveNetwork", f.networks[id].Name); err != nil {
		return err
	}
	if _, ok := f.networks[id]; !ok {
		return fmt.Errorf("remove network %s: %w", id, ErrNotFound)
	}
	delete(f.networks, id)
	return nil
}

func (f *Fake) Events(ctx context.Context) (<-chan events.Message, <-chan error) {
	errc := make(chan error, 1)
	out := make(chan events.Message)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			case m := <-f.events:
				select {
				case out <- m:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			}
		}
	}()
	return out, errc
}

// ServiceLogs returns the lines set in Logs after since.
func (f *Fake) ServiceLogs(_ context.Context, service string, since time.Time) ([]LogLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.LogsSince == nil {
		f.LogsSince = map[string]time.Time{}
	}
	f.LogsSince[service] = since
	var out []LogLine
	for _, l := range f.Logs[service] {
		if !l.Time.Before(since) { // since is inclusive, as Docker's is
			out = append(out, l)
		}
	}
	return out, f.LogsErr[service]
}

var _ Client = (*Fake)(nil)
