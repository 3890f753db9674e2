package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/brokermetrics"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/programs/exporter"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/programs/syncagent"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// RsyncWrapperName: run under this name (a link in the sync image), the
// binary is the rsync lsyncd runs, recording each run's outcome.
const RsyncWrapperName = "mqtt-sync-rsync"

const syncStateDir = "/run/mqtt-sync"

// syncAgentCmd runs a cluster's sync agent on one node (the operator
// starts it as a global service on the sync image).
func syncAgentCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator sync-agent", flag.ExitOnError)
	cluster := fs.String("cluster", "", "the MqttCluster whose brokers this agent serves")
	operatorID := fs.String("operator-id", "mqtt-operator", "the operator's ownership label value")
	node := fs.String("node", os.Getenv("NODE_ID"), "this node's Swarm id (default $NODE_ID)")
	passwordFile := fs.String("password-file", datasync.PasswordFile, "the cluster's rsync password (a Docker secret)")
	tlsFile := fs.String("tls-file", "", "the agents' certificate and key (PEM, a Docker secret): the API over HTTPS, peers checked, rsync through a mutual-TLS tunnel; empty: plain (tests)")
	caFile := fs.String("ca-file", datasync.CAFile, "the control-plane CA certificate (with --tls-file)")
	volumes := fs.String("volumes-dir", datasync.VolumesDir, "the node's Docker volume directory, mounted at the same path")
	listen := fs.String("listen", fmt.Sprintf(":%d", datasync.AgentPort), "HTTP API address")
	fenceAfter := fs.Duration("fence-after", syncagent.DefaultFenceAfter, "stop this node's brokers when no peer agent and no operator has been heard for this long (0: never)")
	_ = fs.Parse(args)
	if *cluster == "" || *node == "" {
		return errors.New("sync-agent: --cluster and --node (or $NODE_ID) are required")
	}
	if err := datasync.CheckContract(exec.LookPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(datasync.ContractExit)
	}
	pw, err := os.ReadFile(*passwordFile)
	if err != nil {
		return fmt.Errorf("sync-agent: %w", err)
	}
	if strings.TrimSpace(string(pw)) == "" {
		return fmt.Errorf("sync-agent: %s is empty: refusing to serve with no secret", *passwordFile)
	}
	d, err := swarm.NewDocker()
	if err != nil {
		return err
	}
	defer d.Close()
	self, _ := os.Executable()
	var peer *tlsutil.Peer
	connect := ""
	if *tlsFile != "" {
		if peer, err = tlsutil.LoadPeer(*tlsFile, *caFile); err != nil {
			return fmt.Errorf("sync-agent: %w", err)
		}
		connect = fmt.Sprintf("%s sync-connect --tls-file %s --ca-file %s %%H:%d", self, *tlsFile, *caFile, datasync.RsyncPort)
	}
	a := &syncagent.Agent{
		TLS:    peer,
		Docker: &localDocker{d: d, labels: swarm.OwnedComponent(*operatorID, *cluster, "broker"), volumeLabels: swarm.OwnedComponent(*operatorID, *cluster, "broker-data")},
		Log:    slog.New(slog.NewTextHandler(os.Stderr, nil)).With("cluster", *cluster),
		Node:   *node, Password: strings.TrimSpace(string(pw)),
		VolumesDir: *volumes, StateDir: syncStateDir,
		RsyncBinary: "/usr/local/bin/" + RsyncWrapperName,
		FenceAfter:  *fenceAfter,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return syncagent.Run(ctx, syncagent.Options{Agent: a, Listen: *listen, AllowCommand: self + " sync-allow", ConnectCommand: connect})
}

// syncConnectCmd: mqtt-operator sync-connect --tls-file F --ca-file C
// HOST:PORT, rsync's RSYNC_CONNECT_PROG: a peer agent's rsync daemon
// through its mutual-TLS tunnel, on stdin and stdout.
func syncConnectCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator sync-connect", flag.ExitOnError)
	tlsFile := fs.String("tls-file", datasync.TLSFile, "the agents' certificate and key")
	caFile := fs.String("ca-file", datasync.CAFile, "the control-plane CA certificate")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("sync-connect: HOST:PORT is required")
	}
	peer, err := tlsutil.LoadPeer(*tlsFile, *caFile)
	if err != nil {
		return fmt.Errorf("sync-connect: %w", err)
	}
	return syncagent.Connect(fs.Arg(0), peer.ClientConfig(), os.Stdin, os.Stdout)
}

// localDocker is the agent's view of its node's Docker.
type localDocker struct {
	d            *swarm.Docker
	labels       map[string]string
	volumeLabels map[string]string
}

func (l *localDocker) BrokerContainers(ctx context.Context) ([]syncagent.Container, error) {
	cs, err := l.d.RunningContainers(ctx, l.labels)
	if err != nil {
		return nil, err
	}
	out := make([]syncagent.Container, 0, len(cs))
	for _, c := range cs {
		svc, task := c.Labels["com.docker.swarm.service.name"], c.Labels["com.docker.swarm.task.id"]
		if svc == "" || task == "" {
			continue
		}
		out = append(out, syncagent.Container{ID: c.ID, Service: svc, TaskID: task})
	}
	return out, nil
}

func (l *localDocker) StopBroker(ctx context.Context, id string) error {
	return l.d.StopContainer(ctx, id, time.Second)
}

func (l *localDocker) EnsureVolume(ctx context.Context, name string) error {
	return l.d.EnsureVolume(ctx, name, l.volumeLabels)
}

// brokerExporterCmd serves a cluster's brokers' $SYS topics as Prometheus
// metrics (the operator runs it as the cluster's exporter service).
func brokerExporterCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator broker-exporter", flag.ExitOnError)
	cluster := fs.String("cluster", "", "the MqttCluster whose brokers to follow")
	passwordFile := fs.String("password-file", "/run/secrets/bridge-password", "the internal bridge user's password")
	listen := fs.String("listen", fmt.Sprintf(":%d", brokermetrics.Port), "address of /metrics")
	caFile := fs.String("ca-file", "", "the control-plane CA certificate: the brokers speak TLS, verified with it (empty: plain)")
	_ = fs.Parse(args)
	if *cluster == "" {
		return errors.New("broker-exporter: --cluster is required")
	}
	pw, err := os.ReadFile(*passwordFile)
	if err != nil {
		return fmt.Errorf("broker-exporter: %w", err)
	}
	e := &exporter.Exporter{
		Cluster: *cluster, Brokers: api.MaxReplicas, User: broker.BridgeUser, Password: strings.TrimSpace(string(pw)),
		Addr: func(i int) string {
			return net.JoinHostPort(api.BrokerTaskHost(*cluster, i), strconv.Itoa(broker.InternalPort))
		},
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("broker-exporter: %w", err)
		}
		e.RootCAs = x509.NewCertPool()
		if !e.RootCAs.AppendCertsFromPEM(b) {
			return fmt.Errorf("broker-exporter: %s holds no certificate", *caFile)
		}
	}
	return serveMetrics(*listen, e, e.Run)
}

// serveMetrics serves c's metrics on listen (GET /metrics) until SIGINT or
// SIGTERM, with run (if any) going on beside it until then.
func serveMetrics(listen string, c prometheus.Collector, run func(context.Context)) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if run != nil {
		go run(ctx)
	}
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
