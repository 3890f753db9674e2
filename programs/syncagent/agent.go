package syncagent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

// Container is a broker container running on this node.
type Container struct {
	ID, Service, TaskID string
}

// Docker is what the agent asks of its node's Docker daemon.
type Docker interface {
	// BrokerContainers lists the cluster's running broker containers.
	BrokerContainers(ctx context.Context) ([]Container, error)
	// EnsureVolume creates a broker's data volume if it is missing, so a
	// copy can be received before the broker ever runs here.
	EnsureVolume(ctx context.Context, name string) error
	// StopBroker stops one of them (SIGTERM, SIGKILL a second later): the
	// fence of a node cut off from the rest (Fence).
	StopBroker(ctx context.Context, id string) error
}

// Agent is one node's sync agent.
type Agent struct {
	Docker Docker
	Log    *slog.Logger
	// Node is this node's Swarm id.
	Node string
	// Password is the cluster's rsync password; it is also the bearer
	// token of the HTTP API.
	Password string
	// VolumesDir is the node's Docker volume directory.
	VolumesDir string
	// StateDir holds lsyncd's config, status files and password files.
	StateDir string
	// Pull fetches a volume's data from a peer into dst (default: rsync).
	Pull func(ctx context.Context, addr, volume, dst string) error
	// PeerStatus asks a peer for its status (default: HTTP).
	PeerStatus func(ctx context.Context, addr string) (datasync.Status, error)
	// Probe asks a peer whether it is there (default: HTTP, GET /v1/peers).
	Probe func(ctx context.Context, addr string) error
	// Lsyncd runs lsyncd with a config file until ctx ends (default:
	// the lsyncd binary). Nil disables pushing (tests).
	Lsyncd func(ctx context.Context, config string) error
	// RsyncBinary is the rsync lsyncd runs (the recording wrapper).
	RsyncBinary string
	// WriteRsyncd, when set, writes the rsync daemon's configuration with
	// a module for each of these volumes (Run sets it).
	WriteRsyncd func(volumes []string) error
	// TLS, when set, is the agents' identity: the API is HTTPS, peers are
	// reached over TLS and checked, and rsync runs through a mutual-TLS
	// tunnel (see Run). Nil: plain (tests).
	TLS *tlsutil.Peer
	// FenceAfter: when this agent has heard neither a peer nor the
	// operator for this long, it stops the brokers on its node (Fence).
	// Zero: never.
	FenceAfter time.Duration
	Now        func() time.Time

	// peerClient asks peers for their status (one transport, reused);
	// probeClient asks whether they are there (WatchPeers: its own).
	peerOnce, probeOnce     sync.Once
	peerClient, probeClient *datasync.AgentClient

	mu      sync.Mutex
	cfg     *datasync.Config
	volumes map[string]bool
	// prepared: volume -> task id whose data was prepared.
	prepared map[string]string
	// waiting: volume -> the task waiting for its previous one to stop.
	waiting map[string]waiting
	running map[string]Container // by volume
	// lastRan: when a broker container was last seen running here.
	lastRan time.Time
	// stoppedAt: when Swarm stopped the agent (Stopping).
	stoppedAt time.Time
	// heard: when the API last served an authenticated request (a peer's
	// or the operator's).
	heard time.Time
	// fenced: the brokers here were stopped for silence (read and written
	// by Fence only, on WatchFence's goroutine).
	fenced bool
	// lsyncd
	pushes     []Push
	lsyncdStop context.CancelFunc
	lsyncdDone chan struct{}
	lsyncdErr  string
	// since: when each push target was first configured.
	since map[string]time.Time
	// seen: when each peer's agent last answered this one (WatchPeers).
	seen map[string]time.Time
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Agent) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

func (a *Agent) dataDir(volume string) string {
	return filepath.Join(a.VolumesDir, volume, "_data")
}

// Configure installs a config from the operator.
func (a *Agent) Configure(c datasync.Config) error {
	if c.Node != a.Node {
		return fmt.Errorf("config for node %s sent to node %s", c.Node, a.Node)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.cfg
	a.cfg = &c
	if a.seen == nil {
		a.seen = map[string]time.Time{}
	}
	for _, p := range c.Peers {
		old, known := datasync.Peer{}, false
		if prev != nil {
			old, known = prev.Peer(p.Node)
		}
		if _, ok := a.seen[p.Node]; !ok || !known || old.Addr != p.Addr {
			// A new peer, or a new agent there (another address): just seen.
			a.seen[p.Node] = a.now()
		}
	}
	if a.WriteRsyncd != nil {
		var vols []string
		for _, b := range c.Brokers {
			vols = append(vols, b.Volume)
		}
		if err := a.WriteRsyncd(vols); err != nil {
			return fmt.Errorf("rsync daemon configuration: %w", err)
		}
	}
	return nil
}

// Step is one pass of the agent's loop: prepare the brokers that started
// here, then run lsyncd for the brokers this node is the source of.
func (a *Agent) Step(ctx context.Context) error {
	cs, err := a.Docker.BrokerContainers(ctx)
	if err != nil {
		return err
	}
	running := map[string]Container{}
	for _, c := range cs {
		running[api.BrokerVolume(c.Service)] = c
	}
	a.mu.Lock()
	a.running = running
	if len(running) > 0 {
		a.lastRan = a.now()
	}
	cfg := a.cfg
	a.mu.Unlock()
	if cfg == nil {
		return nil // nothing is known until the operator speaks
	}
	var errs []error
	for _, b := range cfg.Brokers {
		if a.volumes[b.Volume] {
			continue
		}
		if err := a.Docker.EnsureVolume(ctx, b.Volume); err != nil {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		if a.volumes == nil {
			a.volumes = map[string]bool{}
		}
		a.volumes[b.Volume] = true
		a.mu.Unlock()
	}
	a.mu.Lock()
	stopping := !a.stoppedAt.IsZero()
	a.mu.Unlock()
	// A stopping agent prepares nothing: a broker that starts here now is
	// the next agent's (seen: the agent of a deleted cluster, in its
	// handoff, let the broker of a new cluster of the same name start from
	// this node's stale copy — the same labels and volume names — before
	// the new agent could wait for the broker's previous task to save).
	for vol, c := range running {
		if stopping {
			break
		}
		if err := a.prepare(ctx, cfg, vol, c); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, a.runPushes(ctx, cfg))
	return errors.Join(errs...)
}

// prepare makes sure a broker that started here starts from the newest
// copy among the reachable nodes, then lets it start (ReadyMarker).
func (a *Agent) prepare(ctx context.Context, cfg *datasync.Config, vol string, c Container) error {
	dir := a.dataDir(vol)
	marker := filepath.Join(dir, datasync.ReadyMarker)
	if b, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(b)) == c.TaskID {
		a.setPrepared(vol, c.TaskID)
		return nil
	}
	local := CopyOf(dir)
	best, bestAddr, bestNode := local.Modified, "", a.Node
	var still []string
	for _, ans := range a.askPeers(ctx, cfg) {
		p, st, err := ans.peer, ans.status, ans.err
		if err != nil {
			a.log().Warn("peer unreachable while preparing a broker: its copy is not considered", "broker", c.Service, "peer", p.Hostname, "err", err)
			continue
		}
		cp := st.Copies[vol]
		if cp.Running {
			still = append(still, p.Hostname)
		}
		if cp.Modified.After(best) {
			best, bestAddr, bestNode = cp.Modified, p.Addr, p.Hostname
		}
	}
	if len(still) > 0 && a.waitFor(vol, c.TaskID) {
		// The broker's last task still runs there (a drain stops both at
		// once): its copy is complete only once it has saved and exited.
		return nil
	}
	if bestAddr != "" {
		start := a.now()
		pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := a.pull(pctx, bestAddr, vol, dir)
		cancel()
		if err != nil {
			return fmt.Errorf("pull the newest copy of %s from %s: %w", c.Service, bestNode, err)
		}
		a.log().Info("pulled the newest copy before the broker starts", "broker", c.Service, "from", bestNode, "copy", best.UTC().Format(time.RFC3339Nano), "local", local.Modified.UTC().Format(time.RFC3339Nano), "took", a.now().Sub(start).String())
	} else {
		a.log().Info("the local copy is the newest: the broker starts from it", "broker", c.Service, "copy", local.Modified.UTC().Format(time.RFC3339Nano))
	}
	// Written in place (not renamed): a temporary file would be copied
	// with the data. The broker compares the whole content.
	if err := os.WriteFile(marker, []byte(c.TaskID+"\n"), 0o644); err != nil {
		return err
	}
	a.setPrepared(vol, c.TaskID)
	return nil
}

// peerAnswer is what one peer said of its copies.
type peerAnswer struct {
	peer   datasync.Peer
	status datasync.Status
	err    error
}

// askPeers asks every other peer for its status, all at once (a dead
// node costs its timeout once, not once per dead node), in cfg's order.
func (a *Agent) askPeers(ctx context.Context, cfg *datasync.Config) []peerAnswer {
	var out []peerAnswer
	silent := a.Peers().Unseen
	for _, p := range cfg.Peers {
		switch {
		case p.Node == a.Node:
		case time.Duration(silent[p.Node]) >= SilentPeer:
			// Not heard for a while (WatchPeers): its copy is out of reach
			// anyway, and asking would cost the whole timeout (a node that
			// was just lost, before the operator's config says so).
			a.log().Warn("peer silent: its copy is not considered", "peer", p.Hostname, "silentFor", time.Duration(silent[p.Node]).Round(time.Millisecond).String())
		default:
			out = append(out, peerAnswer{peer: p})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			out[i].status, out[i].err = a.peerStatus(pctx, out[i].peer.Addr)
		})
	}
	wg.Wait()
	return out
}

// HandoffWait bounds how long a broker that starts here waits for its
// previous task, still running on another node, to stop.
const HandoffWait = 20 * time.Second

// waitFor says whether task, about to start here with vol, should wait
// for the previous task to stop (first asked: now; up to HandoffWait).
func (a *Agent) waitFor(vol, task string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting == nil {
		a.waiting = map[string]waiting{}
	}
	w, ok := a.waiting[vol]
	if !ok || w.task != task {
		w = waiting{task: task, since: a.now()}
		a.waiting[vol] = w
		a.log().Info("waiting for the broker's previous task to stop and save before pulling its copy", "volume", vol)
	}
	if a.now().Sub(w.since) < HandoffWait {
		return true
	}
	if !w.gaveUp {
		w.gaveUp = true
		a.waiting[vol] = w
		a.log().Warn("the broker's previous task still runs on another node: starting from the newest copy without waiting longer", "volume", vol, "waited", HandoffWait.String())
	}
	return false
}

type waiting struct {
	task   string
	since  time.Time
	gaveUp bool
}

func (a *Agent) setPrepared(vol, task string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.prepared == nil {
		a.prepared = map[string]string{}
	}
	a.prepared[vol] = task
}

// Pushes are the syncs this node runs: for every broker the operator names
// it the source of, to every target; a broker running here only once its
// data was prepared (before that, this node's copy may be older than
// another's); a broker that stopped here only if this agent saw it run
// (a node whose copy is only a received one never pushes it).
func (a *Agent) Pushes(cfg *datasync.Config) []Push {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Push
	for _, b := range cfg.Brokers {
		if b.Source != a.Node {
			continue
		}
		if c, ok := a.running[b.Volume]; ok && a.prepared[b.Volume] != c.TaskID {
			continue
		} else if !ok && a.prepared[b.Volume] == "" {
			continue
		}
		for _, t := range b.Targets {
			p, ok := cfg.Peer(t)
			if !ok || t == a.Node {
				continue
			}
			out = append(out, Push{Broker: b.Name, Volume: b.Volume, TargetNode: t, TargetAddr: p.Addr})
		}
	}
	return out
}

// runPushes (re)starts lsyncd when the set of pushes changes. lsyncd first
// syncs every source in full, then follows changes.
func (a *Agent) runPushes(ctx context.Context, cfg *datasync.Config) error {
	want := a.Pushes(cfg)
	a.mu.Lock()
	defer a.mu.Unlock()
	alive := a.lsyncdDone != nil
	if alive {
		select {
		case <-a.lsyncdDone:
			alive = false
		default:
		}
	}
	if slices.Equal(want, a.pushes) && (alive || len(want) == 0) {
		return nil
	}
	if a.lsyncdStop != nil {
		// Waited for without the lock: lsyncd may take seconds to end a
		// transfer, and the API (a starting broker's node asking for
		// this copy, with a 2 s timeout) must answer meanwhile. Only
		// this loop starts and stops lsyncd.
		stop, done := a.lsyncdStop, a.lsyncdDone
		a.mu.Unlock()
		stop()
		<-done
		a.mu.Lock()
		a.lsyncdStop, a.lsyncdDone = nil, nil
	}
	a.pushes = want
	if a.since == nil {
		a.since = map[string]time.Time{}
	}
	for _, p := range want {
		if _, ok := a.since[p.TargetURL()]; !ok {
			a.since[p.TargetURL()] = a.now()
		}
	}
	if len(want) == 0 || a.Lsyncd == nil {
		return nil
	}
	conf := filepath.Join(a.StateDir, "lsyncd.conf.lua")
	text := LsyncdConfig(want, a.VolumesDir, filepath.Join(a.StateDir, "rsync.pass"), a.RsyncBinary, filepath.Join(a.StateDir, "lsyncd.status"), time.Duration(cfg.Delay))
	if err := writeFileAtomic(conf, []byte(text), 0o600); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	a.lsyncdStop, a.lsyncdDone = cancel, done
	var targets []string
	for _, p := range want {
		targets = append(targets, p.Broker+"->"+p.TargetNode)
	}
	a.log().Info("starting lsyncd", "pushes", strings.Join(targets, " "))
	go func() {
		defer close(done)
		err := a.Lsyncd(lctx, conf)
		if lctx.Err() == nil {
			a.mu.Lock()
			a.lsyncdErr = fmt.Sprintf("lsyncd exited: %v", err)
			a.mu.Unlock()
			a.log().Error("lsyncd exited; restarting it", "err", err)
		}
	}()
	a.lsyncdErr = ""
	return nil
}

// Stop ends lsyncd.
func (a *Agent) Stop() {
	a.mu.Lock()
	stop, done := a.lsyncdStop, a.lsyncdDone
	a.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Status reports the node's copies and its pushes.
func (a *Agent) Status() datasync.Status {
	a.mu.Lock()
	cfg, pushes, running, since, lerr := a.cfg, slices.Clone(a.pushes), a.running, a.since, a.lsyncdErr
	a.mu.Unlock()
	st := datasync.Status{Node: a.Node, Copies: map[string]datasync.Copy{}, Error: lerr}
	if cfg == nil {
		return st
	}
	st.ConfigHash = cfg.Hash()
	for _, b := range cfg.Brokers {
		cp := CopyOf(a.dataDir(b.Volume))
		_, cp.Running = running[b.Volume]
		st.Copies[b.Volume] = cp
	}
	bySrc := map[string]*datasync.SourceStatus{}
	var order []string
	for _, p := range pushes {
		s := bySrc[p.Broker]
		if s == nil {
			_, r := running[p.Volume]
			s = &datasync.SourceStatus{Broker: p.Broker, Running: r}
			bySrc[p.Broker] = s
			order = append(order, p.Broker)
		}
		rec := ReadRecord(a.StateDir, p.TargetURL())
		ts := datasync.TargetStatus{Node: p.TargetNode, LastSync: rec.LastSuccess}
		if !rec.LastSuccess.IsZero() && rec.LastSuccess.Before(since[p.TargetURL()]) {
			// A sync from before this node was (again) the source.
			ts.LastSync = time.Time{}
		}
		if rec.Error != "" && rec.LastAttempt.After(rec.LastSuccess) {
			ts.Error = rec.Error
		}
		ts.Pending = ts.LastSync.IsZero() || st.Copies[p.Volume].Modified.After(ts.LastSync)
		s.Targets = append(s.Targets, ts)
	}
	for _, b := range order {
		st.Sources = append(st.Sources, *bySrc[b])
	}
	return st
}

// Allow decides whether the rsync daemon may serve a transfer (its
// pre-xfer exec): a pull (the peer is the sender's receiver) of a broker's
// volume is always allowed to an authenticated peer; a push into a broker's
// volume only from the node the operator names its source, and never into
// a broker that runs here.
func (a *Agent) Allow(request, host string, pull bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg == nil {
		return errors.New("refused: this agent has no config from the operator yet")
	}
	// request: "<volume>/..." (the module, a volume's data directory,
	// then the path in it).
	parts := strings.Split(strings.Trim(request, "/"), "/")
	if parts[0] == "" || strings.Contains(request, "..") || strings.ContainsAny(request, " \t\n") {
		return fmt.Errorf("refused: %q is not a broker's data directory", request)
	}
	vol := parts[0]
	var b *datasync.Broker
	for i := range a.cfg.Brokers {
		if a.cfg.Brokers[i].Volume == vol {
			b = &a.cfg.Brokers[i]
		}
	}
	if b == nil {
		return fmt.Errorf("refused: %s is not a broker volume of cluster %s", vol, a.cfg.Cluster)
	}
	if pull {
		return nil
	}
	if _, ok := a.running[vol]; ok {
		return fmt.Errorf("refused: %s runs on this node; its data here is the newest", b.Name)
	}
	src, ok := a.cfg.Peer(b.Source)
	if !ok || b.Source == a.Node {
		return fmt.Errorf("refused: no other node is the source of %s", b.Name)
	}
	if src.Addr != host {
		return fmt.Errorf("refused: %s is not the source of %s (%s is)", host, b.Name, src.Hostname)
	}
	return nil
}

// CopyOf describes the copy in dir: the newest modification time of its
// files, the agent's marker, partial files and the auth plugin's state
// excepted. That state (users and rules) is rewritten from the operator's
// word when a broker starts and says nothing of its sessions: counted, it
// made a copy holding an old database look newer than the one a broker
// had just saved on its way out (seen in the PerNode return).
func CopyOf(dir string) datasync.Copy {
	var cp datasync.Copy
	authState := path.Base(broker.AuthStateFile)
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if d.Name() == datasync.ReadyMarker || d.Name() == authState || strings.HasSuffix(d.Name(), ".new") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().After(cp.Modified) {
			cp.Modified = info.ModTime()
		}
		return nil
	})
	return cp
}

func (a *Agent) peerStatus(ctx context.Context, addr string) (datasync.Status, error) {
	if a.PeerStatus != nil {
		return a.PeerStatus(ctx, addr)
	}
	a.peerOnce.Do(func() { a.peerClient = a.newClient() })
	return a.peerClient.Status(ctx, net.JoinHostPort(addr, fmt.Sprint(datasync.AgentPort)))
}

// newClient makes a client to ask peers with (its own transport).
func (a *Agent) newClient() *datasync.AgentClient {
	c := &datasync.AgentClient{Token: a.Password}
	if a.TLS != nil {
		c.TLS = a.TLS.ClientConfig()
	}
	return c
}

func (a *Agent) pull(ctx context.Context, addr, volume, dst string) error {
	if a.Pull != nil {
		return a.Pull(ctx, addr, volume, dst)
	}
	args := []string{"-a", "--numeric-ids", "--delete", "--timeout=30"}
	for _, e := range Excluded {
		args = append(args, "--exclude="+e)
	}
	args = append(args, TargetURL(addr, volume), dst+"/")
	cmd := exec.CommandContext(ctx, "rsync", args...)
	cmd.Env = append(os.Environ(), "RSYNC_PASSWORD="+a.Password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, lastLine(string(out)))
	}
	return nil
}

// Handler is the agent's HTTP API: PUT /v1/config and GET /v1/status with
// the bearer token; GET /v1/allow from this host only (the rsync daemon's
// pre-xfer exec).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	// Hashes of equal length are compared in constant time (the lengths of
	// the raw values leak nothing), and an empty secret lets nobody in.
	want := sha256.Sum256([]byte(a.Password))
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sum := sha256.Sum256([]byte(got))
			if a.Password == "" || !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			a.mu.Lock()
			a.heard = a.now()
			a.mu.Unlock()
			h(w, r)
		}
	}
	mux.HandleFunc("PUT /v1/config", auth(func(w http.ResponseWriter, r *http.Request) {
		var c datasync.Config
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := a.Configure(c); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET /v1/status", auth(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Status())
	}))
	mux.HandleFunc("GET /v1/peers", auth(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Peers())
	}))
	mux.HandleFunc("GET /v1/allow", a.allowHandler)
	return mux
}

// AllowHandler serves only GET /v1/allow (the loopback listener).
func (a *Agent) AllowHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/allow", a.allowHandler)
	return mux
}

func (a *Agent) allowHandler(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	if err := a.Allow(q.Get("request"), q.Get("host"), q.Get("pull") == "1"); err != nil {
		a.log().Warn("refused a transfer", "from", q.Get("host"), "request", q.Get("request"), "pull", q.Get("pull") == "1", "reason", err.Error())
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func writeFileAtomic(p string, b []byte, mode os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
