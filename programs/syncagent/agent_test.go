package syncagent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

type fakeDocker struct {
	running []Container
	volumes []string
	stopped []string
}

func (f *fakeDocker) StopBroker(_ context.Context, id string) error {
	f.stopped = append(f.stopped, id)
	f.running = slices.DeleteFunc(f.running, func(c Container) bool { return c.ID == id })
	return nil
}

func (f *fakeDocker) BrokerContainers(context.Context) ([]Container, error) { return f.running, nil }
func (f *fakeDocker) EnsureVolume(_ context.Context, name string) error {
	f.volumes = append(f.volumes, name)
	return nil
}

func config(node string) datasync.Config {
	return datasync.Config{
		Cluster: "x", Node: node, Delay: datasync.Duration(time.Second),
		Peers: []datasync.Peer{{Node: "a", Hostname: "ha", Addr: "10.0.0.1"}, {Node: "b", Hostname: "hb", Addr: "10.0.0.2"}, {Node: "c", Hostname: "hc", Addr: "10.0.0.3"}},
		Brokers: []datasync.Broker{
			{Name: "x-broker-0", Volume: "x-broker-0-data", Source: "a", Targets: []string{"b", "c"}},
			{Name: "x-broker-1", Volume: "x-broker-1-data", Source: "b", Targets: []string{"a", "c"}},
		},
	}
}

func writeCopy(t *testing.T, dir, vol string, mod time.Time) {
	t.Helper()
	d := filepath.Join(dir, vol, "_data")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d, "mosquitto.db")
	if err := os.WriteFile(p, []byte("db"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// newAgent is node a's agent: x-broker-0 runs here (task t1).
func newAgent(t *testing.T, peers map[string]datasync.Status) (*Agent, *fakeDocker, *[]string) {
	t.Helper()
	d := &fakeDocker{running: []Container{{ID: "c1", Service: "x-broker-0", TaskID: "t1"}}}
	var pulls []string
	dir := t.TempDir()
	a := &Agent{
		Docker: d, Node: "a", Password: "pw", VolumesDir: dir, StateDir: t.TempDir(),
		PeerStatus: func(_ context.Context, addr string) (datasync.Status, error) {
			st, ok := peers[addr]
			if !ok {
				return st, errors.New("unreachable")
			}
			return st, nil
		},
		Pull: func(_ context.Context, addr, volume, dst string) error {
			pulls = append(pulls, addr+" "+volume)
			return nil
		},
		Probe: func(_ context.Context, addr string) error {
			if _, ok := peers[addr]; !ok {
				return errors.New("unreachable")
			}
			return nil
		},
	}
	return a, d, &pulls
}

func TestPrepareTakesTheNewestCopyThenPushes(t *testing.T) {
	old, newer := time.Unix(1000, 0), time.Unix(2000, 0)
	peers := map[string]datasync.Status{
		"10.0.0.2": {Copies: map[string]datasync.Copy{"x-broker-0-data": {Modified: newer}}},
		"10.0.0.3": {Copies: map[string]datasync.Copy{"x-broker-0-data": {Modified: old}}},
	}
	a, d, pulls := newAgent(t, peers)
	writeCopy(t, a.VolumesDir, "x-broker-0-data", old)
	ctx := context.Background()
	// No config: nothing is prepared, nothing pushed.
	if err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(*pulls) != 0 || len(a.Pushes(&datasync.Config{})) != 0 {
		t.Fatal("acted before the operator's config")
	}
	cfg := config("a")
	if err := a.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*pulls, ",") != "10.0.0.2 x-broker-0-data" {
		t.Fatalf("pulls: %v, want the newest copy (b's)", *pulls)
	}
	marker, err := os.ReadFile(filepath.Join(a.VolumesDir, "x-broker-0-data", "_data", datasync.ReadyMarker))
	if err != nil || strings.TrimSpace(string(marker)) != "t1" {
		t.Fatalf("marker: %q, %v", marker, err)
	}
	if strings.Join(d.volumes, ",") != "x-broker-0-data,x-broker-1-data" {
		t.Fatalf("volumes ensured: %v", d.volumes)
	}
	// Prepared: a pushes broker 0 (its source) to b and c, not broker 1.
	ps := a.Pushes(&cfg)
	if len(ps) != 2 || ps[0].Broker != "x-broker-0" || ps[0].TargetAddr != "10.0.0.2" || ps[1].TargetAddr != "10.0.0.3" {
		t.Fatalf("pushes: %+v", ps)
	}
	// The next pass does not pull again.
	if err := a.Step(ctx); err != nil || len(*pulls) != 1 {
		t.Fatalf("pulled again: %v %v", *pulls, err)
	}
	// The broker stops: a pushes its final state while it stays the source.
	d.running = nil
	if err := a.Step(ctx); err != nil || len(a.Pushes(&cfg)) != 2 {
		t.Fatalf("final state not pushed after the stop: %v", err)
	}
	// The broker runs on b now: a stops pushing.
	cfg.Brokers[0].Source, cfg.Brokers[0].Targets = "b", []string{"a", "c"}
	if len(a.Pushes(&cfg)) != 0 {
		t.Fatal("a still pushes a broker that runs elsewhere")
	}
}

func TestNoPushBeforePreparedNorFromAReceivedCopy(t *testing.T) {
	a, d, _ := newAgent(t, map[string]datasync.Status{})
	cfg := config("a")
	_ = a.Configure(cfg)
	// Running, not prepared yet (peers unreachable do not block it, but
	// before the step it is not prepared).
	a.running = map[string]Container{"x-broker-0-data": d.running[0]}
	if len(a.Pushes(&cfg)) != 0 {
		t.Fatal("pushed before the data was prepared")
	}
	// Named the source of a broker it never ran (its copy was received):
	// no push.
	a.running = nil
	if len(a.Pushes(&cfg)) != 0 {
		t.Fatal("pushed a copy it only received")
	}
}

func TestAllow(t *testing.T) {
	a, _, _ := newAgent(t, nil)
	if err := a.Allow("x-broker-1-data/", "10.0.0.2", false); err == nil {
		t.Fatal("allowed before any config")
	}
	_ = a.Configure(config("a"))
	a.running = map[string]Container{"x-broker-0-data": {Service: "x-broker-0", TaskID: "t1"}}
	cases := []struct {
		req, host string
		pull      bool
		refused   string
	}{
		{"x-broker-1-data/", "10.0.0.2", false, ""},                  // from broker 1's source
		{"x-broker-1-data/", "10.0.0.3", false, "is not the source"}, // from another node
		{"x-broker-0-data/", "10.0.0.2", false, "runs on this node"}, // into a running broker
		{"x-broker-0-data/", "10.0.0.2", true, ""},                   // a pull of it
		{"other-data/", "10.0.0.2", true, "not a broker volume"},     // another volume
		{"x-broker-1-data/../../secret", "10.0.0.2", false, "not a broker's data"},
		{"/", "10.0.0.2", false, "not a broker's data"},
	}
	for _, c := range cases {
		err := a.Allow(c.req, c.host, c.pull)
		switch {
		case c.refused == "" && err != nil:
			t.Errorf("%s from %s (pull %v): refused: %v", c.req, c.host, c.pull, err)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
			t.Errorf("%s from %s (pull %v): %v, want refused with %q", c.req, c.host, c.pull, err, c.refused)
		}
	}
	// Mismatched node: refused.
	if err := a.Configure(config("b")); err == nil {
		t.Fatal("accepted another node's config")
	}
}

func TestLsyncdConfig(t *testing.T) {
	got := LsyncdConfig([]Push{{Broker: "x-broker-0", Volume: "x-broker-0-data", TargetNode: "b", TargetAddr: "10.0.0.2"}}, "/v", "/s/pass", "/bin/wrap", "/s/status", 1500*time.Millisecond)
	for _, want := range []string{
		`source = "/v/x-broker-0-data/_data/"`,
		`target = "rsync://sync@10.0.0.2:873/x-broker-0-data/"`,
		`delay = 1.5`, `binary = "/bin/wrap"`, `password_file = "/s/pass"`, `"/.mqtt-sync-ready"`, "insist = true",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lsyncd config lacks %s:\n%s", want, got)
		}
	}
}

// TestAPITokenCheck: the API wants "Bearer <the secret>"; a wrong,
// shorter, longer or missing token is refused, and an agent with an empty
// secret lets nobody in (not even a request with no token).
func TestAPITokenCheck(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		secret, header string
		ok             bool
	}{
		"right":             {"s3cret", "Bearer s3cret", true},
		"wrong":             {"s3cret", "Bearer s3creu", false},
		"prefix of it":      {"s3cret", "Bearer s3c", false},
		"longer":            {"s3cret", "Bearer s3cret0", false},
		"no scheme":         {"s3cret", "s3cret", false},
		"none":              {"s3cret", "", false},
		"empty secret none": {"", "", false},
		"empty secret bare": {"", "Bearer ", false},
	} {
		a := &Agent{Password: c.secret}
		req := httptest.NewRequest("GET", "/v1/status", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		w := httptest.NewRecorder()
		a.Handler().ServeHTTP(w, req)
		if (w.Code != http.StatusUnauthorized) != c.ok {
			t.Errorf("%s: %d", name, w.Code)
		}
	}
}

// TestRsyncdConfigConfinesToBrokerVolumes: one module per broker volume
// of the cluster, each chrooted into that volume's data directory, the
// transfer check on each; nothing else of the node's volumes is served;
// behind the tunnel the daemon listens on loopback with PROXY protocol.
func TestRsyncdConfigConfinesToBrokerVolumes(t *testing.T) {
	t.Parallel()
	got := RsyncdConfig("/v", "/s/secrets", "/bin/allow", true, []string{"x-broker-1-data", "x-broker-0-data", "x-broker-1-data"})
	for _, want := range []string{
		"address = 127.0.0.1\nport = 8873\nproxy protocol = yes\n",
		"[x-broker-0-data]\n  path = /v/x-broker-0-data/_data\n  use chroot = yes\n",
		"[x-broker-1-data]\n  path = /v/x-broker-1-data/_data\n  use chroot = yes\n",
		"pre-xfer exec = /bin/allow",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if strings.Count(got, "[") != 2 || strings.Contains(got, "path = /v\n") || strings.Contains(got, "use chroot = no") {
		t.Errorf("modules beyond the brokers' volumes, or unconfined:\n%s", got)
	}
	if none := RsyncdConfig("/v", "/s", "/a", false, nil); strings.Contains(none, "[") || !strings.Contains(none, "port = 873\n") {
		t.Errorf("with no broker: %s", none)
	}
}

// A broker whose previous task still runs on another node (a drain stops
// the node's agent and broker at once, and Swarm starts the new task at
// once) waits until it has stopped — and saved — then pulls that node's
// copy; after HandoffWait it starts from the newest copy anyway.
func TestPrepareWaitsForThePreviousTaskToStop(t *testing.T) {
	old, saved := time.Unix(1000, 0), time.Unix(3000, 0)
	peers := map[string]datasync.Status{
		"10.0.0.2": {Copies: map[string]datasync.Copy{"x-broker-0-data": {Modified: old, Running: true}}},
	}
	a, _, pulls := newAgent(t, peers)
	now := time.Unix(5000, 0)
	a.Now = func() time.Time { return now }
	writeCopy(t, a.VolumesDir, "x-broker-0-data", old)
	if err := a.Configure(config("a")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	marker := filepath.Join(a.VolumesDir, "x-broker-0-data", "_data", datasync.ReadyMarker)
	for i := 0; i < 3; i++ {
		a.probePeers(ctx) // WatchPeers: b answers
		if err := a.Step(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	if _, err := os.Stat(marker); err == nil || len(*pulls) != 0 {
		t.Fatalf("started while the previous task still runs on b: pulls %v", *pulls)
	}
	// b's broker exits, having saved: its copy is the newest.
	peers["10.0.0.2"] = datasync.Status{Copies: map[string]datasync.Copy{"x-broker-0-data": {Modified: saved}}}
	if err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Join(*pulls, ",") != "10.0.0.2 x-broker-0-data" {
		t.Fatalf("pulls: %v, want b's saved copy", *pulls)
	}
	if b, err := os.ReadFile(marker); err != nil || strings.TrimSpace(string(b)) != "t1" {
		t.Fatalf("marker %q %v", b, err)
	}

	// A previous task that never stops (a node cut off, then back): the
	// wait ends after HandoffWait.
	b, _, pulls := newAgent(t, map[string]datasync.Status{
		"10.0.0.2": {Copies: map[string]datasync.Copy{"x-broker-0-data": {Modified: old, Running: true}}},
	})
	b.Now = func() time.Time { return now }
	writeCopy(t, b.VolumesDir, "x-broker-0-data", old)
	if err := b.Configure(config("a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Step(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(HandoffWait)
	b.probePeers(ctx) // b's previous task still answers
	if err := b.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.VolumesDir, "x-broker-0-data", "_data", datasync.ReadyMarker)); err != nil || len(*pulls) != 0 {
		t.Fatalf("not started after HandoffWait: %v, pulls %v", err, *pulls)
	}
}

// A stopping agent on whose node a broker ran keeps stepping while the
// broker stops and HandoffLinger after — whether or not the operator still
// names it the source; it returns at once when no broker ran here lately,
// and after HandoffStopWait when the broker keeps running.
func TestHandoffOutlivesTheStoppingBrokers(t *testing.T) {
	run := func(source string, stopsAfter int) (steps int, took time.Duration) {
		a, d, _ := newAgent(t, nil)
		if stopsAfter == 0 {
			d.running = nil
		}
		start := time.Unix(5000, 0)
		now := start
		a.Now = func() time.Time { return now }
		cfg := config("a")
		cfg.Brokers[0].Source = source
		writeCopy(t, a.VolumesDir, "x-broker-0-data", start)
		if err := a.Configure(cfg); err != nil {
			t.Fatal(err)
		}
		if err := a.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		tick := make(chan time.Time, 1)
		tick <- now
		a.Handoff(tick, func() {
			tick <- now
			steps++
			now = now.Add(time.Second)
			if steps == stopsAfter {
				d.running = nil
			}
			_ = a.Step(context.Background())
		})
		return steps, now.Sub(start)
	}
	if steps, _ := run("a", 0); steps != 0 {
		t.Fatalf("an agent whose node ran no broker stepped %d times before stopping", steps)
	}
	// The broker stops at the 2nd step (2 s); the agent serves 5 s more,
	// also when the operator named another node the source already.
	for _, src := range []string{"a", "b"} {
		if _, took := run(src, 2); took != 2*time.Second+HandoffLinger {
			t.Fatalf("source %s: handoff took %s, want the stop plus %s", src, took, HandoffLinger)
		}
	}
	// The broker keeps running: only the agent is being replaced.
	if _, took := run("a", 1000); took != HandoffStopWait {
		t.Fatalf("handoff with the broker running took %s, want %s", took, HandoffStopWait)
	}
}

// A stop that comes while a step takes seconds (lsyncd ending a transfer
// when a drain changes the pushes) still hands off: "a broker ran here
// lately" is measured from the stop, not from when the loop sees it (seen
// on the docker-in-docker Swarm: the drained node's agent left at once and
// its broker's last state was lost).
func TestHandoffAfterAStopDuringALongStep(t *testing.T) {
	a, d, _ := newAgent(t, nil)
	now := time.Unix(5000, 0)
	a.Now = func() time.Time { return now }
	writeCopy(t, a.VolumesDir, "x-broker-0-data", now)
	if err := a.Configure(config("a")); err != nil {
		t.Fatal(err)
	}
	if err := a.Step(context.Background()); err != nil { // the broker runs
		t.Fatal(err)
	}
	// The drain: the broker stops, the agent is stopped one second into a
	// step that ends 6 s later.
	d.running = nil
	now = now.Add(time.Second)
	a.Stopping()
	now = now.Add(6 * time.Second)
	_ = a.Step(context.Background())
	steps := 0
	tick := make(chan time.Time, 1)
	tick <- now
	a.Handoff(tick, func() {
		tick <- now
		steps++
		now = now.Add(time.Second)
		_ = a.Step(context.Background())
	})
	if steps == 0 {
		t.Fatal("the agent left without handing off: the broker ran until the stop")
	}
}

// A stopping agent lets no broker start: one that starts on its node
// during its handoff (a new cluster of a deleted one's name: the same
// labels and volumes) waits for the next agent, which asks the peers.
func TestAStoppingAgentPreparesNothing(t *testing.T) {
	a, d, _ := newAgent(t, nil)
	writeCopy(t, a.VolumesDir, "x-broker-0-data", time.Unix(1000, 0))
	d.running = nil
	if err := a.Configure(config("a")); err != nil {
		t.Fatal(err)
	}
	a.Stopping()
	d.running = []Container{{ID: "c2", Service: "x-broker-0", TaskID: "t2"}}
	_ = a.Step(context.Background())
	if b, err := os.ReadFile(filepath.Join(a.VolumesDir, "x-broker-0-data", "_data", datasync.ReadyMarker)); err == nil {
		t.Fatalf("a stopping agent let task %q start", strings.TrimSpace(string(b)))
	}
}

// The auth plugin's state, rewritten when a broker starts, does not make a
// copy newer: only the broker's data does.
func TestCopyOfIgnoresTheAuthState(t *testing.T) {
	dir := t.TempDir()
	db, later := time.Unix(1000, 0), time.Unix(2000, 0)
	writeCopy(t, dir, "v", db)
	st := filepath.Join(dir, "v", "_data", "cluster-auth.state")
	if err := os.WriteFile(st, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(st, later, later); err != nil {
		t.Fatal(err)
	}
	if got := CopyOf(filepath.Join(dir, "v", "_data")).Modified; !got.Equal(db) {
		t.Fatalf("copy modified %s, want the database's %s", got, db)
	}
}

// The API answers while lsyncd takes its time to stop (a peer preparing a
// broker asks with a 2 s timeout).
func TestStatusAnswersWhileLsyncdStops(t *testing.T) {
	a, _, _ := newAgent(t, nil)
	writeCopy(t, a.VolumesDir, "x-broker-0-data", time.Unix(1000, 0))
	stopping, release := make(chan struct{}), make(chan struct{})
	a.Lsyncd = func(ctx context.Context, _ string) error {
		<-ctx.Done()
		close(stopping)
		<-release // ending a transfer
		return nil
	}
	cfg := config("a")
	if err := a.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Step(ctx); err != nil {
		t.Fatal(err)
	}
	// b becomes the source: lsyncd is stopped.
	cfg.Brokers[0].Source, cfg.Brokers[0].Targets = "b", []string{"a", "c"}
	if err := a.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	stepped := make(chan error, 1)
	go func() { stepped <- a.Step(ctx) }()
	<-stopping
	answered := make(chan struct{})
	go func() { a.Status(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(2 * time.Second):
		t.Fatal("the status waited for lsyncd to stop")
	}
	close(release)
	if err := <-stepped; err != nil {
		t.Fatal(err)
	}
}

// A peer the agent has not heard for SilentPeer (a node just lost, before
// the operator's config leaves it out) is not asked when a broker starts:
// the broker starts from the newest copy among the others at once instead
// of waiting out the timeout on it.
func TestPrepareSkipsASilentPeer(t *testing.T) {
	newer := time.Unix(2000, 0)
	asked := 0
	a, _, pulls := newAgent(t, map[string]datasync.Status{"10.0.0.2": {}})
	a.PeerStatus = func(context.Context, string) (datasync.Status, error) {
		asked++
		return datasync.Status{Copies: map[string]datasync.Copy{"x-broker-0-data": {Modified: newer, Running: true}}}, nil
	}
	a.Probe = func(context.Context, string) error { return errors.New("i/o timeout") }
	now := time.Unix(5000, 0)
	a.Now = func() time.Time { return now }
	writeCopy(t, a.VolumesDir, "x-broker-0-data", time.Unix(1000, 0))
	if err := a.Configure(config("a")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(SilentPeer)
	a.probePeers(context.Background())
	if err := a.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if asked != 0 || len(*pulls) != 0 {
		t.Fatalf("a silent peer was asked %d times (pulls %v)", asked, *pulls)
	}
	if _, err := os.Stat(filepath.Join(a.VolumesDir, "x-broker-0-data", "_data", datasync.ReadyMarker)); err != nil {
		t.Fatalf("the broker did not start from the local copy: %v", err)
	}
	if v := a.Peers(); time.Duration(v.Unseen["b"]) != SilentPeer {
		t.Fatalf("view %+v, want b unseen for %s", v, SilentPeer)
	}
}

// A node cut off from the rest stops its brokers once it has heard no
// peer and no operator for FenceAfter — before the operator's LostAfter, so
// before they can start elsewhere — and not while anyone is heard, nor
// with nobody to hand them to.
func TestFenceStopsTheBrokersOfACutOffNode(t *testing.T) {
	step := 500 * time.Millisecond
	// cutOff runs the probe loop's rounds for the given time with the
	// peers answering or not, the operator asking each round or not, and
	// returns the brokers stopped and when the first was.
	cutOff := func(t *testing.T, cfg datasync.Config, fenceAfter time.Duration, peers map[string]datasync.Status, operator bool) ([]string, time.Duration) {
		a, d, _ := newAgent(t, peers)
		a.FenceAfter = fenceAfter
		start := time.Unix(7000, 0)
		now := start
		a.Now = func() time.Time { return now }
		if err := a.Configure(cfg); err != nil {
			t.Fatal(err)
		}
		h := a.Handler()
		var at time.Duration
		for now.Sub(start) <= 5*time.Second {
			if operator {
				r := httptest.NewRequest(http.MethodGet, "/v1/peers", nil)
				r.Header.Set("Authorization", "Bearer pw")
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			a.probePeers(context.Background())
			a.Fence(context.Background())
			if len(d.stopped) > 0 && at == 0 {
				at = now.Sub(start)
			}
			now = now.Add(step)
		}
		return d.stopped, at
	}
	none := map[string]datasync.Status{}
	stopped, at := cutOff(t, config("a"), DefaultFenceAfter, none, false)
	if !slices.Equal(stopped, []string{"c1"}) {
		t.Fatalf("cut off: stopped %v, want the broker c1", stopped)
	}
	if at < DefaultFenceAfter || at >= datasync.LostAfter {
		t.Fatalf("cut off: fenced after %s, want from %s and before the operator's %s", at, DefaultFenceAfter, datasync.LostAfter)
	}
	if stopped, _ := cutOff(t, config("a"), DefaultFenceAfter, map[string]datasync.Status{"10.0.0.3": {}}, false); len(stopped) != 0 {
		t.Fatalf("one peer heard: stopped %v", stopped)
	}
	if stopped, _ := cutOff(t, config("a"), DefaultFenceAfter, none, true); len(stopped) != 0 {
		t.Fatalf("the operator heard: stopped %v", stopped)
	}
	alone := config("a")
	alone.Peers = alone.Peers[:1]
	if stopped, _ := cutOff(t, alone, DefaultFenceAfter, none, false); len(stopped) != 0 {
		t.Fatalf("no peer in the config (nowhere to move to): stopped %v", stopped)
	}
	if stopped, _ := cutOff(t, config("a"), 0, none, false); len(stopped) != 0 {
		t.Fatalf("FenceAfter 0: stopped %v", stopped)
	}
	// A stopping agent (its cluster deleted, sync turned off: its peers
	// stop too) never fences: the brokers here may be a new cluster's.
	{
		a, d, _ := newAgent(t, none)
		a.FenceAfter = DefaultFenceAfter
		now := time.Unix(7000, 0)
		a.Now = func() time.Time { return now }
		if err := a.Configure(config("a")); err != nil {
			t.Fatal(err)
		}
		a.Stopping()
		now = now.Add(5 * time.Second)
		a.Fence(context.Background())
		if len(d.stopped) != 0 {
			t.Fatalf("a stopping agent fenced: stopped %v", d.stopped)
		}
	}
	// Unauthenticated requests are not "heard".
	a, d, _ := newAgent(t, none)
	a.FenceAfter = DefaultFenceAfter
	now := time.Unix(7000, 0)
	a.Now = func() time.Time { return now }
	if err := a.Configure(config("a")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	a.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/peers", nil))
	a.Fence(context.Background())
	if len(d.stopped) != 1 {
		t.Fatalf("an unauthenticated request kept the fence off: stopped %v", d.stopped)
	}
}

// The agents fence before the operator's node watch moves (the fence's
// silence plus the period of its check is shorter than LostAfter).
func TestTheAgentsFenceBeforeTheWatchMoves(t *testing.T) {
	if DefaultFenceAfter+FenceCheckEvery >= datasync.LostAfter {
		t.Fatalf("fence after %s + its check period %s is not before LostAfter %s", DefaultFenceAfter, FenceCheckEvery, datasync.LostAfter)
	}
}
