// Package containers is the container exporter, an in-container program
// (the operator binary's container-exporter command, a global service of
// the monitoring stack): on every node it reads the local Docker engine's
// stats of the project's containers — every cluster's brokers, load
// balancers, sync agents and broker exporters, and the operator and
// monitoring stacks' tasks — and serves their CPU, memory and network as
// Prometheus metrics under cAdvisor's names, so that dashboards and rules
// written for cAdvisor read them. (cAdvisor is not packaged in Debian 12;
// the Docker engine's own metrics endpoint has no per-container figures.)
package containers

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Port is where the exporter serves /metrics.
const Port = 9338

// Source is what the exporter needs of the local Docker engine.
type Source interface {
	AllRunningContainers(ctx context.Context) ([]swarm.LocalContainer, error)
	ContainerStats(ctx context.Context, id string) (swarm.ContainerStats, error)
}

// Stacks are the Swarm stacks whose tasks are exported besides the
// clusters' (which carry swarm.LabelCluster).
var Stacks = map[string]bool{"mqtt-operator": true, "mqtt-monitoring": true}

const (
	labelService   = "com.docker.swarm.service.name"
	labelTask      = "com.docker.swarm.task.name"
	labelStack     = "com.docker.stack.namespace"
	parallel       = 4
	collectTimeout = 8 * time.Second
)

var labels = []string{"name", "service", "task", "cluster", "component"}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	cpuDesc     = desc("container_cpu_usage_seconds_total", "CPU time the container used, in seconds.")
	memDesc     = desc("container_memory_usage_bytes", "The container's memory use, page cache included.")
	wsDesc      = desc("container_memory_working_set_bytes", "The container's memory use less its inactive file cache.")
	limitDesc   = desc("container_spec_memory_limit_bytes", "The container's memory limit (0: none).")
	rxDesc      = desc("container_network_receive_bytes_total", "Bytes the container received, all interfaces.")
	txDesc      = desc("container_network_transmit_bytes_total", "Bytes the container sent, all interfaces.")
	pidsDesc    = desc("container_pids", "Processes and threads in the container.")
	upDesc      = prometheus.NewDesc("container_exporter_containers", "Containers exported in this scrape.", nil, nil)
	failureDesc = prometheus.NewDesc("container_exporter_errors", "Containers whose stats could not be read in this scrape.", nil, nil)
)

// Collector reads the stats at each scrape (nothing is cached: a scrape
// is one list and one stats call per container, a few at a time).
type Collector struct {
	Source Source
	// HostMemory is the node's memory: a limit at least that large is no
	// limit (the engine reports the host's memory for an unlimited
	// container) and is exported as 0, as cAdvisor does.
	HostMemory uint64
	Log        *slog.Logger
}

// Describe sends the descriptors.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cpuDesc, memDesc, wsDesc, limitDesc, rxDesc, txDesc, pidsDesc, upDesc, failureDesc} {
		ch <- d
	}
}

// Exported says whether a container is the project's, and its labels.
func Exported(ct swarm.LocalContainer) ([]string, bool) {
	cluster := ct.Labels[swarm.LabelCluster]
	if cluster == "" && !Stacks[ct.Labels[labelStack]] {
		return nil, false
	}
	return []string{ct.Name, ct.Labels[labelService], ct.Labels[labelTask], cluster, ct.Labels[swarm.LabelComponent]}, true
}

// Collect reads every exported container's stats.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	cts, err := c.Source.AllRunningContainers(ctx)
	if err != nil {
		c.log().Warn("listing containers", "err", err)
		ch <- prometheus.MustNewConstMetric(failureDesc, prometheus.GaugeValue, 1)
		return
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		exported int
		failed   int
		sem      = make(chan struct{}, parallel)
	)
	for _, ct := range cts {
		lv, ok := Exported(ct)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := c.Source.ContainerStats(ctx, ct.ID)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++ // gone since the list, most likely
				c.log().Debug("container stats", "container", ct.Name, "err", err)
				return
			}
			exported++
			limit := s.MemoryLimit
			if c.HostMemory > 0 && limit >= c.HostMemory {
				limit = 0
			}
			ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, s.CPUSeconds, lv...)
			ch <- prometheus.MustNewConstMetric(memDesc, prometheus.GaugeValue, float64(s.MemoryUsage), lv...)
			ch <- prometheus.MustNewConstMetric(wsDesc, prometheus.GaugeValue, float64(s.MemoryWorkingSet), lv...)
			ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(limit), lv...)
			ch <- prometheus.MustNewConstMetric(rxDesc, prometheus.CounterValue, float64(s.NetRx), lv...)
			ch <- prometheus.MustNewConstMetric(txDesc, prometheus.CounterValue, float64(s.NetTx), lv...)
			ch <- prometheus.MustNewConstMetric(pidsDesc, prometheus.GaugeValue, float64(s.PIDs), lv...)
		}()
	}
	wg.Wait()
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, float64(exported))
	ch <- prometheus.MustNewConstMetric(failureDesc, prometheus.GaugeValue, float64(failed))
}

func (c *Collector) log() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

// HostMemory is MemTotal of /proc/meminfo, in bytes (0 when unreadable):
// the node's memory, as a container sees it.
func HostMemory(meminfo []byte) uint64 {
	for _, line := range strings.Split(string(meminfo), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseUint(f[0], 10, 64); err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}
