package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	reg := prometheus.NewRegistry()
	reg.MustRegister(&containers.Collector{Source: d, HostMemory: containers.HostMemory(meminfo), Log: log})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	log.Info("container exporter serving", "listen", *listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
