package containers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

type fakeSource struct {
	cts   []swarm.LocalContainer
	stats map[string]swarm.ContainerStats
}

func (f *fakeSource) AllRunningContainers(context.Context) ([]swarm.LocalContainer, error) {
	return f.cts, nil
}

func (f *fakeSource) ContainerStats(_ context.Context, id string) (swarm.ContainerStats, error) {
	s, ok := f.stats[id]
	if !ok {
		return s, errors.New("no such container")
	}
	return s, nil
}

// The project's containers are exported (a cluster's, the operator and
// monitoring stacks'), nobody else's; an unlimited container's limit
// reads 0; a container gone between the list and its stats is counted.
func TestCollector(t *testing.T) {
	src := &fakeSource{
		cts: []swarm.LocalContainer{
			{ID: "b0", Name: "quickstart-broker-0.1.x", Labels: map[string]string{swarm.LabelCluster: "quickstart", swarm.LabelComponent: "broker",
				labelService: "quickstart-broker-0", labelTask: "quickstart-broker-0.1.x"}},
			{ID: "op", Name: "mqtt-operator_operator.y", Labels: map[string]string{labelStack: "mqtt-operator", labelService: "mqtt-operator_operator"}},
			{ID: "other", Name: "someone-else", Labels: map[string]string{labelService: "web"}},
			{ID: "gone", Name: "quickstart-lb.1.z", Labels: map[string]string{swarm.LabelCluster: "quickstart", swarm.LabelComponent: "loadbalancer"}},
		},
		stats: map[string]swarm.ContainerStats{
			"b0":    {CPUSeconds: 1.5, MemoryUsage: 100, MemoryWorkingSet: 80, MemoryLimit: 256 << 20, NetRx: 10, NetTx: 20, PIDs: 3},
			"op":    {CPUSeconds: 2, MemoryUsage: 50, MemoryWorkingSet: 50, MemoryLimit: 1 << 30, PIDs: 9},
			"other": {CPUSeconds: 9},
		},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&Collector{Source: src, HostMemory: 1 << 30})
	want := `
# HELP container_cpu_usage_seconds_total CPU time the container used, in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{cluster="",component="",name="mqtt-operator_operator.y",service="mqtt-operator_operator",task=""} 2
container_cpu_usage_seconds_total{cluster="quickstart",component="broker",name="quickstart-broker-0.1.x",service="quickstart-broker-0",task="quickstart-broker-0.1.x"} 1.5
# HELP container_spec_memory_limit_bytes The container's memory limit (0: none).
# TYPE container_spec_memory_limit_bytes gauge
container_spec_memory_limit_bytes{cluster="",component="",name="mqtt-operator_operator.y",service="mqtt-operator_operator",task=""} 0
container_spec_memory_limit_bytes{cluster="quickstart",component="broker",name="quickstart-broker-0.1.x",service="quickstart-broker-0",task="quickstart-broker-0.1.x"} 2.68435456e+08
# HELP container_exporter_containers Containers exported in this scrape.
# TYPE container_exporter_containers gauge
container_exporter_containers 2
# HELP container_exporter_errors Containers whose stats could not be read in this scrape.
# TYPE container_exporter_errors gauge
container_exporter_errors 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "container_cpu_usage_seconds_total",
		"container_spec_memory_limit_bytes", "container_exporter_containers", "container_exporter_errors"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "container_network_receive_bytes_total", "container_memory_working_set_bytes", "container_pids"); err != nil || n != 6 {
		t.Fatalf("network, working set and pids series: %d, %v", n, err)
	}
}

func TestHostMemory(t *testing.T) {
	if got := HostMemory([]byte("MemTotal:       24683548 kB\nMemFree:  1 kB\n")); got != 24683548*1024 {
		t.Fatalf("got %d", got)
	}
	if got := HostMemory([]byte("nothing")); got != 0 {
		t.Fatalf("got %d", got)
	}
}
