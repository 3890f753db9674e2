// Command mqtt-operator is the swarm-mqtt-operator daemon: the raft-backed
// store of MqttCluster objects and the HTTP API in front of it.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/hashicorp/raft"
	"golang.org/x/crypto/bcrypt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/gitsync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/leader"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/membership"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/metrics"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/programs/signer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/programs/syncagent"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/brokerauth"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/cluster"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

var version = "dev"

type options struct {
	dataDir, apiAddr, raftAddr, raftAdvertise, nodeID string
	tokenFile, tlsCert, tlsKey, controlCA, apiSANs    string
	brokerImage, lbImage, logLevel                    string
	operatorID, controlNetwork, encryptionKeyFile     string
	operatorImage, syncImage, registryAuthFile        string
	gitRepo, gitBranch, gitPath                       string
	gitCredentials, gitKnownHosts                     string
	gitInterval                                       time.Duration
	resync                                            time.Duration
	reconcile, showVersion, swarmRaft, brokerMetrics  bool
	drainLost                                         bool
	moveOffLost                                       bool
	insecure                                          bool
	peerAPIPort                                       int
}

func main() {
	if filepath.Base(os.Args[0]) == RsyncWrapperName {
		os.Exit(syncagent.RunRsync(syncStateDir, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "sync-agent":
			exitOn(syncAgentCmd(os.Args[2:]))
			return
		case "broker-exporter":
			exitOn(brokerExporterCmd(os.Args[2:]))
			return
		case "container-exporter":
			exitOn(containerExporterCmd(os.Args[2:]))
			return
		case "sync-allow":
			os.Exit(syncagent.AllowFromEnv(datasync.AllowPort))
		case "sync-connect":
			exitOn(syncConnectCmd(os.Args[2:]))
			return
		case "restore":
			exitOn(restoreCmd(os.Args[2:]))
			return
		case "recover":
			exitOn(recoverCmd(os.Args[2:]))
			return
		case "sign":
			exitOn(signCmd(os.Args[2:]))
			return
		case "control-ca":
			exitOn(controlCACmd(os.Args[2:]))
			return
		case "monitoring-cert":
			exitOn(monitoringCertCmd(os.Args[2:]))
			return
		case "bcrypt":
			exitOn(bcryptCmd(os.Stdin, os.Stdout))
			return
		case "healthcheck":
			exitOn(healthcheckCmd(os.Args[2:]))
			return
		}
	}
	var o options
	fs := flag.NewFlagSet("mqtt-operator", flag.ExitOnError)
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/mqtt-operator", "directory for the raft log, snapshots and node id")
	fs.StringVar(&o.apiAddr, "api-addr", ":7950", "HTTP API listen address")
	fs.StringVar(&o.raftAddr, "raft-addr", ":7951", "raft transport listen address")
	fs.StringVar(&o.raftAdvertise, "raft-advertise", "", "raft address other managers reach this one at (default: the listen address, 127.0.0.1 when it has no host)")
	fs.StringVar(&o.nodeID, "node-id", "", "stable raft server id (default: generated once into DATA-DIR/node-id)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the API bearer token (default: DATA-DIR/api-token, generated when missing)")
	fs.StringVar(&o.controlCA, "control-ca-file", "", "the control-plane CA bundle (PEM: the CA certificates to trust and the key of the one that signs; a Docker secret only the operator service mounts): this operator issues itself a short-lived certificate from it, in memory, and serves raft over mutual TLS and the API over HTTPS with it")
	fs.StringVar(&o.apiSANs, "api-san", "", "comma-separated extra addresses (IPs or DNS names) to put in this operator's certificate, besides its raft address, its hostname, localhost and 127.0.0.1")
	fs.BoolVar(&o.insecure, "insecure", false, "with no --control-ca-file: plain raft and plain HTTP (tests on one machine only; never on a network)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve the API with this certificate instead of the control-plane one (PEM; read again when it changes)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fs.StringVar(&o.brokerImage, "broker-image", api.DefaultBrokerImage, "default Mosquitto image for clusters that name none")
	fs.StringVar(&o.lbImage, "lb-image", api.DefaultLoadBalancerImage, "default HAProxy image for clusters that name none")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.operatorID, "operator-id", "mqtt-operator", "value of the ownership label on everything this operator creates in Swarm")
	fs.StringVar(&o.controlNetwork, "control-network", "", "the operator's own overlay network (the stack's): HAProxy tasks join it and renewed certificates are pushed into them through HAProxy's runtime API with no restart; empty: a renewal rolls the HAProxy tasks")
	fs.StringVar(&o.encryptionKeyFile, "encryption-key-file", "", "file holding a 32-byte key (raw, hex or base64; a Docker secret in the stack): the clusters' private keys and passwords are stored encrypted with it (AES-256-GCM) in the raft log, snapshots and backups; empty: stored in clear")
	fs.StringVar(&o.operatorImage, "operator-image", "", "this operator's image, run as a short Swarm job to sign with a cluster's spec.tls.issuerSecret (empty: issuers are refused)")
	fs.StringVar(&o.registryAuthFile, "registry-auth-file", "", "the credentials of a private registry the images are pulled from (a Docker secret: JSON {\"username\", \"password\", \"serveraddress\"}, {} for none): every service this operator creates carries them, so every node can pull")
	fs.StringVar(&o.syncImage, "sync-image", "", "image of the sync agents (lsyncd, rsync and this binary) of clusters with spec.sync (empty: spec.sync is refused)")
	fs.BoolVar(&o.brokerMetrics, "broker-metrics", false, "run a broker exporter per cluster (the $SYS topics as Prometheus metrics, on the control network; needs --control-network and --operator-image)")
	fs.StringVar(&o.gitRepo, "git-repo", "", "pull-based sync: apply the MqttClusters of this git repository (a local path or any URL go-git can reach) on the leader, prune those that leave it (empty: off)")
	fs.StringVar(&o.gitCredentials, "git-credentials-file", "", "the git sync's credentials (a Docker secret): user:token, a token, or an SSH private key; never in --git-repo")
	fs.StringVar(&o.gitKnownHosts, "git-known-hosts-file", "", "known_hosts for an SSH --git-repo (required with an SSH key)")
	fs.StringVar(&o.gitBranch, "git-branch", "main", "the git sync's branch")
	fs.StringVar(&o.gitPath, "git-path", "", "the git sync's directory in the repository (default: all of it)")
	fs.DurationVar(&o.gitInterval, "git-interval", time.Minute, "how often the git sync fetches (POST /v1/gitsync/webhook syncs at once)")
	fs.BoolVar(&o.swarmRaft, "swarm-raft", false, "form one raft cluster with the operators on the Swarm's other managers: raft id = Swarm node id, address = the manager's address with the --raft-addr port; the Swarm's leader manager bootstraps, the raft leader adds the others as voters and removes former managers")
	fs.IntVar(&o.peerAPIPort, "peer-api-port", 0, "port the other managers' operator APIs are published on, for forwarding writes to the leader (default: the --api-addr port)")
	fs.DurationVar(&o.resync, "resync", 30*time.Second, "reconcile every cluster at least this often")
	fs.BoolVar(&o.moveOffLost, "move-off-lost-nodes", true, "for clusters with spec.sync: when this operator and every sync agent it hears have not heard a node's agent for 2 s, move that node's brokers to other nodes at once (their newest copy), ahead of Swarm's own detection; and have the sync agents stop their node's brokers when they hear no peer and no operator for 1.5 s (fencing a node cut off from the rest) (false: Swarm's node-down detection alone, no fencing)")
	fs.BoolVar(&o.drainLost, "drain-lost-brokers", true, "drain a broker in HAProxy as soon as this operator's own connection to it is closed by the broker's side (killed, crashed, stopped), before HAProxy's checks see it (needs --control-network; false: HAProxy's checks alone, 2 s or more)")
	fs.BoolVar(&o.reconcile, "reconcile", true, "reconcile clusters into Swarm while leader (false: serve the API and store only)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if o.showVersion {
		fmt.Println(version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "mqtt-operator:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	defaults := api.Defaults{BrokerImage: o.brokerImage, LoadBalancerImage: o.lbImage}
	probe := &api.MqttCluster{}
	probe.Name = "probe"
	api.Default(probe, defaults)
	if errs := api.Validate(probe); len(errs) > 0 {
		return fmt.Errorf("image defaults: %v", errs)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if err := gitsync.RepoError(o.gitRepo); err != nil {
		return err
	}
	if o.controlCA == "" && !o.insecure {
		return errors.New("the control plane needs --control-ca-file (raft over mutual TLS, the API over HTTPS); --insecure runs it in clear, for tests on one machine only")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	token, tokenPath, err := loadToken(o.tokenFile, o.dataDir)
	if err != nil {
		return err
	}
	var sealer *credentials.Sealer
	if o.encryptionKeyFile != "" {
		key, err := credentials.LoadKeyFile(o.encryptionKeyFile)
		if err != nil {
			return err
		}
		if sealer, err = credentials.NewSealer(key); err != nil {
			return err
		}
		log.Info("credentials are stored encrypted", "keyID", sealer.KeyID())
	}

	var d *swarm.Docker
	if o.reconcile || o.swarmRaft {
		if d, err = swarm.NewDocker(); err != nil {
			return err
		}
		defer d.Close()
		if o.registryAuthFile != "" {
			auth, err := readRegistryAuth(o.registryAuthFile)
			if err != nil {
				return err
			}
			if err := d.UseRegistryAuth(auth); err != nil {
				return err
			}
			if auth.Username != "" {
				log.Info("services pull with registry credentials", "registry", auth.ServerAddress, "username", auth.Username)
			}
		}
	}
	apiPort := o.peerAPIPort
	if apiPort == 0 {
		if _, p, err := net.SplitHostPort(o.apiAddr); err == nil {
			apiPort, _ = strconv.Atoi(p)
		}
	}
	bootstrap := true
	var selfSwarmID string
	var decide func(*store.Store, *tlsutil.Node)
	if o.swarmRaft {
		// Never bootstrapped at open: decided (again and again, until this
		// server has state) by bootstrapWhenAlone.
		bootstrap = false
		if selfSwarmID, decide, err = joinSwarmRaft(ctx, d, &o, apiPort, log); err != nil {
			return err
		}
	}
	var node *tlsutil.Node
	var raftServerTLS, raftClientTLS *tls.Config
	if o.controlCA != "" {
		if node, err = operatorIdentity(o); err != nil {
			return err
		}
		go node.Run(ctx)
		raftServerTLS, raftClientTLS = node.ServerConfig(tls.RequireAndVerifyClientCert), node.ClientConfig("")
		log.Info("control plane over TLS", "id", node.ID(), "certificateRenewAt", node.RenewAt().UTC().Format(time.RFC3339))
	}
	st, err := store.Open(store.Config{
		DataDir: o.dataDir, NodeID: o.nodeID, BindAddr: o.raftAddr, AdvertiseAddr: o.raftAdvertise,
		Bootstrap: bootstrap, Logger: log, ServerTLS: raftServerTLS, ClientTLS: raftClientTLS,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	if decide != nil {
		go decide(st, node)
	}
	var members *membership.Membership
	if o.swarmRaft {
		_, port, _ := net.SplitHostPort(o.raftAddr)
		rp, _ := strconv.Atoi(port)
		members = &membership.Membership{Raft: st, SelfSwarmID: selfSwarmID, Nodes: d.Nodes, RaftPort: rp, Log: log}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	peers := newPeerTransports(node)
	forward := func() (*url.URL, http.RoundTripper, bool) {
		li := st.Leader()
		host, _, err := net.SplitHostPort(li.LeaderAddress)
		if err != nil || host == "" || li.LeaderID == "" {
			return nil, nil, false
		}
		// The token goes only to the operator whose certificate names the
		// raft leader's id, not to whatever answers at its address.
		return &url.URL{Scheme: peers.scheme(), Host: net.JoinHostPort(host, strconv.Itoa(apiPort))}, peers.to(li.LeaderID), true
	}
	objs := &objects.Objects{Store: st, Sealer: sealer}
	var gs *gitsync.Syncer
	var gitTrigger func()
	if o.gitRepo != "" {
		gs = &gitsync.Syncer{Objects: objs, Defaults: defaults, Repo: o.gitRepo, Branch: o.gitBranch, Path: o.gitPath, Interval: o.gitInterval, Log: log}
		if o.gitCredentials != "" {
			if gs.Auth, err = gitsync.GitAuth(o.gitCredentials, o.gitKnownHosts); err != nil {
				return err
			}
		}
		gitTrigger = gs.Trigger
	}
	srv, err := server.New(server.Config{Store: st, Defaults: defaults, Token: token, Logger: log, Registry: reg, Forward: forward, Sealer: sealer, GitSyncTrigger: gitTrigger, Version: version})
	if err != nil {
		return err
	}
	hs := &http.Server{
		Addr:              o.apiAddr,
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	if node != nil {
		hs.TLSConfig = node.ServerConfig(tls.VerifyClientCertIfGiven)
	}
	if o.tlsCert != "" {
		fc, err := tlsutil.NewFileCertificate(o.tlsCert, o.tlsKey)
		if err != nil {
			return err
		}
		if hs.TLSConfig == nil {
			hs.TLSConfig = tlsutil.Base()
		}
		hs.TLSConfig.GetCertificate = fc.GetCertificate
	}
	// Every leader-only activity starts after one barrier and stops on
	// leadership loss (package leader).
	l := &leader.Leader{Store: st, Resync: o.resync, Log: log}
	l.Tasks = append(l.Tasks, storageMigration(objs, func() error {
		if !st.IsLeader() {
			return errors.New("not the raft leader any more")
		}
		return st.VerifyLeader()
	}, peerStorageVersions(st.NodeID(), st.Peers, peers, apiPort), log))
	if members != nil {
		l.Tasks = append(l.Tasks, leader.Task{Name: "raft membership", Run: members.Run})
	}
	if o.reconcile {
		m, err := metrics.NewMetrics(reg)
		if err != nil {
			return err
		}
		cr := &leader.Clusters{Objects: objs, Defaults: defaults, Reconciler: &cluster.Reconciler{
			Swarm: d, Leadership: st, Credentials: objs, Identity: node, OperatorID: o.operatorID, Log: log, Metrics: m,
			ControlNetwork: o.controlNetwork, SignerImage: o.operatorImage, SyncImage: o.syncImage, BrokerMetrics: o.brokerMetrics,
			Users: objs, NoFence: !o.moveOffLost,
		}}
		if node != nil && o.controlNetwork != "" {
			// Users and ACL rules are pushed to the brokers over the
			// control network, for the leader's term.
			pusher := &brokerauth.Pusher{Log: log, OnDrift: func(cluster string, broker int, found string) {
				cr.Reconciler.AuthDrift(cluster, broker, found)
				l.Trigger() // the event is stored by the next pass
			}}
			// The same connections are the quickest word of a broker's
			// death (its process closes them): it is taken out of HAProxy
			// at once, before HAProxy's checks see it.
			if o.drainLost {
				pusher.OnLost = func(cluster string, broker, brokers int) {
					lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					defer cancel()
					cr.Reconciler.BrokerLost(lctx, cluster, broker, brokers)
					l.Trigger()
				}
			}
			// The brokers' own word on their bridges, beside their
			// parents' logs (which Swarm may not stream for minutes from
			// a node that was cut off).
			pusher.OnBridge = func(cluster string, broker int, bridge string, connected bool) {
				if cr.Reconciler.BridgeState(cluster, broker, bridge, connected) {
					l.Trigger()
				}
			}
			// Their message rates, for spec.scaling.mode Auto.
			pusher.OnLoad = cr.Reconciler.BrokerLoad
			pusher.OnConnected = func(cluster string, broker int) {
				if cr.Reconciler.BrokerReached(cluster, broker) {
					l.Trigger() // admitted again once joined
				}
			}
			cr.Reconciler.Auth = pusher
			l.Tasks = append(l.Tasks, leader.Task{Name: "broker auth", Run: pusher.Run})
		}
		if o.moveOffLost && o.controlNetwork != "" {
			l.Tasks = append(l.Tasks, leader.Task{Name: "node watch", Run: func(ctx context.Context) {
				cr.Reconciler.WatchNodes(ctx, l.Trigger)
			}})
		}
		l.Reconcile, l.Discover, l.Metrics = cr.Reconcile, cr.Discover, m
		l.Establish = append(l.Establish, cr.MigrateSealing)
		if gs != nil {
			gs.Metrics = m
			l.Tasks = append(l.Tasks, leader.Task{Name: "git sync", Run: gs.Run})
		}
		go watchEvents(ctx, d, l.Trigger, log)
	}
	if l.Reconcile != nil || len(l.Tasks) > 0 {
		go l.Run(ctx)
	}

	errc := make(chan error, 1)
	go func() {
		var err error
		if hs.TLSConfig != nil {
			err = hs.ListenAndServeTLS("", "")
		} else {
			err = hs.ListenAndServe()
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	log.Info("mqtt-operator started", "version", version, "api", o.apiAddr, "raft", o.raftAddr, "node", st.NodeID(),
		"dataDir", o.dataDir, "tokenFile", tokenPath, "https", hs.TLSConfig != nil, "brokerImage", o.brokerImage, "lbImage", o.lbImage)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		// A graceful stop hands leadership over at once (Swarm stopping
		// this task, a node drained or shut down).
		if st.IsLeader() {
			if err := st.TransferLeadership(); err != nil {
				log.Warn("leadership transfer failed", "err", err)
			} else {
				log.Info("leadership transferred")
			}
		}
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("API on %s: %w", o.apiAddr, err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// watchEvents turns Docker events about Swarm objects and containers into
// reconcile triggers, reconnecting after an error.
func watchEvents(ctx context.Context, w swarm.Watcher, trigger func(), log *slog.Logger) {
	for ctx.Err() == nil {
		msgs, errs := w.Events(ctx)
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-msgs:
				if swarm.Relevant(m) {
					trigger()
				}
			case err := <-errs:
				if ctx.Err() == nil {
					log.Warn("docker events stream ended; reconnecting", "err", err)
				}
				break loop
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// loadToken reads the API token, or creates one in the data dir.
func loadToken(path, dataDir string) (string, string, error) {
	if path == "" {
		path = filepath.Join(dataDir, "api-token")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
				return "", "", fmt.Errorf("write API token: %w", err)
			}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read API token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", "", fmt.Errorf("API token file %s is empty", path)
	}
	return tok, path, nil
}

// joinSwarmRaft sets the raft id and address from the Swarm (id: this
// node's Swarm id, unless the data dir already has one; address: this
// manager's address with the raft port), and returns what decides whether
// this operator bootstraps (see bootstrapWhenAlone).
func joinSwarmRaft(ctx context.Context, d *swarm.Docker, o *options, apiPort int, log *slog.Logger) (string, func(*store.Store, *tlsutil.Node), error) {
	self, err := d.LocalNodeID(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("--swarm-raft: %w", err)
	}
	nodes, err := d.Nodes(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("--swarm-raft: %w", err)
	}
	_, port, err := net.SplitHostPort(o.raftAddr)
	if err != nil {
		return "", nil, fmt.Errorf("--raft-addr: %w", err)
	}
	rp, _ := strconv.Atoi(port)
	var selfNode *dswarm.Node
	for i := range nodes {
		if nodes[i].ID == self {
			selfNode = &nodes[i]
		}
	}
	if selfNode == nil || selfNode.ManagerStatus == nil {
		return "", nil, errors.New("--swarm-raft: this node is not a Swarm manager")
	}
	if o.raftAdvertise == "" {
		o.raftAdvertise = membership.RaftAddress(*selfNode, rp)
	}
	if _, err := os.Stat(filepath.Join(o.dataDir, "node-id")); o.nodeID == "" && errors.Is(err, os.ErrNotExist) {
		o.nodeID = self
	}
	decide := func(st *store.Store, node *tlsutil.Node) {
		bootstrapWhenAlone(ctx, st, d, self, rp, apiPort, node, log)
	}
	return self, decide, nil
}

// bootstrapWhenAlone runs while this server has no raft state: every 2 s
// it bootstraps a one-voter cluster if membership.ShouldBootstrap says so
// (the Swarm's leader manager, and every other manager's operator answers
// with no state), and stops once this server has state (bootstrapped, or
// added by a leader).
func bootstrapWhenAlone(ctx context.Context, st *store.Store, d *swarm.Docker, self string, raftPort, apiPort int, node *tlsutil.Node, log *slog.Logger) {
	// Another manager's answer counts only from an operator (its
	// certificate), over TLS.
	peers := newPeerTransports(node)
	c := &http.Client{Timeout: time.Second, Transport: peers.to("")}
	busy := func(nodes []dswarm.Node) func(ids []string) bool {
		addrOf := map[string]string{}
		for _, n := range nodes {
			if a := membership.RaftAddress(n, raftPort); a != "" {
				host, _, _ := net.SplitHostPort(a)
				addrOf[n.ID] = net.JoinHostPort(host, strconv.Itoa(apiPort))
			}
		}
		return func(ids []string) bool {
			for _, id := range ids {
				answered := false
				for _, scheme := range []string{peers.scheme()} {
					resp, err := c.Get(scheme + "://" + addrOf[id] + "/v1/status/leader")
					if err != nil {
						continue
					}
					var li store.LeaderInfo
					err = json.NewDecoder(resp.Body).Decode(&li)
					resp.Body.Close()
					if err != nil {
						continue
					}
					answered = true
					if li.LeaderID != "" || li.LastIndex > 0 {
						log.Info("another manager's operator has raft state: waiting to be added", "manager", id, "leader", li.LeaderID)
						return true
					}
				}
				if !answered {
					log.Info("another manager's operator does not answer yet: not bootstrapping", "manager", id)
					return true
				}
			}
			return false
		}
	}
	for {
		if st.HasState() {
			return
		}
		if nodes, err := d.Nodes(ctx); err == nil && membership.ShouldBootstrap(self, nodes, busy(nodes)) {
			if err := st.Bootstrap(); err != nil {
				log.Warn("raft bootstrap failed", "err", err)
			} else {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// peerTransports reach the other operators' APIs: over TLS, each
// transport checking that the peer's certificate names the operator
// expected; plain HTTP only with --insecure (node nil).
type peerTransports struct {
	node *tlsutil.Node
	mu   sync.Mutex
	byID map[string]http.RoundTripper
}

func newPeerTransports(node *tlsutil.Node) *peerTransports {
	return &peerTransports{node: node, byID: map[string]http.RoundTripper{}}
}

func (p *peerTransports) scheme() string {
	if p.node == nil {
		return "http"
	}
	return "https"
}

// to is the transport to the operator with raft id id (empty: any
// operator).
func (p *peerTransports) to(id string) http.RoundTripper {
	if p.node == nil {
		return http.DefaultTransport
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if tr, ok := p.byID[id]; ok {
		return tr
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = p.node.ClientConfig(id)
	p.byID[id] = tr
	return tr
}

// operatorIdentity issues this operator's certificate from the control-
// plane CA: its raft id, its raft address, its hostname and --api-san.
func operatorIdentity(o options) (*tlsutil.Node, error) {
	ca, err := tlsutil.LoadCA(o.controlCA)
	if err != nil {
		return nil, err
	}
	id, err := store.ResolveNodeID(o.dataDir, o.nodeID)
	if err != nil {
		return nil, err
	}
	ident := tlsutil.Identity{ID: id}
	if h, err := os.Hostname(); err == nil && h != "" {
		ident.DNSNames = append(ident.DNSNames, h)
	}
	addrs := strings.Split(o.apiSANs, ",")
	for _, a := range []string{o.raftAdvertise, o.raftAddr} {
		if host, _, err := net.SplitHostPort(a); err == nil {
			addrs = append(addrs, host)
		}
	}
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if ip := net.ParseIP(a); ip != nil {
			if !ip.IsUnspecified() {
				ident.IPs = append(ident.IPs, ip)
			}
		} else {
			ident.DNSNames = append(ident.DNSNames, a)
		}
	}
	return tlsutil.NewNode(ca, ident, 0)
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqtt-operator:", err)
		os.Exit(1)
	}
}

// controlCACmd: mqtt-operator control-ca --out BUNDLE --cert-out CERT. It
// makes a new control-plane CA: BUNDLE (mode 0600) holds its certificate
// and key, for the Docker secret only the operator service mounts; CERT
// its certificate alone, for mqttctl and Prometheus to verify the
// operators with. An existing BUNDLE is kept (its certificate rewritten).
func controlCACmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator control-ca", flag.ExitOnError)
	out := fs.String("out", "", "the CA bundle to write (certificate and key, PEM, mode 0600)")
	certOut := fs.String("cert-out", "", "the CA certificate to write (PEM, public)")
	_ = fs.Parse(args)
	if *out == "" || *certOut == "" {
		return errors.New("control-ca: --out and --cert-out are required")
	}
	b, err := os.ReadFile(*out)
	if errors.Is(err, os.ErrNotExist) {
		if b, err = tlsutil.NewCA("swarm-mqtt-operator control plane", time.Now()); err != nil {
			return fmt.Errorf("control-ca: %w", err)
		}
		if err := os.WriteFile(*out, b, 0o600); err != nil {
			return fmt.Errorf("control-ca: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("control-ca: %w", err)
	}
	ca, err := tlsutil.ParseCA(b)
	if err != nil {
		return fmt.Errorf("control-ca: %s: %w", *out, err)
	}
	return os.WriteFile(*certOut, ca.CertPEM(), 0o644)
}

// monitoringCertCmd: mqtt-operator monitoring-cert --ca-file BUNDLE --name
// SERVICE --out FILE issues a server certificate for a monitoring-stack
// service (InfluxDB) from the control-plane CA: FILE (mode 0600) holds the
// certificate, the CA's and the key, for the Docker secret that service
// mounts. An existing FILE still valid for 30 days for that name is kept.
func monitoringCertCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator monitoring-cert", flag.ExitOnError)
	caFile := fs.String("ca-file", "", "the control-plane CA bundle (certificate and key)")
	name := fs.String("name", "", "the service's name (the certificate's DNS name)")
	out := fs.String("out", "", "the certificate and key to write (PEM, mode 0600)")
	_ = fs.Parse(args)
	if *caFile == "" || *name == "" || *out == "" {
		return errors.New("monitoring-cert: --ca-file, --name and --out are required")
	}
	ca, err := tlsutil.LoadCA(*caFile)
	if err != nil {
		return fmt.Errorf("monitoring-cert: %w", err)
	}
	now := time.Now()
	if cur, err := os.ReadFile(*out); err == nil && ca.ComponentValid(tlsutil.Monitoring, *name, []string{*name}, cur, now, 30*24*time.Hour) {
		return nil
	}
	cert, key, err := ca.IssueComponent(tlsutil.Monitoring, *name, []string{*name}, 365*24*time.Hour, now)
	if err != nil {
		return fmt.Errorf("monitoring-cert: %w", err)
	}
	return os.WriteFile(*out, append(cert, key...), 0o600)
}

// bcryptCmd: mqtt-operator bcrypt < PASSWORD prints the password's bcrypt
// hash (for Prometheus's web configuration: basic_auth_users).
// healthcheckCmd is the container's health check (the operator image is
// FROM scratch: no curl): GET /livez on this operator's own API, verified
// with the control-plane CA.
func healthcheckCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator healthcheck", flag.ExitOnError)
	url := fs.String("url", "https://127.0.0.1:7950/livez", "the endpoint to ask")
	caFile := fs.String("ca-file", "/run/secrets/control-ca", "the control-plane CA (its certificates verify the API; a key in the file is ignored)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	_ = fs.Parse(args)
	tr := &http.Transport{}
	if strings.HasPrefix(*url, "https://") {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("healthcheck: no certificate in %s", *caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	resp, err := (&http.Client{Transport: tr, Timeout: *timeout}).Get(*url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func bcryptCmd(in io.Reader, out io.Writer) error {
	b, err := io.ReadAll(io.LimitReader(in, 100))
	if err != nil {
		return err
	}
	pw := bytes.TrimSpace(b)
	if len(pw) < 12 {
		return errors.New("bcrypt: want a password of at least 12 characters on stdin")
	}
	h, err := bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("bcrypt: %w", err)
	}
	_, err = fmt.Fprintln(out, string(h))
	return err
}

// restoreCmd: mqtt-operator restore --data-dir DIR --node-id ID
// --raft-advertise HOST:PORT < backup. It makes an empty data dir into a
// one-voter raft cluster holding the backup's objects; start the operator
// on it and the other managers join as usual.
func restoreCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator restore", flag.ExitOnError)
	dataDir := fs.String("data-dir", "/var/lib/mqtt-operator", "an empty data dir to restore into")
	nodeID := fs.String("node-id", "", "raft id of this server: the manager's Swarm node id (docker info -f '{{.Swarm.NodeID}}')")
	advertise := fs.String("raft-advertise", "", "this server's raft address, HOST:PORT (the manager's address and the raft port)")
	from := fs.String("from", "-", "the backup file (mqttctl backup); - for stdin")
	_ = fs.Parse(args)
	if *nodeID == "" || *advertise == "" {
		return errors.New("restore: --node-id and --raft-advertise are required")
	}
	var in io.Reader = os.Stdin
	if *from != "-" {
		f, err := os.Open(*from)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	n, err := store.RestoreBackup(*dataDir, *nodeID, *advertise, in)
	if err != nil {
		return err
	}
	fmt.Printf("restored %d objects into %s as %s (%s): start the operator on it\n", n, *dataDir, *nodeID, *advertise)
	return nil
}

// recoverCmd: mqtt-operator recover --data-dir DIR --peers peers.json, for
// when a quorum is lost for good. peers.json lists the surviving servers,
// [{"id": "...", "address": "HOST:PORT"}, ...], the same on each survivor;
// run it on each (operator stopped), then start them.
func recoverCmd(args []string) error {
	fs := flag.NewFlagSet("mqtt-operator recover", flag.ExitOnError)
	dataDir := fs.String("data-dir", "/var/lib/mqtt-operator", "the stopped server's data dir")
	peersFile := fs.String("peers", "", "JSON list of the surviving servers: [{\"id\": ..., \"address\": ...}]")
	_ = fs.Parse(args)
	b, err := os.ReadFile(*peersFile)
	if err != nil {
		return fmt.Errorf("recover: --peers: %w", err)
	}
	var peers []struct {
		ID      string `json:"id"`
		Address string `json:"address"`
	}
	if err := json.Unmarshal(b, &peers); err != nil {
		return fmt.Errorf("recover: %s: %w", *peersFile, err)
	}
	var servers []raft.Server
	for _, p := range peers {
		if p.ID == "" || p.Address == "" {
			return fmt.Errorf("recover: %s: every server needs an id and an address", *peersFile)
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter})
	}
	if err := store.Recover(*dataDir, servers); err != nil {
		return err
	}
	fmt.Printf("recovered %s to a configuration of %d server(s): start the operator on each\n", *dataDir, len(servers))
	return nil
}

// signCmd: mqtt-operator sign --issuer FILE --csr BASE64 --duration D. It
// runs as a Swarm job with the user's issuer secret mounted, and prints
// the signed certificate and the issuer's certificate (public) between
// markers on stdout, which the operator reads from the job's log. The
// issuer's key is read from the secret and never printed.
func signCmd(args []string) error { return signer.Run(args, os.Stdout, time.Now()) }
