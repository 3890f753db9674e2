package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// Docker is the Client backed by the Docker API (negotiating the version
// down to the daemon's, 1.41 on Debian's 20.10).
type Docker struct {
	c *client.Client
	// registryAuth: the X-Registry-Auth of every service this client
	// creates or updates (base64url JSON; empty: none), so that every
	// node pulls a private registry's images with it.
	registryAuth string
}

// UseRegistryAuth makes every service created or updated from here on carry
// these registry credentials: Swarm keeps them with the service (never in
// its inspect output) and hands them to the node that pulls a task's image.
// An empty username clears them.
func (d *Docker) UseRegistryAuth(auth registry.AuthConfig) error {
	if auth.Username == "" && auth.IdentityToken == "" {
		d.registryAuth = ""
		return nil
	}
	enc, err := registry.EncodeAuthConfig(auth)
	if err != nil {
		return errors.New("encode the registry credentials")
	}
	d.registryAuth = enc
	return nil
}

// NewDocker connects with the environment's settings (DOCKER_HOST, or the
// local socket).
func NewDocker() (*Docker, error) {
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{c: c}, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.c.Close() }

func labelFilter(labels map[string]string) filters.Args {
	f := filters.NewArgs()
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	return f
}

func (d *Docker) Services(ctx context.Context, labels map[string]string) ([]swarm.Service, error) {
	s, err := d.c.ServiceList(ctx, swarm.ServiceListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return s, nil
}

func (d *Docker) Tasks(ctx context.Context, labels map[string]string) ([]swarm.Task, error) {
	t, err := d.c.TaskList(ctx, swarm.TaskListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return t, nil
}

func (d *Docker) Nodes(ctx context.Context) ([]swarm.Node, error) {
	n, err := d.c.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return n, nil
}

func (d *Docker) LocalNodeID(ctx context.Context) (string, error) {
	info, err := d.c.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info: %w", err)
	}
	if info.Swarm.NodeID == "" {
		return "", errors.New("this Docker daemon is not part of a Swarm")
	}
	return info.Swarm.NodeID, nil
}

func (d *Docker) Secrets(ctx context.Context, labels map[string]string) ([]swarm.Secret, error) {
	s, err := d.c.SecretList(ctx, swarm.SecretListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return s, nil
}

func (d *Docker) Configs(ctx context.Context, labels map[string]string) ([]swarm.Config, error) {
	c, err := d.c.ConfigList(ctx, swarm.ConfigListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, fmt.Errorf("list configs: %w", err)
	}
	return c, nil
}

func (d *Docker) CreateService(ctx context.Context, spec swarm.ServiceSpec) (string, error) {
	r, err := d.c.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{EncodedRegistryAuth: d.registryAuth})
	if err != nil {
		return "", fmt.Errorf("create service %s: %w", spec.Name, err)
	}
	return r.ID, nil
}

func (d *Docker) UpdateService(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec) error {
	if _, err := d.c.ServiceUpdate(ctx, id, version, spec, swarm.ServiceUpdateOptions{EncodedRegistryAuth: d.registryAuth}); err != nil {
		return fmt.Errorf("update service %s: %w", spec.Name, err)
	}
	return nil
}

func (d *Docker) RemoveService(ctx context.Context, id string) error {
	if err := d.c.ServiceRemove(ctx, id); err != nil {
		return fmt.Errorf("remove service %s: %w", id, err)
	}
	return nil
}

// CreateSecret's errors name the secret, never its data.
func (d *Docker) CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	r, err := d.c.SecretCreate(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("create secret %s: %w", spec.Name, err)
	}
	return r.ID, nil
}

func (d *Docker) RemoveSecret(ctx context.Context, id string) error {
	if err := d.c.SecretRemove(ctx, id); err != nil {
		return fmt.Errorf("remove secret %s: %w", id, err)
	}
	return nil
}

func (d *Docker) CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	r, err := d.c.ConfigCreate(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("create config %s: %w", spec.Name, err)
	}
	return r.ID, nil
}

func (d *Docker) RemoveConfig(ctx context.Context, id string) error {
	if err := d.c.ConfigRemove(ctx, id); err != nil {
		return fmt.Errorf("remove config %s: %w", id, err)
	}
	return nil
}

func (d *Docker) Networks(ctx context.Context, labels map[string]string) ([]network.Summary, error) {
	n, err := d.c.NetworkList(ctx, network.ListOptions{Filters: labelFilter(labels)})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return n, nil
}

func (d *Docker) CreateNetwork(ctx context.Context, name string, labels map[string]string) (string, error) {
	r, err := d.c.NetworkCreate(ctx, name, network.CreateOptions{Driver: "overlay", Attachable: true, Scope: "swarm", Labels: labels})
	if err != nil {
		return "", fmt.Errorf("create network %s: %w", name, err)
	}
	return r.ID, nil
}

func (d *Docker) RemoveNetwork(ctx context.Context, id string) error {
	if err := d.c.NetworkRemove(ctx, id); err != nil {
		return fmt.Errorf("remove network %s: %w", id, err)
	}
	return nil
}

// Events streams service, task (container), node, secret and config events.
func (d *Docker) Events(ctx context.Context) (<-chan events.Message, <-chan error) {
	f := filters.NewArgs()
	for _, t := range []string{"service", "node", "secret", "config", "container"} {
		f.Add("type", t)
	}
	return d.c.Events(ctx, events.ListOptions{Filters: f})
}

var _ Client = (*Docker)(nil)

// Relevant reports whether an event can change what a reconcile sees:
// every service, node, secret and config event, and containers starting
// or ending (not exec or attach noise).
func Relevant(m events.Message) bool {
	if m.Type != events.ContainerEventType {
		return true
	}
	switch m.Action {
	case events.ActionStart, events.ActionDie, events.ActionDestroy, events.ActionKill, events.ActionOOM:
		return true
	}
	return false
}

// logsTimeout bounds one read of a service's log: Swarm's log stream over
// a long task history can hang (seen on a service whose earlier tasks'
// containers were gone), and a caller's pass must go on without it.
const logsTimeout = 10 * time.Second

// ServiceLogs reads a service's logs (stdout and stderr, every task) after
// since, within logsTimeout. Swarm's log stream is multiplexed; each line
// starts with Docker's RFC 3339 timestamp.
func (d *Docker) ServiceLogs(ctx context.Context, service string, since time.Time) ([]LogLine, error) {
	ctx, cancel := context.WithTimeout(ctx, logsTimeout)
	defer cancel()
	opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	rc, err := d.c.ServiceLogs(ctx, service, opts)
	if err != nil {
		return nil, fmt.Errorf("logs of service %s: %w", service, err)
	}
	defer rc.Close()
	var out, errOut bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &errOut, io.LimitReader(rc, 64<<20))
	if err != nil && !strings.Contains(err.Error(), "incomplete log stream") {
		return nil, fmt.Errorf("logs of service %s: %w", service, err)
	}
	if err != nil {
		// Swarm streamed every node it could reach, then said which it
		// could not (a node that had an earlier task, restarted or gone):
		// the lines read are whole for the tasks of the nodes that answered.
		err = fmt.Errorf("logs of service %s: %w: %v", service, ErrIncompleteLogs, err)
	}
	var lines []LogLine
	for _, b := range []*bytes.Buffer{&out, &errOut} {
		for _, l := range strings.Split(b.String(), "\n") {
			ts, text, ok := strings.Cut(l, " ")
			if !ok {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				continue
			}
			lines = append(lines, LogLine{Time: t, Text: text})
		}
	}
	slices.SortStableFunc(lines, func(a, b LogLine) int { return a.Time.Compare(b.Time) })
	return lines, err
}

// LocalContainer is a container of the local daemon (not the Swarm's).
type LocalContainer struct {
	ID     string
	Name   string // AllRunningContainers only
	Labels map[string]string
}

// RunningContainers lists the local daemon's running containers with the
// labels (the sync agent finds the brokers on its node with it).
func (d *Docker) RunningContainers(ctx context.Context, labels map[string]string) ([]LocalContainer, error) {
	f := labelFilter(labels)
	f.Add("status", "running")
	cs, err := d.c.ContainerList(ctx, container.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]LocalContainer, 0, len(cs))
	for _, c := range cs {
		out = append(out, LocalContainer{ID: c.ID, Labels: c.Labels})
	}
	return out, nil
}

// StopContainer stops a local container: SIGTERM, then SIGKILL after
// timeout (whole seconds).
func (d *Docker) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout / time.Second)
	if err := d.c.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// ContainerStats are one container's resource figures, as the local
// daemon's stats API reports them (one sample, not primed).
type ContainerStats struct {
	// CPUSeconds is the CPU time used since the container started.
	CPUSeconds float64
	// MemoryUsage is the cgroup's memory use; MemoryWorkingSet the same
	// less the inactive file cache (what the kernel cannot reclaim
	// freely, cAdvisor's working set); MemoryLimit the cgroup's limit (the
	// host's memory when the container has none).
	MemoryUsage, MemoryWorkingSet, MemoryLimit uint64
	// NetRx and NetTx are the bytes received and sent on every interface.
	NetRx, NetTx uint64
	// PIDs is the number of processes and threads.
	PIDs uint64
}

// AllRunningContainers lists every running container of the local
// daemon, with its name.
func (d *Docker) AllRunningContainers(ctx context.Context) ([]LocalContainer, error) {
	cs, err := d.c.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("status", "running"))})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]LocalContainer, 0, len(cs))
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, LocalContainer{ID: c.ID, Name: name, Labels: c.Labels})
	}
	return out, nil
}

// ContainerStats reads one container's figures from the local daemon.
func (d *Docker) ContainerStats(ctx context.Context, id string) (ContainerStats, error) {
	r, err := d.c.ContainerStatsOneShot(ctx, id)
	if err != nil {
		return ContainerStats{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	defer r.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
		return ContainerStats{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	return statsOf(s), nil
}

func statsOf(s container.StatsResponse) ContainerStats {
	out := ContainerStats{
		CPUSeconds:  float64(s.CPUStats.CPUUsage.TotalUsage) / 1e9,
		MemoryUsage: s.MemoryStats.Usage,
		MemoryLimit: s.MemoryStats.Limit,
		PIDs:        s.PidsStats.Current,
	}
	inactive := s.MemoryStats.Stats["inactive_file"] // cgroup v2
	if v, ok := s.MemoryStats.Stats["total_inactive_file"]; ok {
		inactive = v // cgroup v1
	}
	out.MemoryWorkingSet = out.MemoryUsage
	if inactive < out.MemoryUsage {
		out.MemoryWorkingSet = out.MemoryUsage - inactive
	}
	for _, n := range s.Networks {
		out.NetRx += n.RxBytes
		out.NetTx += n.TxBytes
	}
	return out
}

// EnsureVolume creates a local volume if the local daemon has none by
// that name (creating an existing local volume changes nothing).
func (d *Docker) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	if _, err := d.c.VolumeInspect(ctx, name); err == nil {
		return nil
	}
	if _, err := d.c.VolumeCreate(ctx, volume.CreateOptions{Name: name, Driver: "local", Labels: labels}); err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}
