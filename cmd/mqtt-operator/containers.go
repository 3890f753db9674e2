package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/programs/containers"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// containerExporterCmd serves the CPU, memory and network of the project's
// containers on this node (the monitoring stack runs it on every node,
// with the Docker socket).
func containerExporterCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator container-exporter", flag.ExitOnError)
	listen := fs.String("listen", fmt.Sprintf(":%d", containers.Port), "address of /metrics")
	_ = fs.Parse(args)
	d, err := swarm.NewDocker()
	if err != nil {
		return err
	}
	defer d.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	meminfo, _ := os.ReadFile("/proc/meminfo")
	log.Info("container exporter serving", "listen", *listen)
	return serveMetrics(*listen, &containers.Collector{Source: d, HostMemory: containers.HostMemory(meminfo), Log: log}, nil)
}
